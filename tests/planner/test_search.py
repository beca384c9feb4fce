"""The solve–simulate loop: objective and feasibility scoring, the loop against the exhaustive baseline."""

from __future__ import annotations

import math
import time

import pytest

from formulations.objectives import objective_spec
from formulations.result import SolutionStatus, SolveResult, SolverOptions, Termination
from planner import objective as obj
from planner.baselines import BY_BOUND, exhaustive, heuristic_plans
from planner.errors import NoPlanError
from planner.plan_api import plan
from planner.search import (
    SearchOptions,
    Simulations,
    loop,
    plan_key,
    price_templates,
    run_search,
    workload_stats,
)
from planner.search.loop import _proposals, deadline_of, prepare, within
from planner.search.pool import Candidate
from planner.search.pricing import SpaceOptions
from simulator.scenario import Goals, load_scenario
from tests.conftest import EXAMPLES
from tests.planner.search_scenarios import SCENARIOS, compare


def make_scenario(
    model: str,
    *,
    objective: str = "min_cost",
    rate: float = 4.0,
    requests: int = 150,
    slo: dict | None = None,
    gpus_per_node: int = 8,
) -> dict:
    """A small scenario on one node of H100s with chat-like lengths."""
    return {
        "name": f"{model}-small",
        "model": model,
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": gpus_per_node},
        "workload": {
            "requests": requests,
            "arrival": {"process": "poisson", "rate": rate},
            "input_tokens": {"dist": "lognormal", "mean": 512, "std": 256, "max": 4096},
            "output_tokens": {"dist": "lognormal", "mean": 128, "std": 64, "max": 1024},
            "seed": 3,
        },
        "goals": {
            "objective": objective,
            "slo": slo if slo is not None else {"ttft_s": {"p99": 1.0}, "tpot_s": {"p99": 0.05}},
        },
    }


METRICS = {
    "throughput": {"output_tokens_per_s": 1500.0},
    "ttft_s": {"mean": 0.5, "p50": 0.4, "p90": 1.5, "p99": 2.8},
    "tpot_s": {"mean": 0.02, "p50": 0.02, "p90": 0.03, "p99": 0.04},
    "e2e_s": {"mean": 5.0, "p50": 4.0, "p90": 9.0, "p99": 16.0},
    "energy": {"joules": 1000.0, "joules_per_output_token": 3.0},
    "cost": {"usd_per_hour": 49.28},
    "slo": {"attainment": 0.97, "goodput_rps": 5.8},
    "makespan_s": 10.0,
}


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ("min_cost", 49.28),
        ("max_goodput", 5.8),
        ("min_energy", 3.0),
        ("min_latency", 16.0),
        ("max_throughput", 1500.0),
    ],
)
def test_objective_value_reads_the_metric_of_each_objective(objective, expected):
    """Each objective reads its own metric from the simulation JSON."""
    assert obj.objective_value(METRICS, Goals(objective=objective)) == expected


def test_violations_slo_at_its_percentile_with_excess():
    """A missed p99 TTFT is reported with its value, target and relative excess."""
    goals = Goals(objective="min_cost", slo={"ttft_s": {"p99": 2.0}, "tpot_s": {"p99": 0.1}})
    (v,) = obj.violations(METRICS, goals)
    assert v.goal == "ttft_s.p99" and v.value == 2.8 and v.target == 2.0
    assert math.isclose(v.excess, 0.4)
    assert v.describe().startswith("TTFT p99 2.8 s > 2 s target")


def test_violations_budgets_and_goodput_ignores_slos():
    """Budgets are checked for every objective; max_goodput leaves SLOs to the goodput itself."""
    goals = Goals(
        objective="max_goodput",
        slo={"ttft_s": {"p99": 2.0}},
        budget={"usd_per_hour": 40, "watts": 50, "num_gpus": 8},
    )
    names = {v.goal for v in obj.violations(METRICS, goals, num_gpus=4)}
    assert names == {"budget.usd_per_hour", "budget.watts"}


