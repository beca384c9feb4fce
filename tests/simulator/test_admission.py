"""Requests that can never run: counted before the simulation with the engine's own rules."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from simulator.admission import ReplicaLimit, enforce, screen
from simulator.catalog import get_model
from simulator.errors import InputError, InputWarning
from simulator.scenario import Engine, load_scenario
from simulator.simulate import simulate

MODEL = get_model("llama-3.1-8b")  # max_context 131,072


def _scenario(input_tokens: dict, engine: dict | None = None, plan: str = "tp=1", requests: int = 40) -> dict:
    return {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 8},
        "engine": engine or {"kind": "vllm-v1"},
        "workload": {
            "requests": requests,
            "arrival": {"process": "poisson", "rate": 50.0},
            "input_tokens": input_tokens,
            "output_tokens": {"dist": "fixed", "value": 8},
            "seed": 3,
        },
        "plan": plan,
    }


def test_screen_counts_each_rule():
    """Context, token budget (no chunked prefill) and KV capacity are counted separately."""
    prompt = np.array([100, 5000, 131_070, 200_000])
    output = np.array([10, 10, 10, 10])
    engine = Engine(kind="vllm-v0", max_num_batched_tokens=4096)  # no chunked prefill
    s = screen(prompt, output, MODEL, engine, [ReplicaLimit("colocated", 150_000)])
    counts = {r.field: r.count for r in s.reasons}
    assert counts == {"workload.input_tokens": 2, "engine.max_num_batched_tokens": 3, "plan": 1}
    assert s.never_run == 3 and s.total == 4


def test_screen_disaggregated_needs_prefill_and_decode_room():
    """On a P/D plan a request needs its prompt in a prefill replica and prompt + output in a decode replica."""
    prompt, output = np.array([1000, 1000]), np.array([10, 5000])
    replicas = [ReplicaLimit("prefill", 2048), ReplicaLimit("decode", 4096)]
    s = screen(prompt, output, MODEL, Engine(), replicas)
    assert s.never_run == 1


def test_enforce_all_impossible_is_input_error_naming_field_and_limit():
    s = screen(np.array([200_000] * 3), np.array([1] * 3), MODEL, Engine())
    with pytest.raises(InputError) as info:
        enforce(s, file="s.yaml")
    assert info.value.field == "workload.input_tokens" and "131,072" in str(info.value)


def test_enforce_some_impossible_warns_with_counts():
    s = screen(np.array([200_000, 10, 10]), np.array([1] * 3), MODEL, Engine())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enforce(s, file="s.yaml")
    assert len(caught) == 1 and issubclass(caught[0].category, InputWarning)
    assert "1 of 3 requests" in str(caught[0].message)


@pytest.mark.parametrize(
    ("input_tokens", "changes"),
    [
        ({"dist": "uniform", "low": 100, "high": 250_000}, {}),  # some beyond the context window
        (  # some prompts over the token budget of an engine without chunked prefill
            {"dist": "uniform", "low": 100, "high": 16_000},
            {"engine": {"kind": "vllm-v0", "max_num_batched_tokens": 8192}},
        ),
        (  # some requests larger than the KV cache (26,688 tokens on 2 H100s for the 70B)
            {"dist": "uniform", "low": 100, "high": 40_000},
            {"model": "llama-3.1-70b", "plan": "tp=2"},
        ),
    ],
    ids=["context", "token-budget", "kv-cache"],
)
def test_screen_matches_the_engines_rejections(input_tokens, changes):
    """The count screened before the run equals requests.rejected after it (same rules, homogeneous plan)."""
    sc = load_scenario({**_scenario(input_tokens), **changes})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = simulate(sc).to_json()
    rejected = result["requests"]["rejected"]
    assert 0 < rejected < 40
    assert result["requests"]["completed"] == result["requests"]["total"] - rejected
    (warning,) = [w for w in caught if issubclass(w.category, InputWarning)]
    assert f"{rejected:,} of 40 requests" in str(warning.message)


def test_kv_too_small_for_every_request_is_input_error():
    """A plan whose KV cache cannot hold even one request is refused before simulating, naming the plan."""
    data = {**_scenario({"dist": "fixed", "value": 30_000}), "model": "llama-3.1-70b", "plan": "tp=2"}
    with pytest.raises(InputError) as info:
        simulate(load_scenario(data))
    assert info.value.field == "plan" and "26,688 tokens" in str(info.value)
