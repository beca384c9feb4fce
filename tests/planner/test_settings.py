"""Engine knobs and dtypes as dimensions of the plan space: the scenario's dtype lists, the values searched,
the scenario a plan's settings are simulated in (planner/search/settings.py)."""

from __future__ import annotations

import pytest

from formulations.templates import EngineSettings
from planner.search.pricing import SpaceOptions, price_space
from planner.search.settings import apply_settings, candidate_settings, scenario_settings
from planner.search.workload import WorkloadProfile
from simulator.errors import InputError
from simulator.scenario import load_scenario


def _scenario(dtype=None, engine=None) -> dict:
    out = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 2},
        "workload": {
            "requests": 20,
            "arrival": {"process": "poisson", "rate": 2.0},
            "input_tokens": {"dist": "fixed", "value": 512},
            "output_tokens": {"dist": "fixed", "value": 64},
        },
        "goals": {"objective": "min_cost"},
    }
    if dtype is not None:
        out["dtype"] = dtype
    if engine is not None:
        out["engine"] = engine
    return out


def test_a_dtype_list_is_searched_and_its_first_entry_is_the_scenarios_own():
    sc = load_scenario(_scenario(dtype={"weights": ["bf16", "fp8"]}))
    assert sc.spec.dtype.weights == "bf16" and sc.spec.dtype.weight_choices == ("bf16", "fp8")
    assert candidate_settings(sc).weights_dtype == ("bf16", "fp8")
    assert "weights_allowed" not in sc.spec.model_dump()  # a dumped scenario names one format
    fp8 = apply_settings(sc, EngineSettings(256, 8192, True, "fp8", "bf16"))
    assert fp8.spec.dtype.weights == "fp8" and fp8.spec.dtype.weights_allowed is None


@pytest.mark.parametrize(
    ("weights", "field"),
    [([], "dtype.weights"), (["bf16", "int3"], "dtype.weights[1]"), (["fp8", "fp8"], "dtype.weights")],
)
def test_a_bad_dtype_list_names_the_field(weights, field):
    with pytest.raises(InputError) as err:
        load_scenario(_scenario(dtype={"weights": weights}))
    assert err.value.field == field


def test_knobs_the_scenario_sets_are_fixed_and_the_others_searched():
    fixed = candidate_settings(load_scenario(_scenario(engine={"kind": "vllm-v1", "max_num_seqs": 64})))
    assert fixed.max_num_seqs == (64,)
    assert len(fixed.max_num_batched_tokens) > 1 and fixed.enable_chunked_prefill == (True, False)
    free = candidate_settings(load_scenario(_scenario()))
    own = scenario_settings(load_scenario(_scenario()))
    assert free.max_num_seqs[0] == own.max_num_seqs
    assert min(free.max_num_seqs) < own.max_num_seqs < max(free.max_num_seqs)  # caps below and above it
    assert candidate_settings(load_scenario(_scenario()), knobs=False).searched() == {}


def test_settings_keys_and_differences_name_each_dimension():
    a = EngineSettings(256, 8192, True, "bf16", "bf16")
    b = EngineSettings(64, 8192, False, "fp8", "bf16")
    assert a.key == "seqs256 tok8192 chunked w:bf16 kv:bf16"
    assert b.differences(a) == "seqs64 no-chunked w:fp8"
    assert b.scenario_updates() == {
        "engine": {"max_num_seqs": 64, "max_num_batched_tokens": 8192, "enable_chunked_prefill": False},
        "dtype": {"weights": "fp8", "kv_cache": "bf16"},
    }


def _moe_scenario() -> dict:
    """Mixtral-8x7B with short requests at a high rate on 4×H100 (configs/examples/knob-max-num-seqs-moe.yaml):
    MoE decode reads every expert's weights each step, so one tp2 replica's step time barely grows past 256
    sequences and its KV cache holds ~850 of them."""
    return {
        "model": "mixtral-8x7b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 4},
        "workload": {
            "requests": 200,
            "arrival": {"process": "poisson", "rate": 42.0},
            "input_tokens": {"dist": "lognormal", "mean": 256, "std": 100, "max": 1024},
            "output_tokens": {"dist": "lognormal", "mean": 256, "std": 100, "max": 1024},
        },
        "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": 2.0}, "tpot_s": {"p99": 0.05}}},
    }


def test_a_cap_above_the_default_replaces_it_where_the_model_predicts_more_capacity():
    sc = load_scenario(_moe_scenario())
    own = scenario_settings(sc)
    space = price_space(sc, WorkloadProfile.of(sc), SpaceOptions(disaggregation=False, layouts=False))
    tp2 = [p for p in space.templates if p.template.layout_id == "L0-32 tp2 @h100-sxm"]
    assert [p.template.max_num_seqs for p in tp2] == [1024]  # the largest grid value within TPOT and KV
    assert tp2[0].estimate.decode_batch > own.max_num_seqs
    # the default's template is out of the space, kept for the heuristic baselines
    assert any(t.layout_id == tp2[0].template.layout_id for t in space.baseline_templates)
    # the heuristic baselines still choose from the default's templates
    assert {t.settings for t in space.baseline_templates} == {own}
    assert space.census.pruned_by["knob dominance (max_num_seqs)"] > 0
