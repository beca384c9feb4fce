"""Planning time of `apex plan` on two sizes (not a test): prints wall time, simulations and the final gap.

* Llama-3.1-70B on 4×8 H100-SXM under TTFT/TPOT SLOs, min_cost (target ≤ 60 s);
* Kimi-K2 (~1T-parameter MoE) on 512 GPUs, 64×8 H200-SXM, fp8, max_goodput (target ≤ 5 min).

Run: `python bench/bench_planner.py [--workers N] [--only llama|kimi]`.
"""

from __future__ import annotations

import argparse
import logging
import time

from planner.errors import NoPlanError
from planner.plan_api import plan

CHAT = {
    "input_tokens": {"dist": "lognormal", "mean": 1024, "std": 600, "max": 8192},
    "output_tokens": {"dist": "lognormal", "mean": 256, "std": 150, "max": 2048},
    "seed": 1,
}

CASES = {
    "llama": (
        {
            "name": "llama-3.1-70b-4x8-h100",
            "model": "llama-3.1-70b",
            "cluster": {"gpu": "h100-sxm", "nodes": 4, "gpus_per_node": 8},
            "workload": {"requests": 2000, "arrival": {"process": "poisson", "rate": 16.0}, **CHAT},
            "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": 2.0}, "tpot_s": {"p99": 0.1}}},
        },
        60.0,
    ),
    "kimi": (
        {
            "name": "kimi-k2-64x8-h200",
            "model": "kimi-k2",
            "cluster": {"gpu": "h200-sxm", "nodes": 64, "gpus_per_node": 8},
            "dtype": {"weights": "fp8", "kv_cache": "fp8"},
            "workload": {"requests": 2000, "arrival": {"process": "poisson", "rate": 40.0}, **CHAT},
            "goals": {"objective": "max_goodput", "slo": {"ttft_s": {"p99": 3.0}, "tpot_s": {"p99": 0.1}}},
        },
        300.0,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--only", choices=sorted(CASES), default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for name, (scenario, target_s) in CASES.items():
        if args.only and name != args.only:
            continue
        t0 = time.perf_counter()
        try:
            result = plan(scenario, workers=args.workers, time_limit_s=target_s)
        except NoPlanError as exc:
            print(f"{scenario['name']}: no plan ({exc}) after {time.perf_counter() - t0:.1f} s")
            continue
        wall = time.perf_counter() - t0
        s = result.search
        gap = "-" if s.gap is None else f"{100 * s.gap:.2f}%"
        print(
            f"{scenario['name']}: wall {wall:.1f} s (target {target_s:.0f} s), {s.simulations} simulations, "
            f"{s.rounds} rounds, gap {gap}, stopped: {s.stopped}; best {result.best.name} "
            f"{result.objective}={result.best.objective:.4g}"
        )


if __name__ == "__main__":
    main()
