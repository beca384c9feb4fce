"""Layer partition: DP reference vs the HiGHS MILP and CP-SAT on small random instances."""

from __future__ import annotations

import random

import pytest

from formulations.layer_partition import (
    LayerGroup,
    LayerPartitionProblem,
    StageSlot,
    evaluate_split,
    partition_dp,
    solve_layer_partition,
)
from formulations.result import SolverOptions, Termination

OPTIONS = SolverOptions(time_limit_s=10, mip_rel_gap=1e-9, threads=1, seed=0)


def make_problem(seed: int, objective: str) -> LayerPartitionProblem:
    rng = random.Random(seed)
    layers = tuple(
        LayerGroup(rng.randint(1, 4), rng.randint(1, 9) / 8, rng.randint(1, 5))
        for _ in range(rng.randint(1, 3))
    )
    num_layers = sum(g.num_layers for g in layers)
    num_stages = rng.randint(1, min(4, num_layers))
    total_mem = sum(g.num_layers * g.memory_bytes for g in layers)
    stages = tuple(
        StageSlot(
            f"g{s}",
            memory_capacity_bytes=rng.randint(5, 10) + total_mem / num_stages * rng.random(),
            fixed_memory_bytes=rng.randint(0, 2),
            time_scale=rng.choice([0.5, 1.0, 2.0]),
            send_time_s=rng.choice([0.0, 0.25]),
        )
        for s in range(num_stages)
    )
    return LayerPartitionProblem(layers, stages, objective)


def brute_force(problem: LayerPartitionProblem) -> float | None:
    import itertools

    n, s = problem.num_layers, len(problem.stages)
    best = None
    for cuts in itertools.combinations(range(1, n), s - 1):
        edges = (0, *cuts, n)
        bounds = list(zip(edges[:-1], edges[1:], strict=True))
        split = evaluate_split(problem, bounds)
        if any(
            m > st.memory_capacity_bytes
            for m, st in zip(split.stage_memory_bytes, problem.stages, strict=True)
        ):
            continue
        value = split.bottleneck_s if problem.objective == "bottleneck" else split.total_s
        best = value if best is None else min(best, value)
    return best


@pytest.mark.parametrize("objective", ["bottleneck", "sum"])
def test_partition_dp_equals_brute_force_random(objective):
    """The dynamic program finds the brute-force optimum (or infeasibility) on 30 random instances."""
    for seed in range(30):
        problem = make_problem(seed, objective)
        expected = brute_force(problem)
        result = partition_dp(problem)
        if expected is None:
            assert result.termination == Termination.INFEASIBLE and result.explanation
        else:
            assert result.objective == pytest.approx(expected)


@pytest.mark.solver
@pytest.mark.parametrize("backend", ["highs", "cpsat"])
@pytest.mark.parametrize("objective", ["bottleneck", "sum"])
def test_partition_solver_equals_dp_random(backend, objective):
    """HiGHS and CP-SAT reach the DP optimum (CP-SAT within its tick rounding) and keep objective ≥ bound."""
    for seed in range(30):
        problem = make_problem(seed, objective)
        ref = partition_dp(problem)
        result = solve_layer_partition(problem, backend=backend, options=OPTIONS)
        if ref.termination == Termination.INFEASIBLE:
            assert result.termination == Termination.INFEASIBLE
            continue
        assert result.termination == Termination.OPTIMAL
        assert result.objective == pytest.approx(ref.objective, rel=1e-4)
        assert result.bound <= result.objective * (1 + 1e-6) + 1e-9
        for mem, slot in zip(result.solution.stage_memory_bytes, problem.stages, strict=True):
            assert mem <= slot.memory_capacity_bytes + 1e-9


@pytest.mark.solver
def test_partition_heterogeneous_dense_then_moe_agrees():
    """A DeepSeek-like dense-then-MoE model on mixed GPU groups splits identically across the three backends."""
    layers = (LayerGroup(3, 1.0, 1.0, "dense"), LayerGroup(58, 3.0, 4.0, "moe"))
    stages = tuple(
        StageSlot(f"s{k}", memory_capacity_bytes=80.0, time_scale=0.5 if k < 2 else 1.0) for k in range(4)
    )
    problem = LayerPartitionProblem(layers, stages, "bottleneck")
    results = [solve_layer_partition(problem, backend=b, options=OPTIONS) for b in ("dp", "highs", "cpsat")]
    assert len({round(r.objective, 6) for r in results}) == 1


def test_partition_infeasible_names_stage():
    """When no split fits memory, the result names the stage and group that cannot hold its layers."""
    layers = (LayerGroup(4, 1.0, 10.0),)
    stages = (StageSlot("h100-a", memory_capacity_bytes=25.0), StageSlot("a100-b", memory_capacity_bytes=5.0))
    result = partition_dp(LayerPartitionProblem(layers, stages))
    assert result.termination == Termination.INFEASIBLE
    assert "a100-b" in result.explanation[0] and "stage 1" in result.explanation[0]
