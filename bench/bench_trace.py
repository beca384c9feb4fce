"""Benchmark: what `apex simulate --trace-out` costs, on bench_simulator.py's scenario (chat-lmsys at 25 req/s,
llama-3.1-70b on 8 x h100-sxm, tp=8, vLLM v1).

Prints, best of `--repeat N` interleaved runs (CPU time; the machine is shared), with warm cost-model caches so
that pricing does not hide the engine:
* the simulation without a trace (the engine's fast paths: steady decode steps in place);
* the same simulation recording a trace (every iteration through the scheduler, the recorder's hooks);
* writing the trace file (`write_chrome_trace`): events, size, CPU.

The cost of the hooks when no trace is asked for (one `is None` test per priced batch and per finished batch)
is measured against the tree before them with bench_simulator.py, not here.

    python bench/bench_trace.py                       # the README figures
    python bench/bench_trace.py --requests 2000 --max-events 50000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench_simulator import SCENARIO

from simulator.engine.trace import DEFAULT_MAX_EVENTS, TraceRecorder
from simulator.scenario import load_scenario
from simulator.simulate import simulate
from simulator.trace_export import write_chrome_trace


def cpu(fn) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--max-events", type=int, default=DEFAULT_MAX_EVENTS)
    args = parser.parse_args()
    spec = dict(SCENARIO, workload=dict(SCENARIO["workload"], requests=args.requests))
    scenario = load_scenario(spec)
    simulate(scenario)  # warm the price caches
    plain, traced, written = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(max(args.repeat, 1)):
            t, result = cpu(lambda: simulate(scenario))
            plain.append(t)
            recorder = TraceRecorder(max_events=args.max_events)
            t, _ = cpu(lambda recorder=recorder: simulate(scenario, trace=recorder))
            traced.append(t)
            path = Path(tmp) / f"trace{k}.json"
            t, summary = cpu(lambda recorder=recorder, path=path: write_chrome_trace(path, recorder.timeline))
            written.append((t, summary, os.path.getsize(path)))
    steps = result.num_steps
    best_plain, best_traced = min(plain), min(traced)
    t, summary, size = min(written, key=lambda w: w[0])
    print(f"{args.requests:,} requests, {steps:,} iterations (best of {len(plain)}, CPU, warm caches)")
    print(f"  simulate, no trace:     {best_plain:.3f} s ({best_plain / steps * 1e6:.1f} µs per iteration)")
    print(
        f"  simulate, recording:    {best_traced:.3f} s ({best_traced / steps * 1e6:.1f} µs per iteration, "
        f"{best_traced / best_plain:.1f}×)"
    )
    print(f"  write_chrome_trace:     {t:.3f} s, {summary.events:,} events, {size / 1e6:.1f} MB")
    print(f"  {summary.message()}")


if __name__ == "__main__":
    main()
