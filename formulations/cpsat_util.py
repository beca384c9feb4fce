"""Run a CP-SAT model with explicit options (time limit, workers, seed, gap); map the outcome; capture the log.

`deadline` (a `time.monotonic()` instant) caps the time limit further, so a caller that spent time building the
model still ends on time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from formulations.result import SolverOptions, Termination


@dataclass(frozen=True, slots=True)
class CpSatRun:
    termination: Termination
    has_incumbent: bool
    objective: float | None
    bound: float | None
    wall_s: float
    log: str
    solver: Any  # the CpSolver, to read variable values


def solve_cpsat(
    model, options: SolverOptions, *, log_search: bool = False, deadline: float | None = None
) -> CpSatRun:
    from ortools.sat.python import cp_model

    limit = options.time_limit_s
    if deadline is not None:
        limit = max(min(limit, deadline - time.monotonic()), 0.01)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = limit
    solver.parameters.num_workers = options.threads
    solver.parameters.random_seed = options.seed
    solver.parameters.relative_gap_limit = options.mip_rel_gap
    solver.parameters.log_search_progress = log_search
    solver.parameters.log_to_stdout = False
    lines: list[str] = []
    solver.log_callback = lines.append
    start = time.monotonic()
    status = solver.solve(model)
    # CP-SAT's own wall_time leaves out loading the model; the limit is judged on the whole call.
    elapsed = max(time.monotonic() - start, solver.wall_time)
    has_objective = model.has_objective()
    if status == cp_model.OPTIMAL:
        termination = Termination.OPTIMAL
    elif status == cp_model.FEASIBLE:
        termination = Termination.TIME_LIMIT if elapsed >= limit * 0.99 else Termination.FEASIBLE
    elif status == cp_model.INFEASIBLE:
        termination = Termination.INFEASIBLE
    elif status == cp_model.MODEL_INVALID:
        termination = Termination.ERROR
    else:
        termination = Termination.TIME_LIMIT if elapsed >= limit * 0.99 else Termination.UNKNOWN
    has_incumbent = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    objective = solver.objective_value if has_incumbent and has_objective else None
    bound = solver.best_objective_bound if has_objective and has_incumbent else None
    log = "\n".join(lines) or f"CP-SAT status {solver.status_name(status)}"
    return CpSatRun(termination, has_incumbent, objective, bound, elapsed, log, solver)
