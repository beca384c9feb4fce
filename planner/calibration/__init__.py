"""Serving calibration: fit engine host figures, the frontend cost and GPU efficiency scales to benchmark runs.

`calibrate_serving(results, scenario)` reads result files (planner/bench_results), replays each run on the
scenario's plan (replay.py: the same request lengths, the load as the benchmark drove it), and fits the global
parameters of params.py (fit.py) so that simulated TTFT and TPOT statistics match the measured ones, reporting the
error before and after on the runs fitted and on runs left out. `ServingFit.to_calibration()` is the file
`apex calibrate RESULTS --scenario S --out CAL.yaml` writes and scenarios load with `calibration:`.
"""

from __future__ import annotations

from pathlib import Path

from planner.bench_results.load import load_results
from planner.calibration.fit import HOLD_OUT, ServingFit, fit_serving
from planner.calibration.params import DEFAULT_FIT, NAMES, Prior
from planner.calibration.replay import ReplayRun
from simulator.costmodel import load_calibration
from simulator.errors import InputError
from simulator.scenario import Scenario, load_scenario

__all__ = ["calibrate_serving", "ServingFit", "DEFAULT_FIT", "NAMES", "HOLD_OUT"]


def calibrate_serving(
    results: list[str],
    scenario: str | Path | dict | Scenario,
    *,
    plan: str | dict | None = None,
    fit: tuple[str, ...] = DEFAULT_FIT,
    hold_out: str = "alternate",
    fmt: str = "auto",
) -> ServingFit:
    """Fit `fit` (names of params.NAMES) to the runs in the result files, replayed on the scenario's plan."""
    sc = load_scenario(scenario, plan_override=plan)
    field = "--plan" if plan is not None else "plan"
    if sc.plan is None:
        raise InputError(
            "the scenario has no plan: the runs are replayed on the plan that was benchmarked; add 'plan:' or "
            "pass --plan (for one client per replica, the plan of that one replica)",
            file=sc.file,
            field=field,
        )
    used = sc.plan.gpus_by_type(next(iter(sc.cluster.gpus_by_type())))
    if len(used) != 1:
        raise InputError(
            f"a serving calibration fits one GPU type; this plan uses {', '.join(sorted(used))}",
            file=sc.file,
            field=field,
        )
    gpu = sc.gpus[next(iter(used))]
    runs = [run for path in results for run in load_results(path, fmt)]
    if not runs:
        raise InputError("no benchmark run in the result files", field="RESULTS")
    replays = [ReplayRun.of(run, sc, i) for i, run in enumerate(runs)]
    base = load_calibration(sc.spec.calibration) if sc.spec.calibration is not None else None
    if base is not None and base.gpu != gpu.name:
        raise InputError(
            f"the scenario's calibration is for {base.gpu!r} but the plan runs on {gpu.name!r}",
            file=sc.file,
            field="calibration",
        )
    prior = Prior.of(gpu, sc.spec.engine.kind, base)
    return fit_serving(sc, replays, prior, tuple(fit), hold_out, data=", ".join(str(p) for p in results))
