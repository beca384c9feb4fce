"""Master MILP: optimum vs brute-force enumeration, pyomo vs highspy, cuts, infeasibility reports."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from scipy.optimize import linprog

from formulations.master import (
    LOAD_SEGMENTS,
    OBJECTIVE_SENSE,
    Budgets,
    CapacityCut,
    DomainPool,
    MasterProblem,
    MasterTemplate,
    SpaceTooLarge,
    WorkloadClass,
    enumerate_count_vectors,
    pareto_front,
    solve_lexicographic,
    solve_master,
    solve_master_highspy,
    top_k_solutions,
)
from formulations.result import SolverOptions, Termination
from formulations.templates import TemplateCoefficients

OPTIONS = SolverOptions(time_limit_s=10, mip_rel_gap=1e-9, threads=1, seed=0)
OBJECTIVES = sorted(OBJECTIVE_SENSE)


def make_problem(seed: int, objective: str) -> MasterProblem:
    rng = random.Random(seed)
    growth_rng = random.Random(seed + 1000)  # its own stream: the other coefficients stay as they were
    classes = tuple(
        WorkloadClass(f"c{i}", rng.uniform(1, 8), rng.randint(100, 2000)) for i in range(rng.randint(1, 2))
    )
    templates = []
    for k in range(3):
        gpu_type = rng.choice(["h100", "a100"])
        gpus = rng.choice([2, 4, 8])
        caps = {c.id: rng.uniform(0.5, 4) for c in classes if rng.random() < 0.85}
        coeffs = TemplateCoefficients(
            caps,
            {c: rng.uniform(50, 500) for c in caps},
            idle_w=gpus * rng.uniform(60, 120),
            usd_per_hour=gpus * rng.uniform(1, 4),
            latency_score={c: rng.uniform(0.5, 3) for c in caps},
            latency_growth_s=growth_rng.choice([0.0, growth_rng.uniform(0.5, 4)]),
        )
        templates.append(
            MasterTemplate(f"t{k}", {gpu_type: gpus}, coeffs, {gpu_type: gpus}, max_count=rng.randint(1, 3))
        )
    pools = (
        DomainPool("h100", 8, rng.randint(1, 2)),
        DomainPool("h100", 4, rng.randint(0, 1)),
        DomainPool("a100", 8, rng.randint(1, 2)),
    )
    budgets = Budgets(
        usd_per_hour=rng.choice([None, rng.uniform(20, 80)]),
        watts=rng.choice([None, rng.uniform(2000, 6000)]),
        num_gpus=rng.choice([None, rng.randint(8, 24)]),
        joules_per_token=rng.choice([None, rng.uniform(0.5, 3)]),
    )
    return MasterProblem(
        tuple(templates), classes, pools, budgets, objective, headroom=rng.choice([0.8, 1.0])
    )


def lp_for_counts(problem: MasterProblem, counts: dict[str, int]) -> float | None:
    """Best objective with the counts fixed (an independent scipy LP), or None when infeasible."""
    routes = problem.routes()
    tmpl = {t.id: t for t in problem.templates}
    cls = {c.id: c for c in problem.classes}
    # min_latency's growth: per template with growth, one variable per load segment after the rates
    grown = [
        t for t in problem.templates if problem.latency_growth(t) > 0 and problem.objective == "min_latency"
    ]
    nseg = len(LOAD_SEGMENTS)
    nrate = len(routes) + 1  # rates, then throughput
    nvar = nrate + nseg * len(grown)
    a_ub, b_ub, a_eq, b_eq = [], [], [], []
    total = sum(c.demand_rps for c in problem.classes)
    for c in problem.classes:
        row = np.zeros(nvar)
        for j, (ci, _) in enumerate(routes):
            row[j] = ci == c.id
        if problem.demand_rows == "max_goodput":
            a_ub.append(row), b_ub.append(c.demand_rps)
        elif problem.demand_rows == "max_throughput":
            row[-1] = -c.demand_rps / total
            a_eq.append(row), b_eq.append(0.0)
        else:
            a_eq.append(row), b_eq.append(c.demand_rps)
    for t in problem.templates:
        row = np.zeros(nvar)
        for j, (ci, ti) in enumerate(routes):
            if ti == t.id:
                row[j] = 1 / problem.capacity(t, ci)
        a_ub.append(row), b_ub.append(problem.headroom * counts[t.id])
    seg_bounds = []
    for i, t in enumerate(grown):  # Σ_k seg = load_t, 0 ≤ seg_k ≤ width_k · count (the last unbounded)
        row = np.zeros(nvar)
        for j, (ci, ti) in enumerate(routes):
            if ti == t.id:
                row[j] = 1 / problem.capacity(t, ci)
        row[nrate + i * nseg : nrate + (i + 1) * nseg] = -1
        a_eq.append(row), b_eq.append(0.0)
        seg_bounds += [(0, w * counts[t.id]) for w, _ in LOAD_SEGMENTS[:-1]] + [(0, None)]
    b = problem.budgets
    idle = sum(counts[t] * tmpl[t].coefficients.idle_w for t in counts)
    pad = [0.0] * (nvar - len(routes))
    energy = np.array([tmpl[t].coefficients.energy_j(c) for c, t in routes] + pad)
    tokens = np.array([cls[c].tokens_per_request for c, _ in routes] + pad)
    if b.watts is not None:
        a_ub.append(energy), b_ub.append(b.watts - idle)
    if b.joules_per_token is not None:
        a_ub.append(energy - b.joules_per_token * tokens), b_ub.append(-idle)
    growth = [problem.latency_growth(t) * slope for t in grown for _, slope in LOAD_SEGMENTS]
    lat = np.array([tmpl[t].coefficients.latency(c) for c, t in routes] + [0.0] + growth) / total
    cost = sum(counts[t] * tmpl[t].coefficients.usd_per_hour for t in counts)
    gpus = sum(counts[t] * sum(tmpl[t].gpus_by_type.values()) for t in counts)
    obj = problem.objective
    c_vec = {
        "max_goodput": -np.r_[np.ones(len(routes)), np.zeros(nvar - len(routes))],
        "max_throughput": -np.r_[np.zeros(len(routes)), 1, np.zeros(nvar - nrate)],
        "max_rate_per_gpu": -np.r_[np.zeros(len(routes)), 1, np.zeros(nvar - nrate)],
        "min_cost": np.zeros(nvar),
        "min_gpus": np.zeros(nvar),
        "min_energy": energy / 1000,
        "min_latency": lat,
    }[obj]
    res = linprog(
        c_vec,
        A_ub=np.array(a_ub) if a_ub else None,
        b_ub=b_ub or None,
        A_eq=np.array(a_eq) if a_eq else None,
        b_eq=b_eq or None,
        bounds=[(0, None)] * nrate + seg_bounds,
        method="highs",
    )
    if res.status != 0:
        return None
    value = {
        "max_goodput": -res.fun,
        "max_throughput": -res.fun,
        "max_rate_per_gpu": -res.fun - problem.rate_per_gpu_q * gpus,
        "min_cost": cost,
        "min_gpus": gpus,
        "min_energy": res.fun + idle / 1000,
        "min_latency": res.fun,
    }[obj]
    return value


def brute_force(problem: MasterProblem) -> float | None:
    """Enumerate every count vector within bounds that meets inventory, domain, $/h and GPU rows."""
    best = None
    sign = 1 if OBJECTIVE_SENSE[problem.objective] == "min" else -1
    ids = [t.id for t in problem.templates]
    for combo in itertools.product(*(range(problem.max_count(t) + 1) for t in problem.templates)):
        counts = dict(zip(ids, combo, strict=True))
        if any(all(counts[t] == cut.get(t, 0) for t in ids) for cut in problem.no_good):
            continue
        ok = all(
            sum(counts[t.id] * t.gpus_by_type.get(g, 0) for t in problem.templates) <= problem.available(g)
            for g in problem.gpu_types()
        )
        ok &= all(
            sum(
                counts[t.id] * t.gpus_by_type.get(g, 0)
                for t in problem.templates
                if t.domain_need_by_type.get(g, 1) >= d
            )
            <= usable
            for g, d, usable in problem.domain_rows()
        )
        b = problem.budgets
        if b.usd_per_hour is not None:
            ok &= sum(counts[t.id] * t.coefficients.usd_per_hour for t in problem.templates) <= b.usd_per_hour
        if b.num_gpus is not None:
            ok &= sum(counts[t.id] * sum(t.gpus_by_type.values()) for t in problem.templates) <= b.num_gpus
        if not ok:
            continue
        value = lp_for_counts(problem, counts)
        if value is not None and (best is None or sign * value < sign * best):
            best = value
    return best


@pytest.mark.solver
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_master_optimum_equals_brute_force_random(objective):
    """The MILP optimum equals enumeration of every count vector (with an LP for the rates) on 30 instances."""
    feasible = 0
    for seed in range(30):
        problem = make_problem(seed, objective)
        expected = brute_force(problem)
        result = solve_master(problem, OPTIONS, explain_infeasible=False)
        if expected is None:
            assert result.termination == Termination.INFEASIBLE, seed
            continue
        feasible += 1
        assert result.termination == Termination.OPTIMAL, seed
        assert result.objective == pytest.approx(expected, rel=1e-6, abs=1e-7), seed
        sense = OBJECTIVE_SENSE[objective]
        assert (
            (result.objective <= result.bound + 1e-6)
            if sense == "max"
            else (result.bound <= result.objective + 1e-6)
        )
    assert feasible >= 5


@pytest.mark.solver
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_master_highspy_agrees_with_pyomo_random(objective):
    """The highspy-direct builder reaches the same optimum as the pyomo builder, with cuts and capacity cuts."""
    for seed in range(30):
        problem = make_problem(seed, objective)
        problem = problem.with_(capacity_cuts=(CapacityCut("t0", "c0", 1.0),), no_good=({"t0": 1},))
        a = solve_master(problem, OPTIONS, explain_infeasible=False)
        b = solve_master_highspy(problem, OPTIONS)
        assert a.has_solution == b.has_solution, seed
        if a.has_solution:
            assert a.objective == pytest.approx(b.objective, rel=1e-6, abs=1e-7), seed


@pytest.mark.solver
def test_master_no_good_cuts_next_best_distinct_and_ordered():
    """Top-k via no-good cuts gives distinct count vectors with non-decreasing cost, matching brute force."""
    checked = 0
    for seed in range(30):
        problem = make_problem(seed, "min_cost")
        results = top_k_solutions(problem, 4, OPTIONS)
        vectors = [tuple(sorted(r.solution.counts.items())) for r in results]
        assert len(set(vectors)) == len(vectors)
        values = [r.objective for r in results]
        assert values == sorted(values) or all(
            b >= a - 1e-6 for a, b in zip(values, values[1:], strict=False)
        )
        if len(results) >= 2:
            cut = {t.id: results[0].solution.counts.get(t.id, 0) for t in problem.templates}
            assert results[1].objective == pytest.approx(brute_force(problem.with_(no_good=(cut,))), rel=1e-6)
            checked += 1
    assert checked >= 3


@pytest.mark.solver
def test_master_infeasible_budget_is_named():
    """A $/h budget below the cheapest plan that serves all demand is reported with the amount it lacks."""
    coeffs = TemplateCoefficients({"chat": 2.0}, usd_per_hour=10.0)
    problem = MasterProblem(
        (MasterTemplate("tp4", {"h100": 4}, coeffs, {"h100": 4}),),
        (WorkloadClass("chat", 5.0),),
        (DomainPool("h100", 8, 4),),
        Budgets(usd_per_hour=20.0),
        "min_cost",
    )
    result = solve_master(problem, OPTIONS)
    assert result.termination == Termination.INFEASIBLE
    assert any("usd_per_hour" in r and "10" in r for r in result.explanation), result.explanation


@pytest.mark.solver
def test_master_infeasible_demand_is_named():
    """Demand beyond what the inventory can serve is reported as the class and rate that cannot be served."""
    coeffs = TemplateCoefficients({"chat": 2.0}, usd_per_hour=10.0)
    problem = MasterProblem(
        (MasterTemplate("tp8", {"h100": 8}, coeffs, {"h100": 8}),),
        (WorkloadClass("chat", 5.0),),
        (DomainPool("h100", 8, 2),),
        Budgets(),
        "min_cost",
    )
    result = solve_master(problem, OPTIONS)
    assert result.termination == Termination.INFEASIBLE
    assert any("chat" in r and "1" in r for r in result.explanation), result.explanation


@pytest.mark.solver
def test_master_domain_rows_keep_tp_groups_in_large_domains():
    """A template needing 8-GPU domains cannot use GPUs from 4-GPU domains even when the type total allows."""
    coeffs = TemplateCoefficients({"chat": 1.0}, usd_per_hour=1.0)
    problem = MasterProblem(
        (MasterTemplate("tp8", {"h100": 8}, coeffs, {"h100": 8}),),
        (WorkloadClass("chat", 10),),
        (DomainPool("h100", 8, 1), DomainPool("h100", 4, 4)),
        objective="max_goodput",
    )
    assert solve_master(problem, OPTIONS).solution.counts == {"tp8": 1}


def tradeoff_problem(objective: str) -> MasterProblem:
    """Two templates: a cheap slow one and a fast dear one, demand beyond what the budget-free optimum of
    either objective picks alone (a real cost/goodput trade-off)."""
    slow = TemplateCoefficients({"chat": 1.0}, {"chat": 100.0}, idle_w=200, usd_per_hour=2.0)
    fast = TemplateCoefficients({"chat": 3.0}, {"chat": 80.0}, idle_w=600, usd_per_hour=9.0)
    return MasterProblem(
        (
            MasterTemplate("slow", {"h100": 2}, slow, {"h100": 2}, max_count=4),
            MasterTemplate("fast", {"h100": 8}, fast, {"h100": 8}, max_count=2),
        ),
        (WorkloadClass("chat", 8.0, 1000),),
        (DomainPool("h100", 8, 3),),
        objective=objective,
    )


@pytest.mark.solver
def test_master_warm_start_is_used_and_keeps_the_optimum(monkeypatch):
    """A warm start reaches HiGHS (the MIP start is set) and the optimum is unchanged; an infeasible hint is
    ignored rather than returned."""
    import formulations.master as master

    problem = tradeoff_problem("min_cost")
    plain = solve_master(problem, OPTIONS)
    assert plain.has_solution and plain.is_optimal
    seen = []
    real = master.solve_pyomo_highs

    def spy(model, options, *, warmstart=False):
        seen.append(warmstart)
        return real(model, options, warmstart=warmstart)

    monkeypatch.setattr(master, "solve_pyomo_highs", spy)
    warm = solve_master(problem, OPTIONS, warm_start=plain.solution.counts)
    assert True in seen
    assert warm.objective == pytest.approx(plain.objective)
    bad = solve_master(problem, OPTIONS, warm_start={"slow": 0, "fast": 0})  # serves nothing: infeasible
    assert bad.objective == pytest.approx(plain.objective)


@pytest.mark.solver
def test_master_lexicographic_and_pareto_front_trade_cost_for_goodput():
    """Lexicographic: least cost within 1% of max goodput. The ε-front of goodput against cost has several
    non-dominated points, goodput rising with cost and each point within its cost limit."""
    base = tradeoff_problem("max_goodput")
    best = solve_master(base, OPTIONS)
    lex = solve_lexicographic(base, ["max_goodput", "min_cost"], OPTIONS, tolerance=0.01)
    assert lex.solution.metrics["max_goodput"] >= 0.99 * best.objective - 1e-6
    assert lex.objective <= best.solution.metrics["min_cost"] + 1e-6
    front = pareto_front(base, "min_cost", OPTIONS, num_points=6)
    assert len(front) >= 3
    costs = [p.other for p in front]
    goodputs = [p.objective for p in front]
    assert costs == sorted(costs) and goodputs == sorted(goodputs)
    assert all(p.other <= p.epsilon + 1e-6 for p in front)
    assert goodputs[0] < goodputs[-1]


@pytest.mark.solver
def test_master_routes_classes_to_different_templates_where_a_plain_sort_cannot():
    """Two classes (short chat, long summarisation) and two templates, each good at one class: the optimum mixes
    them, class by class, and is cheaper than the best single template sized by ceil(demand / capacity)."""
    chat_box = TemplateCoefficients({"chat": 10.0, "summary": 0.5}, usd_per_hour=4.0)
    long_box = TemplateCoefficients({"chat": 4.0, "summary": 2.0}, usd_per_hour=8.0)
    problem = MasterProblem(
        (
            MasterTemplate("chat-box", {"h100": 2}, chat_box, {"h100": 2}),
            MasterTemplate("long-box", {"h100": 4}, long_box, {"h100": 4}),
        ),
        (WorkloadClass("chat", 20.0), WorkloadClass("summary", 4.0)),
        (DomainPool("h100", 8, 4),),
        objective="min_cost",
    )
    res = solve_master(problem, OPTIONS)
    assert res.is_optimal and res.solution.counts == {"chat-box": 2, "long-box": 2}
    assert res.solution.rates[("chat", "chat-box")] == pytest.approx(20.0)
    assert res.solution.rates[("summary", "long-box")] == pytest.approx(4.0)
    plain = min(
        math.ceil(sum(c.demand_rps / t.coefficients.capacity_rps[c.id] for c in problem.classes))
        * t.coefficients.usd_per_hour
        for t in problem.templates
    )
    assert res.objective == pytest.approx(24.0) and res.objective < plain


@pytest.mark.solver
def test_master_plan_space_rows_and_enumeration_agree():
    """`enumerate_count_vectors` lists exactly the count vectors the MILP's integer rows allow (max_templates,
    inventory, domains, $/h and GPU budgets, at least one replica): each is feasible for the MILP with the counts
    fixed, and the MILP's optimum over the space is one of them."""
    problem = tradeoff_problem("min_cost").with_(
        max_templates=1, min_replicas=1, budgets=Budgets(usd_per_hour=30.0), classes=()
    )
    vectors = enumerate_count_vectors(problem, 1000)
    assert vectors and all(len(v) == 1 for v in vectors)
    assert {tuple(v.items()) for v in vectors} == {(("slow", n),) for n in range(1, 5)} | {
        (("fast", n),) for n in range(1, 3)
    }
    with pytest.raises(SpaceTooLarge):
        enumerate_count_vectors(problem, 3)
    best = solve_master_highspy(problem, OPTIONS)
    assert best.solution.counts in vectors


