"""What every formulation returns, and the solver options every solve takes explicitly.

`SolveResult` follows Pyomo's split between *why the solver stopped* (`Termination`) and *what it found*
(`SolutionStatus`), plus the numbers a planner needs to reason about optimality: the incumbent objective,
the solver's proven bound, the relative gap between them, the wall time and the captured solver log. The
decoded solution (a layer split, replica counts, a placement) rides along in `solution`; an infeasible solve
carries human-readable reasons in `explanation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

SolutionT = TypeVar("SolutionT")


class Termination(StrEnum):
    """Why the solver stopped."""

    OPTIMAL = "optimal"  # proven optimal within the requested gap
    FEASIBLE = "feasible"  # stopped with an incumbent but no optimality proof (e.g. a solution limit)
    INFEASIBLE = "infeasible"  # proven: no solution satisfies the rows
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"  # the time limit hit; `solution_status` says whether an incumbent exists
    ERROR = "error"
    UNKNOWN = "unknown"


class SolutionStatus(StrEnum):
    """What the solver has to show for it."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    NO_SOLUTION = "no_solution"


@dataclass(frozen=True, slots=True)
class SolverOptions:
    """Options passed to every solve; nothing is left to a solver default.

    `threads` is HiGHS `threads` and CP-SAT `num_workers`; `seed` is HiGHS `random_seed` and CP-SAT
    `random_seed`. `mip_rel_gap` is the relative optimality gap at which a MIP stops.
    """

    time_limit_s: float = 10.0
    mip_rel_gap: float = 1e-6
    threads: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.time_limit_s <= 0 or self.mip_rel_gap < 0 or self.threads < 1:
            raise ValueError(
                f"bad solver options {self}: need time_limit_s > 0, mip_rel_gap >= 0, threads >= 1"
            )


@dataclass(frozen=True)
class SolveResult(Generic[SolutionT]):
    """The outcome of one solve.

    `objective` is the incumbent's objective in the model's own units and sense (None without an incumbent);
    `bound` is the solver's proven bound on the optimum (a lower bound when minimizing, an upper bound when
    maximizing); `gap` = |objective − bound| / max(|objective|, 1e-9) (0 when proven optimal, None without
    both numbers).
    """

    termination: Termination
    solution_status: SolutionStatus
    objective: float | None
    bound: float | None
    gap: float | None
    wall_s: float
    log: str = ""
    solution: SolutionT | None = None
    explanation: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def infeasible(cls, wall_s: float, *reasons: str, log: str = "") -> SolveResult:
        """A solve that found no solution, with the human-readable reasons why."""
        return cls(
            Termination.INFEASIBLE, SolutionStatus.NO_SOLUTION, None, None, None, wall_s, log, None, reasons
        )

    @property
    def has_solution(self) -> bool:
        return self.solution is not None and self.solution_status != SolutionStatus.NO_SOLUTION

    @property
    def is_optimal(self) -> bool:
        return self.termination == Termination.OPTIMAL


def relative_gap(objective: float | None, bound: float | None) -> float | None:
    """|objective − bound| / max(|objective|, 1e-9), or None when either is missing or infinite."""
    if objective is None or bound is None or not math.isfinite(objective) or not math.isfinite(bound):
        return None
    return abs(objective - bound) / max(abs(objective), 1e-9)
