"""Energy and utilization of one iteration.

Per GPU: `E = P_idle * t + e_flop * FLOPs + e_byte * bytes`, capped at `TDP * t`.
Derivation: a GPU running GEMMs flat out does `peak * gemm_max` FLOP/s and draws TDP, so
`(TDP - P_idle) = e_flop * peak * gemm_max`, i.e. `e_flop = (TDP - P_idle) / (peak * gemm_max)` (J/FLOP at the
GEMM's dtype); likewise a GPU streaming HBM at `bw * memory_max` draws TDP: `e_byte = (TDP - P_idle) /
(bw * memory_max)`. Both saturated at once would exceed TDP, hence the cap (power capping does the same).
At a locked SM clock both coefficients shrink by `clock.energy_scales` (the datasheet peak and the boost clock
stay the reference, so the default clock's coefficients are unchanged).
"""

from __future__ import annotations

from simulator.costmodel.clock import energy_scales
from simulator.hardware import GPU


def energy_coefficients(gpu: GPU, dtype: str = "bf16") -> tuple[float, float]:
    """(e_flop J/FLOP, e_byte J/byte) such that compute or memory saturation alone draws TDP at the boost
    clock; scaled down at a locked clock (`clock.energy_scales`)."""
    dynamic = gpu.tdp_w - gpu.idle_w
    flop_scale, byte_scale = energy_scales(gpu)
    e_flop = dynamic * flop_scale / (gpu.datasheet_flops(dtype) * gpu.efficiency.gemm_max)
    e_byte = dynamic * byte_scale / (gpu.memory_bandwidth_bytes_per_s * gpu.efficiency.memory_max)
    return e_flop, e_byte


def gpu_energy(gpu: GPU, time_s: float, flops: float, nbytes: float, dtype: str = "bf16") -> float:
    """Joules one GPU spends over `time_s` doing `flops` and moving `nbytes` of HBM traffic."""
    e_flop, e_byte = energy_coefficients(gpu, dtype)
    joules = gpu.idle_w * time_s + e_flop * flops + e_byte * nbytes
    return min(joules, gpu.tdp_w * time_s) if time_s > 0 else joules


def mfu(gpu: GPU, flops: float, time_s: float, num_gpus: int, dtype: str = "bf16") -> float:
    """Model FLOPs utilization: useful FLOPs / (time x GPUs x dense datasheet peak)."""
    return flops / (time_s * num_gpus * gpu.datasheet_flops(dtype)) if time_s > 0 else 0.0


def mbu(gpu: GPU, nbytes: float, time_s: float, num_gpus: int) -> float:
    """Memory bandwidth utilization: HBM bytes / (time x GPUs x datasheet bandwidth)."""
    return nbytes / (time_s * num_gpus * gpu.memory_bandwidth_bytes_per_s) if time_s > 0 else 0.0


def usd_per_hour(gpu: GPU, num_gpus: int) -> float:
    """Cost of holding `num_gpus` GPUs for an hour."""
    return gpu.price_usd_per_hour * num_gpus
