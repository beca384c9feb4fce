"""Recovery of perturbed coefficients by `apex calibrate RESULTS --scenario` (planner/calibration/).

SYNTHETIC: the "measurements" are simulations of Llama-3.1-8B on one H100 (vLLM V1) with known coefficients —
host overheads ×3, a 5 ms frontend, compute efficiency ×0.8 — written in each tool's result format, read back and
fitted from the catalog defaults. Three runs of REQUESTS requests at 2, 6 and 12 req/s; the fit sees 2 and 12,
6 req/s is held out. Not a test: run it directly (`python bench/bench_calibrate_recovery.py [REQUESTS]`); the
figures go in the README ("From plan to deployment").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from planner.bench_results.export import FORMATS, RunToWrite, write_results
from planner.calibration import calibrate_serving
from planner.calibration.params import Prior
from simulator.costmodel import host as host_figures
from simulator.scenario import load_scenario
from simulator.simulate import simulate

RATES = (2.0, 6.0, 12.0)
BASE = host_figures.host_overhead("vllm-v1")
TRUTH = {
    "per_iteration_s": 3 * BASE.per_iteration_s,
    "per_sequence_s": 3 * BASE.per_sequence_s,
    "frontend_s": 0.005,
    "compute_scale": 0.8,
    "memory_scale": 1.0,
}


def scenario(n: int, rate: float = 2.0, seed: int = 6) -> dict:
    return {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
        "engine": {"kind": "vllm-v1"},
        "workload": {
            "requests": n,
            "arrival": {"process": "poisson", "rate": rate},
            "input_tokens": {"dist": "lognormal", "mean": 600, "std": 500, "max": 4096},
            "output_tokens": {"dist": "lognormal", "mean": 32, "std": 20, "max": 256},
            "seed": seed,
        },
        "plan": "tp=1",
    }


def truth_runs(n: int, seed: int = 6) -> list[RunToWrite]:
    sc = load_scenario(scenario(n, seed=seed))
    truth = Prior.of(sc.gpus["h100-sxm"], "vllm-v1", None).calibration(TRUTH)
    return [
        RunToWrite.from_simulation(simulate(load_scenario(scenario(n, r, seed)), calibration=truth), r)
        for r in RATES
    ]


def row(label: str, fit, wall: float) -> str:
    p = fit.params
    cells = [
        f"{p['per_iteration_s'] / TRUTH['per_iteration_s']:.3f}",
        f"{p['per_sequence_s'] / TRUTH['per_sequence_s']:.2f}" if "per_sequence_s" in fit.fitted else "-",
        f"{1e3 * p['frontend_s']:.2f}",
        f"{p['compute_scale'] / TRUTH['compute_scale']:.3f}",
        f"{p['memory_scale']:.3f}" if "memory_scale" in fit.fitted else "-",
        f"{fit.mdape('fit', before=True):.1%} → {fit.mdape('fit'):.1%}",
        f"{fit.mdape('held-out', before=True):.1%} → {fit.mdape('held-out'):.1%}",
        f"{wall:.1f}",
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def main(n: int = 200) -> None:
    print(
        "| format / fitted | per_iteration_s ÷ truth | per_sequence_s ÷ truth | frontend_s (ms; truth 5) "
        "| compute_scale ÷ truth | memory_scale (truth 1) | error fitted runs | error held-out run | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    runs = truth_runs(n)
    for fmt in FORMATS:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_results(fmt, runs, Path(tmp))
            start = time.perf_counter()
            fit = calibrate_serving(paths, scenario(n))
            print(row(f"{fmt} / default", fit, time.perf_counter() - start), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_results("vllm", runs, Path(tmp))
        for extra in (("per_sequence_s",), ("per_sequence_s", "memory_scale")):
            names = ("per_iteration_s", *extra, "frontend_s", "compute_scale")
            start = time.perf_counter()
            fit = calibrate_serving(paths, scenario(n), fit=names)
            print(row(f"vllm / + {' + '.join(extra)}", fit, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