def test_gain_and_gap_follow_the_objective_sense():
    """Gains and gaps are relative and respect min / max."""
    assert math.isclose(obj.gain(25.0, 50.0, "min_cost"), 0.5)
    assert math.isclose(obj.gain(6.0, 5.0, "max_goodput"), 0.2)
    assert obj.relative_gap(10.0, 10.0, "min_cost") == 0.0
    assert math.isclose(obj.relative_gap(10.0, 9.0, "min_cost"), 0.1)
    assert math.isclose(obj.relative_gap(10.0, 11.0, "max_goodput"), 0.1)


# Known misses, kept failing on purpose (strict: they fail the tier once fixed, so the mark comes off). None at
# present: llama-8b H100+A100 min_energy missed (0.4514 vs 0.429 J/token) between the merge of the max_num_seqs
# variants above the default and that of the knob tie / KV-limited cap rules; on the merged state it is found.
KNOWN_MISSES: dict[str, str] = {}


@pytest.mark.slow
@pytest.mark.solver
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[n]))
        if n in KNOWN_MISSES
        else n
        for n in sorted(SCENARIOS)
    ],
)
def test_search_finds_the_exhaustive_optimum_with_a_quarter_of_its_simulations_under_a_true_bound(name):
    """Over the same plan space: the loop's best equals --exhaustive's (within 1 % for max objectives) with at
    most 25 % of the simulations a simulate-everything run needs (every simulation counted, baselines
    included), and no plan --exhaustive simulated beats the bound the loop reports. --exhaustive covers the
    whole space: it simulates every plan, or (above its limit: the hetero example's 21,715 plans) simulates in
    order of proven bound until no plan left could beat its best, with gap 0."""
    c = compare(name)
    exh, found = c.exhaustive, c.search
    spec = obj.spec(exh.objective)
    assert exh.search.space_plans is not None and exh.search.gap in (0.0, None)
    if exh.search.stopped == "every plan simulated":
        assert exh.search.simulations >= exh.search.space_plans
    else:
        assert exh.search.stopped == BY_BOUND and exh.search.space_plans > SearchOptions().exhaustive_limit
        assert exh.search.bound == exh.best.objective
    if spec.sense == "max":
        assert found.best.objective >= 0.99 * exh.best.objective
    else:
        assert found.best.objective <= exh.best.objective * (1 + 1e-9)
    assert found.search.simulations <= 0.25 * exh.search.space_plans
    bound = found.search.bound
    if spec.bound == "none":
        assert bound is None and found.search.gap is None
    else:
        assert bound is not None
        for cand in exh.candidates:
            if cand.feasible:
                slack = 1 - 1e-9 if spec.sense == "min" else 1 + 1e-9  # rounding, not a looser bound
                assert not spec.better(cand.objective, bound * slack), (cand.name, cand.objective, bound)


@pytest.mark.slow
@pytest.mark.solver
def test_search_without_heuristics_beats_or_ties_every_heuristic_on_the_readme_example():
    """The loop alone — the heuristic plans kept out of its pool — finds a plan at least as good as every
    heuristic baseline on the README's Llama-70B example."""
    sc = load_scenario(EXAMPLES / "llama-70b-h100.yaml")
    alone = run_search(sc, SearchOptions(workers=2), with_baselines=False)
    assert alone.baselines == {} and all(c.source == "search" for c in alone.candidates)
    templates = [p.template for p in price_templates(sc, workload_stats(sc))]
    heuristics = heuristic_plans(sc, templates)
    assert set(heuristics) == {"tp-in-node", "smallest-tp", "max-tp"}
    with Simulations(sc, workers=2) as sims:
        scored = dict(zip(heuristics, sims.run(list(heuristics.values())), strict=True))
    assert any(b.feasible for b in scored.values())
    for name, baseline in scored.items():
        if baseline.feasible:
            assert alone.best.objective <= baseline.objective + 1e-9, name


@pytest.mark.solver
def test_search_infeasible_ttft_names_the_goal():
    """A 1 ms TTFT target gives NoPlanError naming TTFT p99 and the plan that came closest."""
    scenario = make_scenario("llama-3.1-8b", requests=40, slo={"ttft_s": {"p99": 0.001}})
    with pytest.raises(NoPlanError, match=r"TTFT p99 .* > 0\.001 s target .* on the best plan"):
        plan(scenario, workers=1)


