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

from simulator.costmodel.kernels import KernelTime, streaming_bandwidth
from simulator.hardware import GPU, REFERENCE_CLOCK_GHZ

QUERY_BLOCK = 128  # query rows per flash-attention CTA (FA2/FA3 forward block M)
REFERENCE_HEAD_DIM = 128.0  # head dim of the published flash-attention throughput tables


def _label(body: float, fixed: float, compute: bool) -> str:
    if fixed > body:
        return "overhead"
    return "compute" if compute else "memory"


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
    if tokens <= 0 or calls <= 0:
        return KernelTime(0.0, 0.0, 0.0, "compute", 0.0)
    eff = gpu.efficiency
    ctas = max(1.0, heads * (tokens / QUERY_BLOCK + seqs / 2.0))
    waves = math.ceil(ctas / gpu.num_sms)
    util = ctas / (waves * gpu.num_sms)
    kv = pairs / tokens
    fill = kv / (kv + eff.attention_fill_tokens)
    h0 = eff.attention_head_dim_half
    head = (head_dim / (head_dim + h0)) / (REFERENCE_HEAD_DIM / (REFERENCE_HEAD_DIM + h0))
    rate = gpu.peak_flops(compute_dtype) * min(1.0, eff.attention_max * head) * util * fill
    t_compute = flops / rate
    t_memory = nbytes / streaming_bandwidth(gpu)
    fixed = calls * eff.attention_prefill_floor_s
    body = max(t_compute, t_memory)
    return KernelTime(fixed + body, flops, nbytes, _label(body, fixed, t_compute >= t_memory), fixed)


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
    eff = gpu.efficiency
    sms = gpu.num_sms
    t_memory = nbytes / streaming_bandwidth(gpu)
    t_compute = flops / (gpu.peak_flops("bf16") * eff.attention_max)
    cycles = REFERENCE_CLOCK_GHZ / gpu.clock_ghz  # the dependent page-load chain runs in SM cycles
    t_latency = calls * math.ceil(seqs * kv_heads / sms) * eff.attention_decode_cta_s * cycles
    rows = calls * seqs * heads / sms * eff.attention_decode_row_s * cycles
    fixed = calls * eff.attention_decode_floor_s * cycles
    body = max(t_memory, t_compute, t_latency) + rows
    return KernelTime(fixed + body, flops, nbytes, _label(body, fixed, t_compute > t_memory), fixed)
