"""Efficiency curves and the one pricing rule: `max(flops / (peak * eff_c), bytes / (bw * eff_m)) + overhead`.

Efficiencies are functions of the shape, never constants:
* GEMM: `gemm_max` times the tile/wave quantization of an (m x n) output over `num_sms` SMs with
  `gemm_tile_m x gemm_tile_n` tiles (a 129-row GEMM pays for two tile rows; 133 tiles on 132 SMs pay two waves).
* HBM: `memory_max * b / (b + memory_half_bytes)`: small transfers do not reach streaming bandwidth.
"""

from __future__ import annotations

import math

from simulator.hardware import GPU, GPUEfficiency

SMALL_TILE_M = 16  # smallest row tile of tensor-core GEMM kernels (mma m16 on Ampere/Hopper)


def gemm_efficiency(eff: GPUEfficiency, num_sms: int, m: float, n: float) -> float:
    """Fraction of dense peak an (m x n)-output GEMM reaches: gemm_max x tile padding x wave quantization."""
    if m <= 0 or n <= 0:
        return eff.gemm_max
    # Small-M GEMMs (decode, MoE experts with few tokens) run kernels with shorter tiles (vLLM fused_moe configs
    # BLOCK_SIZE_M 16-128; CUTLASS 64xN tiles): the row tile is the next power of two >= m, at least SMALL_TILE_M.
    tm = min(eff.gemm_tile_m, max(SMALL_TILE_M, 2 ** math.ceil(math.log2(m))))
    tn = eff.gemm_tile_n
    rows, cols = math.ceil(m / tm), math.ceil(n / tn)
    padding = (m * n) / (rows * tm * cols * tn)
    tiles = rows * cols
    waves = math.ceil(tiles / num_sms)
    return eff.gemm_max * padding * tiles / (waves * num_sms)


def memory_efficiency(eff: GPUEfficiency, nbytes: float, ceiling: float | None = None) -> float:
    """Fraction of datasheet HBM bandwidth a transfer of `nbytes` reaches (saturating in size)."""
    top = eff.memory_max if ceiling is None else ceiling
    if nbytes <= 0:
        return top
    return top * nbytes / (nbytes + eff.memory_half_bytes)


def price(
    flops: float,
    nbytes: float,
    peak_flops: float,
    eff_compute: float,
    bandwidth: float,
    eff_memory: float,
    overhead_s: float = 0.0,
) -> tuple[float, str]:
    """Seconds of one operator and what bounds it ("compute" or "memory")."""
    t_compute = flops / (peak_flops * eff_compute) if flops > 0 else 0.0
    t_memory = nbytes / (bandwidth * eff_memory) if nbytes > 0 else 0.0
    if t_compute >= t_memory:
        return t_compute + overhead_s, "compute"
    return t_memory + overhead_s, "memory"


def gemm_seconds(
    gpu: GPU, m: float, n: float, k: float, weight_bytes: float, act_bytes: float, compute_dtype: str
) -> tuple[float, float, float, str]:
    """(seconds, flops, bytes, bound) of one m x n x k GEMM reading an n x k weight."""
    flops = 2.0 * m * n * k
    nbytes = n * k * weight_bytes + (m * k + m * n) * act_bytes
    eff = gpu.efficiency
    t, bound = price(
        flops,
        nbytes,
        gpu.peak_flops(compute_dtype),
        gemm_efficiency(eff, gpu.num_sms, m, n),
        gpu.memory_bandwidth_bytes_per_s,
        memory_efficiency(eff, nbytes),
    )
    return t, flops, nbytes, bound
