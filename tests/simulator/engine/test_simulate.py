"""simulate(scenario) end to end with the real cost model."""

from __future__ import annotations

import pytest

from simulator.errors import InputError
from simulator.scenario import load_scenario
from simulator.simulate import simulate


def _scenario(**over):
    spec = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 8},
        "workload": {
            "preset": "chat-lmsys",
            "requests": 300,
            "arrival": {"process": "poisson", "rate": 20},
            "seed": 2,
        },
        "plan": "tp=2,dp=2",
        "goals": {"slo": {"ttft_s": {"p99": 1.0}}},
    }
    spec.update(over)
    return load_scenario(spec)


def test_simulate_real_cost_completes_and_is_deterministic():
    """A small chat workload on 2 x tp2 replicas completes every request, identically for the same seed."""
    first = simulate(_scenario()).to_json()
    assert first["requests"]["completed"] == 300
    assert first["ttft_s"]["p50"] > 0 and first["energy"]["joules"] > 0 and first["cost"]["usd_per_hour"] > 0
    assert simulate(_scenario()).to_json() == first


def test_simulate_without_plan_raises_input_error_naming_plan():
    """A scenario without a plan is an InputError naming `plan`."""
    scenario = _scenario(plan=None)
    with pytest.raises(InputError) as info:
        simulate(scenario)
    assert info.value.field == "plan"


def test_simulate_disaggregated_plan_hands_off_to_decode():
    """A prefill + decode plan serves every request, decoding on the decode replica."""
    plan = {
        "replicas": [
            {"count": 1, "role": "prefill", "stages": [{"layers": [0, 32], "tp": 2}]},
            {"count": 1, "role": "decode", "stages": [{"layers": [0, 32], "tp": 2}]},
        ]
    }
    out = simulate(_scenario(plan=plan)).to_json()
    assert out["requests"]["completed"] == 300
