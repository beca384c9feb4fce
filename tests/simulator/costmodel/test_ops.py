"""Operators' FLOPs and bytes against hand counts."""

from __future__ import annotations

import pytest

from simulator.costmodel.interface import BatchShape
from simulator.costmodel.ops import AttentionDecode, AttentionPrefill, Gemm, Load, MoEExperts, Split


def _op(stage, name):
    return next(op for op in stage.ops.static if op.name == name)


def test_qkv_gemm_flops_bytes_gqa_llama70b_tp2(make_stage):
    """QKV of llama-3.1-70b at tp2 has 32 query heads and 4 KV heads per GPU (GQA), hand-counted."""
    stage = make_stage("llama-3.1-70b", tp=2)
    qkv = _op(stage, "qkv_proj")
    n = (64 // 2 + 2 * 8 // 2) * 128
    assert qkv.n == n == 5120 and qkv.k == 8192 and qkv.count == 80
    load = Load.of(100, 1, stage.ops.split)
    assert qkv.flops(load) == pytest.approx(2 * 100 * 5120 * 8192 * 80)
    assert qkv.bytes_moved(load) == pytest.approx(80 * (5120 * 8192 * 2 + 100 * (8192 + 5120) * 2))


def test_qkv_gemm_kv_heads_replicated_when_tp_exceeds_kv_heads(make_stage):
    """At tp16 llama-3.1-70b (8 KV heads) keeps one whole KV head per GPU."""
    stage = make_stage("llama-3.1-70b", tp=16)
    assert _op(stage, "qkv_proj").n == (64 / 16 + 2 * 1) * 128


def test_moe_routed_tokens_mean_and_touched_experts_mixtral():
    """Routed copies per EP GPU = T*k/ep*imbalance and touched experts = E/ep*(1-(1-k/E)^T)."""
    split = Split(ffn_ep=4, num_experts=8, top_k=2, moe_imbalance=1.0)
    load = Load.of(64, 64, split)
    assert load.moe_tokens == pytest.approx(64 * 2 / 4)
    assert load.moe_rows == pytest.approx(64 * 2 / 8)
    assert load.moe_touched == pytest.approx(2 * (1 - (1 - 2 / 8) ** 64))
    one = Load.of(1, 1, split)
    assert one.moe_touched == pytest.approx(2 * 2 / 8)  # one token hits 2 of 8 experts: half a local expert
    op = MoEExperts(
        "e",
        hidden=10.0,
        ffn=20.0,
        up=2,
        act_passes=3,
        count=3,
        weight_bytes=2,
        act_bytes=2,
        compute_dtype="bf16",
    )
    assert op.params_per_expert == 3 * 10 * 20
    assert op.flops(load) == pytest.approx(2 * 32 * 600 * 3)
    assert op.bytes_moved(load) == pytest.approx(3 * (load.moe_touched * 600 * 2 + 32 * (20 + 5 * 20) * 2))


def test_moe_routed_tokens_capped_by_local_experts():
    """With ep = E each GPU holds one expert, so at most T copies land on it whatever the imbalance."""
    load = Load.of(10, 10, Split(ffn_ep=8, num_experts=8, top_k=2, moe_imbalance=5.0))
    assert load.moe_tokens == pytest.approx(10)


def test_prefill_attention_flops_causal_one_prompt():
    """A 1024-token prompt has 1024*1025/2 causal pairs, 2*(qk+v) FLOPs per pair per head per layer."""
    shape = BatchShape.from_requests([1024], [0])
    assert shape.prefill_attention_pairs == pytest.approx(1024 * 1025 / 2)
    op = AttentionPrefill(
        count=2, heads=64, qk_dim=128, v_dim=128, kv_bytes_per_token=0, act_bytes=2, compute_dtype="bf16"
    )
    assert op.flops_of(shape.prefill_attention_pairs) == pytest.approx(4 * 128 * 64 * 1024 * 1025 / 2 * 2)


def test_prefill_attention_pairs_sum_per_request_never_mean():
    """Pairs are summed per request: lengths 100 and 900 are not two 500s."""
    mixed = BatchShape.from_requests([100, 900], [0, 0])
    mean = BatchShape.from_requests([500, 500], [0, 0])
    assert mixed.prefill_attention_pairs > mean.prefill_attention_pairs


def test_decode_attention_bytes_read_all_kv_llama8b(make_stage):
    """Decode reads context x 2*kv_heads*head_dim*2 B per layer: 8 requests x 1000 tokens on llama-3.1-8b."""
    stage = make_stage("llama-3.1-8b")
    op: AttentionDecode = stage.ops.decode
    shape = BatchShape.from_requests(decode_context=[1000] * 8)
    assert op.bytes_of(shape.decode_context_tokens) == pytest.approx(8000 * 2 * 8 * 128 * 2 * 32)


def test_decode_attention_mla_reads_replicated_latent(make_stage):
    """MLA decode reads (kv_lora_rank + rope) elements per token per layer on every tp rank."""
    stage = make_stage("deepseek-v3", tp=8, ep=8, layers=(0, 4))
    assert stage.ops.decode.kv_bytes_per_token == pytest.approx((512 + 64) * 2)


def test_lm_head_gemm_only_on_last_stage(make_stage):
    """The LM head and sampling are priced on the last stage only, the embedding on the first."""
    first = make_stage("llama-3.1-8b", layers=(0, 16), last=False)
    last = make_stage("llama-3.1-8b", layers=(16, 32), first=False)
    names_first = {op.name for op in first.ops.static}
    names_last = {op.name for op in last.ops.static}
    assert "lm_head" not in names_first and "embedding" in names_first
    assert "lm_head" in names_last and "embedding" not in names_last
    assert next(op for op in last.ops.static if isinstance(op, Gemm) and op.name == "lm_head").rows == "seqs"
