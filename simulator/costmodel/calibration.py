"""Calibration: fit a few global efficiency coefficients of one GPU to measured kernel/step points.

`calibrate(measurements_path, gpu="h100-sxm")` reads a measurements YAML (format of
data/reference/calibration.yaml), keeps the points the cost model alone can predict (best-shape matmul
TFLOP/s, NCCL all-reduce times, Splitwise prompt/token phase latencies of Llama-2-70B FP16), predicts each,
and fits `FIT_PARAMS` with `scipy.optimize.least_squares` on log(predicted / measured) over a fit split,
reporting MdAPE on the fit and on the held-out points. Points needing the simulator (throughput, TTFT, ITL under
load) are listed as skipped. `write_calibration` / `load_calibration` round-trip a YAML whose `overrides` are
GPUEfficiency fields; `apply_calibration(gpu, calibration)` returns the GPU with them applied.

A file fitted to serving benchmarks (`apex calibrate RESULTS --scenario`, planner/calibration/) adds two keys:
`engine` (the engine kind the runs used) and `host` (costmodel/host.py figures: per_iteration_s, per_sequence_s,
frontend_s). `host_overhead(engine_kind, calibration)` applies them to scenarios of that engine only. Files
without these keys load as before.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import yaml

from simulator.costmodel import host as host_figures
from simulator.errors import InputError, InputWarning
from simulator.hardware import GPU

# (GPUEfficiency field, lower bound, upper bound): global coefficients, never one per point.
FIT_PARAMS: tuple[tuple[str, float, float], ...] = (
    ("gemm_max", 0.3, 1.0),
    ("memory_max", 0.6, 0.92),  # HBM streaming reaches 80-90% of datasheet (hardware.md)
    ("kernel_launch_s", 0.5e-6, 10e-6),
    ("layer_overhead_eager_s", 0.0, 1e-3),
    ("collective_latency_scale", 0.05, 20.0),
    ("collective_bus_scale", 0.3, 1.2),
)
MODEL_NAMES = {"llama-2-70b": "llama-2-70b", "llama-3.1-8b": "llama-3.1-8b", "llama-3.1-70b": "llama-3.1-70b"}
SIMULATOR_METRICS = ("output_token_throughput", "mean_ttft", "mean_itl")
CUDA_GRAPHS_NOTE = (
    "Splitwise prompt/token latencies come from a vLLM-era stack (late 2023); the source CSV does not state "
    "whether CUDA graphs were used, so they are priced eager (engine cuda_graphs=False) and the per-layer eager "
    "overhead is fitted. The vidur all-reduce points were taken with CUDA graphs disabled."
)


@dataclass
class Calibration:
    """Fitted coefficient overrides for one GPU type."""

    gpu: str
    overrides: dict[str, float]
    method: str = ""
    data: str = ""
    notes: str = ""
    errors: list[dict] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    engine: str | None = None  # engine kind the `host` figures were fitted for
    host: dict[str, float] = field(default_factory=dict)  # host.FIELDS -> value


@dataclass
class CalibrationRow:
    id: str
    metric: str
    description: str
    measured: float
    predicted_before: float
    predicted: float
    split: str  # "fit" or "held-out"

    @property
    def error(self) -> float:
        return abs(self.predicted / self.measured - 1.0)

    @property
    def error_before(self) -> float:
        return abs(self.predicted_before / self.measured - 1.0)


@dataclass
class CalibrationResult:
    gpu: str
    params: dict[str, float]
    defaults: dict[str, float]
    rows: list[CalibrationRow]
    skipped: list[dict]
    data: str
    method: str

    def mdape(self, split: str | None = None, metric: str | None = None, before: bool = False) -> float:
        """Median absolute percentage error (a fraction) over the rows of a split / metric."""
        errs = [
            r.error_before if before else r.error
            for r in self.rows
            if (split is None or r.split == split) and (metric is None or r.metric == metric)
        ]
        return median(errs) if errs else float("nan")

    def summary(self) -> dict[str, float]:
        out = {
            "mdape_before_all": self.mdape(before=True),
            "mdape_fit": self.mdape("fit"),
            "mdape_held_out": self.mdape("held-out"),
            "mdape_all": self.mdape(),
        }
        for metric in sorted({r.metric for r in self.rows}):
            out[f"mdape_{metric}_fit"] = self.mdape("fit", metric)
            out[f"mdape_{metric}_held_out"] = self.mdape("held-out", metric)
        return out

    def to_calibration(self) -> Calibration:
        rows = report_rows(self.rows)
        return Calibration(
            gpu=self.gpu,
            overrides=dict(self.params),
            method=self.method,
            data=self.data,
            notes=CUDA_GRAPHS_NOTE,
            errors=rows,
            summary={k: round(v, 4) for k, v in self.summary().items()},
        )


def apply_calibration(gpu: GPU, calibration: Calibration | None) -> GPU:
    """`gpu` with the calibration's overrides applied to its efficiency (unchanged for another GPU type)."""
    if calibration is None or calibration.gpu != gpu.name:
        return gpu
    return gpu.model_copy(update={"efficiency": gpu.efficiency.model_copy(update=calibration.overrides)})


