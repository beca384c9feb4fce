"""Placement: unavailable GPUs, TP groups inside nodes, GPU types, and named infeasibility."""

from __future__ import annotations

import random

import pytest

from formulations.placement import PlacementNodeGroup, PlacementReplica, PlacementStage, solve_placement
from formulations.result import SolverOptions, Termination

OPTIONS = SolverOptions(time_limit_s=10, mip_rel_gap=0.0, threads=1, seed=0)


@pytest.mark.solver
def test_placement_respects_unavailable_and_nodes_random():
    """On 30 random instances every GPU is used once, never an unavailable one, and single-node stages stay in a node."""
    for seed in range(30):
        rng = random.Random(seed)
        groups = (
            PlacementNodeGroup("h", "h100", rng.randint(2, 3), 8),
            PlacementNodeGroup("a", "a100", 2, 8),
        )
        unavailable = frozenset(("h", n, i) for n in range(3) for i in range(8) if rng.random() < 0.1)
        replicas = tuple(
            PlacementReplica(
                f"r{k}",
                tuple(
                    PlacementStage(rng.choice([1, 2, 4]), rng.choice(["h100", "a100"]))
                    for _ in range(rng.randint(1, 3))
                ),
            )
            for k in range(rng.randint(1, 4))
        )
        result = solve_placement(replicas, groups, OPTIONS, unavailable=unavailable)
        if result.termination == Termination.INFEASIBLE:
            assert result.explanation
            continue
        used = [slot for stages in result.solution.gpus.values() for stage in stages for slot in stage]
        assert len(used) == len(set(used))
        assert not set(used) & unavailable
        for r in replicas:
            for stage, slots in zip(r.stages, result.solution.gpus[r.id], strict=True):
                assert len(slots) == stage.num_gpus
                assert len({(g, n) for g, n, _ in slots}) == 1
                assert all((g == "h") == (stage.gpu_type == "h100") for g, _, _ in slots)
        assert result.objective >= result.bound - 1e-9


@pytest.mark.solver
def test_placement_prefers_pipeline_neighbours_on_one_node():
    """Two 4-GPU stages of one replica share a node when one is free, so no boundary crosses nodes."""
    groups = (PlacementNodeGroup("h", "h100", 2, 8),)
    replicas = (
        PlacementReplica("r", (PlacementStage(4, "h100"), PlacementStage(4, "h100"))),
        PlacementReplica("s", (PlacementStage(4, "h100"), PlacementStage(4, "h100"))),
    )
    result = solve_placement(replicas, groups, OPTIONS)
    assert result.solution.cross_node_boundaries == 0


def test_placement_infeasible_explains_largest_free_node():
    """An 8-GPU stage with 2 GPUs down on every node is refused with the most free GPUs on any node."""
    groups = (PlacementNodeGroup("h", "h100-sxm", 2, 8),)
    unavailable = frozenset({("h", 0, 0), ("h", 0, 1), ("h", 1, 2), ("h", 1, 3)})
    result = solve_placement(
        (PlacementReplica("r", (PlacementStage(8, "h100-sxm"),)),), groups, OPTIONS, unavailable=unavailable
    )
    assert result.termination == Termination.INFEASIBLE
    assert "8 free GPUs" in result.explanation[0] and "is 6" in result.explanation[0]


@pytest.mark.solver
def test_placement_multi_node_stage_uses_whole_nodes():
    """A 16-GPU stage on 8-GPU nodes takes two whole nodes."""
    groups = (PlacementNodeGroup("h", "h100", 3, 8),)
    result = solve_placement((PlacementReplica("r", (PlacementStage(16, "h100"),)),), groups, OPTIONS)
    nodes = {n for _, n, _ in result.solution.gpus["r"][0]}
    assert len(nodes) == 2
