"""Operators of one stage iteration, described by their static shape ("describe, then evaluate").

Each op is a frozen dataclass holding per-GPU static sizes and `count` (layers it repeats on). Runtime work comes
in as a `Load` (per-GPU row counts derived once from a `BatchShape`). `flops(load)` and `bytes_moved(load)` are
pure; `price_op` turns an op into seconds with the one rule of `roofline.price`, or the α–β model of `comm`.
Where an op runs is a field (`where`), and the builder (`build.py`) keeps only the ops of the stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.costmodel import comm
from simulator.costmodel.interface import BatchShape, OpCost
from simulator.costmodel.roofline import gemm_efficiency, memory_efficiency, price
from simulator.hardware import GPU, Fabric

Where = str  # "all", "first_stage" or "last_stage"


@dataclass(frozen=True, slots=True)
class Split:
    """How a stage's GPUs split the work (plan.Stage's cells), plus the routing numbers MoE needs."""

    attn_tp: int = 1
    attn_dp: int = 1
    ffn_tp: int = 1
    ffn_ep: int = 1
    num_experts: int = 0
    top_k: int = 0
    moe_imbalance: float = 1.0


@dataclass(frozen=True, slots=True)
class Load:
    """Per-GPU rows of one iteration on the busiest GPU of the stage (attention dp groups: the slowest)."""

    tokens: float  # all tokens of the iteration
    seqs: float  # all sequences (LM head / sampling rows: one last token each)
    attn_tokens: float  # tokens of the busiest attention-dp group
    attn_seqs: float
    ffn_tokens: float  # dense-FFN rows per GPU (split over expert-parallel groups)
    a2a_tokens: float  # tokens one GPU dispatches in an EP all-to-all
    moe_tokens: float  # routed token-copies on the busiest EP GPU
    moe_rows: float  # tokens per expert on that GPU (the grouped GEMM's M)
    moe_touched: float  # distinct local experts hit: (E/ep) * (1 - (1 - k/E)^T)
    dp_fraction: float  # share of the batch the busiest attention-dp group holds

    @staticmethod
    def of(num_tokens: int, num_seqs: int, split: Split) -> Load:
        t, s = float(num_tokens), float(num_seqs)
        frac = math.ceil(s / split.attn_dp) / s if s > 0 and split.attn_dp > 1 else 1.0
        attn_tokens = math.ceil(t * frac)
        ep = split.ffn_ep
        moe_tokens = moe_rows = touched = 0.0
        if split.num_experts:
            e, k = split.num_experts, split.top_k
            local = e / ep
            moe_tokens = min(t * k / ep * split.moe_imbalance, t * min(k, local))
            moe_rows = moe_tokens / local
            touched = local * (1.0 - (1.0 - k / e) ** t) if t > 0 else 0.0
        return Load(
            tokens=t,
            seqs=s,
            attn_tokens=attn_tokens,
            attn_seqs=math.ceil(s * frac),
            ffn_tokens=math.ceil(t / ep),
            a2a_tokens=attn_tokens / split.attn_tp,
            moe_tokens=moe_tokens,
            moe_rows=moe_rows,
            moe_touched=touched,
            dp_fraction=frac,
        )


@dataclass(frozen=True, slots=True)
class Gemm:
    """y[m, n] = x[m, k] @ W[k, n] on each GPU; m = `rows` of the Load (tokens, attn_tokens, seqs, ...)."""

    name: str
    n: float
    k: float
    count: int
    weight_bytes: float  # per element
    act_bytes: float
    compute_dtype: str
    rows: str = "tokens"
    where: Where = "all"

    def m(self, load: Load) -> float:
        return getattr(load, self.rows)

    def flops(self, load: Load) -> float:
        return 2.0 * self.m(load) * self.n * self.k * self.count

    def bytes_moved(self, load: Load) -> float:
        m = self.m(load)
        return self.count * (self.n * self.k * self.weight_bytes + m * (self.k + self.n) * self.act_bytes)


@dataclass(frozen=True, slots=True)
class MoEExperts:
    """Routed experts of the MoE layers: a grouped GEMM over the local experts actually hit."""

    name: str
    params_per_expert: float  # per GPU (expert weights / ffn tp)
    n: float  # widest output per expert per GPU (for the tile/wave efficiency)
    io_elements_per_token: float  # activations read/written per routed token copy
    count: int
    weight_bytes: float
    act_bytes: float
    compute_dtype: str
    where: Where = "all"

    def flops(self, load: Load) -> float:
        return 2.0 * load.moe_tokens * self.params_per_expert * self.count

    def bytes_moved(self, load: Load) -> float:
        weights = load.moe_touched * self.params_per_expert * self.weight_bytes
        return self.count * (weights + load.moe_tokens * self.io_elements_per_token * self.act_bytes)


@dataclass(frozen=True, slots=True)
class Memory:
    """Memory-bound elementwise work (norms, residual, rotary, activation, embedding, sampling)."""

    name: str
    bytes_per_row: float
    count: int
    rows: str = "tokens"
    where: Where = "all"

    def flops(self, load: Load) -> float:
        return 0.0

    def bytes_moved(self, load: Load) -> float:
        return self.count * self.bytes_per_row * getattr(load, self.rows)


@dataclass(frozen=True, slots=True)
class Collective:
    """All-reduce or all-to-all of `bytes_per_row x rows` over `group` GPUs on `fabric`, `count` times."""

    name: str
    kind: str  # "all_reduce" or "all_to_all"
    group: int
    bytes_per_row: float
    count: int
    fabric: Fabric
    rows: str = "tokens"
    where: Where = "all"

    def flops(self, load: Load) -> float:
        return 0.0

    def bytes_moved(self, load: Load) -> float:
        return 0.0  # network bytes are not HBM traffic

    def message_bytes(self, load: Load) -> float:
        return self.bytes_per_row * getattr(load, self.rows)


@dataclass(frozen=True, slots=True)
class AttentionPrefill:
    """Causal flash-attention of the prefill chunks: 2*(qk + v) FLOPs per query-key pair per local head."""

    count: int
    heads: float  # local query heads
    qk_dim: float
    v_dim: float
    kv_bytes_per_token: float  # KV bytes per token per layer on one GPU
    act_bytes: float
    compute_dtype: str

    def flops_of(self, pairs: float) -> float:
        return 2.0 * pairs * self.heads * (self.qk_dim + self.v_dim) * self.count

    def bytes_of(self, new_tokens: float, context_tokens: float) -> float:
        q_out = new_tokens * self.heads * (self.qk_dim + self.v_dim) * self.act_bytes
        return self.count * (context_tokens * self.kv_bytes_per_token + q_out)


@dataclass(frozen=True, slots=True)
class AttentionDecode:
    """Decode attention: reads every cached KV byte of every running request (MLA: the latent)."""

    count: int
    heads: float
    score_dim: float  # qk + v widths per head (MLA absorbed: 2 * kv_lora_rank + rope)
    kv_bytes_per_token: float

    def flops_of(self, context_tokens: float) -> float:
        return 2.0 * context_tokens * self.heads * self.score_dim * self.count

    def bytes_of(self, context_tokens: float) -> float:
        return self.count * context_tokens * self.kv_bytes_per_token


def price_op(op, load: Load, gpu: GPU) -> OpCost:
    """Seconds of a static op (GEMM, MoE, memory-bound, collective) under `load`."""
    eff = gpu.efficiency
    if isinstance(op, Collective):
        msg = op.message_bytes(load)
        if op.kind == "all_reduce":
            t = comm.all_reduce_seconds(op.fabric, eff, op.group, msg)
        else:
            t = comm.all_to_all_seconds(op.fabric, eff, op.group, msg)
        return OpCost(op.name, t * op.count, 0.0, msg * op.count, "network")
    flops, nbytes = op.flops(load), op.bytes_moved(load)
    if flops == 0.0 and nbytes == 0.0:
        return OpCost(op.name, 0.0, 0.0, 0.0, "memory")
    if isinstance(op, Gemm):
        e_c = gemm_efficiency(eff, gpu.num_sms, op.m(load), op.n)
        peak = gpu.peak_flops(op.compute_dtype)
    elif isinstance(op, MoEExperts):
        e_c = gemm_efficiency(eff, gpu.num_sms, load.moe_rows, op.n)
        peak = gpu.peak_flops(op.compute_dtype)
    else:
        e_c, peak = 1.0, 1.0
    e_m = memory_efficiency(eff, nbytes / op.count)
    t, bound = price(flops, nbytes, peak, e_c, gpu.memory_bandwidth_bytes_per_s, e_m)
    return OpCost(op.name, t, flops, nbytes, bound)


def price_attention(
    prefill: AttentionPrefill | None,
    decode: AttentionDecode | None,
    shape: BatchShape,
    dp_fraction: float,
    gpu: GPU,
) -> list[OpCost]:
    """Prefill and decode attention of `shape` on the busiest attention-dp group."""
    eff, bw = gpu.efficiency, gpu.memory_bandwidth_bytes_per_s
    out = []
    if prefill is not None and shape.num_prefill_tokens:
        f = prefill.flops_of(shape.prefill_attention_pairs * dp_fraction)
        b = prefill.bytes_of(
            shape.num_prefill_tokens * dp_fraction, shape.prefill_context_tokens * dp_fraction
        )
        t, bound = price(
            f,
            b,
            gpu.peak_flops(prefill.compute_dtype),
            eff.attention_max,
            bw,
            memory_efficiency(eff, b / prefill.count),
        )
        out.append(OpCost("attention_prefill", t, f, b, bound))
    if decode is not None and shape.num_decode:
        ctx = shape.decode_context_tokens * dp_fraction
        f, b = decode.flops_of(ctx), decode.bytes_of(ctx)
        t, bound = price(
            f,
            b,
            gpu.peak_flops("bf16"),
            eff.attention_max,
            bw,
            memory_efficiency(eff, b / decode.count, eff.attention_memory_max),
        )
        out.append(OpCost("attention_decode", t, f, b, bound))
    return out
