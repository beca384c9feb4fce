"""Operators of one stage iteration, described by their static shape ("describe, then evaluate").

Each op is a frozen dataclass holding per-GPU static sizes and `count` (layers it repeats on). Runtime work comes
in as a `Load` (per-GPU row counts derived once from a `BatchShape`). `flops(load)` and `bytes_moved(load)` are
pure; `price_op` turns an op into seconds with the kernel models of `kernels.py` / `attention.py`, or NCCL's
protocols in `nccl.py` (through `comm`).
Where an op runs is a field (`where`), and the builder (`build.py`) keeps only the ops of the stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.costmodel import attention, comm
from simulator.costmodel.arrays import FLOATS, backend, full_like
from simulator.costmodel.interface import BatchShape, OpCost
from simulator.costmodel.kernels import MEMORY, NETWORK, KernelTime, KernelTimes, gemm_times, memory_times
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

    tokens: float  # all tokens of the iteration (each field: a number, or an array of them)
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
    def of(num_tokens, num_seqs, split: Split) -> Load:
        """The rows of `num_tokens` tokens of `num_seqs` sequences: numbers, or arrays of them (one load per
        element; the fields are then arrays)."""
        xp = backend(num_tokens, num_seqs)
        t, s = (
            (np.asarray(x, dtype=float) for x in (num_tokens, num_seqs))
            if xp is np
            else (float(num_tokens), float(num_seqs))
        )
        frac = 1.0
        if split.attn_dp > 1:
            frac = xp.where(s > 0, xp.ceil(s / split.attn_dp) / xp.where(s > 0, s, 1.0), 1.0)
        attn_tokens = xp.ceil(t * frac)
        ep = split.ffn_ep
        moe_tokens = moe_rows = touched = full_like(t, 0.0)
        if split.num_experts:
            e, k = split.num_experts, split.top_k
            local = e / ep
            moe_tokens = xp.minimum(t * k / ep * split.moe_imbalance, t * min(k, local))
            moe_rows = moe_tokens / local
            touched = xp.where(t > 0, local * (1.0 - _power(1.0 - k / e, t)), 0.0)
        return Load(
            tokens=t,
            seqs=s,
            attn_tokens=attn_tokens,
            attn_seqs=xp.ceil(s * frac),
            ffn_tokens=xp.ceil(t / ep),
            a2a_tokens=attn_tokens / split.attn_tp,
            moe_tokens=moe_tokens,
            moe_rows=moe_rows,
            moe_touched=touched,
            dp_fraction=frac,
        )


def _power(base: float, exponent):
    """base ** exponent, elementwise for an array, with Python's float power (libm's pow): numpy's vectorised
    power can differ from it in the last bit, and a count must price the same alone and in a table."""
    if isinstance(exponent, np.ndarray):
        return np.array([base**x for x in exponent.ravel().tolist()]).reshape(exponent.shape)
    return base**exponent


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


# (one size, an array of sizes) pricers of each collective kind
_COLLECTIVES = {
    "all_reduce": (comm.all_reduce_seconds, comm.all_reduce_times),
    "all_to_all": (comm.all_to_all_seconds, comm.all_to_all_times),
}


def _collective_times(op: Collective, load: Load, gpu: GPU) -> KernelTimes:
    msg = op.message_bytes(load)
    one, many = _COLLECTIVES[op.kind]
    seconds = one if backend(msg) is FLOATS else many
    eff = gpu.efficiency
    t = seconds(op.fabric, eff, op.group, msg, gpu.clock_ghz) * op.count
    floor = one(op.fabric, eff, op.group, 1.0, gpu.clock_ghz) * op.count  # a 1-byte message
    xp = backend(t)
    return KernelTimes(t, full_like(t, 0.0), msg * op.count, full_like(t, NETWORK), xp.minimum(floor, t))


def _gemm_times(op: Gemm, load: Load, gpu: GPU) -> KernelTimes:
    k = gemm_times(gpu, op.m(load), op.n, op.k, op.weight_bytes, op.act_bytes, op.compute_dtype)
    return k.times(op.count)


def _memory_times(op: Memory, load: Load, gpu: GPU) -> KernelTimes:
    nbytes = op.bytes_moved(load)
    xp = backend(nbytes)
    k = memory_times(gpu, nbytes, op.kernels * op.count)
    return KernelTimes(*(xp.where(nbytes > 0, a, 0) for a in k))  # no rows: no kernel


def _moe_times(op: MoEExperts, load: Load, gpu: GPU) -> KernelTimes:
    """Grouped up-projection, activation and grouped down-projection over the touched local experts."""
    tokens, groups = load.moe_tokens, load.moe_touched
    xp = backend(tokens, groups)
    live = (tokens > 0) & (groups > 0)
    if not xp.any(live):
        return KernelTimes(*(full_like(tokens, x) for x in (0.0, 0.0, 0.0, MEMORY, 0.0)))
    groups = xp.where(live, groups, 1.0)
    rows = tokens / groups  # token copies per touched expert (>= 1)
    wb, ab, cd = op.weight_bytes, op.act_bytes, op.compute_dtype
    up = gemm_times(gpu, rows, op.up * op.ffn, op.hidden, wb, ab, cd, groups=groups)
    act = memory_times(gpu, tokens * op.act_passes * op.ffn * ab)
    down = gemm_times(gpu, rows, op.hidden, op.ffn, wb, ab, cd, groups=groups)
    k = (up + act + down).times(op.count)
    return KernelTimes(*(xp.where(live, a, 0) for a in k))


_TIMES = {Gemm: _gemm_times, Memory: _memory_times, Collective: _collective_times, MoEExperts: _moe_times}


def op_times(op, load: Load, gpu: GPU) -> KernelTimes:
    """The price of a static op (GEMM, MoE, memory-bound, collective) under `load`, summed over the layers it
    repeats on: of one iteration when the load's rows are numbers, of every element when they are arrays."""
    return _TIMES[type(op)](op, load, gpu)


def price_op(op, load: Load, gpu: GPU) -> OpCost:
    """Seconds of a static op under the load of one iteration."""
    return _cost(op.name, op_times(op, load, gpu).kernel_time())


def prefill_attention_kernel(op: AttentionPrefill, gpu: GPU) -> attention.PrefillAttentionKernel:
    """The batch-independent part of `op`'s kernel on `gpu` (a stage keeps it: `prefill_attention_price`)."""
    return attention.PrefillAttentionKernel.of(gpu, op.heads, op.qk_dim, op.compute_dtype)


def prefill_attention_price(
    op: AttentionPrefill, kernel: attention.PrefillAttentionKernel, shape: BatchShape, dp_fraction: float
) -> KernelTime:
    """Attention of `shape`'s prefill chunks on the busiest attention-dp group (`kernel`: of op, on the GPU)."""
    tokens = shape.num_prefill_tokens * dp_fraction
    pairs = shape.prefill_attention_pairs * dp_fraction
    return kernel.price(
        flops=op.flops_of(pairs),
        nbytes=op.bytes_of(tokens, shape.prefill_context_tokens * dp_fraction),
        tokens=tokens,
        seqs=max(1.0, shape.num_prefill_seqs * dp_fraction),
        pairs=pairs,
        calls=op.count,
    )


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
        k = prefill_attention_price(prefill, prefill_attention_kernel(prefill, gpu), shape, dp_fraction)
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