FAKE_CALLS: list[str] = []


def fake_simulate(scenario) -> dict:
    """A stand-in simulator: every plan meets the goals, costs its GPUs, and goodput grows with GPUs."""
    FAKE_CALLS.append(plan_key(scenario.plan))
    gpus = scenario.plan.num_gpus
    return {
        "cost": {"usd_per_hour": 3.0 * gpus},
        "ttft_s": {"mean": 0.1, "p50": 0.1, "p90": 0.2, "p99": 0.3},
        "tpot_s": {"mean": 0.01, "p50": 0.01, "p90": 0.02, "p99": 0.02},
        "e2e_s": {"mean": 1.0, "p50": 1.0, "p90": 2.0, "p99": 3.0},
        "energy": {"joules": 1e5, "joules_per_output_token": 1.0 + gpus},
        "throughput": {"output_tokens_per_s": 100.0 * gpus},
        "slo": {"attainment": 1.0, "goodput_rps": 1.0, "met": True},
        "requests": {"completed": 40, "rejected": 0, "total": 40},
        "makespan_s": 10.0,
    }


@pytest.mark.solver
def test_simulations_count_every_simulation_baselines_included():
    """`search.simulations` is the number of simulations the command ran: loop candidates and baselines."""
    FAKE_CALLS.clear()
    result = plan(make_scenario("llama-3.1-8b", requests=40), workers=1, simulate_fn=fake_simulate)
    assert result.search.simulations == len(FAKE_CALLS) == len(set(FAKE_CALLS))
    assert result.baselines and all(c.source == "baseline" for c in result.baselines.values())
    keys = {c.key for c in result.candidates}
    assert {b.key for b in result.baselines.values()} <= keys


def test_the_cache_key_tells_apart_plans_with_the_same_label():
    """Two plans that read the same (same cells, counts) but split the layers differently, or differ in role,
    are different simulations."""
    sc = load_scenario(EXAMPLES / "llama-70b-h100.yaml")
    even = sc.with_plan(
        {"replicas": [{"stages": [{"layers": [0, 40], "tp": 4}, {"layers": [40, 80], "tp": 4}]}]}
    ).plan
    uneven = sc.with_plan(
        {"replicas": [{"stages": [{"layers": [0, 42], "tp": 4}, {"layers": [42, 80], "tp": 4}]}]}
    ).plan
    assert even.label() == uneven.label()
    assert plan_key(even) != plan_key(uneven)
    with Simulations(sc, workers=1, simulate_fn=fake_simulate) as sims:
        FAKE_CALLS.clear()
        sims.run([even, uneven, even])
        assert sims.count == 2 and len(FAKE_CALLS) == 2


@pytest.mark.solver
def test_plan_round_trip_best_plan_spec_resimulates_to_the_same_result():
    """The best plan's `plan_spec` loads back into the scenario as the same plan, and simulating it gives the
    objective the search reported (the simulator is deterministic)."""
    from simulator.simulate import simulate

    scenario = make_scenario("llama-3.1-8b", requests=60)
    result = plan(scenario, workers=1, time_limit_s=120)
    data = result.to_json()
    again = load_scenario(scenario).with_plan(data["best"]["plan_spec"])
    assert plan_key(again.plan) == plan_key(result.best.plan)
    metrics = simulate(again).to_json()
    assert obj.objective_value(metrics, again.spec.goals) == pytest.approx(result.best.objective, rel=1e-12)


@pytest.mark.solver
@pytest.mark.parametrize(
    "extra", [{}, pytest.param({"top_k": 5}, marks=pytest.mark.slow)], ids=["default", "top-k-5"]
)
def test_max_goodput_with_goals_no_plan_meets_names_the_goal(extra):
    """Max-goodput with SLOs no plan can meet: NoPlanError naming the SLO and how far the closest plan is —
    not an empty plan (with --top-k 5 too)."""
    scenario = make_scenario(
        "llama-3.1-8b", objective="max_goodput", requests=40, slo={"ttft_s": {"p99": 1e-4}}
    )
    with pytest.raises(NoPlanError, match=r"TTFT p99 .* > 0\.0001 s target"):
        plan(scenario, workers=1, **extra)


