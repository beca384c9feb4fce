"""Benchmark: chat-like requests, llama-3.1-70b on 8 x h100-sxm, tp=8, vLLM v1 near saturation.

Prints the wall and CPU time of `simulate` (scenario loading excluded), the engine steps (iterations summed
over replicas), the µs of CPU per step and the simulated requests per wall second, the best of `--repeat N`
runs (the machine is shared, so the best is the least disturbed; cold and warm runs alternate), twice:
* cold — every run starts with empty cost-model caches (`clear_price_caches`), as a fresh process does;
* warm — the caches hold the prices an earlier simulation of the same stages computed, as in a planner search
  or a study, which simulate the same stages many times.
`--profile` prints the top of cProfile (of a cold run). BLAS runs on one thread: CPU time counts every thread
of the process, and OpenBLAS's idle workers spin for a while after any BLAS call (the simulator makes none
since simulator/results.py stopped using np.dot), which would add tens of ms of CPU that is not the simulator's.

    python bench/bench_simulator.py                     # the 10k-request README figure
    python bench/bench_simulator.py --requests 100000 --repeat 1
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ.setdefault(_threads, "1")

from simulator.costmodel.replica import clear_price_caches  # noqa: E402 (after the thread settings)
from simulator.scenario import load_scenario  # noqa: E402
from simulator.simulate import simulate  # noqa: E402

SCENARIO = {
    "model": "llama-3.1-70b",
    "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 8},
    "dtype": {"weights": "fp8", "kv_cache": "fp8"},
    "engine": {"kind": "vllm-v1"},
    "workload": {
        "preset": "chat-lmsys",
        "requests": 10_000,
        "arrival": {"process": "poisson", "rate": 25.0},
        "seed": 1,
    },
    "plan": "tp=8",
}


def run_once(scenario, profiler=None) -> tuple[float, float, dict, int]:
    """(wall s, CPU s, JSON summary, engine steps) of one simulation."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = simulate(scenario)
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall, cpu, result.to_json(), result.num_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=25.0, help="arrival rate, requests/s")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    spec = dict(
        SCENARIO,
        workload=dict(
            SCENARIO["workload"], requests=args.requests, arrival={"process": "poisson", "rate": args.rate}
        ),
    )
    scenario = load_scenario(spec)
    profiler = cProfile.Profile() if args.profile else None
    repeat = max(args.repeat, 1)
    cold, warm = [], []
    for _ in range(repeat):  # interleaved, so a burst of load on the shared machine hits both alike
        clear_price_caches()
        cold.append(run_once(scenario, profiler))
        warm.append(run_once(scenario))
    for label, runs in (("cold", cold), ("warm", warm)):
        wall, cpu, out, steps = min(runs, key=lambda r: r[1])
        print(
            f"{args.requests:,} requests, {label}: wall {wall:.3f} s, CPU {cpu:.3f} s (best of {len(runs)}), "
            f"{steps:,} steps, {cpu / max(steps, 1) * 1e6:.2f} µs CPU per step, "
            f"{args.requests / wall:,.0f} simulated requests/s"
        )
    print(
        f"  {out['requests']['completed']} completed, makespan {out['makespan_s']:.0f} s, "
        f"{out['throughput']['requests_per_s']:.1f} req/s served, TTFT p50 {out['ttft_s']['p50']:.3f} s, "
        f"TPOT p50 {out['tpot_s']['p50'] * 1e3:.1f} ms, preemptions {out['requests']['preemptions']}"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
