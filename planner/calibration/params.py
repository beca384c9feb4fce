"""The global parameters a serving calibration may fit, their physical bounds, and the calibration they make.

* `per_iteration_s`, `per_sequence_s` — the engine's un-overlapped CPU time per step and per running sequence
  per step (simulator/costmodel/host.py; the catalog figures are partly assumed, which is what a fit replaces);
* `frontend_s` — the per-request HTTP + tokenizer time before the engine sees a request (host.py), on TTFT/E2E;
* `compute_scale` — one multiplier on the compute-bound efficiencies of the GPU (GEMM `gemm_max`,
  `gemm_fp8_max`, flash-attention `attention_max`), at most 1/the largest of them so none exceeds 1;
* `memory_scale` — one multiplier on `memory_max` (HBM efficiency of memory-bound kernels), so that it stays
  at most 0.95 of the datasheet bandwidth (streaming kernels reach 80–90 %, data/reference/hardware.md).

`DEFAULT_FIT` leaves out two of them, for reasons measured by the recovery benchmark
(bench/bench_calibrate_recovery.py; README, "From plan to deployment"): `per_sequence_s` adds a few µs per
running sequence to a step of several ms, so at benchmark batch sizes the runs barely depend on it (fitted, it came
out at 2.6× its true value with the same error); `memory_scale` adds to every decode step as `per_iteration_s`
does (fitted together they came out at ×0.92 and 0.70× the truth with the same error), and is better fitted on
kernel times (`apex calibrate data/reference/kernels.yaml`). Either can be asked for with `--fit`.

The starting point (the "before" of every report) is the scenario's own model: its calibration file's values
where it names one, else the catalog's.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.costmodel.calibration import Calibration, host_overhead
from simulator.errors import InputError
from simulator.hardware import GPU

COMPUTE_FIELDS = ("gemm_max", "gemm_fp8_max", "attention_max")
MEMORY_FIELD = "memory_max"
MEMORY_CEILING = 0.95
# Finite-difference steps (fit.py): large enough to move a run's rows by a few per cent, well above the
# jumps they make when requests change engine steps; a step of 0.25 ms is ~3 % of a decode step of a small model,
# 0.25 ms / 64 the same at 64 running sequences, 5 % of an efficiency ~5 % of a prefill.
STEP_S = 0.25e-3
STEP_SCALE = 0.05


@dataclass(frozen=True)
class FitParam:
    """One fitted parameter; the optimizer works on value / unit, so its relative finite-difference steps are
    steps relative to the value (fit.py)."""

    name: str
    lower: float
    upper: float
    unit: float  # 1e-3: the optimizer sees milliseconds; 1 for the multipliers
    shown: str  # how tables print a value in units, e.g. "{:.3f} ms"
    step: float = 0.0  # finite-difference step, in the parameter's own units (fit.py)

    def to_x(self, value: float) -> float:
        return value / self.unit

    def from_x(self, x: float) -> float:
        return x * self.unit

    def bounds_x(self) -> tuple[float, float]:
        return self.to_x(self.lower), self.to_x(self.upper)

    def show(self, value: float) -> str:
        return self.shown.format(value / self.unit)


HOST_PARAMS = ("per_iteration_s", "per_sequence_s", "frontend_s")
NAMES = (*HOST_PARAMS, "compute_scale", "memory_scale")
DEFAULT_FIT = ("per_iteration_s", "frontend_s", "compute_scale")  # module docstring


@dataclass(frozen=True)
class Prior:
    """The model the fit starts from: the GPU (with the scenario's calibration applied), the engine kind and
    its host figures, and the scenario's calibration overrides to keep."""

    gpu: GPU
    engine: str
    overrides: dict[str, float]
    host: dict[str, float]  # HOST_PARAMS -> seconds

    @staticmethod
    def of(gpu: GPU, engine: str, calibration: Calibration | None) -> Prior:
        figures = host_overhead(engine, calibration)
        overrides = dict(calibration.overrides) if calibration is not None else {}
        efficiency = gpu.efficiency.model_copy(update=overrides)
        return Prior(
            gpu=gpu.model_copy(update={"efficiency": efficiency}),
            engine=engine,
            overrides=overrides,
            host={k: float(getattr(figures, k)) for k in HOST_PARAMS},
        )

    def params(self, names) -> list[FitParam]:
        """The FitParams of `names`, with the multipliers' upper bounds from this GPU's efficiencies."""
        eff = self.gpu.efficiency
        compute = max(v for v in (getattr(eff, f) for f in COMPUTE_FIELDS) if v is not None)
        table = {
            "per_iteration_s": FitParam("per_iteration_s", 0.0, 20e-3, 1e-3, "{:.3f} ms", STEP_S),
            "per_sequence_s": FitParam("per_sequence_s", 0.0, 200e-6, 1e-6, "{:.2f} µs", STEP_S / 64),
            "frontend_s": FitParam("frontend_s", 0.0, 0.5, 1e-3, "{:.2f} ms", STEP_S),
            "compute_scale": FitParam("compute_scale", 0.2, 1.0 / compute, 1.0, "×{:.3f}", STEP_SCALE),
            "memory_scale": FitParam(
                "memory_scale", 0.3, MEMORY_CEILING / eff.memory_max, 1.0, "×{:.3f}", STEP_SCALE
            ),
        }
        unknown = [n for n in names if n not in table]
        if unknown:
            raise InputError(
                f"unknown parameter {', '.join(unknown)}; expected some of: {', '.join(NAMES)}", field="--fit"
            )
        return [table[n] for n in names]

    def start(self, name: str) -> float:
        """The prior value of one parameter (multipliers start at 1)."""
        return self.host[name] if name in HOST_PARAMS else 1.0

    def calibration(self, values: dict[str, float], *, frontend: bool = True) -> Calibration:
        """The calibration of these parameter values (the prior for the rest); `frontend=False` leaves the
        frontend at 0 (the fit adds it to TTFT itself: it is a translation of the run, costmodel/host.py)."""
        eff = self.gpu.efficiency
        overrides = dict(self.overrides)
        scale = values.get("compute_scale", 1.0)
        for name in COMPUTE_FIELDS:
            base = getattr(eff, name)
            if base is not None:
                overrides[name] = min(base * scale, 1.0)
        overrides[MEMORY_FIELD] = min(eff.memory_max * values.get("memory_scale", 1.0), 1.0)
        host = {k: values.get(k, self.host[k]) for k in HOST_PARAMS}
        if not frontend:
            host["frontend_s"] = 0.0
        return Calibration(gpu=self.gpu.name, overrides=overrides, engine=self.engine, host=host)