def host_overhead(engine_kind: str, calibration: Calibration | None) -> host_figures.HostOverhead:
    """The engine's host figures, with the calibration's `host` section applied when it names this engine (a
    calibration fitted for another engine keeps the catalog figures and says so once)."""
    if calibration is None or not calibration.host:
        return host_figures.host_overhead(engine_kind)
    if calibration.engine != engine_kind:
        warnings.warn(
            f"the calibration's host figures were fitted for engine {calibration.engine!r}; this scenario runs "
            f"{engine_kind!r}, so its own host figures are used (GPU coefficients still apply)",
            InputWarning,
            stacklevel=1,  # one location, so the warning prints once however many replicas are built
        )
        return host_figures.host_overhead(engine_kind)
    return host_figures.for_engine(engine_kind, calibration.host, source=f"calibration: {calibration.method}")


def write_calibration(result, path: str | Path) -> None:
    """Write a CalibrationResult, a kernel fit (`kernel_fit.KernelFit`) or a Calibration as a calibration file."""
    if isinstance(result, CalibrationResult):
        cal = result.to_calibration()
    elif isinstance(result, Calibration):
        cal = result
    else:  # a KernelFit: its coefficients, with the per-GPU error table as the summary
        summary = {
            f"mdape_{kind}_{gpu}": round(v, 4) for gpu, e in result.errors.items() for kind, v in e.items()
        }
        cal = Calibration(result.gpu, dict(result.params), result.method, result.data, "", [], summary)
    doc = {"gpu": cal.gpu, "overrides": {k: float(v) for k, v in cal.overrides.items()}}
    if cal.host:  # a serving fit: the engine its host figures belong to, and the figures
        doc["engine"] = cal.engine
        doc["host"] = {k: float(v) for k, v in cal.host.items()}
    doc.update(method=cal.method, data=cal.data, notes=cal.notes, summary=cal.summary, errors=cal.errors)
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False, width=110))


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file, checking every override against GPUEfficiency (known key, number, range)."""
    from pydantic import ValidationError

    from simulator.hardware import GPUEfficiency
    from simulator.yamlio import read_yaml

    file = str(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise InputError("expected a mapping with keys gpu and overrides", file=file)
    gpu = doc.get("gpu")
    if not isinstance(gpu, str) or not gpu:
        raise InputError(f"expected a GPU catalog name, got {gpu!r}", file=file, field="gpu")
    overrides = doc.get("overrides")
    if not isinstance(overrides, dict):
        raise InputError(
            f"expected a mapping of coefficient: value, got {overrides!r}", file=file, field="overrides"
        )
    known = GPUEfficiency.model_fields
    for key, value in overrides.items():
        if key not in known:
            raise InputError(
                f"unknown coefficient {key!r}; expected one of: {', '.join(sorted(known))}",
                file=file,
                field=f"overrides.{key}",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"expected a finite number, got {value!r}", file=file, field=f"overrides.{key}")
    try:
        GPUEfficiency(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise InputError(
            f"{first['msg']} (got {first.get('input')!r})", file=file, field=f"overrides.{key}"
        ) from None
    engine, host = _check_host(doc, file)
    return Calibration(
        gpu=gpu,
        overrides=dict(overrides),
        method=str(doc.get("method", "")),
        data=str(doc.get("data", "")),
        notes=str(doc.get("notes", "")),
        errors=doc.get("errors") or [],
        summary=doc.get("summary") or {},
        engine=engine,
        host=host,
    )


MAX_HOST_S = 10.0  # a host figure above this is a unit mistake, not an engine


def _check_host(doc: dict, file: str) -> tuple[str | None, dict[str, float]]:
    """The optional `engine` and `host` keys of a calibration file, checked."""
    engine, host = doc.get("engine"), doc.get("host")
    if engine is not None and engine not in host_figures.ENGINES:
        raise InputError(
            f"unknown engine kind {engine!r}; expected one of: {', '.join(host_figures.ENGINES)}",
            file=file,
            field="engine",
        )
    if host is None:
        return engine, {}
    if not isinstance(host, dict):
        raise InputError(f"expected a mapping of host figure: seconds, got {host!r}", file=file, field="host")
    if host and engine is None:
        raise InputError(
            "host figures need the engine kind they were fitted for (e.g. engine: vllm-v1)",
            file=file,
            field="engine",
        )
    for key, value in host.items():
        if key not in host_figures.FIELDS:
            raise InputError(
                f"unknown host figure {key!r}; expected one of: {', '.join(host_figures.FIELDS)}",
                file=file,
                field=f"host.{key}",
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0 <= value <= MAX_HOST_S
        ):
            raise InputError(
                f"expected seconds in [0, {MAX_HOST_S:g}], got {value!r}", file=file, field=f"host.{key}"
            )
    return engine, {k: float(v) for k, v in host.items()}


# ---- points ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    id: str
    metric: str
    value: float  # measured, SI (seconds or FLOP/s)
    args: tuple  # what the predictor needs
    description: str


def _gpu_matches(text: str, gpu: str) -> bool:
    return "h100" in text.lower() if gpu == "h100-sxm" else gpu.split("-")[0] in text.lower()


def check_points(points, file: str) -> list[dict]:
    """The measured points of a calibration file, each with a string `metric` and a positive finite `value`."""
    if not isinstance(points, list) or not points:
        raise InputError(
            "expected a non-empty 'points' list (see data/reference/calibration.yaml)",
            file=file,
            field="points",
        )
    for i, p in enumerate(points):
        where = f"points[{i}]"
        if not isinstance(p, dict):
            raise InputError(f"expected a mapping, got {p!r}", file=file, field=where)
        if not isinstance(p.get("metric"), str) or not p["metric"].strip():
            raise InputError(
                "missing 'metric' (a metric name, e.g. all_reduce_time)", file=file, field=f"{where}.metric"
            )
        if "value" not in p:
            raise InputError("missing 'value' (the measured number)", file=file, field=f"{where}.value")
        v = p["value"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InputError(
                f"expected a positive finite number, got {v!r}", file=file, field=f"{where}.value"
            )
    return points


def select_points(points: list[dict], gpu: str) -> tuple[list[_Point], list[dict]]:
    """The kernel/step points the cost model predicts alone, and the skipped ones (with the reason)."""
    keep, skipped = [], []
    for i, p in enumerate(points):
        try:
            _select_one(p, gpu, keep, skipped)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise InputError(
                f"cannot read this {p.get('metric')!r} point ({type(exc).__name__}: {exc}); see the fields of "
                "data/reference/calibration.yaml",
                field=f"points[{i}]",
            ) from None
    return keep, skipped


def _select_one(p: dict, gpu: str, keep: list, skipped: list) -> None:
    """Parse one point into `keep` (predictable alone) or `skipped` (with the reason)."""
    metric = p["metric"].split(" ")[0]
    if not _gpu_matches(str(p.get("gpu", "")), gpu):
        return
    if metric in SIMULATOR_METRICS:
        skipped.append({"id": p["id"], "metric": metric, "reason": "needs the simulator"})
        return
    what = str(p.get("batch_or_concurrency_or_rate", ""))
    if metric == "max_achievable_matmul_tflops":
        m, n, k = (int(x) for x in re.findall(r"(\d+)x(\d+)x(\d+)", what)[0])
        dtype = "fp8" if "fp8" in p["dtype"].lower() else "bf16"
        keep.append(_Point(p["id"], metric, p["value"] * 1e12, (m, n, k, dtype), f"{dtype} {m}x{n}x{k}"))
    elif metric == "all_reduce_time":
        size = int(re.findall(r"(\d+) bytes", what)[0])
        keep.append(_Point(p["id"], metric, p["value"] * 1e-3, (p["tp"], size), f"n={p['tp']} {size} B"))
    elif metric in ("prompt_phase_latency", "token_phase_latency"):
        model = MODEL_NAMES.get(p["model"].lower())
        if model is None:
            skipped.append({"id": p["id"], "metric": metric, "reason": f"model {p['model']} not mapped"})
            return
        batch = int(re.findall(r"batch (\d+)", what)[0])
        keep.append(
            _Point(
                p["id"],
                metric,
                p["value"] * 1e-3,
                (model, p["tp"], batch, p["isl"]),
                f"{model} tp{p['tp']} b{batch} isl{p['isl']}",
            )
        )
    else:
        skipped.append({"id": p["id"], "metric": metric, "reason": "metric not handled"})


def is_fit_point(p: _Point, index_in_metric: int) -> bool:
    """Fit split: TP2 + TP4 Splitwise, every other all-reduce, the BF16 matmul; the rest is held out."""
    if p.metric in ("prompt_phase_latency", "token_phase_latency"):
        return p.args[1] in (2, 4)
    if p.metric == "all_reduce_time":
        return index_in_metric % 2 == 0
    return p.args[3] == "bf16" and index_in_metric == 0


def _predict(p: _Point, gpu: GPU, fabric) -> float:
    from simulator.cost import all_reduce_time, gemm_time
    from simulator.costmodel.interface import BatchShape

    if p.metric == "max_achievable_matmul_tflops":
        m, n, k, dtype = p.args
        return 2.0 * m * n * k / gemm_time(gpu, m, n, k, dtype)
    if p.metric == "all_reduce_time":
        n, size = p.args
        return all_reduce_time(gpu, n, size, fabric=fabric)
    model_name, tp, batch, isl = p.args
    make_stage = _splitwise_stage(model_name, tp, gpu, fabric)
    if p.metric == "prompt_phase_latency":
        shape = BatchShape.from_requests([isl] * batch, [0] * batch)
    else:
        shape = BatchShape.from_requests(decode_context=[isl] * batch)
    return make_stage(gpu).iteration_time(shape)


def _splitwise_stage(model_name: str, tp: int, gpu: GPU, fabric):
    from simulator import catalog
    from simulator.costmodel.replica import build_stage_cost
    from simulator.hardware import Cluster, NodeGroup
    from simulator.plan import Stage
    from simulator.scenario import DTypes, Engine

    model = catalog.get_model(model_name)
    cluster = Cluster(node_groups=[NodeGroup(gpu=gpu.name, intra_node=fabric, inter_node=None)])
    dtypes = DTypes(weights="fp16", kv_cache="fp16", activations="fp16")
    engine = Engine(kind="vllm-v0", cuda_graphs=False)
    stage = Stage(layers=(0, model.num_layers), tp=tp)
    return lambda g: build_stage_cost(model, stage, g, cluster, dtypes, engine, first=True, last=True)


def calibrate(measurements_path: str | Path, gpu: str | GPU = "h100-sxm", fabric=None) -> CalibrationResult:
    """Fit FIT_PARAMS of `gpu` to the kernel/step points of the measurements file (see module docstring)."""
    import numpy as np
    from scipy.optimize import least_squares

    from simulator import catalog

    gpu_obj = catalog.get_gpu(gpu) if isinstance(gpu, str) else gpu
    fabric = catalog.get_fabric(fabric or gpu_obj.scale_up_fabric)
    from simulator.yamlio import read_yaml

    doc = read_yaml(measurements_path)
    raw = check_points(doc.get("points") if isinstance(doc, dict) else None, str(measurements_path))
    points, skipped = select_points(raw, gpu_obj.name)
    if not points:
        raise InputError(
            f"no kernel/step point the cost model can predict for {gpu_obj.name}",
            file=str(measurements_path),
            field="points",
        )
    seen: dict[str, int] = {}
    split = []
    for p in points:
        split.append(is_fit_point(p, seen.get(p.metric, 0)))
        seen[p.metric] = seen.get(p.metric, 0) + 1
    fit_points = [p for p, f in zip(points, split, strict=True) if f]
    names = [n for n, _, _ in FIT_PARAMS]
    defaults = {n: float(getattr(gpu_obj.efficiency, n)) for n in names}

    def with_params(x) -> GPU:
        values = {n: float(math.exp(v)) for n, v in zip(names, x, strict=True)}
        return gpu_obj.model_copy(update={"efficiency": gpu_obj.efficiency.model_copy(update=values)})

    def residuals(x):
        g = with_params(x)
        return np.array([math.log(_predict(p, g, fabric) / p.value) for p in fit_points])

    lo = [math.log(max(lb, 1e-12)) for _, lb, _ in FIT_PARAMS]
    hi = [math.log(ub) for _, _, ub in FIT_PARAMS]
    x0 = [
        min(max(math.log(max(defaults[n], 1e-9)), a + 1e-9), b - 1e-9)
        for n, a, b in zip(names, lo, hi, strict=True)
    ]
    sol = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale=1.0, diff_step=1e-3)
    fitted_gpu = with_params(sol.x)
    params = {n: float(getattr(fitted_gpu.efficiency, n)) for n in names}
    rows = [
        CalibrationRow(
            p.id,
            p.metric,
            p.description,
            p.value,
            _predict(p, gpu_obj, fabric),
            _predict(p, fitted_gpu, fabric),
            "fit" if f else "held-out",
        )
        for p, f in zip(points, split, strict=True)
    ]
    method = (
        "scipy.optimize.least_squares (trf, bounded, log-parameters) on log(predicted/measured); fit split = "
        "Splitwise TP2+TP4, even-indexed all-reduce points, BF16 matmul; held out = Splitwise TP8, odd "
        "all-reduce points, other matmul points"
    )
    return CalibrationResult(gpu_obj.name, params, defaults, rows, skipped, str(measurements_path), method)


def report_rows(rows) -> list[dict]:
    """A calibration file's `points` table: each fitted or held-out point with its measured value, the
    default and the fitted prediction, and the fitted error."""
    return [
        dict(
            id=r.id,
            metric=r.metric,
            point=r.description,
            split=r.split,
            measured=r.measured,
            predicted_default=round(r.predicted_before, 6),
            predicted=round(r.predicted, 6),
            abs_pct_error=round(100 * r.error, 2),
        )
        for r in rows
    ]
