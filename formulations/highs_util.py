"""Run a pyomo model through HiGHS (pyomo's APPSI interface) with explicit options; map the outcome.

Kept in one place so every pyomo formulation sets the same options (time limit, relative gap, threads,
seed), reads the dual bound the same way and captures the solver log.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass

from formulations.result import SolverOptions, Termination


@dataclass(frozen=True, slots=True)
class HighsRun:
    termination: Termination
    has_incumbent: bool
    objective: float | None
    bound: float | None
    wall_s: float
    log: str


_BANNER_SILENCED = False


def silence_highs_banner() -> None:
    """HiGHS prints a copyright banner to the C-level stdout the first time a `Highs` object is built in a
    process, which would corrupt `--json` output and tables; build that first one with stdout on /dev/null."""
    global _BANNER_SILENCED
    if _BANNER_SILENCED:
        return
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    _BANNER_SILENCED = True


def solve_pyomo_highs(model, options: SolverOptions, *, warmstart: bool = False) -> HighsRun:
    """Solve `model` with HiGHS; on an incumbent, its values are loaded into the model's variables.

    `warmstart=True` hands the variables' current values to HiGHS as a MIP start (`setSolution`).
    """
    from pyomo.contrib.appsi.base import TerminationCondition as TC
    from pyomo.contrib.appsi.solvers import Highs

    silence_highs_banner()
    solver = Highs()
    solver.config.time_limit = options.time_limit_s
    solver.config.mip_gap = options.mip_rel_gap
    solver.config.load_solution = False
    solver.config.warmstart = warmstart
    solver.config.stream_solver = False
    fd, logfile = tempfile.mkstemp(prefix="apex_highs_", suffix=".log")
    os.close(fd)
    solver.config.logfile = logfile
    solver.highs_options = {
        "threads": options.threads,
        "random_seed": options.seed,
        "mip_abs_gap": 1e-9,
        "log_to_console": False,
    }
    try:
        res = solver.solve(model)
        with open(logfile) as fh:
            log = fh.read()
    finally:
        os.unlink(logfile)
    tc = res.termination_condition
    termination = {
        TC.optimal: Termination.OPTIMAL,
        TC.infeasible: Termination.INFEASIBLE,
        TC.infeasibleOrUnbounded: Termination.INFEASIBLE,
        TC.unbounded: Termination.UNBOUNDED,
        TC.maxTimeLimit: Termination.TIME_LIMIT,
        TC.maxIterations: Termination.FEASIBLE,
        TC.objectiveLimit: Termination.FEASIBLE,
        TC.error: Termination.ERROR,
    }.get(tc, Termination.UNKNOWN)
    objective = res.best_feasible_objective
    has_incumbent = objective is not None
    if has_incumbent:
        res.solution_loader.load_vars()
    bound = res.best_objective_bound
    return HighsRun(termination, has_incumbent, objective, bound, res.wallclock_time, log)
