"""Build the op tuple of one pipeline stage from the model, the stage's parallelism and the dtypes.

`build_stage_ops(...)` returns a `StageOps`: the static ops (priced by num_tokens, cacheable) and the two
attention ops (priced from the BatchShape aggregates). Per-GPU sizes: tensor parallelism divides heads and FFN
width; KV heads are replicated when attention tp exceeds them; experts are spread over ep GPUs (each split over
ffn tp); attention dp groups each hold 1/dp of the sequences (`Load` prices the busiest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.costmodel.ops import (
    AttentionDecode,
    AttentionPrefill,
    Collective,
    Gemm,
    Memory,
    MoEExperts,
    Split,
)
from simulator.dtypes import bytes_per_element, compute_dtype
from simulator.hardware import GPU, Fabric
from simulator.model import Model
from simulator.plan import Stage
from simulator.scenario import DTypes

# Elementwise passes per layer, in hidden-size vectors read or written per token (no bare numbers in op lists):
NORM_PASSES = 2 * 2  # two RMSNorms per layer, each reads and writes the hidden vector
RESIDUAL_PASSES = 2 * 3  # two residual adds per layer, each reads two vectors and writes one
ROTARY_PASSES = 2  # rotary embedding reads and writes q and k
GATED_ACT_PASSES = 3  # SwiGLU reads gate and up, writes the product
PLAIN_ACT_PASSES = 2  # GELU reads and writes
EMBED_PASSES = 2  # embedding gather: read a row, write it
LOGIT_BYTES = 4.0  # logits are fp32 for sampling (vLLM / TRT-LLM samplers)
SAMPLING_PASSES = 3  # softmax read + write, top-k/top-p read of the logits
# Kernels per layer of the elementwise work (each pays the launch floor): vLLM / TRT-LLM fuse the residual add
# into RMSNorm (fused_add_rms_norm: 2 per layer), one rotary kernel, one fused activation (silu_and_mul).
NORM_RESIDUAL_KERNELS = 2
SAMPLING_KERNELS = 3  # logits to fp32, softmax / top-k / top-p, the sampled-token gather
# MoE routing per layer: a top-k softmax over the router logits, then permute (gather the token copies into
# per-expert order) and unpermute (weighted sum back): fused_moe's moe_align / scatter / reduce kernels.
TOPK_KERNELS = 1
PERMUTE_KERNELS = 2
ROUTER_LOGIT_BYTES = 4.0


def kv_shards(model: Model, attn_tp: int) -> int:
    """GPUs that split one token's KV: attention tp, capped by the KV heads (replicated beyond); MLA: 1."""
    if model.attention == "mla":
        return 1
    return min(attn_tp, model.num_kv_heads)


def kv_bytes_per_token_per_layer_per_gpu(model: Model, attn_tp: int, kv_dtype: str) -> float:
    return model.kv_bytes_per_token_per_layer(kv_dtype) / kv_shards(model, attn_tp)


@dataclass(frozen=True, slots=True)
class StageOps:
    """Everything one stage runs per iteration."""

    static: tuple  # Gemm / MoEExperts / Memory / Collective, priced from (num_tokens, num_seqs)
    prefill: AttentionPrefill
    decode: AttentionDecode
    split: Split
    num_layers: int


def fabric_for(group: int, domain_gpus: int, intra: Fabric, inter: Fabric | None) -> Fabric:
    """The scale-up fabric when the group fits one NVLink domain, else the inter-node one."""
    return intra if group <= domain_gpus or inter is None else inter


