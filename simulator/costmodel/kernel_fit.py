"""Fit the kernel coefficients to measured kernel times, and report them on the GPUs left out of the fit.

Input: a kernel-times YAML (format of data/reference/kernels.yaml: `points`, each with `op` in gemm /
all_reduce / context_attention / generation_attention, `gpu`, its shape fields and `latency_ms`).

`fit_kernels(path, gpu)` fits `KERNEL_FIT_PARAMS` — global, physically meaningful coefficients (launch
floors, split-K cost, achieved HBM fraction, NCCL latency and bus scales, flash-attention ramps,
attention floors) — on the points of `gpu` only, by `scipy.optimize.least_squares` (bounded, log-parameters,
robust soft-L1 loss on log(predicted / measured)). Every other GPU in the file is then predicted with *its own*
datasheet numbers (peaks, bandwidth, SMs, clock, published best-shape GEMM and flash-attention efficiencies)
and the fitted coefficients: the leave-one-GPU-out error, per op kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from simulator.errors import InputError
from simulator.hardware import GPU

# (GPUEfficiency field, prior, lower bound, upper bound). The priors are physics-level round numbers, never a
# fit (so the fit on one GPU starts from nothing measured on another); a weak ridge (PRIOR_WEIGHT per log-unit)
# keeps a coefficient the data cannot see (e.g. the head-dim ramp on a GPU measured at one head dim) at it.
KERNEL_FIT_PARAMS: tuple[tuple[str, float, float, float], ...] = (
    ("kernel_launch_s", 2.5e-6, 0.5e-6, 10e-6),  # ~2-3 us: CUDA launch + a minimal kernel
    ("gemm_split_k_s", 2.5e-6, 0.1e-6, 10e-6),  # one more kernel-sized pass
    ("memory_max", 0.85, 0.3, 0.95),  # HBM streaming reaches 80-90% of datasheet in microbenchmarks
    ("saturating_sm_fraction", 0.1, 0.01, 1.0),
    ("collective_latency_scale", 1.0, 0.2, 5.0),  # NCCL's own latency table
    ("collective_bus_scale", 1.0, 0.3, 1.2),  # the fabric's nccl-tests bus efficiency
    ("collective_half_bytes", 1e6, 1e5, 1e8),
    ("attention_fill_tokens", 256.0, 8.0, 8192.0),  # two key blocks of 128
    ("attention_head_dim_half", 64.0, 4.0, 1024.0),
    ("attention_prefill_floor_s", 10e-6, 1e-6, 50e-6),
    ("attention_decode_floor_s", 10e-6, 1e-6, 50e-6),
    ("attention_decode_cta_s", 4e-6, 0.1e-6, 20e-6),  # a few dependent ~1 us global-memory round trips
    ("attention_decode_row_s", 1e-7, 1e-9, 2e-6),
    ("quant_wave_s", 2e-6, 0.2e-6, 10e-6),  # a CTA launch + one dependent HBM load and store (~1 us each)
)
PRIOR_WEIGHT = 0.03
OPS = ("gemm", "all_reduce", "context_attention", "generation_attention")
FIELDS = {
    "gemm": ("m", "n", "k", "dtype"),
    "all_reduce": ("num_gpus", "elements"),
    "context_attention": ("batch", "seq_len", "cached_tokens", "num_heads", "num_kv_heads", "head_dim"),
    "generation_attention": ("batch", "kv_len", "num_heads", "num_kv_heads", "head_dim"),
}
ELEMENT_BYTES = 2  # all-reduce points count bf16 elements


@dataclass(frozen=True)
class KernelPoint:
    op: str
    gpu: str
    dtype: str
    shape: dict
    seconds: float

    @property
    def kind(self) -> str:
        """Op kind of the report: gemm split by dtype, the others as they are."""
        return f"gemm_{self.dtype}" if self.op == "gemm" else self.op


@dataclass
class KernelFit:
    gpu: str
    params: dict[str, float]
    defaults: dict[str, float]
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # gpu -> kind -> MdAPE (fraction)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    data: str = ""
    method: str = ""

    def held_out(self) -> dict[str, dict[str, float]]:
        return {g: e for g, e in self.errors.items() if g != self.gpu}


def load_kernel_points(path: str | Path) -> list[KernelPoint]:
    """The points of a kernel-times file, each checked: op, gpu, shape fields and a positive latency."""
    from simulator.yamlio import read_yaml

    doc = read_yaml(path)
    points = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(points, list) or not points:
        raise InputError("expected a non-empty 'points' list", file=str(path), field="points")
    out = []
    for i, p in enumerate(points):
        where = f"points[{i}]"
        if not isinstance(p, dict):
            raise InputError("expected a mapping", file=str(path), field=where)
        op = p.get("op")
        if op not in OPS:
            raise InputError(f"op {op!r} is not one of {', '.join(OPS)}", file=str(path), field=f"{where}.op")
        for key in ("gpu", "latency_ms", *FIELDS[op]):
            if key not in p:
                raise InputError(f"missing {key!r}", file=str(path), field=f"{where}.{key}")
        value = p["latency_ms"]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise InputError(
                f"latency_ms must be a positive number of milliseconds, got {value!r}",
                file=str(path),
                field=f"{where}.latency_ms",
            )
        shape = {k: p[k] for k in FIELDS[op] if k != "dtype"}
        for k, v in shape.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(
                    f"{k} must be a non-negative integer, got {v!r}", file=str(path), field=f"{where}.{k}"
                )
        out.append(KernelPoint(op, str(p["gpu"]), str(p.get("dtype", "bf16")), shape, value * 1e-3))
    return out


def predict(point: KernelPoint, gpu: GPU) -> float:
    """Seconds the cost model gives the point on `gpu` (its catalog scale-up fabric for collectives)."""
    from simulator import cost

    s = point.shape
    if point.op == "gemm":
        return cost.gemm_time(gpu, s["m"], s["n"], s["k"], point.dtype)
    if point.op == "all_reduce":
        return cost.all_reduce_time(gpu, s["num_gpus"], s["elements"] * ELEMENT_BYTES)
    if point.op == "context_attention":
        return cost.attention_prefill_time(
            gpu,
            s["batch"],
            s["seq_len"],
            s["cached_tokens"],
            s["num_heads"],
            s["num_kv_heads"],
            s["head_dim"],
        )
    return cost.attention_decode_time(
        gpu, s["batch"], s["kv_len"], s["num_heads"], s["num_kv_heads"], s["head_dim"]
    )


def with_coefficients(gpu: GPU, values: dict[str, float]) -> GPU:
    return gpu.model_copy(update={"efficiency": gpu.efficiency.model_copy(update=values)})


def mdape_by_kind(points: list[KernelPoint], gpu: GPU) -> tuple[dict[str, float], dict[str, int]]:
    errs: dict[str, list[float]] = {}
    for p in points:
        errs.setdefault(p.kind, []).append(abs(predict(p, gpu) / p.seconds - 1.0))
    return {k: median(v) for k, v in sorted(errs.items())}, {k: len(v) for k, v in sorted(errs.items())}


def fit_kernels(path: str | Path, gpu: str | GPU) -> KernelFit:
    """Fit KERNEL_FIT_PARAMS on `gpu`'s points of the file; MdAPE per op kind on it and on every other GPU."""
    import numpy as np
    from scipy.optimize import least_squares

    from simulator import catalog

    base = catalog.get_gpu(gpu) if isinstance(gpu, str) else gpu
    points = load_kernel_points(path)
    mine = [p for p in points if p.gpu == base.name]
    if not mine:
        raise InputError(
            f"no points for GPU {base.name!r} (the file has {sorted({p.gpu for p in points})})",
            file=str(path),
            field="points[].gpu",
        )
    names = [n for n, _, _, _ in KERNEL_FIT_PARAMS]
    defaults = {n: float(getattr(base.efficiency, n)) for n in names}
    lo = np.log([lb for _, _, lb, _ in KERNEL_FIT_PARAMS])
    hi = np.log([ub for _, _, _, ub in KERNEL_FIT_PARAMS])
    x0 = np.log([prior for _, prior, _, _ in KERNEL_FIT_PARAMS])
    measured = np.log([p.seconds for p in mine])

    def values(x) -> dict[str, float]:
        return {n: float(math.exp(v)) for n, v in zip(names, x, strict=True)}

    def residuals(x):
        g = with_coefficients(base, values(x))
        data = np.log([predict(p, g) for p in mine]) - measured
        return np.concatenate([data, PRIOR_WEIGHT * (x - x0)])

    sol = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, diff_step=1e-3)
    params = values(sol.x)
    fit = KernelFit(
        base.name,
        params,
        defaults,
        data=str(path),
        method=(
            f"scipy.optimize.least_squares (trf, bounded log-parameters from physics priors, soft-L1 loss, f_scale "
            f"0.1, ridge {PRIOR_WEIGHT} to the priors) on log(predicted/measured) over the {len(mine)} points of "
            f"{base.name}; other GPUs predicted with their "
            "own catalog datasheet figures and these coefficients (leave-one-GPU-out)"
        ),
    )
    for name in sorted({p.gpu for p in points}):
        target = base if name == base.name else catalog.get_gpu(name)
        subset = [p for p in points if p.gpu == name]
        fit.errors[name], fit.counts[name] = mdape_by_kind(subset, with_coefficients(target, params))
    return fit


def transfer_errors(
    path: str | Path, fitted: KernelFit, target: KernelFit, own: tuple[str, ...] = ("memory_max",)
) -> dict[str, float]:
    """Diagnosis, not a held-out figure: MdAPE per op kind on `target.gpu` with `fitted`'s coefficients except
    `own`, which are taken from the target GPU's own fit. It shows how much of the leave-one-GPU-out error
    a single generation-specific coefficient carries (README 'Accuracy')."""
    from simulator import catalog

    params = dict(fitted.params)
    params.update({name: target.params[name] for name in own})
    points = [p for p in load_kernel_points(path) if p.gpu == target.gpu]
    errors, _ = mdape_by_kind(points, with_coefficients(catalog.get_gpu(target.gpu), params))
    return errors
