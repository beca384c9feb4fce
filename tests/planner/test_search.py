"""The solve–simulate loop: objective and feasibility scoring, the loop against the exhaustive baseline."""

from __future__ import annotations

import math

import pytest

from planner import objective as obj
from planner.errors import NoPlanError
from planner.plan_api import plan
from simulator.scenario import Goals, load_scenario
from tests.conftest import EXAMPLES


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


@pytest.mark.slow
@pytest.mark.solver
@pytest.mark.parametrize(
    ("model", "objective", "rate"),
    [
        ("llama-3.1-8b", "min_cost", 20.0),
        ("mixtral-8x7b", "min_energy", 8.0),
        ("llama-3.1-70b", "min_cost", 4.0),
        ("llama-3.1-8b", "min_latency", 20.0),
        ("llama-3.1-8b", "max_goodput", 20.0),
    ],
)
def test_search_matches_exhaustive_with_a_quarter_of_the_simulations(model, objective, rate):
    """The loop finds the exhaustive optimum while simulating at most 25 % as many plans."""
    scenario = make_scenario(model, objective=objective, rate=rate)
    found = plan(scenario, workers=2)
    reference = plan(scenario, exhaustive=True, workers=2)
    assert found.best.label == reference.best.label
    assert math.isclose(found.best.objective, reference.best.objective, rel_tol=1e-9)
    assert found.search.simulations <= 0.25 * reference.search.simulations
    assert found.search.gap is not None and found.search.gap <= 0.02


@pytest.mark.slow
@pytest.mark.solver
def test_search_beats_or_ties_every_heuristic_on_the_readme_example():
    """On the README's Llama-70B example the chosen plan is at least as good as every heuristic baseline."""
    result = plan(EXAMPLES / "llama-70b-h100.yaml", workers=2)
    assert result.best.feasible
    assert set(result.baselines) == {"tp-in-node", "smallest-tp", "max-tp"}
    for name, baseline in result.baselines.items():
        if baseline.feasible:
            assert result.best.objective <= baseline.objective + 1e-9, name
    assert all(g >= 0 for g in result.gains().values())


@pytest.mark.solver
def test_search_infeasible_ttft_names_the_goal():
    """A 1 ms TTFT target gives NoPlanError naming TTFT p99 and the plan that came closest."""
    scenario = make_scenario("llama-3.1-8b", requests=40, slo={"ttft_s": {"p99": 0.001}})
    with pytest.raises(NoPlanError, match=r"TTFT p99 .* > 0\.001 s target .* on the best plan"):
        plan(scenario, workers=1)


def test_plan_scenario_round_trip_of_the_examples():
    """The planner's example scenarios load and carry goals."""
    for name in ("mixtral-8x22b-2node-energy", "hetero-h100-a100-cost", "deepseek-v3-h200"):
        sc = load_scenario(EXAMPLES / f"{name}.yaml")
        assert sc.plan is None and sc.spec.workload.requests <= 2000


def test_heuristic_plans_follow_their_rules():
    """tp-in-node uses a node per replica, smallest-tp the smallest fitting tp, max-tp the largest."""
    from planner.baselines import heuristic_plans
    from planner.search import price_templates, shorthand, workload_stats

    sc = load_scenario(EXAMPLES / "llama-70b-h100.yaml")
    templates = [p.template for p in price_templates(sc, workload_stats(sc))]
    plans = {name: shorthand(p) for name, p in heuristic_plans(sc, templates).items()}
    assert plans == {"tp-in-node": "tp=8", "smallest-tp": "tp=4,dp=2", "max-tp": "tp=8"}


def test_heuristic_plans_cover_every_gpu_type_of_a_hetero_cluster():
    """On a mixed H100/A100 cluster each heuristic places replicas on both GPU types."""
    from planner.baselines import heuristic_plans
    from planner.search import price_templates, workload_stats

    sc = load_scenario(EXAMPLES / "hetero-h100-a100-cost.yaml")
    templates = [p.template for p in price_templates(sc, workload_stats(sc))]
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
