"""Attention kernels: flash-attention prefill and paged decode, from batch aggregates (docs/design.md §3.1).

Prefill (FlashAttention-2 on Ampere, FlashAttention-3 on Hopper): a CTA per (query head, block of 128 query
rows), so `heads x (tokens / 128 + seqs / 2)` CTAs run in waves over the SMs. Each CTA's efficiency rises with
the keys it streams (`kv / (kv + attention_fill_tokens)`, kv = causal pairs per query) and with the head dim
(`hd / (hd + attention_head_dim_half)`, normalised to 1 at head dim 128, where `attention_max` is the
published large-sequence throughput). One call costs `attention_prefill_floor_s` on top.

Decode (paged KV): the kernel reads every cached KV byte of every running sequence (only the valid tokens of
the last page: the tile loads past the sequence end are predicated off), plus Q and O; it runs at the streaming bandwidth, but never faster than one CTA latency
(`attention_decode_cta_s`) per wave of (sequence x KV head) CTAs, plus `attention_decode_row_s` per query row
and SM, plus `attention_decode_floor_s` per call. MLA decode (absorbed) is the same kernel over the latent
(one KV head of `kv_lora_rank + rope` wide, scores and output in the latent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.costmodel.kernels import KernelTime, streaming_bandwidth
from simulator.hardware import GPU, REFERENCE_CLOCK_GHZ

QUERY_BLOCK = 128  # query rows per flash-attention CTA (FA2/FA3 forward block M)
REFERENCE_HEAD_DIM = 128.0  # head dim of the published flash-attention throughput tables


def _label(body: float, fixed: float, compute: bool) -> str:
    if fixed > body:
        return "overhead"
    return "compute" if compute else "memory"


@dataclass(frozen=True, slots=True)
class PrefillAttentionKernel:
    """Prefill attention of one head layout on one GPU: the numbers that do not depend on the batch, read once
    (a stage keeps one and prices every prefill chunk mix with it)."""

    sms: int
    rate: float  # FLOP/s in full waves at full key fill: peak x min(1, attention_max x head-dim factor)
    fill_tokens: float  # attention_fill_tokens
    bw: float  # streaming bandwidth, bytes/s
    floor_s: float  # attention_prefill_floor_s, per call
    heads: float

    @staticmethod
    def of(gpu: GPU, heads: float, head_dim: float, compute_dtype: str) -> PrefillAttentionKernel:
        eff = gpu.efficiency
        h0 = eff.attention_head_dim_half
        head = (head_dim / (head_dim + h0)) / (REFERENCE_HEAD_DIM / (REFERENCE_HEAD_DIM + h0))
        return PrefillAttentionKernel(
            sms=gpu.num_sms,
            rate=gpu.peak_flops(compute_dtype) * min(1.0, eff.attention_max * head),
            fill_tokens=eff.attention_fill_tokens,
            bw=streaming_bandwidth(gpu),
            floor_s=eff.attention_prefill_floor_s,
            heads=heads,
        )

    def price(
        self, *, flops: float, nbytes: float, tokens: float, seqs: float, pairs: float, calls: int = 1
    ) -> KernelTime:
        """`calls` calls (one per layer), each over `flops`/`nbytes` / calls of the work."""
        if tokens <= 0 or calls <= 0:
            return KernelTime(0.0, 0.0, 0.0, "compute", 0.0)
        ctas = max(1.0, self.heads * (tokens / QUERY_BLOCK + seqs / 2.0))
        waves = math.ceil(ctas / self.sms)
        util = ctas / (waves * self.sms)
        kv = pairs / tokens
        fill = kv / (kv + self.fill_tokens)
        t_compute = flops / (self.rate * util * fill)
        t_memory = nbytes / self.bw
        fixed = calls * self.floor_s
        body = max(t_compute, t_memory)
        return KernelTime(fixed + body, flops, nbytes, _label(body, fixed, t_compute >= t_memory), fixed)


def prefill_attention(
    gpu: GPU,
    *,
    flops: float,
    nbytes: float,
    tokens: float,
    seqs: float,
    pairs: float,
    heads: float,
    head_dim: float,
    compute_dtype: str,
    calls: int = 1,
) -> KernelTime:
    """`calls` prefill attention calls (one per layer), each over `flops`/`nbytes` / calls of the work."""
    kernel = PrefillAttentionKernel.of(gpu, heads, head_dim, compute_dtype)
    return kernel.price(flops=flops, nbytes=nbytes, tokens=tokens, seqs=seqs, pairs=pairs, calls=calls)


@dataclass(frozen=True, slots=True)
class DecodeAttentionKernel:
    """Decode attention of a fixed number of sequences on one GPU: every part that does not depend on the KV
    they read, read once per batch size."""

    bw: float  # streaming bandwidth, bytes/s
    rate: float  # FLOP/s: bf16 peak x attention_max
    latency_s: float  # one CTA latency per wave of (sequence x KV head) CTAs, per call
    rows_s: float  # attention_decode_row_s per query row and SM, per call
    fixed_s: float  # attention_decode_floor_s per call

    @staticmethod
    def of(gpu: GPU, *, seqs: float, heads: float, kv_heads: float, calls: int = 1) -> DecodeAttentionKernel:
        eff = gpu.efficiency
        sms = gpu.num_sms
        cycles = REFERENCE_CLOCK_GHZ / gpu.clock_ghz  # the dependent page-load chain runs in SM cycles
        return DecodeAttentionKernel(
            bw=streaming_bandwidth(gpu),
            rate=gpu.peak_flops("bf16") * eff.attention_max,
            latency_s=calls * math.ceil(seqs * kv_heads / sms) * eff.attention_decode_cta_s * cycles,
            rows_s=calls * seqs * heads / sms * eff.attention_decode_row_s * cycles,
            fixed_s=calls * eff.attention_decode_floor_s * cycles,
        )

    def price(self, *, flops: float, nbytes: float) -> KernelTime:
        """The calls over `flops` FLOPs and `nbytes` bytes (summed over the calls)."""
        t_memory = nbytes / self.bw
        t_compute = flops / self.rate
        body = max(t_memory, t_compute, self.latency_s) + self.rows_s
        fixed = self.fixed_s
        return KernelTime(fixed + body, flops, nbytes, _label(body, fixed, t_compute > t_memory), fixed)


def decode_attention(
    gpu: GPU,
    *,
    flops: float,
    nbytes: float,
    seqs: float,
    heads: float,
    kv_heads: float,
    calls: int = 1,
) -> KernelTime:
    """`calls` decode attention calls (one per layer) over `seqs` sequences; flops/nbytes summed over calls."""
    if seqs <= 0 or calls <= 0:
        return KernelTime(0.0, 0.0, 0.0, "memory", 0.0)
    kernel = DecodeAttentionKernel.of(gpu, seqs=seqs, heads=heads, kv_heads=kv_heads, calls=calls)
    return kernel.price(flops=flops, nbytes=nbytes)
