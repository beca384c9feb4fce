"""Kernel-level pricing of GEMMs, grouped (MoE) GEMMs and memory-bound kernels (docs/design.md §3.1).

Every kernel pays a fixed `kernel_launch_s` (launch, prologue, epilogue, tail) and then runs its body at the
slower of compute and HBM streaming:

* **Compute**: the output is cut into tiles (the row/column tile is the next power of two of m/n between 16 and
  `gemm_tile_m`/`gemm_tile_n`), each CTA computes one tile over a K slice at `peak x gemm_max / num_sms`, and
  the CTAs run in waves over the SMs. Two decompositions are tried and the faster kept, as cuBLAS / CUTLASS
  heuristics do: output tiles only, or split-K (K cut into s slices of at least `gemm_min_k_per_split`, which
  fills the machine when there are few output tiles; it pays `gemm_split_k_s` and the fp32 partial sums).
* **Memory**: bytes / the streaming bandwidth `memory_max x datasheet` (the fraction serving kernels reach,
  fitted per generation), scaled down when fewer CTAs run than `saturating_sm_fraction` of the SMs.
* **FP8 / INT8 GEMMs** run at `gemm_fp8_max` of their own peak, and when the activations arrive in a wider
  format they first pay an activation-quantization pass (read rows x K, write them narrow: its own kernel).

Pure functions of (shape, GPU); `KernelTime.fixed_s` is the part that does not shrink with the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.dtypes import bytes_per_element
from simulator.hardware import GPU

SMALL_TILE = 16  # smallest tensor-core tile side (mma m16 on Ampere/Hopper; wgmma n8..256)
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)  # split-K factors cuBLAS / CUTLASS heuristics choose among
PARTIAL_BYTES = 4.0  # split-K partial sums are fp32, written by every slice and read back once
NARROW = frozenset({"fp8", "int8", "fp4"})  # formats whose GEMMs need quantized activations


@dataclass(frozen=True, slots=True)
class KernelTime:
    """One kernel (or a fixed sequence of kernels): seconds, useful FLOPs, HBM bytes, what bounds it, and the
    fixed part of the seconds."""

    seconds: float
    flops: float
    bytes: float
    bound: str  # "compute", "memory" or "overhead" (fixed cost dominates)
    fixed_s: float

    def __add__(self, other: KernelTime) -> KernelTime:
        big = self if self.seconds - self.fixed_s >= other.seconds - other.fixed_s else other
        return KernelTime(
            self.seconds + other.seconds,
            self.flops + other.flops,
            self.bytes + other.bytes,
            big.bound,
            self.fixed_s + other.fixed_s,
        )

    def times(self, count: float) -> KernelTime:
        """The same kernel run `count` times (once per layer)."""
        return KernelTime(
            self.seconds * count, self.flops * count, self.bytes * count, self.bound, self.fixed_s * count
        )


ZERO = KernelTime(0.0, 0.0, 0.0, "memory", 0.0)


def streaming_bandwidth(gpu: GPU) -> float:
    """Bytes/s a memory-bound kernel streams with every SM busy."""
    return gpu.memory_bandwidth_bytes_per_s * gpu.efficiency.memory_max


def active_bandwidth(gpu: GPU, ctas: float) -> float:
    """Streaming bandwidth of a kernel with `ctas` CTAs: full once they cover the saturating share of SMs."""
    need = gpu.num_sms * gpu.efficiency.saturating_sm_fraction
    return streaming_bandwidth(gpu) * min(1.0, ctas / need)


def _label(body: float, fixed: float, compute: bool) -> str:
    if fixed > body:
        return "overhead"
    return "compute" if compute else "memory"


def memory_kernel(gpu: GPU, nbytes: float, kernels: float = 1.0) -> KernelTime:
    """`kernels` elementwise kernels that together move `nbytes` of HBM traffic."""
    if nbytes <= 0 and kernels <= 0:
        return ZERO
    fixed = kernels * gpu.efficiency.kernel_launch_s
    body = nbytes / streaming_bandwidth(gpu) if nbytes > 0 else 0.0
    return KernelTime(fixed + body, 0.0, nbytes, _label(body, fixed, False), fixed)


def _side(dim: float, largest: int) -> int:
    return min(largest, max(SMALL_TILE, 2 ** math.ceil(math.log2(max(dim, 1.0)))))


def gemm_peak(gpu: GPU, compute_dtype: str) -> float:
    """Achievable dense FLOP/s of a large, well-shaped GEMM in `compute_dtype`."""
    eff = gpu.efficiency
    frac = eff.gemm_fp8_max if (compute_dtype in NARROW and eff.gemm_fp8_max) else eff.gemm_max
    return gpu.peak_flops(compute_dtype) * frac


def gemm_kernel(
    gpu: GPU,
    m: float,
    n: float,
    k: float,
    weight_bytes: float,
    act_bytes: float,
    compute_dtype: str,
    groups: float = 1.0,
) -> KernelTime:
    """`groups` GEMMs of (m x k) @ (k x n), each with its own weight, in one launch (groups > 1: a grouped MoE
    GEMM whose tiles of every group fill the SMs together)."""
    if m <= 0 or n <= 0 or k <= 0 or groups <= 0:
        return ZERO
    eff = gpu.efficiency
    sms = gpu.num_sms
    quant = ZERO
    in_bytes = act_bytes
    if compute_dtype in NARROW:
        narrow = bytes_per_element(compute_dtype)
        if act_bytes > narrow:  # dynamic activation quantization before the GEMM: read wide, write narrow
            quant = memory_kernel(gpu, groups * m * k * (act_bytes + narrow))
            in_bytes = narrow
    per_sm = gemm_peak(gpu, compute_dtype) / sms
    tm, tn = _side(m, eff.gemm_tile_m), _side(n, eff.gemm_tile_n)
    tiles = groups * math.ceil(m / tm) * math.ceil(n / tn)
    flops = 2.0 * groups * m * n * k
    base_bytes = groups * (n * k * weight_bytes + m * k * in_bytes + m * n * act_bytes)
    best = None
    for s in SPLITS:
        if s > 1 and k / s < eff.gemm_min_k_per_split:
            break
        ctas = tiles * s
        t_compute = math.ceil(ctas / sms) * 2.0 * tm * tn * math.ceil(k / s) / per_sm
        nbytes = base_bytes + (2.0 * s * groups * m * n * PARTIAL_BYTES if s > 1 else 0.0)
        t_memory = nbytes / active_bandwidth(gpu, ctas)
        fixed = eff.kernel_launch_s + (eff.gemm_split_k_s if s > 1 else 0.0)
        body = max(t_compute, t_memory)
        if best is None or fixed + body < best[0] + best[1]:
            best = (fixed, body, t_compute >= t_memory, nbytes)
    fixed, body, compute, nbytes = best
    gemm = KernelTime(fixed + body, flops, nbytes, _label(body, fixed, compute), fixed)
    return gemm + quant if quant is not ZERO else gemm
