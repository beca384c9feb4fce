"""Benchmark: 10,000 chat-like requests, llama-3.1-70b on 8 x h100-sxm, tp=8, vLLM v1 near saturation.

Prints the wall time and the simulated requests per wall second. `--profile` prints the top of cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from simulator.scenario import load_scenario
from simulator.simulate import simulate

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=25.0, help="arrival rate, requests/s")
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
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = simulate(scenario)
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - start
    out = result.to_json()
    print(
        f"wall {wall:.2f} s, {args.requests / wall:,.0f} simulated requests/s "
        f"({out['requests']['completed']} completed, makespan {out['makespan_s']:.0f} s, "
        f"{out['throughput']['requests_per_s']:.1f} req/s served, TTFT p50 {out['ttft_s']['p50']:.3f} s, "
        f"TPOT p50 {out['tpot_s']['p50'] * 1e3:.1f} ms, preempted {out['requests']['preempted']})"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
