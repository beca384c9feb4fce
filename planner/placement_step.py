"""Placement of the chosen plan on concrete GPUs (docs/design.md §5: solve → place → simulate).

`place_best(result)` maps the best simulated plan's replicas onto (node group, node, GPU index) with the CP-SAT
placement model; when the best plan cannot be placed (its stages do not pack into the nodes), the next
feasible candidate that can be placed becomes the best, and the report says why.
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
    """Where every stage of every replica runs: replica id → stage → [(node group, node, gpu index)]."""

    gpus: dict[str, list[list[tuple[str, int, int]]]]
    cross_node_boundaries: int

    def to_json(self) -> dict:
        return {
            "cross_node_boundaries": self.cross_node_boundaries,
            "replicas": {
                rid: [[f"{g}/node{n}/gpu{i}" for g, n, i in stage] for stage in stages]
                for rid, stages in self.gpus.items()
            },
        }

    def summary(self) -> str:
        nodes = {(g, n) for stages in self.gpus.values() for stage in stages for g, n, _ in stage}
        return (
            f"{len(self.gpus)} replica(s) on {len(nodes)} node(s); "
            f"{self.cross_node_boundaries} pipeline boundary(ies) cross nodes"
        )


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


def place_plan(scenario: Scenario, plan: Plan) -> tuple[PlanPlacement | None, str]:
    """Place one plan; returns (placement, "") or (None, why it cannot be placed)."""
    result = solve_placement(
        placement_replicas(scenario, plan), node_groups_from_cluster(scenario.cluster), PLACEMENT_OPTIONS
    )
    if result.solution is None:
        why = "; ".join(result.explanation or ()) or f"placement solver: {result.termination.value}"
        return None, why
    return PlanPlacement(result.solution.gpus, result.solution.cross_node_boundaries), ""


def place_best(result) -> list[str]:
    """Place the best plan of a PlanSearchResult (falling back to the next placeable feasible candidate).

    Sets `result.best` and `result.placement`; returns notes on plans that could not be placed.
    """
    notes = []
    for cand in [result.best] + [c for c in result.candidates if c is not result.best and c.feasible]:
        placement, why = place_plan(result.scenario, cand.plan)
        if placement is not None:
            result.best = cand
            result.placement = placement
            return notes
        notes.append(f"{cand.name} cannot be placed: {why}")
    result.placement = None
    return notes
