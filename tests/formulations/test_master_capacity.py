"""The master's capacity objectives against brute force on random small spaces: max_rate_per_gpu (Dinkelbach on
throughput per GPU, then the most throughput at that ratio) and min_gpus / min_cost with a target throughput
row, on the max_throughput demand rows (one class: a plan's capacity is the sum over its replicas)."""

from __future__ import annotations

import random

import pytest

from formulations.master import (
    DomainPool,
    MasterProblem,
    MasterTemplate,
    ObjectiveBound,
    WorkloadClass,
    enumerate_count_vectors,
    solve_master_highspy,
    solve_max_rate_per_gpu,
)
from formulations.result import SolverOptions
from formulations.templates import TemplateCoefficients

OPTIONS = SolverOptions(time_limit_s=10, mip_rel_gap=1e-9, threads=1, seed=0)


def _problem(seed: int) -> MasterProblem:
    rng = random.Random(seed)
    templates = []
    for k in range(rng.randint(2, 5)):
        gpus = rng.choice([1, 2, 4, 8])
        coeffs = TemplateCoefficients(
            {"all": rng.uniform(0.5, 3.0) * gpus ** rng.uniform(0.6, 1.1)},
            usd_per_hour=gpus * rng.uniform(2, 4),
        )
        templates.append(MasterTemplate(f"t{k}", {"h100": gpus}, coeffs, {"h100": gpus}))
    return MasterProblem(
        tuple(templates),
        (WorkloadClass("all", 1.0),),
        (DomainPool("h100", 8, rng.randint(1, 2)),),
        objective="max_throughput",
        rows_of="max_throughput",
        max_templates=2,
        min_replicas=1,
    )


def _space(problem: MasterProblem):
    """(counts, GPUs, summed capacity, $/h) of every count vector the integer rows allow."""
    by_id = {t.id: t for t in problem.templates}
    for counts in enumerate_count_vectors(problem, 100_000):
        gpus = sum(n * sum(by_id[t].gpus_by_type.values()) for t, n in counts.items())
        cap = sum(n * by_id[t].coefficients.capacity_rps["all"] for t, n in counts.items())
        usd = sum(n * by_id[t].coefficients.usd_per_hour for t, n in counts.items())
        yield counts, gpus, cap, usd


@pytest.mark.solver
@pytest.mark.parametrize("seed", range(25))
def test_max_rate_per_gpu_is_the_best_ratio_then_the_most_capacity(seed):
    problem = _problem(seed)
    space = list(_space(problem))
    best_ratio = max(cap / gpus for _, gpus, cap, _ in space)
    res, q = solve_max_rate_per_gpu(problem, OPTIONS)
    assert q == pytest.approx(best_ratio, rel=1e-6)
    m = res.solution.metrics
    assert m["rate_per_gpu"] == pytest.approx(best_ratio, rel=1e-6)
    most = max(cap for _, gpus, cap, _ in space if cap / gpus >= best_ratio * (1 - 1e-9))
    assert m["max_throughput"] == pytest.approx(most, rel=1e-6)


@pytest.mark.solver
@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("objective", ["min_gpus", "min_cost"])
def test_target_rate_fewest_gpus_or_dollars(seed, objective):
    problem = _problem(seed)
    space = list(_space(problem))
    rate = random.Random(seed).uniform(0.2, 1.1) * max(cap for _, _, cap, _ in space)
    feasible = [(gpus, usd) for _, gpus, cap, usd in space if cap >= rate * (1 - 1e-9)]
    target = problem.with_(objective=objective, objective_bounds=(ObjectiveBound("max_throughput", rate),))
    res = solve_master_highspy(target, OPTIONS)
    if not feasible:
        assert not res.has_solution
        return
    expected = min(g for g, _ in feasible) if objective == "min_gpus" else min(u for _, u in feasible)
    assert res.has_solution and res.objective == pytest.approx(expected, rel=1e-6)
    assert res.solution.metrics["max_throughput"] >= rate * (1 - 1e-6)
