"""Planning time of `apex plan` (the production path: `planner.plan_api.plan`) from 8 to 2,048 GPUs (not a test).

For each case prints wall time, templates, simulations (every one the command ran, baselines included), rounds,
the bound and the gap the search proves, why it stopped, and the phases (templates, bounds, loop) — the figures
in the README's Performance table. Each case runs under `--time-limit` (default 120 s) like the CLI.

`--space core` runs the search alone (`run_search`, no placement) on the core space — colocated templates with
the scenario's own knobs, plain layouts of up to four stages, the space searched before disaggregation, engine
knobs and extended layouts — the reference the full space's planning time is compared with on the same load.

Run: `python bench/bench_planner.py [--workers N] [--only NAME ...] [--time-limit S] [--space full|core]
[--verbose]`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time

from planner.errors import NoPlanError
from planner.plan_api import plan
from planner.search.loop import SearchOptions, run_search
from planner.search.pricing import SpaceOptions
from simulator.scenario import load_scenario

CHAT = {
    "input_tokens": {"dist": "lognormal", "mean": 1024, "std": 600, "max": 8192},
    "output_tokens": {"dist": "lognormal", "mean": 256, "std": 150, "max": 2048},
    "seed": 1,
}
SLO = {"ttft_s": {"p99": 2.0}, "tpot_s": {"p99": 0.1}}


def case(name, model, gpu, nodes, rate, objective, *, dtype=None, requests=2000):
    scenario = {
        "name": name,
        "model": model,
        "cluster": {"gpu": gpu, "nodes": nodes, "gpus_per_node": 8},
        "workload": {"requests": requests, "arrival": {"process": "poisson", "rate": rate}, **CHAT},
        "goals": {"objective": objective, "slo": SLO},
    }
    if dtype:
        scenario["dtype"] = {"weights": dtype, "kv_cache": dtype}
    return scenario


CASES = {
    "llama8b-8": case("llama-3.1-8b 1x8 h100", "llama-3.1-8b", "h100-sxm", 1, 20.0, "min_cost"),
    "llama70b-32": case("llama-3.1-70b 4x8 h100", "llama-3.1-70b", "h100-sxm", 4, 16.0, "min_cost"),
    "llama70b-128": case("llama-3.1-70b 16x8 h100", "llama-3.1-70b", "h100-sxm", 16, 60.0, "min_cost"),
    "kimi-512": case("kimi-k2 64x8 h200 fp8", "kimi-k2", "h200-sxm", 64, 40.0, "max_goodput", dtype="fp8"),
    "kimi-2048": case(
        "kimi-k2 256x8 h200 fp8", "kimi-k2", "h200-sxm", 256, 150.0, "max_goodput", dtype="fp8"
    ),
    "deepseek-2048": case(
        "deepseek-v3 256x8 h200 fp8", "deepseek-v3", "h200-sxm", 256, 150.0, "max_goodput", dtype="fp8"
    ),
    "kimi-bf16-h100-2048": case(
        "kimi-k2 bf16 256x8 h100", "kimi-k2", "h100-sxm", 256, 150.0, "max_goodput", dtype="bf16"
    ),
}


def _fmt(x, spec="{:.4g}"):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else spec.format(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), default=None)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--space", choices=("full", "core"), default="full")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    print("| case | GPUs | wall s | templates | simulations | rounds | bound | gap | stopped | phases s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    workers = {} if args.workers is None else {"workers": args.workers}
    for key, scenario in CASES.items():
        if args.only and key not in args.only:
            continue
        gpus = scenario["cluster"]["nodes"] * scenario["cluster"]["gpus_per_node"]
        t0 = time.perf_counter()
        try:
            if args.space == "core":
                options = SearchOptions(
                    time_limit_s=args.time_limit, space=SpaceOptions.basic(), started_at=t0, **workers
                )
                result = run_search(load_scenario(scenario), options)
            else:
                result = plan(scenario, workers=args.workers, time_limit_s=args.time_limit)
        except NoPlanError as exc:
            print(f"| {scenario['name']} | {gpus} | {time.perf_counter() - t0:.1f} | no plan: {exc} |||||||")
            continue
        wall = time.perf_counter() - t0
        s = result.search
        gap = "-" if s.gap is None else f"{100 * s.gap:.1f}%"
        phases = ", ".join(f"{k} {v:.1f}" for k, v in s.phases_s.items())
        print(
            f"| {scenario['name']} | {gpus} | {wall:.1f} | {s.templates} | {s.simulations} | {s.rounds} | "
            f"{_fmt(s.bound)} | {gap} | {s.stopped} | {phases} |",
            flush=True,
        )
        print(f"  best {result.best.name}: {result.objective} = {result.best.objective:.4g}", flush=True)


if __name__ == "__main__":
    main()
