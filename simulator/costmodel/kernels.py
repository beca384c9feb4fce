"""Kernel-level pricing of GEMMs, grouped (MoE) GEMMs and memory-bound kernels (docs/design.md §3.1).

Every kernel pays a fixed `kernel_launch_s` (launch, prologue, epilogue, tail) and then runs its body at the
slower of compute and HBM streaming:

* **Compute**: the output is cut into tiles (the row/column tile is the next power of two of m/n between 16 and
  `gemm_tile_m`/`gemm_tile_n`), each CTA computes one tile over a K slice at `peak x gemm_max / num_sms`, and
  the CTAs run in waves over the SMs. Two decompositions are compared and the faster kept, as cuBLAS / CUTLASS
  heuristics do: output tiles only, or split-K (K cut into s slices of at least `gemm_min_k_per_split`, which
  fills the machine when there are few output tiles; it pays `gemm_split_k_s` and the fp32 partial sums).
  Every split of `SPLITS` that K allows is priced in one inlined loop over per-GPU constants read once
  (`_consts`); a closed-form choice misses the wave-quantization optimum (144 tiles on 132 SMs: s=2 runs 3
  waves of K/2, faster than 2 waves of K), so none is used.
* **Memory**: bytes / the streaming bandwidth `memory_max x datasheet` (the fraction serving kernels reach,
  fitted per generation), scaled down when fewer CTAs run than `saturating_sm_fraction` of the SMs.
* **FP8 / INT8 GEMMs** run at `gemm_fp8_max` of their own peak, and when the activations arrive in a wider
  format they first pay an activation-quantization pass: read rows x K, write them narrow, one CTA of 1024
  threads per row (vLLM's scaled_fp8_quant: `grid(num_tokens), block(1024)`), so two CTAs per SM and
  `quant_wave_s` per wave of 2 x SMs rows when the rows are many and short.

Pure functions of (shape, GPU); `KernelTime.fixed_s` is the part that does not shrink with the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from simulator.dtypes import bytes_per_element
from simulator.hardware import GPU, REFERENCE_CLOCK_GHZ

SMALL_TILE = 16  # smallest tensor-core tile side (mma m16 on Ampere/Hopper; wgmma n8..256)
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)  # split-K factors cuBLAS / CUTLASS heuristics choose among
PARTIAL_BYTES = 4.0  # split-K partial sums are fp32, written by every slice and read back once
NARROW = frozenset({"fp8", "int8", "fp4"})  # formats whose GEMMs need quantized activations
QUANT_CTAS_PER_SM = 2  # 1024-thread CTAs per SM (2048 resident threads on Ampere and Hopper)


class KernelTime(NamedTuple):
    """One kernel (or a fixed sequence of kernels): seconds, useful FLOPs, HBM bytes, what bounds it, and the
    fixed part of the seconds. (An immutable named tuple: kernels are priced per shape, and a tuple is the
    cheapest immutable record to build.)"""

    seconds: float
    flops: float
    bytes: float
    bound: str  # "compute", "memory" or "overhead" (fixed cost dominates)
    fixed_s: float

    def __add__(self, other: KernelTime) -> KernelTime:  # type: ignore[override]  # kernels in sequence
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


@dataclass(frozen=True, slots=True)
class _Consts:
    """The per-GPU numbers every kernel price needs, read once per GPU object (pricing runs per shape)."""

    sms: int
    bw: float  # streaming bandwidth, bytes/s
    need: float  # CTAs that saturate HBM
    launch: float
    split_s: float
    min_k: float
    tile_m: int
    tile_n: int
    quant_wave: float  # seconds per wave of row CTAs of the quantization pass
    per_sm: dict  # compute dtype -> achievable FLOP/s of one SM


_CONSTS: dict[int, tuple[GPU, _Consts]] = {}


def _consts(gpu: GPU) -> _Consts:
    hit = _CONSTS.get(id(gpu))
    if hit is not None and hit[0] is gpu:
        return hit[1]
    eff = gpu.efficiency
    if len(_CONSTS) > 512:  # fits build many GPU copies; keep the table small
        _CONSTS.clear()
    c = _Consts(
        sms=gpu.num_sms,
        bw=gpu.memory_bandwidth_bytes_per_s * eff.memory_max,
        need=gpu.num_sms * eff.saturating_sm_fraction,
        launch=eff.kernel_launch_s,
        split_s=eff.gemm_split_k_s,
        min_k=float(eff.gemm_min_k_per_split),
        tile_m=eff.gemm_tile_m,
        tile_n=eff.gemm_tile_n,
        quant_wave=eff.quant_wave_s * REFERENCE_CLOCK_GHZ / gpu.clock_ghz,
        per_sm={},
    )
    _CONSTS[id(gpu)] = (gpu, c)
    return c


def _per_sm(gpu: GPU, c: _Consts, compute_dtype: str) -> float:
    rate = c.per_sm.get(compute_dtype)
    if rate is None:
        rate = c.per_sm[compute_dtype] = gemm_peak(gpu, compute_dtype) / c.sms
    return rate


def streaming_bandwidth(gpu: GPU) -> float:
    """Bytes/s a memory-bound kernel streams with every SM busy."""
    return _consts(gpu).bw


def active_bandwidth(gpu: GPU, ctas: float) -> float:
    """Streaming bandwidth of a kernel with `ctas` CTAs: full once they cover the saturating share of SMs."""
    c = _consts(gpu)
    return c.bw * min(1.0, ctas / c.need)


def _label(body: float, fixed: float, compute: bool) -> str:
    if fixed > body:
        return "overhead"
    return "compute" if compute else "memory"


def memory_kernel(gpu: GPU, nbytes: float, kernels: float = 1.0) -> KernelTime:
    """`kernels` elementwise kernels that together move `nbytes` of HBM traffic."""
    if nbytes <= 0 and kernels <= 0:
        return ZERO
    c = _consts(gpu)
    fixed = kernels * c.launch
    body = nbytes / c.bw if nbytes > 0 else 0.0
    return KernelTime(fixed + body, 0.0, nbytes, _label(body, fixed, False), fixed)


def quantize_kernel(gpu: GPU, rows: float, k: float, wide: float, narrow: float) -> KernelTime:
    """Activation quantization of `rows` rows of `k` elements from `wide` to `narrow` bytes: one 1024-thread
    CTA per row, QUANT_CTAS_PER_SM per SM, so short rows cost `quant_wave_s` per wave of rows (the wave time
    holds the kernel's own launch), long rows their bytes at the streaming bandwidth after the launch."""
    c = _consts(gpu)
    nbytes = rows * k * (wide + narrow)
    waves = math.ceil(rows / (QUANT_CTAS_PER_SM * c.sms))
    seconds = max(c.launch + nbytes / c.bw, waves * c.quant_wave)
    body = seconds - c.launch
    return KernelTime(seconds, 0.0, nbytes, _label(body, c.launch, False), c.launch)


def _side(dim: float, largest: int) -> int:
    if dim >= largest:
        return largest
    return max(SMALL_TILE, 1 << max(0, math.ceil(dim) - 1).bit_length())


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
    c = _consts(gpu)
    quant = None
    in_bytes = act_bytes
    if compute_dtype in NARROW:
        narrow = bytes_per_element(compute_dtype)
        if act_bytes > narrow:  # dynamic activation quantization before the GEMM: read wide, write narrow
            quant = quantize_kernel(gpu, groups * m, k, act_bytes, narrow)
            in_bytes = narrow
    per_sm = _per_sm(gpu, c, compute_dtype)
    # A locked clock keeps the split the boost clock would choose (cuBLAS's heuristic takes the shape and the
    # architecture, not the current clock): choose at the boost rate, price the choice at this clock below.
    locked = gpu.sm_clock_ghz is not None
    rate = per_sm / gpu.compute_clock_scale if locked else per_sm
    tm, tn = _side(m, c.tile_m), _side(n, c.tile_n)
    tiles = groups * math.ceil(m / tm) * math.ceil(n / tn)
    sms, bw = c.sms, c.bw
    base_bytes = groups * (n * k * weight_bytes + m * k * in_bytes + m * n * act_bytes)
    partial = 2.0 * groups * m * n * PARTIAL_BYTES  # per slice: written by it, read back once
    tile_flops = 2.0 * tm * tn / rate  # seconds per unit of K of one CTA
    # s = 1: output tiles only.
    t_compute = math.ceil(tiles / sms) * tile_flops * k
    t_memory = base_bytes / (bw * min(1.0, tiles / c.need))
    fixed = c.launch
    body = t_compute if t_compute >= t_memory else t_memory
    chosen = (fixed, body, t_compute >= t_memory, base_bytes)
    split = 1
    best = fixed + body
    # Split-K: no split can run faster than perfect waves over the whole K at full bandwidth, and its memory
    # bound grows with s, so the loop stops as soon as that bound reaches the best time found.
    split_fixed = c.launch + c.split_s
    ideal_compute = split_fixed + tiles * tile_flops * k / sms
    longest = k / c.min_k  # most K slices the shape allows
    if ideal_compute < best:
        for s in SPLITS[1:]:
            nbytes = base_bytes + partial * s
            if s > longest or split_fixed + nbytes / bw >= best:
                break
            ctas = tiles * s
            t_compute = math.ceil(ctas / sms) * tile_flops * math.ceil(k / s)
            t_memory = nbytes / (bw * min(1.0, ctas / c.need))
            body = t_compute if t_compute >= t_memory else t_memory
            if split_fixed + body < best:
                best = split_fixed + body
                chosen = (split_fixed, body, t_compute >= t_memory, nbytes)
                split = s
    if locked:
        chosen = _split_price(c, per_sm, split, tiles, tm, tn, k, base_bytes, partial)
    fixed, body, compute, nbytes = chosen
    gemm = KernelTime(fixed + body, 2.0 * groups * m * n * k, nbytes, _label(body, fixed, compute), fixed)
    return gemm + quant if quant is not None else gemm


def _split_price(c: _Consts, per_sm, s, tiles, tm, tn, k, base_bytes, partial) -> tuple:
    """(fixed, body, compute-bound, bytes) of the GEMM as `s` K slices (s = 1: output tiles only)."""
    tile_flops = 2.0 * tm * tn / per_sm
    if s == 1:
        t_compute = math.ceil(tiles / c.sms) * tile_flops * k
        t_memory = base_bytes / (c.bw * min(1.0, tiles / c.need))
        body = t_compute if t_compute >= t_memory else t_memory
        return c.launch, body, t_compute >= t_memory, base_bytes
    nbytes = base_bytes + partial * s
    ctas = tiles * s
    t_compute = math.ceil(ctas / c.sms) * tile_flops * math.ceil(k / s)
    t_memory = nbytes / (c.bw * min(1.0, ctas / c.need))
    body = t_compute if t_compute >= t_memory else t_memory
    return c.launch + c.split_s, body, t_compute >= t_memory, nbytes
