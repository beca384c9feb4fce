"""`apex capacity` on issue 13's case (not a test): configs/examples/llama-70b-h100-capacity.yaml, llama-3.1-70b /
8×H100 / tp4×2, fixed 1024 / 256 tokens, Poisson arrivals, TTFT mean ≤ 1 s, TPOT mean ≤ 50 ms.

For each of several seed sets (3 seeds each, the CLI's default) prints the capacity, tokens/s per GPU and per
user, the seeds' own rates, simulations, run length and wall time; then how far the answers and the seeds'
rates spread (the README's figure: stable to ±3% across seeds, in ≤ 30 s here).

Run: `python bench/bench_capacity.py [--bases 1 11 21] [--seeds 3] [--tolerance 0.01] [--requests N]`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from planner.api import capacity
from simulator.yamlio import read_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "examples" / "llama-70b-h100-capacity.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bases", type=int, nargs="+", default=[1, 11, 21], help="first seed of each seed set")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--requests", type=int, default=None)
    args = ap.parse_args()
    scenario = read_yaml(EXAMPLE)
    answers, per_seed, walls = [], [], []
    print(
        f"{'seeds':>10} {'req/s':>7} {'tok/s/GPU':>9} {'tok/s/user':>10} {'seed rates':>24} {'sims':>5} "
        f"{'run':>6} {'wall s':>7}"
    )
    for base in args.bases:
        scenario["workload"]["seed"] = base
        t = time.perf_counter()
        r = capacity(scenario, seeds=args.seeds, tolerance=args.tolerance, requests=args.requests)
        wall = time.perf_counter() - t
        answers.append(r.rate_rps)
        per_seed += [s.rate_rps for s in r.seeds]
        walls.append(wall)
        rates = ", ".join(f"{s.rate_rps:.2f}" for s in r.seeds)
        print(
            f"{base:>4}..{base + args.seeds - 1:<4} {r.rate_rps:7.2f} {r.output_tokens_per_s_per_gpu:9.0f} "
            f"{r.output_tokens_per_s_per_user:10.1f} {rates:>24} {r.simulations:5d} {r.requests_per_run:6d} "
            f"{wall:7.1f}"
        )
    for name, values in (("answers", answers), ("seed rates", per_seed)):
        mean = float(np.mean(values))
        spread = max(abs(v / mean - 1) for v in values)
        print(f"{name}: mean {mean:.3f} req/s, within ±{100 * spread:.1f}% of it ({len(values)} values)")
    print(f"wall time: {min(walls):.1f}–{max(walls):.1f} s per capacity (3 seeds, search + confirmation)")


if __name__ == "__main__":
    main()