@pytest.mark.solver
def test_exhaustive_never_says_a_goodput_zero_plan_meets_max_goodput():
    """--exhaustive judges like the loop: a plan whose goodput is 0 misses the goals (exit 1, naming them)."""
    scenario = make_scenario(
        "llama-3.1-8b",
        objective="max_goodput",
        requests=30,
        slo={"ttft_s": {"p99": 1e-4}},
        gpus_per_node=2,  # every plan is simulated: a small space keeps the test fast
    )
    with pytest.raises(NoPlanError, match=r"TTFT p99"):
        plan(scenario, workers=1, exhaustive=True, max_templates=1)


def test_a_watts_budget_below_the_idle_floor_is_refused_at_once_naming_it():
    """Every GPU of the cluster draws idle power whether a plan uses it or not (the simulator counts it), so a
    watts budget below that floor is impossible — said at once, with the floor, before any simulation."""
    FAKE_CALLS.clear()
    scenario = make_scenario("llama-3.1-8b", objective="max_goodput", requests=30)
    with pytest.raises(NoPlanError, match=r"budget watts=10 W is below the cluster's idle floor of 640 W"):
        plan(scenario, workers=1, budget="watts=10", top_k=5, simulate_fn=fake_simulate)
    assert FAKE_CALLS == []


def test_heuristic_plans_follow_their_rules():
    """tp-in-node uses a node per replica, smallest-tp the smallest fitting tp, max-tp the largest."""
    from planner.baselines import heuristic_plans
    from planner.search import price_templates, shorthand, workload_stats

    sc = load_scenario(EXAMPLES / "llama-70b-h100.yaml")
    templates = [p.template for p in price_templates(sc, workload_stats(sc), options=SpaceOptions.basic())]
    plans = {name: shorthand(p) for name, p in heuristic_plans(sc, templates).items()}
    assert plans == {"tp-in-node": "tp=8", "smallest-tp": "tp=4,dp=2", "max-tp": "tp=8"}


def test_heuristic_plans_cover_every_gpu_type_of_a_hetero_cluster():
    """On a mixed H100/A100 cluster each heuristic places replicas on both GPU types."""
    from planner.baselines import heuristic_plans
    from planner.search import price_templates, workload_stats

    sc = load_scenario(EXAMPLES / "hetero-h100-a100-cost.yaml")
    # the heuristics choose among colocated templates of the scenario's own settings: the basic space
    templates = [p.template for p in price_templates(sc, workload_stats(sc), options=SpaceOptions.basic())]
    for name, p in heuristic_plans(sc, templates).items():
        assert {st.gpu for g in p.replicas for st in g.stages} == {"h100-sxm", "a100-sxm-80gb"}, name
        assert p.num_gpus <= sc.cluster.num_gpus


def test_shorthand_round_trips_homogeneous_plans():
    """A homogeneous plan is written back as the shorthand it was parsed from."""
    from planner.search import shorthand

    sc = load_scenario(EXAMPLES / "llama-70b-h100.yaml")
    for text in ("tp=4,pp=2", "tp=2,dp=4", "tp=8"):
        assert shorthand(sc.with_plan(text).plan) == text


def test_violations_rejected_requests_miss_the_goals():
    """A plan that rejects requests (too long for its KV cache) does not meet the goals."""
    metrics = {**METRICS, "requests": {"completed": 90, "rejected": 10, "total": 100}}
    (v,) = obj.violations(metrics, Goals(objective="max_throughput"))
    assert v.goal == "requests.rejected" and "10 requests rejected" in v.describe()


