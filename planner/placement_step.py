"""Placement of the chosen plan on concrete GPUs (docs/design.md §5: solve → place → simulate).

`place_best(result)` maps the best simulated plan's replicas onto (node group, node, GPU index) with
`formulations.placement.solve_placement` (constructive first, then the exact aggregate model in the time left);
when the best plan cannot be placed (its stages do not pack into the nodes), the next feasible candidate that
can be placed becomes the best, and the report says why. Time: `time_limit_s` per plan (default 10 s) and an
overall `deadline` (a `time.monotonic()` instant, e.g. the planner's --time-limit); past the deadline only the
constructive placement runs (and, should it fail, the exact model for 0.1 s), so a plan that can be placed is
not lost to the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from formulations.placement import (
    PlacementReplica,
    PlacementStage,
    node_groups_from_cluster,
    solve_placement,
)
from formulations.result import SolverOptions
from simulator.plan import Plan
from simulator.scenario import Scenario

PLACEMENT_OPTIONS = SolverOptions(time_limit_s=10.0, threads=1, seed=0)


@dataclass(frozen=True)
class PlanPlacement:
    """Where every stage of every replica runs: replica id → stage → [(node group, node, gpu index)].

    `method` says how it was found ("aggregate" or "direct": exact CP-SAT; "constructive": greedy), `optimal`
    whether the cross-domain count is proven minimal, `lower_bound` a proven bound on it, `note` why a fallback
    was used. `cross_domain_boundaries` counts pipeline neighbours in different NVLink domains (equal to
    `cross_node_boundaries` when every domain is one node).
    """

    gpus: dict[str, list[list[tuple[str, int, int]]]]
    cross_node_boundaries: int
    cross_domain_boundaries: int | None = None
    method: str = ""
    optimal: bool = False
    lower_bound: int = 0
    note: str = ""
    wall_s: float = 0.0

    def to_json(self) -> dict:
        return {
            "cross_node_boundaries": self.cross_node_boundaries,
            "replicas": {
                rid: [[f"{g}/node{n}/gpu{i}" for g, n, i in stage] for stage in stages]
                for rid, stages in self.gpus.items()
            },
            "cross_domain_boundaries": self.cross_domain_boundaries,
            "method": self.method,
            "optimal": self.optimal,
            "lower_bound": self.lower_bound,
            "note": self.note,
            "wall_s": round(self.wall_s, 3),
        }

    def summary(self) -> str:
        nodes = {(g, n) for stages in self.gpus.values() for stage in stages for g, n, _ in stage}
        text = (
            f"{len(self.gpus)} replica(s) on {len(nodes)} node(s); "
            f"{self.cross_node_boundaries} pipeline boundary(ies) cross nodes"
        )
        if (
            self.cross_domain_boundaries is not None
            and self.cross_domain_boundaries != self.cross_node_boundaries
        ):
            text += f", {self.cross_domain_boundaries} cross NVLink domains"
        if self.method:
            quality = "optimal" if self.optimal else f"lower bound {self.lower_bound}"
            text += f" ({self.method}, {quality}, {self.wall_s:.2f} s)"
        return text


def placement_replicas(scenario: Scenario, plan: Plan) -> list[PlacementReplica]:
    """One placement item per replica of the plan, stages in pipeline order."""
    default_gpu = next(iter(scenario.gpus))
    replicas = []
    for gi, group in enumerate(plan.replicas):
        stages = tuple(
            PlacementStage(num_gpus=s.num_gpus, gpu_type=s.gpu or default_gpu) for s in group.stages
        )
        replicas += [PlacementReplica(id=f"g{gi}r{r}", stages=stages) for r in range(group.count)]
    return replicas


def place_plan(
    scenario: Scenario,
    plan: Plan,
    *,
    time_limit_s: float | None = None,
    deadline: float | None = None,
    threads: int | None = None,
) -> tuple[PlanPlacement | None, str]:
    """Place one plan; returns (placement, "") or (None, why it cannot be placed).

    The solve takes at most `time_limit_s` (default PLACEMENT_OPTIONS') and ends by `deadline`; CP-SAT uses
    `threads` workers (default 1).
    """
    options = SolverOptions(
        time_limit_s=time_limit_s or PLACEMENT_OPTIONS.time_limit_s,
        threads=threads or PLACEMENT_OPTIONS.threads,
        seed=PLACEMENT_OPTIONS.seed,
    )
    result = solve_placement(
        placement_replicas(scenario, plan),
        node_groups_from_cluster(scenario.cluster),
        options,
        deadline=deadline,
    )
    if result.solution is None:
        why = "; ".join(result.explanation or ()) or f"placement solver: {result.termination.value}"
        return None, why
    p = result.solution
    fields = (p.cross_node_boundaries, p.cross_domain_boundaries, p.method, p.optimal, p.lower_bound, p.note)
    return PlanPlacement(p.gpus, *fields, result.wall_s), ""


def place_best(
    result,
    *,
    time_limit_s: float | None = None,
    deadline: float | None = None,
    threads: int | None = None,
) -> list[str]:
    """Place the best plan of a PlanSearchResult (falling back to the next placeable feasible candidate).

    Sets `result.best` and `result.placement`; returns notes on plans that could not be placed and on a
    placement that is not proven optimal. `time_limit_s`, `deadline` and `threads` as in `place_plan`.
    """
    notes = []
    for cand in [result.best] + [c for c in result.candidates if c is not result.best and c.feasible]:
        placement, why = place_plan(
            result.scenario, cand.plan, time_limit_s=time_limit_s, deadline=deadline, threads=threads
        )
        if placement is not None:
            result.best = cand
            result.placement = placement
            if placement.note:
                notes.append(f"placement: {placement.note}")
            return notes
        notes.append(f"{cand.name} cannot be placed: {why}")
    result.placement = None
    return notes