@pytest.mark.solver
def test_min_latency_spreads_load_over_more_replicas_by_its_growth_term():
    """Latency grows with a replica's utilisation: at 4 req/s on replicas of capacity 4, idle latency 1 s and
    growth 2 s, one replica (ρ = 1) scores 1 + 2 = 3 s, four (ρ = 0.25, ρ² ≈ 0.065 piecewise) score
    1 + 2 · 0.065 / 0.25 = 1.52 s; the master takes all four, and says the same value as `evaluate`."""
    coeffs = TemplateCoefficients({"c": 4.0}, latency_score={"c": 1.0}, latency_growth_s=2.0)
    problem = MasterProblem(
        (MasterTemplate("t", {"h100": 2}, coeffs, max_count=4),),
        (WorkloadClass("c", 4.0),),
        (DomainPool("h100", 8, 1),),
        objective="min_latency",
    )
    for solve in (solve_master_highspy, lambda p, o: solve_master(p, o, explain_infeasible=False)):
        res = solve(problem, OPTIONS)
        assert res.solution.counts == {"t": 4}
        assert res.objective == pytest.approx(1.52) == res.solution.metrics["min_latency"]
    one = problem.with_(templates=(MasterTemplate("t", {"h100": 2}, coeffs, max_count=1),))
    assert solve_master_highspy(one, OPTIONS).objective == pytest.approx(3.0)
