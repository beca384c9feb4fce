"""Operators of one stage iteration, described by their static shape ("describe, then evaluate").

Each op is a frozen dataclass holding per-GPU static sizes and `count` (layers it repeats on). Runtime work comes
in as a `Load` (per-GPU row counts derived once from a `BatchShape`). `flops(load)` and `bytes_moved(load)` are
pure; `price_op` turns an op into seconds with the kernel models of `kernels.py` / `attention.py`, or NCCL's
protocols in `nccl.py` (through `comm`).
Where an op runs is a field (`where`), and the builder (`build.py`) keeps only the ops of the stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.costmodel import attention, comm
from simulator.costmodel.interface import BatchShape, OpCost
from simulator.costmodel.kernels import KernelTime, gemm_kernel, memory_kernel
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
    """Routed experts of the MoE layers: one grouped GEMM (up, then down) over the local experts actually hit,
    every touched expert's tiles filling the SMs together."""

    name: str
    hidden: float  # model hidden size (the up projection's K, the down projection's N)
    ffn: float  # expert FFN width on one GPU (expert_ffn_size / ffn tp)
    up: int  # 2 for gated (gate + up), 1 for plain
    act_passes: float  # elementwise passes of the activation between up and down, in ffn-wide vectors
    count: int
    weight_bytes: float
    act_bytes: float
    compute_dtype: str
    where: Where = "all"

    @property
    def params_per_expert(self) -> float:
        return (self.up + 1) * self.hidden * self.ffn

    @property
    def io_elements_per_token(self) -> float:
        """Activations read/written per routed token copy: hidden in and out, the up output and activation."""
        return 2 * self.hidden + (self.up + self.act_passes) * self.ffn

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
    kernels: float = 1.0  # kernels launched per layer (each pays the launch floor)

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
    kv_heads: float = 1.0  # KV heads on one GPU (MLA: the one latent)
    # KV page size. Pages count for capacity (memory.py), not traffic: FlashAttention's paged decode and
    # TensorRT-LLM's XQA load key/value tiles with predicated, zero-filled rows past the sequence end, so
    # the unused tail of the last page is never read.
    block_size: int = 16
    qo_bytes_per_seq: float = 0.0  # query read + output written per sequence per layer

    def flops_of(self, context_tokens: float) -> float:
        return 2.0 * context_tokens * self.heads * self.score_dim * self.count

    def bytes_of(self, context_tokens: float, seqs: float = 0.0) -> float:
        return self.count * (context_tokens * self.kv_bytes_per_token + seqs * self.qo_bytes_per_seq)


def _cost(name: str, k: KernelTime) -> OpCost:
    return OpCost(name, k.seconds, k.flops, k.bytes, k.bound, k.fixed_s)


# Prices of a GEMM op at one row count, and the latency floor of a collective op, keyed by the ids of the op
# and the GPU (checked by identity; both are immutable): the simulator prices many shapes that share a row
# count (a decode batch of the same size, the LM head at the same number of sequences).
_PRICES: dict[tuple, tuple] = {}
PRICE_CACHE_SIZE = 1 << 16


def _memo(op, gpu: GPU, m: float):
    hit = _PRICES.get((id(op), id(gpu), m))
    if hit is not None and hit[0] is op and hit[1] is gpu:
        return hit[2]
    return None


def _remember(op, gpu: GPU, m: float, cost):
    if len(_PRICES) >= PRICE_CACHE_SIZE:
        _PRICES.clear()
    _PRICES[(id(op), id(gpu), m)] = (op, gpu, cost)
    return cost


def _price_collective(op: Collective, load: Load, gpu: GPU) -> OpCost:
    msg = op.message_bytes(load)
    if msg <= 0:
        return OpCost(op.name, 0.0, 0.0, 0.0, "network")
    eff = gpu.efficiency
    seconds = comm.all_reduce_seconds if op.kind == "all_reduce" else comm.all_to_all_seconds
    t = seconds(op.fabric, eff, op.group, msg, gpu.clock_ghz)
    floor = _memo(op, gpu, -1.0)
    if floor is None:
        floor = _remember(op, gpu, -1.0, seconds(op.fabric, eff, op.group, 1.0, gpu.clock_ghz))
    return OpCost(op.name, t * op.count, 0.0, msg * op.count, "network", min(floor, t) * op.count)


