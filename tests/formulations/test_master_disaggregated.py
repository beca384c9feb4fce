"""Master MILP with disaggregated templates and settings groups: the flow, pairing, KV-transfer and group rows
against a brute force over the count vectors `enumerate_count_vectors` walks (the plan space --exhaustive
simulates)."""

from __future__ import annotations

import random

import pytest

from formulations.master import (
    DomainPool,
    MasterProblem,
    MasterTemplate,
    WorkloadClass,
    enumerate_count_vectors,
    solve_master,
    solve_master_highspy,
)
from formulations.result import SolverOptions
from formulations.templates import TemplateCoefficients

OPTIONS = SolverOptions(time_limit_s=10, mip_rel_gap=1e-9, threads=1, seed=0)
GPU = "h100-sxm"


def _template(tid, role, gpus, cap, usd, group="a", link=float("inf")):
    coeffs = TemplateCoefficients(capacity_rps={"c": cap}, energy_per_request_j={"c": 1.0}, usd_per_hour=usd)
    return MasterTemplate(tid, {GPU: gpus}, coeffs, {GPU: gpus}, role=role, group=group, kv_link=link)


def _problem(rng: random.Random, groups: tuple[str, ...] = ("a",)) -> MasterProblem:
    templates = []
    for g in groups:
        for k in range(2):
            templates.append(
                _template(f"{g}-col{k}", "colocated", 2**k, rng.uniform(0.5, 2.0) * 2**k, 6.0 * 2**k, g)
            )
        templates.append(_template(f"{g}-pre", "prefill", 1, rng.uniform(1, 4), 6.0, g, rng.uniform(1, 4)))
        templates.append(_template(f"{g}-dec", "decode", 1, rng.uniform(0.5, 3), 6.0, g, rng.uniform(1, 4)))
    return MasterProblem(
        templates=tuple(templates),
        classes=(WorkloadClass("c", rng.uniform(1.0, 5.0), kv_per_unit=1.0),),
        pools=(DomainPool(GPU, 8, 1),),
        objective="min_cost",
        max_templates=2,
        min_replicas=1,
    )


def _cheapest_by_brute_force(problem: MasterProblem) -> float | None:
    """Min $/h over the enumerated vectors that can carry the demand: colocated replicas at capacity plus the
    rate the prefill and decode pools both carry (capacity and KV links on each side)."""
    by_id = {t.id: t for t in problem.templates}
    demand = problem.classes[0].demand_rps
    best = None
    for counts in enumerate_count_vectors(problem, 10_000):
        colocated = sum(
            n * by_id[t].coefficients.capacity_rps["c"]
            for t, n in counts.items()
            if by_id[t].role == "colocated"
        )
        sides = {"prefill": 0.0, "decode": 0.0}
        for t, n in counts.items():
            if by_id[t].role in sides:
                sides[by_id[t].role] = n * min(by_id[t].coefficients.capacity_rps["c"], by_id[t].kv_link)
        if colocated + min(sides.values()) >= demand - 1e-9:
            cost = sum(n * by_id[t].coefficients.usd_per_hour for t, n in counts.items())
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.solver
@pytest.mark.parametrize("seed", range(12))
def test_disaggregated_master_equals_brute_force(seed):
    """Pyomo and highspy find the brute-force optimum; their plans pair one prefill with one decode template
    (both or neither) and stay in one settings group."""
    rng = random.Random(seed)
    problem = _problem(rng, groups=("a", "b") if seed % 2 else ("a",))
    expected = _cheapest_by_brute_force(problem)
    for solve in (solve_master, solve_master_highspy):
        res = solve(problem, OPTIONS)
        if expected is None:
            assert not res.has_solution
            continue
        assert res.has_solution and res.objective == pytest.approx(expected, rel=1e-6), solve.__name__
        used = [t for t in problem.templates if res.solution.counts.get(t.id, 0) > 0]
        roles = [t.role for t in used]
        assert roles.count("prefill") == roles.count("decode") <= 1
        assert len({t.group for t in used}) == 1
        rates = res.solution.rates
        for side in ("prefill", "decode"):
            tid = next((t.id for t in used if t.role == side), None)
            if tid is not None:  # the KV row: a side carries at most its links' rate
                link = next(t.kv_link for t in used if t.id == tid)
                assert rates.get(("c", tid), 0.0) <= link * res.solution.counts[tid] + 1e-6


def test_enumerated_vectors_pair_prefill_with_decode_within_one_group():
    problem = _problem(random.Random(0), groups=("a", "b"))
    by_id = {t.id: t for t in problem.templates}
    vectors = enumerate_count_vectors(problem, 10_000)
    assert any(any(by_id[t].role == "prefill" for t in v) for v in vectors)
    for v in vectors:
        roles = [by_id[t].role for t in v]
        assert roles.count("prefill") == roles.count("decode") <= 1
        assert len({by_id[t].group for t in v}) == 1
        assert sum(by_id[t].weight for t in v) <= problem.max_templates
