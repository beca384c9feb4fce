"""Memory per GPU of one stage, and the KV cache that remains under each engine's rule.

weights (its layers, tp/ep share; embedding on the first stage, LM head on the last) + activation workspace at
the engine's max_num_batched_tokens + runtime reserve (CUDA context, NCCL buffers, CUDA graphs:
`GPUEfficiency.runtime_reserve_gib`). The KV budget per engine:
* vllm-v0 / vllm-v1 / orca / static: `gpu_memory_fraction x capacity - non-KV` (vLLM `gpu_memory_utilization`);
* trtllm: `fraction x (capacity - weights - activations - reserve)` (`kv_cache_free_gpu_mem_fraction`);
* sglang: `mem_fraction_static x capacity - weights - activations`.
The KV cache is counted in whole blocks of `engine.block_size` tokens; with attention dp each dp group holds its
own sequences, so the stage holds dp times the tokens one GPU does. A plan that does not fit says so (`fits`,
`over_bytes`), it does not raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.costmodel.build import kv_bytes_per_token_per_layer_per_gpu
from simulator.dtypes import bytes_per_element
from simulator.hardware import GPU
from simulator.model import Model
from simulator.plan import AttentionSplit, FFNSplit, Stage
from simulator.scenario import DTypes, Engine, engine_setting

# Live hidden-size activations per token in the profile run (residual, normed input, attention out, FFN out),
# on top of the widest intermediate (QKV or FFN gate/up + activation output); vLLM's profile_run measures this peak.
WORKSPACE_HIDDEN_VECTORS = 4
LOGIT_BYTES = 4.0  # fp32 logits for max_num_seqs rows on the last stage


@dataclass(frozen=True, slots=True)
class StageMemory:
    """Memory plan of one GPU of a stage (bytes) and the KV capacity of the whole stage (tokens)."""

    capacity_bytes: float
    weights_bytes: float
    activation_bytes: float
    reserve_bytes: float
    kv_budget_bytes: float  # per GPU, may be negative when the plan does not fit
    kv_bytes_per_token: float  # per GPU
    kv_capacity_tokens: int  # whole stage (x attention dp), in whole blocks
    fits: bool
    over_bytes: float


def layer_weight_bytes(
    model: Model, layer: int, attention: AttentionSplit, ffn: FFNSplit, weights_dtype: str
) -> float:
    """Weight bytes of one layer on one GPU: attention by attention tp (KV heads replicated beyond their count),
    routed experts by ep then ffn tp, dense FFN and shared experts by ffn tp, the router and norms replicated."""
    ta, tf, ep = attention.tp, ffn.tp, ffn.ep
    h = model.hidden_size
    if model.attention == "mla":
        attn = model.attention_params / ta
    else:
        hd = model.head_dim
        kv_local = math.ceil(model.num_kv_heads / ta)
        bias = (model.num_heads / ta + 2 * kv_local) * hd if model.qkv_bias else 0
        attn = 2 * h * model.num_heads * hd / ta + 2 * h * kv_local * hd + bias
    if model.is_moe_layer(layer):
        ffn_params = (model.moe.num_experts / ep * model.expert_params + model.shared_expert_params) / tf
        ffn_params += model.router_params
    else:
        ffn_params = model.dense_ffn_params / tf
    return (attn + ffn_params + 2 * h) * bytes_per_element(weights_dtype)


def edge_weight_bytes(
    model: Model, *, first: bool, last: bool, attention_tp: int, activations_dtype: str
) -> float:
    """Embedding (first stage) and LM head + final norm (last stage) on one GPU, vocab-parallel over attention tp;
    they stay in the activation dtype. A tied LM head on a later stage than the embedding holds its own copy."""
    edge = 0.0
    if first:
        edge += model.embedding_params / attention_tp
    if last:
        edge += (model.lm_head_params or (0 if first else model.embedding_params)) / attention_tp
        edge += model.hidden_size
    return edge * bytes_per_element(activations_dtype)


def stage_weight_bytes(model: Model, stage: Stage, dtypes: DTypes, *, first: bool, last: bool) -> float:
    """Weight bytes on one GPU of the stage."""
    layers = sum(
        layer_weight_bytes(model, layer, stage.attention, stage.ffn, dtypes.weights)
        for layer in range(*stage.layers)
    )
    return layers + edge_weight_bytes(
        model, first=first, last=last, attention_tp=stage.attention.tp, activations_dtype=dtypes.activations
    )


def activation_bytes(model: Model, stage: Stage, dtypes: DTypes, engine: Engine, *, last: bool) -> float:
    """Peak activation workspace at max_num_batched_tokens (plus fp32 logits of max_num_seqs on the last stage)."""
    tokens = engine_setting(engine, "max_num_batched_tokens")
    ab = bytes_per_element(dtypes.activations)
    ta, tf = stage.attention.tp, stage.ffn.tp
    up = 3 if model.ffn_gated else 2
    widest = max(model.num_heads * model.head_dim * 3 / ta, up * model.ffn_size / tf)
    if model.moe:
        # vLLM fused_moe's intermediate caches per token: top_k x (gate/up output, activation output) and
        # top_k x hidden for the expert outputs before the weighted sum
        moe = model.moe.top_k * (up * model.moe.expert_ffn_size / tf + model.hidden_size)
        widest = max(widest, moe)
    work = tokens * (WORKSPACE_HIDDEN_VECTORS * model.hidden_size + widest) * ab
    if last:
        work += engine_setting(engine, "max_num_seqs") * model.vocab_size / ta * LOGIT_BYTES
    return work


def stage_memory(
    model: Model, stage: Stage, gpu: GPU, dtypes: DTypes, engine: Engine, *, first: bool, last: bool
) -> StageMemory:
    """Weights, workspace, reserve and the KV cache left on each GPU of `stage` under the engine's rule."""
    cap = gpu.memory_bytes
    weights = stage_weight_bytes(model, stage, dtypes, first=first, last=last)
    act = activation_bytes(model, stage, dtypes, engine, last=last)
    reserve = gpu.efficiency.runtime_reserve_gib * 2**30
    frac = engine_setting(engine, "gpu_memory_fraction")
    if engine.kind == "trtllm":
        budget = frac * (cap - weights - act - reserve)
    elif engine.kind == "sglang":
        budget = frac * cap - weights - act
    else:
        budget = frac * cap - weights - act - reserve
    per_token = stage.num_layers * kv_bytes_per_token_per_layer_per_gpu(
        model, stage.attention.tp, dtypes.kv_cache
    )
    tokens = 0
    if budget > 0:
        blocks = int(budget // (per_token * engine.block_size))
        tokens = blocks * engine.block_size * stage.attention.dp
    over = max(0.0, -budget)
    return StageMemory(
        cap,
        weights,
        act,
        reserve,
        budget,
        per_token,
        tokens,
        fits=tokens >= engine.block_size,
        over_bytes=over,
    )
