"""Kernel-level pricing of GEMMs, grouped (MoE) GEMMs and memory-bound kernels (docs/design.md §3.1).

Every kernel pays a fixed `kernel_launch_s` (launch, prologue, epilogue, tail) and then runs its body at the
slower of compute and HBM streaming:

* **Compute**: the output is cut into tiles (the row/column tile is the next power of two of m/n between 16 and
  `gemm_tile_m`/`gemm_tile_n`), each CTA computes one tile over a K slice at `peak x gemm_max / num_sms`, and
  the CTAs run in waves over the SMs. Two decompositions are compared and the faster kept, as cuBLAS / CUTLASS
  heuristics do: output tiles only, or split-K (K cut into s slices of at least `gemm_min_k_per_split`, which
  fills the machine when there are few output tiles; it pays `gemm_split_k_s` and the fp32 partial sums).
  Every split of `SPLITS` that K allows is priced over per-GPU constants read once (`_consts`), stopping at
  an exact lower bound; a closed-form choice misses the wave-quantization optimum (144 tiles on 132 SMs: s=2
  runs 3 waves of K/2, faster than 2 waves of K), so none is used.
* **Memory**: bytes / the streaming bandwidth `memory_max x datasheet` (the fraction serving kernels reach,
  fitted per generation), scaled down when fewer CTAs run than `saturating_sm_fraction` of the SMs.
* **FP8 / INT8 GEMMs** run at `gemm_fp8_max` of their own peak, and when the activations arrive in a wider
  format they first pay an activation-quantization pass: read rows x K, write them narrow, one CTA of 1024
  threads per row (vLLM's scaled_fp8_quant: `grid(num_tokens), block(1024)`), so two CTAs per SM and
  `quant_wave_s` per wave of 2 x SMs rows when the rows are many and short.

Pure functions of (shape, GPU); `KernelTime.fixed_s` is the part that does not shrink with the work. Each
formula is written once over a backend (`arrays.py`): `gemm_kernel` prices one shape in floats, `gemm_times`
also every shape of arrays with numpy, to the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from simulator.costmodel.arrays import FLOATS, backend, floats, full_like
from simulator.dtypes import bytes_per_element
from simulator.hardware import GPU, REFERENCE_CLOCK_GHZ

SMALL_TILE = 16  # smallest tensor-core tile side (mma m16 on Ampere/Hopper; wgmma n8..256)
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)  # split-K factors cuBLAS / CUTLASS heuristics choose among
PARTIAL_BYTES = 4.0  # split-K partial sums are fp32, written by every slice and read back once
NARROW = frozenset({"fp8", "int8", "fp4"})  # formats whose GEMMs need quantized activations
QUANT_CTAS_PER_SM = 2  # 1024-thread CTAs per SM (2048 resident threads on Ampere and Hopper)
BOUNDS = ("memory", "compute", "overhead", "network")  # what bounds a kernel; `KernelTimes.bound` indexes it
MEMORY, COMPUTE, OVERHEAD, NETWORK = range(len(BOUNDS))


class KernelTime(NamedTuple):
    """One kernel (or a fixed sequence of kernels): seconds, useful FLOPs, HBM bytes, what bounds it, and the
    fixed part of the seconds. (An immutable named tuple: kernels are priced per shape, and a tuple is the
    cheapest immutable record to build.)"""

    seconds: float
    flops: float
    bytes: float
    bound: str  # "compute", "memory" or "overhead" (fixed cost dominates)
    fixed_s: float


ZERO = KernelTime(0.0, 0.0, 0.0, "memory", 0.0)


class KernelTimes(NamedTuple):
    """Kernels as the formulas compute them: the fields of `KernelTime`, each a float or (one element per
    shape) an array, with `bound` an index into BOUNDS."""

    seconds: float | np.ndarray
    flops: float | np.ndarray
    bytes: float | np.ndarray
    bound: int | np.ndarray
    fixed_s: float | np.ndarray

    def __add__(self, other: KernelTimes) -> KernelTimes:  # type: ignore[override]  # kernels in sequence
        xp = backend(self.seconds, other.seconds)
        mine = self.seconds - self.fixed_s >= other.seconds - other.fixed_s  # whose body is the larger
        return KernelTimes(
            self.seconds + other.seconds,
            self.flops + other.flops,
            self.bytes + other.bytes,
            xp.where(mine, self.bound, other.bound),
            self.fixed_s + other.fixed_s,
        )

    def times(self, count: float) -> KernelTimes:
        """The same kernels run `count` times (once per layer)."""
        return KernelTimes(
            self.seconds * count, self.flops * count, self.bytes * count, self.bound, self.fixed_s * count
        )

    def kernel_time(self) -> KernelTime:
        """A KernelTime of floats (fields of one shape)."""
        return KernelTime(
            float(self.seconds),
            float(self.flops),
            float(self.bytes),
            BOUNDS[int(self.bound)],
            float(self.fixed_s),
        )


_NONE = KernelTimes(0.0, 0.0, 0.0, MEMORY, 0.0)  # no kernel at all (one shape)


def zeros(shape: tuple, bound: int = MEMORY) -> KernelTimes:
    """No kernels (nothing to do) for every shape of an array."""
    return KernelTimes(
        np.zeros(shape), np.zeros(shape), np.zeros(shape), np.full(shape, bound), np.zeros(shape)
    )


def labels(xp, body, fixed, compute):
    """BOUNDS index of each kernel: overhead when its fixed part exceeds its body, else compute or memory."""
    return xp.where(fixed > body, OVERHEAD, xp.where(compute, COMPUTE, MEMORY))


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


def memory_times(gpu: GPU, nbytes, kernels: float = 1.0) -> KernelTimes:
    """`kernels` elementwise kernels that together move `nbytes` (a float, or an array of sizes) of HBM
    traffic."""
    xp = backend(nbytes)
    c = _consts(gpu)
    fixed = full_like(nbytes, kernels * c.launch)
    body = xp.where(nbytes > 0, nbytes / c.bw, 0.0)
    return KernelTimes(fixed + body, full_like(nbytes, 0.0), nbytes, labels(xp, body, fixed, False), fixed)


def memory_kernel(gpu: GPU, nbytes: float, kernels: float = 1.0) -> KernelTime:
    """`memory_times` of one size."""
    if nbytes <= 0 and kernels <= 0:
        return ZERO
    return memory_times(gpu, float(nbytes), kernels).kernel_time()


def quantize_times(gpu: GPU, rows, k, wide: float, narrow: float) -> KernelTimes:
    """Activation quantization of `rows` rows of `k` elements from `wide` to `narrow` bytes: one 1024-thread
    CTA per row, QUANT_CTAS_PER_SM per SM, so short rows cost `quant_wave_s` per wave of rows (the wave time
    holds the kernel's own launch), long rows their bytes at the streaming bandwidth after the launch."""
    xp = backend(rows, k)
    c = _consts(gpu)
    nbytes = rows * k * (wide + narrow)
    waves = xp.ceil(rows / (QUANT_CTAS_PER_SM * c.sms))
    seconds = xp.maximum(c.launch + nbytes / c.bw, waves * c.quant_wave)
    body = seconds - c.launch
    fixed = full_like(seconds, c.launch)
    return KernelTimes(seconds, full_like(seconds, 0.0), nbytes, labels(xp, body, fixed, False), fixed)


def quantize_kernel(gpu: GPU, rows: float, k: float, wide: float, narrow: float) -> KernelTime:
    """`quantize_times` of one shape."""
    return quantize_times(gpu, float(rows), float(k), wide, narrow).kernel_time()


def _sides(xp, dim, largest: int):
    """Tile side along `dim`: the next power of two of ceil(dim), between SMALL_TILE and `largest`."""
    power = xp.ldexp(1.0, xp.frexp(xp.maximum(xp.ceil(dim) - 1.0, 0.0))[1])  # 2 ** bit_length(ceil(dim) - 1)
    return xp.where(dim >= largest, float(largest), xp.maximum(float(SMALL_TILE), power))


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
    return gemm_times(
        gpu, float(m), float(n), float(k), weight_bytes, act_bytes, compute_dtype, float(groups)
    ).kernel_time()


# One-shape GEMM prices keyed by the GPU's id (checked by identity: a GPU is immutable) and the shape: the
# planner prices the same projections at the same row counts across many templates and bound corners, and the
# float formula (~15 us) costs far more than a lookup.
_SINGLE: dict[tuple, tuple[GPU, KernelTimes]] = {}
SINGLE_CACHE_SIZE = 1 << 17


def clear_gemm_cache() -> None:
    """Forget the one-shape GEMM prices (`clear_price_caches` calls it for a cold start)."""
    _SINGLE.clear()


def gemm_times(gpu: GPU, m, n, k, weight_bytes: float, act_bytes: float, compute_dtype: str, groups=1.0):
    """`gemm_kernel` as `KernelTimes`: of one shape when m, n, k and groups are floats, of every shape when
    any is an array (they broadcast together). Nothing where a size is not positive."""
    if backend(m, n, k, groups) is FLOATS:
        if m <= 0 or n <= 0 or k <= 0 or groups <= 0:
            return _NONE
        key = (id(gpu), m, n, k, weight_bytes, act_bytes, compute_dtype, groups)
        hit = _SINGLE.get(key)
        if hit is not None and hit[0] is gpu:
            return hit[1]
        if len(_SINGLE) >= SINGLE_CACHE_SIZE:
            _SINGLE.clear()
        priced = _gemm(FLOATS, gpu, m, n, k, weight_bytes, act_bytes, compute_dtype, groups)
        _SINGLE[key] = (gpu, priced)
        return priced
    m, n, k, groups = floats(m), floats(n), floats(k), floats(groups)  # broadcast where the formulas meet
    live = (m > 0) & (n > 0) & (k > 0) & (groups > 0)
    if live.all():
        return _gemm(np, gpu, m, n, k, weight_bytes, act_bytes, compute_dtype, groups)
    m, n, k, groups = (np.broadcast_to(a, live.shape)[live] for a in (m, n, k, groups))
    out = zeros(live.shape)
    if live.any():
        priced = _gemm(np, gpu, m, n, k, weight_bytes, act_bytes, compute_dtype, groups)
        for whole, part in zip(out, priced, strict=True):
            whole[live] = part
    return out


def _gemm(xp, gpu, m, n, k, weight_bytes, act_bytes, compute_dtype, groups) -> KernelTimes:
    """The GEMM formula on backend xp, for positive sizes."""
    c = _consts(gpu)
    quant = None
    in_bytes = act_bytes
    if compute_dtype in NARROW:
        narrow = bytes_per_element(compute_dtype)
        if act_bytes > narrow:  # dynamic activation quantization before the GEMM: read wide, write narrow
            quant = quantize_times(gpu, groups * m, k, act_bytes, narrow)
            in_bytes = narrow
    per_sm = _per_sm(gpu, c, compute_dtype)
    tm, tn = _sides(xp, m, c.tile_m), _sides(xp, n, c.tile_n)
    tiling = _Tiling(
        tiles=groups * xp.ceil(m / tm) * xp.ceil(n / tn),
        tm=tm,
        tn=tn,
        k=k,
        base_bytes=groups * (n * k * weight_bytes + m * k * in_bytes + m * n * act_bytes),
        partial=2.0 * groups * m * n * PARTIAL_BYTES,  # per slice: written by it, read back once
    )
    # A locked clock keeps the split the boost clock would choose (cuBLAS's heuristic takes the shape and the
    # architecture, not the current clock): choose at the boost rate, price the choice at this clock.
    locked = gpu.sm_clock_ghz is not None
    split, chosen = _fastest_split(xp, c, per_sm / gpu.compute_clock_scale if locked else per_sm, tiling)
    fixed, body, compute, nbytes = _split_prices(xp, c, per_sm, split, tiling) if locked else chosen
    gemm = KernelTimes(
        fixed + body, 2.0 * groups * m * n * k, nbytes, labels(xp, body, fixed, compute), fixed
    )
    return gemm + quant if quant is not None else gemm


class _Tiling(NamedTuple):
    """Per shape: output tiles, tile sides, K, the bytes of output tiles only, the fp32 partial sums a K slice
    adds."""

    tiles: float | np.ndarray
    tm: float | np.ndarray
    tn: float | np.ndarray
    k: float | np.ndarray
    base_bytes: float | np.ndarray
    partial: float | np.ndarray


def _split_prices(xp, c: _Consts, per_sm: float, s, g: _Tiling) -> tuple:
    """(fixed, body, compute-bound, bytes) of the GEMMs as s K slices (s = 1: output tiles only; s > 1 pays
    `gemm_split_k_s` and the fp32 partial sums) at `per_sm` FLOP/s per SM; `s` one split, or one per shape."""
    one = s == 1.0
    tile_flops = 2.0 * g.tm * g.tn / per_sm  # seconds per unit of K of one CTA
    nbytes = xp.where(one, g.base_bytes, g.base_bytes + g.partial * s)
    ctas = g.tiles * s
    t_compute = xp.ceil(ctas / c.sms) * tile_flops * xp.where(one, g.k, xp.ceil(g.k / s))
    t_memory = nbytes / (c.bw * xp.minimum(1.0, ctas / c.need))
    fixed = full_like(t_compute, c.launch) + xp.where(one, 0.0, c.split_s)
    return fixed, xp.maximum(t_compute, t_memory), t_compute >= t_memory, nbytes


def _fastest_split(xp, c: _Consts, per_sm: float, g: _Tiling) -> tuple:
    """(split, its `_split_prices`) of each shape: the split of SPLITS it runs fastest at (the smallest among
    equals) at `per_sm` FLOP/s per SM. Every split K allows (slices of at least `gemm_min_k_per_split`) is
    priced, in order, while it can still win: no split runs faster than perfect waves over the whole K, nor
    than its bytes at full bandwidth, which grow with s."""
    chosen = _split_prices(xp, c, per_sm, 1.0, g)
    best = chosen[0] + chosen[1]
    split = full_like(best, 1.0)
    split_fixed = c.launch + c.split_s
    ideal = split_fixed + g.tiles * (2.0 * g.tm * g.tn / per_sm) * g.k / c.sms
    longest = g.k / c.min_k  # most K slices the shape allows
    for s in SPLITS[1:]:
        hopeful = (
            (longest >= s) & (ideal < best) & (split_fixed + (g.base_bytes + g.partial * s) / c.bw < best)
        )
        if not xp.any(hopeful):
            break
        price = _split_prices(xp, c, per_sm, float(s), g)
        time = price[0] + price[1]
        better = hopeful & (time < best)
        if xp is FLOATS:  # one shape: keep the better split as it is (the same choice, without selects)
            if better:
                best, split, chosen = time, float(s), price
            continue
        best = xp.where(better, time, best)
        split = xp.where(better, float(s), split)
        chosen = tuple(xp.where(better, new, old) for new, old in zip(price, chosen, strict=True))
    return split, chosen
