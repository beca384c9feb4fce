"""Engine knobs and dtypes as dimensions of the plan space: the scenario's dtype lists, the values searched,
the scenario a plan's settings are simulated in (planner/search/settings.py)."""

from __future__ import annotations

import pytest

from formulations.templates import EngineSettings
from planner.search.settings import apply_settings, candidate_settings, scenario_settings
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
    assert free.max_num_seqs[0] == own.max_num_seqs and all(v <= own.max_num_seqs for v in free.max_num_seqs)
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
