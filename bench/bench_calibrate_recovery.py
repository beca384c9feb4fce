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

from planner.bench_results.export import FORMATS, write_results
from planner.calibration import calibrate_serving
from planner.calibration.synthetic import TRUTH, synthetic_scenario, truth_runs

RATES = (2.0, 6.0, 12.0)


def scenario(n: int, rate: float = 2.0, seed: int = 6) -> dict:
    return synthetic_scenario(n, rate, seed)


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
    runs = truth_runs(n, RATES, seed=6)
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
