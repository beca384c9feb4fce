"""The whole plan space (issue 16): on scenarios whose winner is disaggregated, needs an engine knob other than
the engine's default, or uses a dtype from the allowed list, the loop finds --exhaustive's optimum over the same
space and its bound holds (slow tier: every plan of each space is simulated)."""

from __future__ import annotations

import pytest

from planner.search.disaggregation import simulate_with_kv_stream
from planner.search.pricing import EXTRA_DEPTH, SpaceOptions, is_core, price_space
from planner.search.settings import apply_settings, scenario_settings
from planner.search.workload import WorkloadProfile
from simulator.scenario import load_scenario
from tests.planner.search_scenarios import SPACE_SCENARIOS, compare_scenario


def _colocated(c) -> bool:
    return all(g.role == "colocated" for g in c.plan.replicas)


@pytest.mark.slow
@pytest.mark.solver
@pytest.mark.parametrize("name", sorted(SPACE_SCENARIOS))
def test_planner_equals_exhaustive_over_the_whole_space(name):
    data, kind = SPACE_SCENARIOS[name]
    c = compare_scenario(name, data, 2)
    exh, found = c.exhaustive, c.search
    assert exh.search.stopped == "every plan simulated" and exh.search.space_plans is not None
    assert found.best.objective <= exh.best.objective * (1 + 1e-9)
    bound = found.search.bound
    assert bound is not None
    for cand in exh.candidates:  # no simulated plan beats the loop's bound
        if cand.feasible:
            assert cand.objective >= bound * (1 - 1e-9), (cand.name, cand.objective, bound)
    best = exh.best
    scenario = load_scenario(data)
    own = scenario_settings(scenario)
    if kind == "disaggregated":
        assert {g.role for g in best.plan.replicas} == {"prefill", "decode"}
        assert {g.role for g in found.best.plan.replicas} == {"prefill", "decode"}
        colocated = [x for x in exh.candidates if x.feasible and _colocated(x)]
        assert colocated and min(x.objective for x in colocated) > best.objective  # it wins outright
    elif kind == "knob":
        knobs = ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill")
        assert any(getattr(best.settings, k) != getattr(own, k) for k in knobs)
        # the same plan with the engine's default knobs misses the SLOs ...
        default = simulate_with_kv_stream(apply_settings(scenario, own).with_plan(best.plan))
        assert not default["slo"]["met"], default["slo"]
        # ... and every plan of the space with them costs more
        first = [x for x in exh.candidates if x.feasible and x.settings == own]
        assert not first or min(x.objective for x in first) > best.objective
    else:
        allowed = scenario.spec.dtype.weight_choices
        assert len(allowed) > 1 and best.settings.weights_dtype in allowed
        assert best.settings.weights_dtype != own.weights_dtype  # not the first (the scenario's default)
        first = [x for x in exh.candidates if x.feasible and x.settings.weights_dtype == own.weights_dtype]
        assert not first or min(x.objective for x in first) > best.objective


def test_a_model_that_needs_more_than_four_stages_keeps_core_templates_for_the_baselines():
    """kimi-k2 in BF16 needs five stages of eight H100s: the fewest that fit (and one more) are of the core
    space, so the heuristic baselines have templates to choose from; only the deeper extra depths are not."""
    scenario = load_scenario(
        {
            "name": "kimi-bf16-h100",
            "model": "kimi-k2",
            "cluster": {"gpu": "h100-sxm", "nodes": 8, "gpus_per_node": 8},
            "dtype": {"weights": "bf16", "kv_cache": "bf16"},
            "workload": {
                "requests": 200,
                "arrival": {"process": "poisson", "rate": 5.0},
                "input_tokens": {"dist": "lognormal", "mean": 1024, "std": 600, "max": 8192},
                "output_tokens": {"dist": "lognormal", "mean": 256, "std": 150, "max": 2048},
                "seed": 1,
            },
            "goals": {"objective": "max_goodput", "slo": {"ttft_s": {"p99": 2.0}, "tpot_s": {"p99": 0.1}}},
        }
    )
    space = price_space(scenario, WorkloadProfile.of(scenario), SpaceOptions(), partition_backend="dp")
    depths = {len(t.stages) for t in space.baseline_templates}
    assert space.baseline_templates and min(depths) >= 5
    own = scenario_settings(scenario)
    deep = [p for p in space.templates if len(p.template.stages) == 8]
    assert deep and all(EXTRA_DEPTH in p.kinds and not is_core(p, own) for p in deep)