def build_stage_ops(
    model: Model,
    stage: Stage,
    gpu: GPU,
    dtypes: DTypes,
    *,
    first: bool,
    last: bool,
    intra: Fabric,
    inter: Fabric | None,
    domain_gpus: int,
    block_size: int = 16,
) -> StageOps:
    start, stop = stage.layers
    nl = stop - start
    n_moe = model.num_moe_layers(start, stop)
    n_dense = nl - n_moe
    ta, da, tf, ep = stage.attention.tp, stage.attention.dp, stage.ffn.tp, stage.ffn.ep
    h = model.hidden_size
    wb = bytes_per_element(dtypes.weights)
    ab = bytes_per_element(dtypes.activations)
    cd = compute_dtype(dtypes.weights, dtypes.activations)
    heads = model.num_heads / ta
    kv_local = math.ceil(model.num_kv_heads / ta)
    split = Split(
        attn_tp=ta,
        attn_dp=da,
        ffn_tp=tf,
        ffn_ep=ep,
        num_experts=model.moe.num_experts if model.moe else 0,
        top_k=model.moe.top_k if model.moe else 0,
        moe_imbalance=gpu.efficiency.moe_imbalance,
    )

    def gemm(name, n, k, count, rows="attn_tokens", where="all"):
        return Gemm(name, n, k, count, wb, ab, cd, rows, where)

    ops: list = []
    if first:
        ops.append(Memory("embedding", EMBED_PASSES * h * ab, 1, "tokens", "first_stage"))
    # attention projections
    if model.attention == "mla":
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            ops += [gemm("q_a_proj", m.q_lora_rank, h, nl), gemm("q_b_proj", heads * qk, m.q_lora_rank, nl)]
        else:
            ops.append(gemm("q_proj", heads * qk, h, nl))
        ops += [
            gemm("kv_a_proj", m.kv_lora_rank + m.qk_rope_head_dim, h, nl),
            gemm("kv_b_proj", heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank, nl),
            gemm("o_proj", h, heads * m.v_head_dim, nl),
        ]
        rot = (heads + 1) * m.qk_rope_head_dim
        qk_dim, v_dim = qk, m.v_head_dim
        decode_dim = 2 * m.kv_lora_rank + m.qk_rope_head_dim  # absorbed: scores on the latent, output in it
    else:
        hd = model.head_dim
        ops += [gemm("qkv_proj", (heads + 2 * kv_local) * hd, h, nl), gemm("o_proj", h, heads * hd, nl)]
        rot = (heads + kv_local) * hd
        qk_dim = v_dim = hd
        decode_dim = 2 * hd
    ops.append(
        Memory(
            "norms_residual",
            (NORM_PASSES + RESIDUAL_PASSES) * h * ab,
            nl,
            "attn_tokens",
            kernels=NORM_RESIDUAL_KERNELS,
        )
    )
    ops.append(Memory("rotary", ROTARY_PASSES * rot * ab, nl, "attn_tokens"))
    if ta > 1:
        ops.append(
            Collective(
                "tp_all_reduce_attn",
                "all_reduce",
                ta,
                h * ab,
                nl,
                fabric_for(ta, domain_gpus, intra, inter),
                "attn_tokens",
            )
        )
    # FFN
    passes = GATED_ACT_PASSES if model.ffn_gated else PLAIN_ACT_PASSES
    up = 2 if model.ffn_gated else 1
    if n_dense:
        f = model.ffn_size / tf
        ops += [
            gemm("ffn_up", up * f, h, n_dense, "ffn_tokens"),
            gemm("ffn_down", h, f, n_dense, "ffn_tokens"),
            Memory("ffn_activation", passes * f * ab, n_dense, "ffn_tokens"),
        ]
    if n_moe:
        moe = model.moe
        fe = moe.expert_ffn_size / tf
        # the router stays in the activation dtype (a tiny GEMM; quantized checkpoints keep it unquantized)
        ops.append(Gemm("router", moe.num_experts, h, n_moe, ab, ab, dtypes.activations, "attn_tokens"))
        ops.append(
            Memory(
                "moe_topk",
                moe.num_experts * ROUTER_LOGIT_BYTES,
                n_moe,
                "attn_tokens",
                kernels=TOPK_KERNELS,
            )
        )
        # permute / unpermute move each routed copy's hidden vector twice (gather in, weighted scatter out)
        ops.append(Memory("moe_permute", 2 * 2 * h * ab, n_moe, "moe_tokens", kernels=PERMUTE_KERNELS))
        ops.append(MoEExperts("moe_experts", h, fe, up, passes, n_moe, wb, ab, cd))
        if model.shared_expert_params:
            fs = moe.num_shared_experts * (moe.shared_expert_ffn_size or moe.expert_ffn_size) / tf
            ops += [
                gemm("shared_up", up * fs, h, n_moe, "ffn_tokens"),
                gemm("shared_down", h, fs, n_moe, "ffn_tokens"),
            ]
        if ep > 1:
            ops.append(
                Collective(
                    "ep_all_to_all",
                    "all_to_all",
                    ep,
                    moe.top_k * h * ab,
                    2 * n_moe,
                    fabric_for(ep, domain_gpus, intra, inter),
                    "a2a_tokens",
                )
            )
    if tf > 1:
        ops.append(
            Collective(
                "tp_all_reduce_ffn",
                "all_reduce",
                tf,
                h * ab,
                nl,
                fabric_for(tf, domain_gpus, intra, inter),
                "ffn_tokens",
            )
        )
    if last:
        vocab = model.vocab_size / ta
        ops += [
            Memory("final_norm", NORM_PASSES / 2 * h * ab, 1, "seqs", "last_stage"),
            # LM head stays in the activation dtype in quantized checkpoints (vLLM / TRT-LLM fp8 recipes)
            Gemm("lm_head", vocab, h, 1, ab, ab, dtypes.activations, "seqs", "last_stage"),
            Memory(
                "sampling",
                SAMPLING_PASSES * model.vocab_size * LOGIT_BYTES,
                1,
                "seqs",
                "last_stage",
                kernels=SAMPLING_KERNELS,
            ),
        ]
    kvb = kv_bytes_per_token_per_layer_per_gpu(model, ta, dtypes.kv_cache)
    prefill = AttentionPrefill(nl, heads, qk_dim, v_dim, kvb, ab, dtypes.activations)
    kv_heads = 1 if model.attention == "mla" else kv_local
    qo = heads * (qk_dim + v_dim) * ab
    decode = AttentionDecode(nl, heads, decode_dim, kvb, kv_heads, block_size, qo)
    return StageOps(tuple(ops), prefill, decode, split, nl)
