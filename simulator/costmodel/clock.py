"""A GPU at a locked SM clock (`nvidia-smi -lgc`): what gets slower and what draws less power (docs/design.md §3.1).

Time. Tensor throughput is a fixed number of FLOPs per SM per cycle (NVIDIA A100/H100 whitepapers: 2048 / 4096
dense FP16 FLOPs per SM per clock, e.g. 108 SMs x 2048 x 1.41 GHz = 312 TFLOP/s), so the peaks fall in
proportion to the clock below the clock they are quoted at (`GPU.peak_clock_ghz`: 1.83 GHz on H100/H200 SXM,
132 x 4096 x 1.83 GHz = 989 TFLOP/s). Latency-bound parts already run in SM cycles (decode-attention CTA chains,
the quantization wave, NCCL's protocol latencies: they scale with `GPU.clock_ghz`). HBM bandwidth does not move:
the memory clock is separate (`nvidia-smi -lgc` locks the graphics clock only; `-lmc` is the memory clock), and
memory-bound decode keeps its throughput under clock locking (Ma et al. 2026, "The Illusion of Power Capping in
LLM Decode", arXiv:2605.11999: H200 decode recovers up to 32% of its energy "at minimal throughput loss";
Maliakel et al. 2025, arXiv:2501.08219: decode "largely insensitive to GPU frequency"). Kernel launch floors
are kept as they are (host-side launch; no public per-clock figure). A GEMM keeps the split-K factor the boost
clock chooses (cuBLAS's heuristic takes the shape and architecture, not the clock; `kernels.gemm_kernel`), so an
iteration's FLOPs and bytes do not move with the clock — which keeps the planner's energy bounds provable
(`planner/search/bounds.energy_corner_factor`).

Power. CMOS dynamic energy per operation is C·V², and over the DVFS range the voltage rises with the clock,
so energy per operation on the SM side scales as (f / f_max)^2 (`VOLTAGE_EXPONENT`; dynamic power C·V²·f ∝
f^3). Memory-bound work also spends energy in HBM and its PHY, which do not see the SM clock: a share
`MEMORY_CLOCK_INDEPENDENT_SHARE` of the per-byte energy stays, the rest scales like the SM side. Idle power
stays. The share is fitted (`fit_memory_share`, scipy least squares on the log of the power ratio) on
data/reference/dvfs.yaml — published H100 and A100 clock sweeps of LLaMA inference — leaving one GPU out:
README 'Accuracy' gives the held-out errors. Energy coefficients at the default clock are unchanged
(`energy.energy_coefficients`).

The model is fitted on clocks down to 0.52 of the maximum, so clocks below `MIN_CLOCK_FRACTION` of the boost
clock are refused rather than extrapolated (`GPU.at_clock`, which also checks the range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from simulator.hardware import GPU, MIN_CLOCK_FRACTION
from simulator.yamlio import read_yaml

__all__ = ["MIN_CLOCK_FRACTION", "clock_levels_mhz", "energy_scales", "fit_memory_share"]

VOLTAGE_EXPONENT = 2.0  # energy per SM-side operation ∝ V², V ∝ f over the DVFS range (CMOS P = C·V²·f)
# Fitted by `fit_memory_share()` on both points of data/reference/dvfs.yaml (tests/simulator/costmodel/test_clock.py
# checks the constant against the fit).
MEMORY_CLOCK_INDEPENDENT_SHARE = 0.732
CLOCK_STEP_MHZ = (
    15  # A100/H100 supported graphics clocks are 15 MHz apart (e.g. 61 clocks 510-1410 MHz on A100)
)
# Clocks the planner may choose per template, as fractions of the boost clock (a choice of grid, not hardware).
PLANNER_CLOCK_FRACTIONS = (1.0, 0.85, 0.7, 0.55)


def clock_ratio(gpu: GPU) -> float:
    """SM clock / boost clock (1 at the default clock)."""
    if gpu.sm_clock_ghz is None or gpu.boost_clock_ghz is None:
        return 1.0
    return gpu.sm_clock_ghz / gpu.boost_clock_ghz


def energy_scales(gpu: GPU) -> tuple[float, float]:
    """(per-FLOP, per-byte) dynamic energy at the GPU's clock / at its boost clock."""
    sm = clock_ratio(gpu) ** VOLTAGE_EXPONENT
    share = MEMORY_CLOCK_INDEPENDENT_SHARE
    return sm, share + (1.0 - share) * sm


def clock_levels_mhz(gpu: GPU) -> tuple[int | None, ...]:
    """The clocks the planner tries for a template on this GPU: None (the default boost clock) and the lower
    `PLANNER_CLOCK_FRACTIONS` of the boost clock, on the 15 MHz grid; just (None,) without a boost clock."""
    span = gpu.clock_range_mhz
    if span is None:
        return (None,)
    lo, hi = span
    out: list[int | None] = [None]
    for frac in PLANNER_CLOCK_FRACTIONS[1:]:
        mhz = max(lo, int(hi * frac) // CLOCK_STEP_MHZ * CLOCK_STEP_MHZ)
        if mhz < hi and mhz not in out:
            out.append(mhz)
    return tuple(out)


# ---- the fit of MEMORY_CLOCK_INDEPENDENT_SHARE -------------------------------------------------------------


@dataclass(frozen=True)
class DVFSPoint:
    """One published clock change of a memory-bound workload: energy and time ratios (to / from)."""

    gpu: str
    max_clock_mhz: float
    from_clock_mhz: float
    to_clock_mhz: float
    energy_ratio: float
    time_ratio: float
    idle_share: float

    @property
    def power_ratio(self) -> float:
        return self.energy_ratio / self.time_ratio


def memory_bound_power_ratio(point: DVFSPoint, share: float) -> float:
    """The model's board-power ratio (to / from) of memory-saturated work: idle + dynamic × per-byte scale,
    the dynamic part drawing the rest of the board power at the top clock (energy.py's rule)."""

    def power(mhz: float) -> float:
        sm = (mhz / point.max_clock_mhz) ** VOLTAGE_EXPONENT
        return point.idle_share + (1.0 - point.idle_share) * (share + (1.0 - share) * sm)

    return power(point.to_clock_mhz) / power(point.from_clock_mhz)


@dataclass(frozen=True)
class ShareFit:
    share: float
    fitted_on: tuple[str, ...]
    errors: dict[str, float]  # gpu -> predicted / measured power ratio - 1, on points not fitted


def load_dvfs_points(path: str | Path) -> list[DVFSPoint]:
    """The points of a DVFS reference file (data/reference/dvfs.yaml)."""
    fields = DVFSPoint.__dataclass_fields__
    return [DVFSPoint(**{k: p[k] for k in fields}) for p in read_yaml(path)["points"]]


def fit_memory_share(points: list[DVFSPoint], fit_on: tuple[str, ...] | None = None) -> ShareFit:
    """Least-squares fit of the clock-independent share on the log power ratios of the `fit_on` GPUs' points
    (all by default); the error is reported on the others."""
    from scipy.optimize import least_squares  # lazy: scipy's import is slow and only the fit needs it

    chosen = [p for p in points if fit_on is None or p.gpu in fit_on]
    held = [p for p in points if p not in chosen]

    def residuals(x):
        return [math.log(memory_bound_power_ratio(p, x[0]) / p.power_ratio) for p in chosen]

    share = float(least_squares(residuals, [0.5], bounds=([0.0], [1.0])).x[0])
    errors = {p.gpu: memory_bound_power_ratio(p, share) / p.power_ratio - 1.0 for p in held}
    return ShareFit(share, tuple(p.gpu for p in chosen), errors)