@pytest.mark.solver
def test_a_large_homogeneous_plan_is_simulated_through_a_few_replicas_and_says_so():
    """64 replicas are simulated as 16 at a quarter of the load; rates, $/h and energy are stated for all 64
    (close to simulating all 64), the metrics say what was sampled, and mixes or small plans run whole."""
    from planner.search.sampling import MAX_SIMULATED_REPLICAS, sampled, scale_metrics
    from simulator.simulate import simulate

    data = make_scenario("llama-3.1-8b", requests=640, rate=64.0) | {
        "cluster": {"gpu": "h100-sxm", "nodes": 8, "gpus_per_node": 8},
        "engine": {"router": "round-robin"},
    }
    sc = load_scenario(data).with_plan("tp=1,dp=64")
    small, sample = sampled(sc)
    assert (
        sample.simulated == MAX_SIMULATED_REPLICAS == small.plan.replicas[0].count and sample.replicas == 64
    )
    assert small.spec.workload.requests == 160 and small.spec.workload.arrival.rate == pytest.approx(16.0)
    est = scale_metrics(simulate(small).to_json(), sc, small, sample)
    full = simulate(sc).to_json()
    assert est["sampled"] == {"replicas_simulated": 16, "replicas": 64, "requests_simulated": 160}
    assert est["cost"]["usd_per_hour"] == pytest.approx(full["cost"]["usd_per_hour"])
    for path in (("throughput", "output_tokens_per_s"), ("slo", "goodput_rps"), ("energy", "joules")):
        a, b = est[path[0]][path[1]], full[path[0]][path[1]]
        assert a == pytest.approx(b, rel=0.15), path
    assert est["tpot_s"]["p50"] == pytest.approx(full["tpot_s"]["p50"], rel=0.15)
    assert sampled(sc.with_plan("tp=1,dp=16")) is None


def slow_simulation(scenario):
    """The simulator, six seconds slower per plan: with two workers at most four plans finish within a 10 s
    limit, fewer than the heuristic baselines alone, so on any machine the search cannot finish by itself
    (module level so worker processes can unpickle it)."""
    import time

    from simulator.simulate import simulate

    time.sleep(6.0)
    return simulate(scenario).to_json()


@pytest.mark.slow
@pytest.mark.solver
def test_the_time_limit_covers_the_whole_command():
    """`time_limit_s` holds for everything — templates, bounds, baselines, rounds, placement: a search that
    would take minutes (each simulation is made six seconds slower, so on any machine) returns its incumbent,
    with its true gap, close to the limit."""
    import time

    scenario = make_scenario("llama-3.1-8b", requests=300, rate=30.0)
    t0 = time.perf_counter()
    try:
        result = plan(scenario, workers=2, time_limit_s=10.0, simulate_fn=slow_simulation)
    except NoPlanError as exc:
        assert "time limit" in str(exc)
    else:
        assert result.search.stopped == "time limit"
        assert result.search.gap is None or result.search.gap >= 0
    assert time.perf_counter() - t0 <= 10.0 + 6.0  # process start-up and tear-down on a loaded machine


@pytest.mark.slow
@pytest.mark.solver
@pytest.mark.parametrize("objective", ["min_cost", "min_energy"])
def test_exhaustive_in_bound_order_finds_the_optimum_of_simulating_every_plan(objective):
    """Above its limit --exhaustive simulates best proven bound first and stops when no plan left could beat its
    best: on a space small enough to simulate whole, that gives the same optimum, states the whole space's
    size, proves gap 0, and simulates no more plans than the whole run."""
    # 80 plans on 4 GPUs; the TPOT target rules the tp1 plans out, so the cheapest plans must be simulated
    slo = {"ttft_s": {"p99": 0.5}, "tpot_s": {"p99": 0.012}}
    sc = load_scenario(
        make_scenario("llama-3.1-8b", objective=objective, rate=30, requests=80, slo=slo, gpus_per_node=4)
    )
    whole = exhaustive(sc, SearchOptions(workers=2, max_templates=1))
    assert any(not c.feasible for c in whole.candidates)
    by_bound = exhaustive(sc, SearchOptions(workers=2, max_templates=1, exhaustive_limit=3))
    assert whole.search.stopped == "every plan simulated"
    assert by_bound.search.stopped == BY_BOUND and by_bound.search.gap == 0.0
    assert by_bound.search.space_plans == whole.search.space_plans > 3
    assert math.isclose(by_bound.best.objective, whole.best.objective, rel_tol=1e-9)
    assert by_bound.search.simulations <= whole.search.simulations
    if objective == "min_cost":  # the exact $/h rules most plans out without simulating them
        assert by_bound.search.simulations < whole.search.simulations