def _price_gemm(op: Gemm, load: Load, gpu: GPU) -> OpCost:
    m = op.m(load)
    if m <= 0:
        return OpCost(op.name, 0.0, 0.0, 0.0, "memory")
    hit = _memo(op, gpu, m)
    if hit is not None:
        return hit
    k = gemm_kernel(gpu, m, op.n, op.k, op.weight_bytes, op.act_bytes, op.compute_dtype)
    c = op.count
    return _remember(
        op, gpu, m, OpCost(op.name, k.seconds * c, k.flops * c, k.bytes * c, k.bound, k.fixed_s * c)
    )


def _price_memory(op: Memory, load: Load, gpu: GPU) -> OpCost:
    nbytes = op.bytes_moved(load)
    if nbytes <= 0:
        return OpCost(op.name, 0.0, 0.0, 0.0, "memory")
    return _cost(op.name, memory_kernel(gpu, nbytes, op.kernels * op.count))


def _price_moe(op: MoEExperts, load: Load, gpu: GPU) -> OpCost:
    return _cost(op.name, moe_experts_kernel(op, load, gpu))


_PRICERS = {Gemm: _price_gemm, Memory: _price_memory, Collective: _price_collective, MoEExperts: _price_moe}


def price_op(op, load: Load, gpu: GPU) -> OpCost:
    """Seconds of a static op (GEMM, MoE, memory-bound, collective) under `load`."""
    return _PRICERS[type(op)](op, load, gpu)


def moe_experts_kernel(op: MoEExperts, load: Load, gpu: GPU) -> KernelTime:
    """Grouped up-projection, activation and grouped down-projection over the touched local experts."""
    if load.moe_tokens <= 0 or load.moe_touched <= 0:
        return KernelTime(0.0, 0.0, 0.0, "memory", 0.0)
    groups = load.moe_touched
    rows = load.moe_tokens / groups  # token copies per touched expert (>= 1)
    wb, ab, cd = op.weight_bytes, op.act_bytes, op.compute_dtype
    up = gemm_kernel(gpu, rows, op.up * op.ffn, op.hidden, wb, ab, cd, groups=groups)
    act = memory_kernel(gpu, load.moe_tokens * op.act_passes * op.ffn * ab)
    down = gemm_kernel(gpu, rows, op.hidden, op.ffn, wb, ab, cd, groups=groups)
    return (up + act + down).times(op.count)


def price_attention(
    prefill: AttentionPrefill | None,
    decode: AttentionDecode | None,
    shape: BatchShape,
    dp_fraction: float,
    gpu: GPU,
) -> list[OpCost]:
    """Prefill and decode attention of `shape` on the busiest attention-dp group."""
    out = []
    if prefill is not None and shape.num_prefill_tokens:
        tokens = shape.num_prefill_tokens * dp_fraction
        pairs = shape.prefill_attention_pairs * dp_fraction
        k = attention.prefill_attention(
            gpu,
            flops=prefill.flops_of(pairs),
            nbytes=prefill.bytes_of(tokens, shape.prefill_context_tokens * dp_fraction),
            tokens=tokens,
            seqs=max(1.0, shape.num_prefill_seqs * dp_fraction),
            pairs=pairs,
            heads=prefill.heads,
            head_dim=prefill.qk_dim,
            compute_dtype=prefill.compute_dtype,
            calls=prefill.count,
        )
        out.append(_cost("attention_prefill", k))
    if decode is not None and shape.num_decode:
        ctx = shape.decode_context_tokens * dp_fraction
        seqs = max(1.0, shape.num_decode * dp_fraction)
        k = attention.decode_attention(
            gpu,
            flops=decode.flops_of(ctx),
            nbytes=decode.bytes_of(ctx, seqs),
            seqs=seqs,
            heads=decode.heads,
            kv_heads=decode.kv_heads,
            calls=decode.count,
        )
        out.append(_cost("attention_decode", k))
    return out
