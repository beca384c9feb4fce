"""Memory per GPU and KV capacity under the engines' rules."""

from __future__ import annotations

import pytest

from simulator import catalog
from simulator.costmodel import stage_memory
from simulator.costmodel.memory import activation_bytes
from simulator.plan import Stage
from simulator.scenario import DTypes, Engine


def test_stage_memory_kv_capacity_llama8b_h100_vllm_hand_count(h100):
    """llama-3.1-8b bf16 on one H100 under vLLM 0.9: (0.9*80GiB - weights - act - reserve) / 131072 B."""
    model = catalog.get_model("llama-3.1-8b")
    stage = Stage(layers=(0, 32))
    engine = Engine(kind="vllm-v1")
    mem = stage_memory(model, stage, h100, DTypes(), engine, first=True, last=True)
    assert model.kv_bytes_per_token("bf16") == 131072 == mem.kv_bytes_per_token
    assert mem.weights_bytes == pytest.approx(16.06e9, rel=0.01)
    act = activation_bytes(model, stage, DTypes(), engine, last=True)
    hand = (0.9 * 80 * 2**30 - 16.06e9 - act - 2**30) / 131072
    assert mem.kv_capacity_tokens == pytest.approx(hand, rel=0.01)
    assert mem.kv_capacity_tokens % 16 == 0 and mem.fits


def test_stage_memory_trtllm_fraction_of_free_memory(h100):
    """TensorRT-LLM keeps fraction x (capacity - weights - act - reserve) for KV."""
    model = catalog.get_model("llama-3.1-8b")
    stage = Stage(layers=(0, 32))
    mem = stage_memory(model, stage, h100, DTypes(), Engine(kind="trtllm"), first=True, last=True)
    free = mem.capacity_bytes - mem.weights_bytes - mem.activation_bytes - mem.reserve_bytes
    assert mem.kv_budget_bytes == pytest.approx(0.9 * free)


def test_stage_memory_kv_replicated_when_tp_exceeds_kv_heads(h100):
    """At tp16 llama-3.1-70b (8 KV heads) stores one KV head per GPU: 1/8 of a token's KV, not 1/16."""
    model = catalog.get_model("llama-3.1-70b")
    mem = stage_memory(model, Stage(layers=(0, 80), tp=16), h100, DTypes(), Engine(), first=True, last=True)
    assert mem.kv_bytes_per_token == pytest.approx(model.kv_bytes_per_token("bf16") / 8)


def test_stage_memory_attention_dp_multiplies_capacity(h100):
    """With attention dp each group holds its own sequences: capacity scales with dp."""
    model = catalog.get_model("deepseek-v3")
    tp8 = stage_memory(
        model,
        Stage(layers=(0, 20), tp=8, ep=8),
        h100,
        DTypes(weights="fp8"),
        Engine(),
        first=True,
        last=False,
    )
    dp8 = stage_memory(
        model,
        Stage(layers=(0, 20), tp=1, ep=8),
        h100,
        DTypes(weights="fp8"),
        Engine(),
        first=True,
        last=False,
    )
    assert tp8.kv_bytes_per_token == dp8.kv_bytes_per_token  # MLA latent replicated on every tp rank
    assert tp8.fits and dp8.fits
    assert dp8.kv_capacity_tokens > 4 * tp8.kv_capacity_tokens


def test_stage_memory_too_big_reports_not_fits(h100):
    """llama-3.1-70b bf16 on one H100 does not fit: fits False and the bytes over, no exception."""
    model = catalog.get_model("llama-3.1-70b")
    mem = stage_memory(model, Stage(layers=(0, 80)), h100, DTypes(), Engine(), first=True, last=True)
    assert not mem.fits and mem.kv_capacity_tokens == 0
    assert mem.over_bytes == pytest.approx(
        mem.weights_bytes + mem.activation_bytes + mem.reserve_bytes - 0.9 * mem.capacity_bytes
    )


def _maverick(gpu: str, weights: str) -> dict:
    return {
        "name": "maverick-capacity",
        "model": "llama-4-maverick",
        "cluster": {"gpu": gpu, "nodes": 1, "gpus_per_node": 8},
        "dtype": {"weights": weights, "kv_cache": "bf16", "activations": "bf16"},
        "engine": {"kind": "vllm-v1"},
        "workload": {
            "requests": 80,
            "arrival": {"process": "burst"},
            "input_tokens": {"dist": "fixed", "value": 16000},
            "output_tokens": {"dist": "fixed", "value": 1000},
            "seed": 0,
        },
        "plan": "tp=8",
    }


def test_llama4_maverick_on_8xh100_is_capacity_bound():
    """Llama-4-Maverick (400B total, 128 experts) on one 8xH100 node: in BF16 the expert weights alone overflow
    80 GiB per GPU, so the plan does not fit; in FP8 it fits, but 80 requests of 16k+1k tokens (1.36M tokens of
    KV) fill the KV cache completely, while the same workload on 8xH200 (141 GB) leaves most of it free."""
    from planner import api

    bf16 = api.check(_maverick("h100-sxm", "bf16")).rows[0]
    assert not bf16.fits and bf16.weights_gib > 80
    h100 = api.simulate(_maverick("h100-sxm", "fp8")).to_json()["memory"]
    assert 40 < h100["weights_gib_per_gpu"] < 55  # ~400 GB of fp8 weights over 8 GPUs
    assert h100["kv_cache_tokens"] < 80 * 17000  # less KV than the workload needs at once
    assert h100["kv_cache_peak_tokens"] >= 0.98 * h100["kv_cache_tokens"]
    h200 = api.simulate(_maverick("h200-sxm", "fp8")).to_json()["memory"]
    assert h200["kv_cache_peak_tokens"] < 0.6 * h200["kv_cache_tokens"]
