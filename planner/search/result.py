"""What `apex plan` returns: `PlanSearchResult` (best plan, every simulated candidate, baselines, search figures)
and `no_plan_error` (the NoPlanError that names the goal the closest plan misses and by how much)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from planner import objective as obj
from planner.errors import NoPlanError
from planner.search.labels import shorthand
from planner.search.pool import Candidate
from simulator.scenario import Scenario


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


@dataclass
class SearchStats:
    """The search figures. `simulations` counts every simulation the command ran (baselines included);
    `bound` is proven when `bound_kind` is "proven" or "exact" and absent ("none") where no bound can be
    proven; `gap` is between the best simulated plan and that bound over the whole searched space."""

    solver: str
    rounds: int
    simulations: int
    bound: float | None
    gap: float | None
    wall_s: float
    stopped: str = ""  # why the loop stopped
    templates: int = 0
    bound_kind: str = ""  # "proven", "exact" or "none" (formulations.objectives)
    bound_note: str = ""  # what the bound is, or why there is none
    space_plans: int | None = None  # plans in the searched space (None: more than could be counted)
    space_note: str = ""  # what the space is
    phases_s: dict[str, float] = field(default_factory=dict)  # wall time per phase
    census: dict = field(
        default_factory=dict
    )  # templates generated / pruned / priced per kind (pricing.Census)

    def to_json(self) -> dict:
        return {
            "solver": self.solver,
            "rounds": self.rounds,
            "simulations": self.simulations,
            "bound": _finite(self.bound),
            "gap": _finite(self.gap),
            "wall_s": self.wall_s,
            "stopped": self.stopped,
            "templates": self.templates,
            "bound_kind": self.bound_kind,
            "bound_note": self.bound_note,
            "space": {"plans": self.space_plans, "note": self.space_note, **self.census},
            "phases_s": dict(self.phases_s),
        }


@dataclass
class PlanSearchResult:
    """What `apex plan` found: the best plan, every simulated candidate (best first), the baselines."""

    objective: str
    best: Candidate
    candidates: list[Candidate]
    baselines: dict[str, Candidate]
    search: SearchStats
    scenario: Scenario = field(repr=False)
    placement: object | None = None  # planner.placement_step.PlanPlacement of the best plan, once placed
    placement_notes: list[str] = field(default_factory=list)
    clock: object | None = (
        None  # planner.search.clock_choice.ClockChoice when the space had a clock dimension
    )

    def gains(self) -> dict[str, float]:
        """Relative gain of the best plan over each baseline (inf when the baseline misses the goals)."""
        return {
            name: obj.gain(self.best.objective, b.objective, self.objective) if b.feasible else math.inf
            for name, b in self.baselines.items()
        }

    def to_json(self) -> dict:
        best = self.best.to_json()
        if self.placement is not None:
            best["placement"] = self.placement.to_json()
        o = obj.spec(self.objective)
        out = {
            "best": best,
            "candidates": [c.to_json() for c in self.candidates],
            "baselines": {name: c.to_json() for name, c in self.baselines.items()},
            "search": self.search.to_json(),
            "objective": {"name": o.name, "sense": o.sense, "unit": o.unit, "bound": o.bound},
        }
        if self.clock is not None:
            out["clock"] = self.clock.to_json()
        return out


def no_plan_error(scenario: Scenario, closest: Candidate | None, reason: str = "", solver_says: str = ""):
    """The NoPlanError for a search that found no plan meeting the goals: the goal the closest plan misses and
    by how much, or `reason` when nothing was simulated."""
    extra = f" ({solver_says})" if solver_says else ""
    if closest is None:
        return NoPlanError(reason + extra)
    if closest.error:
        return NoPlanError(f"no simulated plan runs: {closest.error} (plan {shorthand(closest.plan)}){extra}")
    misses = "; ".join(v.describe() for v in closest.violations)
    return NoPlanError(f"{misses} on the best plan {shorthand(closest.plan)}{extra}")