@pytest.mark.solver
def test_min_cost_proposes_only_plans_cheaper_than_the_incumbent():
    """A min_cost plan's $/h is known before it is simulated, so once a plan meets the goals the loop proposes
    only plans cheaper than it by more than ε: not the predictive master's best again when it is the incumbent,
    and still the cheaper plans when a dearer one is."""
    scenario = load_scenario(make_scenario("llama-3.1-70b", rate=6.0))
    options = SearchOptions(time_limit_s=60.0, top_k=3)
    prep = prepare(scenario, options, deadline_of(time.perf_counter(), options))
    space, spec = prep.space, objective_spec("min_cost")
    solver = within(SolverOptions(threads=1, seed=0), None)

    def usd(plan):
        return sum(n * space.priced[t].analytic.usd_per_hour for t, n in space.counts_of(plan).items())

    free = _proposals(space, solver, options, None, spec, None)
    predicted = usd(free[0])  # the predictive master's best comes first
    incumbent = Candidate(free[0], "incumbent", {}, predicted, (), 4)
    limited = _proposals(space, solver, options, incumbent, spec, None)
    assert all(usd(p) < predicted / (1 + options.epsilon) for p in limited)
    priciest = max(usd(p) for p in free)  # a dearer incumbent leaves the cheaper plans in
    dear = Candidate(free[-1], "incumbent", {}, priciest, (), 6)
    cheaper = _proposals(space, solver, options, dear, spec, None)
    assert cheaper and all(usd(p) < priciest / (1 + options.epsilon) for p in cheaper)


@pytest.mark.solver
def test_a_bound_master_out_of_time_proves_nothing():
    """A bound-master solve that stops at its time limit without a solution is not "no vector left": it gives
    its dual bound where it has one, else the weakest value, and only a proof of infeasibility gives None."""
    scenario = load_scenario(make_scenario("llama-3.1-8b", requests=40))
    options = SearchOptions(time_limit_s=60.0)
    space = prepare(scenario, options, deadline_of(time.perf_counter(), options)).space

    def stopped(termination, bound=None):
        return SolveResult(termination, SolutionStatus.NO_SOLUTION, None, bound, None, 0.1)

    assert space.remaining_bound(stopped(Termination.INFEASIBLE)) is None
    assert space.remaining_bound(stopped(Termination.TIME_LIMIT)) == -math.inf  # min_cost: no lower bound
    assert space.remaining_bound(stopped(Termination.TIME_LIMIT, 12.32)) == pytest.approx(12.32)


@pytest.mark.solver
def test_the_loop_stops_on_the_time_limit_when_its_bound_master_runs_out_of_time(monkeypatch):
    """When every bound-master solve runs out of time the loop says "time limit" and claims no bound or gap
    (it used to read the missing solution as every plan being simulated, and print gap 0)."""
    real = loop.solve_master_highspy

    def out_of_time(problem, options, **kw):
        if problem is loop_space["space"].bound:
            return SolveResult(Termination.TIME_LIMIT, SolutionStatus.NO_SOLUTION, None, None, None, 0.1)
        return real(problem, options, **kw)

    loop_space = {}
    real_prepare = loop.prepare

    def remember(*a, **kw):
        prep = real_prepare(*a, **kw)
        loop_space["space"] = prep.space
        return prep

    monkeypatch.setattr(loop, "prepare", remember)
    monkeypatch.setattr(loop, "solve_master_highspy", out_of_time)
    result = plan(make_scenario("llama-3.1-8b", requests=40), workers=1, simulate_fn=fake_simulate)
    assert result.search.stopped == "time limit"
    assert result.search.gap is None and result.search.bound is None
