"""What-if studies: run one scenario many times with some of its fields varied (docs/design.md §5, §8).

A study file names a `base` scenario, the axes to `vary` (their full grid), axes to `zip` (moving together,
crossed with the grid), and whether each point is simulated on its plan or planned from scratch:

    base: llama-70b-h100.yaml          # relative to the study file, or a scenario written inline
    vary: {workload.arrival.rate: [2.0, 4.0], cluster.gpu: [h100-sxm, h200-sxm]}
    zip:  {goals.slo.ttft_s.p99: [0.5, 1.0], goals.slo.tpot_s.p99: [0.03, 0.05]}
    run: plan
    plan_options: {objective: min_cost, time_limit_s: 60}
    pareto: [cost.usd_per_million_output_tokens, ttft_s.p99]

`load_study` validates the file and every point's scenario before any work starts; `expand` lists the points;
`run_study` runs them (in this process, on local worker processes, or on Ray) and yields one flat row per point
as it finishes. With `out`, every finished row is appended to `out/results.csv` at once (the resume journal)
and `out/results.parquet` is written at the end; `out/study.yaml` holds the resolved study so that `resume`
can refuse a different one.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from planner.errors import NoPlanError
from simulator.errors import InputError, pydantic_error_to_input_error
from simulator.metric_catalog import STUDY_METRICS
from simulator.scenario import Objective, load_scenario
from simulator.yamlio import read_text, read_yaml

# The metrics every row carries, in this order: the metric catalog's study columns (dotted paths into a
# simulation's JSON, docs/design.md §6).
METRICS: tuple[str, ...] = STUDY_METRICS
STATUSES = ("ok", "no_plan", "error")
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
STUDY_YAML = "study.yaml"


class _Strict(BaseModel):
    # strict: no coercion of "60" or true to numbers; allow_inf_nan=False: .inf / .nan are refused
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


MAX_WORKERS = 1024
MAX_POINTS = 100_000


class PlanOptions(_Strict):
    """Options of `plan()` for each point of a `run: plan` study."""

    objective: Objective | None = Field(None, description="overrides the scenario's goals.objective")
    top_k: int = Field(3, ge=1, le=100, description="candidates the solver proposes per round")
    time_limit_s: float = Field(
        120.0, gt=0, le=7 * 24 * 3600, description="seconds for each point's plan search (at most a week)"
    )
    exhaustive: bool = Field(False, description="simulate every valid plan instead of searching")


class StudySpec(_Strict):
    """A study file as written (docs/design.md §8)."""

    name: str | None = Field(None, description="title of the plots and tables (default: the file's stem)")
    base: str | dict = Field(description="a scenario path relative to the study file, or a scenario mapping")
    vary: dict[str, list] = Field(default_factory=dict, description="dotted field → values (full grid)")
    zip: dict[str, list] = Field(default_factory=dict, description="dotted field → values (moving together)")
    run: Literal["simulate", "plan"] = "simulate"
    plan_options: PlanOptions | None = None
    pareto: list[str] | None = Field(None, description="two metrics whose Pareto front is plotted")

    @field_validator("vary", "zip")
    @classmethod
    def _axes(cls, axes: dict[str, list]) -> dict[str, list]:
        for name, values in axes.items():
            parts = name.split(".")
            if not all(p.isidentifier() for p in parts):
                raise ValueError(f"{name!r} is not a dotted scenario field such as workload.arrival.rate")
            if not values:
                raise ValueError(f"{name}: expected a non-empty list of values")
        return axes

    @field_validator("pareto")
    @classmethod
    def _pareto(cls, metrics: list[str] | None) -> list[str] | None:
        if metrics is None:
            return None
        if len(metrics) != 2:
            raise ValueError(f"expected two metrics, got {len(metrics)}")
        for m in metrics:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; expected one of: {', '.join(METRICS)}")
        return metrics


@dataclass(frozen=True)
class Point:
    """One point of a study: its index, the values of the varied fields, and the scenario it runs."""

    index: int
    params: dict[str, Any]
    scenario: dict


@dataclass(frozen=True)
class Study:
    """A validated study: the spec, its file, the base scenario (a dict, paths made absolute) and its points."""

    spec: StudySpec
    file: str | None
    base: dict
    points: list[Point]

    @property
    def name(self) -> str:
        if self.spec.name:
            return self.spec.name
        return Path(self.file).stem if self.file else "study"

    @property
    def axes(self) -> list[str]:
        return [*self.spec.vary, *self.spec.zip]

    @property
    def columns(self) -> list[str]:
        """The stable column order of every row (and of results.csv)."""
        head = ["point", *self.axes, "status", "plan"]
        if self.spec.run == "plan":
            head.append("objective")
        return [*head, *METRICS, "error"]

    def resolved(self) -> dict:
        """The study as it runs (what out/study.yaml holds): the base scenario inline, axes, options."""
        data = self.spec.model_dump(exclude_none=True)
        data["name"] = self.name
        data["base"] = self.base
        return data


StudyLike = str | Path | dict | StudySpec | Study


# ---------------------------------------------------------------------------------------------- loading


def load_study(source: StudyLike) -> Study:
    """Read and validate a study and every point's scenario; errors are InputErrors naming file and field."""
    if isinstance(source, Study):
        return source
    file = None
    if isinstance(source, StudySpec):
        spec = source
    else:
        if isinstance(source, (str, Path)):
            file = str(source)
            data = read_yaml(source)
        else:
            data = source
        if not isinstance(data, dict):
            raise InputError(
                f"a study must be a mapping with base, vary, zip, run; got {type(data).__name__}", file=file
            )
        try:
            spec = StudySpec.model_validate(data)
        except ValidationError as exc:
            raise pydantic_error_to_input_error(exc, file=file, model=StudySpec) from None
    both = set(spec.vary) & set(spec.zip)
    if both:
        raise InputError(
            f"{', '.join(sorted(both))} is both in vary and in zip; put each axis in one of them",
            file=file,
            field="zip",
        )
    lengths = {name: len(values) for name, values in spec.zip.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise InputError(
            f"zipped axes move together and need equal lengths, got {shown}", file=file, field="zip"
        )
    if spec.plan_options is not None and spec.run != "plan":
        raise InputError("plan_options applies to run: plan only", file=file, field="plan_options")
    size = math.prod(len(v) for v in spec.vary.values()) * (
        len(next(iter(spec.zip.values()))) if spec.zip else 1
    )
    if size > MAX_POINTS:
        raise InputError(
            f"the grid has {size:,} points; allowed: at most {MAX_POINTS:,} (split the study)",
            file=file,
            field="vary",
        )
    base = _load_base(spec.base, file)
    study = Study(spec=spec, file=file, base=base, points=[])
    points = _expand(study)
    _check_points(study, points)
    return Study(spec=spec, file=file, base=base, points=points)


def _load_base(base: str | dict, file: str | None) -> dict:
    """The base scenario as a dict whose file references are absolute (they stay valid once overridden)."""
    if isinstance(base, str):
        path = Path(base)
        if file and not path.is_absolute():
            path = Path(file).parent / path
        if not path.is_file():
            raise InputError(f"scenario file {str(path)!r} not found", file=file, field="base")
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise InputError(f"{path} is not a scenario mapping", file=file, field="base")
        home = path.parent
    else:
        data, home = copy.deepcopy(base), (Path(file).parent if file else Path.cwd())
    data = copy.deepcopy(data)
    for dotted in ("model", "cluster", "calibration", "workload.trace"):
        value = _get(data, dotted)
        if isinstance(value, str) and _looks_like_path(value):
            p = Path(value)
            _set(data, dotted, str(p if p.is_absolute() else (home / p).resolve()))
    try:
        load_scenario(data)
    except InputError as exc:
        raise InputError(exc.detail, file=file, field=f"base.{exc.field}" if exc.field else "base") from None
    return data


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith((".yaml", ".yml", ".json", ".jsonl", ".csv"))


def _get(data: dict, dotted: str):
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(data: dict, dotted: str, value) -> None:
    """Set a dotted field, creating the mappings on the way; a non-mapping on the way is an InputError."""
    keys = dotted.split(".")
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            hint = ""
            if where == "cluster" and isinstance(child, str):
                hint = (
                    f"; to vary {dotted} write the cluster as a mapping in the base scenario, "
                    "e.g. cluster: {gpu: h100-sxm, nodes: 1, gpus_per_node: 8}"
                )
            elif where == "model" and isinstance(child, str):
                hint = "; to vary the model's fields write the model inline, or vary model by catalog name"
            raise InputError(f"{where} is {child!r}, not a mapping, so {dotted} cannot be set{hint}")
        node = child
    node[keys[-1]] = copy.deepcopy(value)


def expand(study: StudyLike) -> list[Point]:
    """Every point of a study: the grid of `vary` (first axis slowest) crossed with the rows of `zip`."""
    return load_study(study).points


def _expand(study: Study) -> list[Point]:
    spec = study.spec
    grid = list(itertools.product(*spec.vary.values())) if spec.vary else [()]
    num_zip = len(next(iter(spec.zip.values()))) if spec.zip else 1
    points = []
    for combo in grid:
        for zi in range(num_zip):
            params = dict(zip(spec.vary, combo, strict=True))
            params.update({name: values[zi] for name, values in spec.zip.items()})
            scenario = copy.deepcopy(study.base)
            for name, value in params.items():
                try:
                    _set(scenario, name, value)
                except InputError as exc:
                    raise InputError(exc.detail, file=study.file, field=_axis_field(spec, name)) from None
            points.append(Point(index=len(points), params=params, scenario=scenario))
    return points


def _axis_field(spec: StudySpec, name: str) -> str:
    return f"{'vary' if name in spec.vary else 'zip'}.{name}"


def _check_points(study: Study, points: list[Point]) -> None:
    """Validate each point's scenario up front; a bad value names its axis and the value."""
    for point in points:
        try:
            sc = load_scenario(point.scenario)
        except InputError as exc:
            axis = _blame(point.params, exc.field)
            label = ", ".join(f"{k}={v!r}" for k, v in point.params.items())
            if axis is not None:
                raise InputError(
                    f"value {point.params[axis]!r} makes an invalid scenario: {exc}",
                    file=study.file,
                    field=_axis_field(study.spec, axis),
                ) from None
            raise InputError(f"point {point.index} ({label}): {exc}", file=study.file, field="base") from None
        if study.spec.run == "simulate" and sc.plan is None:
            raise InputError(
                "run: simulate needs a plan: add plan: to the base scenario, vary plan, or use run: plan",
                file=study.file,
                field="base.plan",
            )


def _blame(params: dict, field: str | None) -> str | None:
    """The varied axis that an error in scenario field `field` comes from, if one does."""
    if not field:
        return None
    field = field.split("[")[0]
    for axis in sorted(params, key=len, reverse=True):
        if field == axis or field.startswith(axis + ".") or axis.startswith(field + "."):
            return axis
    return None


# ---------------------------------------------------------------------------------------------- one point


def run_point(run: str, scenario: dict, plan_options: dict | None) -> dict:
    """Run one point; returns its status, plan label, objective, metrics and error (never raises)."""
    try:
        if run == "plan":
            from planner.plan_api import plan

            opts = dict(plan_options or {})
            result = plan(scenario, workers=1, **opts).to_json()
            best = result["best"]
            return {
                "status": "ok",
                "plan": best.get("plan"),
                "objective": best.get("objective") if is_number(best.get("objective")) else None,
                **_flatten(best.get("metrics") or {}),
            }
        from planner.api import simulate

        data = simulate(scenario).to_json()
        return {"status": "ok", "plan": data.get("plan"), **_flatten(data)}
    except NoPlanError as exc:
        return {"status": "no_plan", "error": str(exc)}
    except InputError as exc:
        return {"status": "error", "error": str(exc)}
    except Exception as exc:  # a failing point is recorded and the study goes on
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}


def _flatten(data: dict) -> dict:
    """The METRICS of a result; a metric without a value (NaN: no completed request) is left out (None)."""
    out = {}
    for metric in METRICS:
        value = _get(data, metric)
        if is_number(value):
            out[metric] = value
    return out


def _indexed(index: int, run: str, scenario: dict, plan_options: dict | None) -> tuple[int, dict]:
    return index, run_point(run, scenario, plan_options)


# ---------------------------------------------------------------------------------------------- running


def run_study(
    study: StudyLike,
    *,
    workers: int = 1,
    ray: str | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
) -> Iterator[dict]:
    """Run every point and yield its row as it finishes (points already in out/results.csv first, on resume).

    `workers` > 1 runs points on that many local processes; `ray` is a Ray address, or "local" to start Ray
    on this machine with `workers` CPUs. `stop_after` raises KeyboardInterrupt after that many new rows
    (an interruption, for tests). Rows carry `Study.columns`; missing metrics are None.
    """
    study = load_study(study)
    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"expected 1 to {MAX_WORKERS} worker processes, got {workers}", field="--workers")
    if resume and out is None:
        raise InputError(
            "--resume needs --out DIR (the directory of the interrupted study)", field="--resume"
        )
    journal = _Journal(study, Path(out), resume=resume) if out is not None else None
    return _run(study, journal, workers=workers, ray=ray, progress=progress, stop_after=stop_after)


def _run(study: Study, journal: _Journal | None, *, workers, ray, progress, stop_after) -> Iterator[dict]:
    done = journal.done if journal else {}
    total = len(study.points)
    finished = 0
    for point in study.points:
        if point.index in done:
            finished += 1
            yield done[point.index]
    if progress:
        progress(finished, total)
    pending = [p for p in study.points if p.index not in done]
    options = study.spec.plan_options.model_dump(exclude_none=True) if study.spec.plan_options else None
    if journal:
        journal.open()
    results = _execute(pending, study.spec.run, options, workers=workers, ray=ray)
    new = 0
    try:
        for index, result in results:
            row = make_row(study, study.points[index], result)
            if journal:
                journal.append(row)
            finished += 1
            new += 1
            if progress:
                progress(finished, total)
            yield row
            if stop_after is not None and new >= stop_after and finished < total:
                raise KeyboardInterrupt
    finally:
        results.close()
        if journal:
            journal.close()
    if journal:
        journal.write_parquet()


def make_row(study: Study, point: Point, result: dict) -> dict:
    """One row in `study.columns` order: the point's fields, then its status, plan and metrics."""
    row = dict.fromkeys(study.columns)
    row["point"] = point.index
    row.update(point.params)
    for key, value in result.items():
        if key in row and key not in point.params and key != "point":
            row[key] = value
    return row


def _execute(points: list[Point], run: str, options: dict | None, *, workers: int, ray: str | None):
    """(index, result) pairs in the order points finish."""
    if ray is not None:
        return _execute_ray(points, run, options, workers=workers, address=ray)
    if workers == 1 or len(points) <= 1:
        return (_indexed(p.index, run, p.scenario, options) for p in points)
    return _execute_processes(points, run, options, workers=workers)


def _execute_processes(points, run, options, *, workers):
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(points)), initializer=_init_worker, initargs=(os.getpid(),)
    )
    try:
        futures = [pool.submit(_indexed, p.index, run, p.scenario, options) for p in points]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:  # Ctrl-C, SIGTERM, or the consumer stopped: stop the running points at once
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool) -> None:
    """Drop the points not started and kill the workers running the others (their rows are not kept)."""
    # ProcessPoolExecutor has no public call that stops running work (Python 3.14 adds terminate_workers)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.kill()
    for process in processes:
        process.join(timeout=5)
    # join the executor's manager thread now: left running, it races the interpreter's exit hook over its
    # wake-up pipe (CPython 3.11 prints "Exception ignored ... Bad file descriptor" on stderr)
    pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(parent_pid: int) -> None:
    """In a worker: Ctrl-C is the study process's to handle (it stops the workers), SIGTERM ends the worker
    at once, and the worker exits by itself if the study's process is killed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _exit_with_parent(parent_pid)


def _exit_with_parent(parent_pid: int) -> None:
    """In a worker: exit once the study's process is gone (killed), instead of lingering as an orphan."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _execute_ray(points, run, options, *, workers, address):
    try:
        import ray
    except ImportError:
        raise InputError(
            "--ray needs the ray package: pip install 'apex-planner[ray]'", field="--ray"
        ) from None
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        else:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(_indexed)
        refs = [remote.remote(p.index, run, p.scenario, options) for p in points]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if "refs" in locals():
            for ref in refs:
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------- journal


def cell(value) -> str:
    """How a value is written to results.csv (and compared on resume): scalars as text, others as JSON."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def parse_cell(column: str, text: str):
    """A results.csv cell back to a value: metrics and `point` as numbers, empty as None."""
    if text == "":
        return None
    if column == "point":
        return int(text)
    if column in METRICS or column == "objective":
        try:
            return float(text)
        except ValueError:
            return None
    return text


class _Journal:
    """out/results.csv, appended and flushed per finished point; it is what `resume` reads back."""

    def __init__(self, study: Study, out: Path, *, resume: bool):
        self.study = study
        self.out = out
        self.csv_path = out / RESULTS_CSV
        self.done: dict[int, dict] = {}
        resolved = study.resolved()
        if out.exists() and not out.is_dir():
            raise InputError(f"{out} exists and is not a directory", field="--out")
        if not out.exists() and not out.parent.is_dir():
            raise InputError(
                f"the directory {str(out.parent)!r} of {str(out)!r} does not exist; create it first",
                field="--out",
            )
        if out.is_dir() and any(out.iterdir()):
            if not resume:
                raise InputError(
                    f"{out} is not empty; pass --resume to continue the study there, or choose another "
                    "directory (nothing is overwritten)",
                    field="--out",
                )
            stored_path = out / STUDY_YAML
            if not stored_path.is_file():
                raise InputError(f"{out} has no {STUDY_YAML}: it is not a study's output", field="--resume")
            stored = _read_stored(stored_path)
            if _canonical(stored) != _canonical(resolved):
                raise InputError(
                    f"{out} holds a different study ({_difference(stored, resolved)}); resume it with the "
                    "same study file, or choose another --out directory",
                    field="--resume",
                )
            self.done = self._read_done()
        self._file = None

    def open(self) -> None:
        """Write study.yaml and the complete rows read back, then append from there."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / STUDY_YAML).write_text(yaml.safe_dump(self.study.resolved(), sort_keys=False))
        self._rewrite()  # keeps only complete rows, so an append never follows a torn line
        self._file = self.csv_path.open("a", newline="")
        self._writer = csv.writer(self._file)

    def _read_done(self) -> dict[int, dict]:
        if not self.csv_path.is_file():
            return {}
        columns = self.study.columns
        done: dict[int, dict] = {}
        with self.csv_path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != columns:
                raise InputError(
                    f"{self.csv_path} has columns {header}, expected {columns}", field="--resume"
                )
            for cells in reader:
                if len(cells) != len(columns) or not cells[0].isdigit():
                    continue  # a row torn by the interruption: that point runs again
                index = int(cells[0])
                if index >= len(self.study.points) or cells[columns.index("status")] not in STATUSES:
                    continue
                point = self.study.points[index]
                if [cells[columns.index(a)] for a in point.params] != [
                    cell(v) for v in point.params.values()
                ]:
                    continue
                raw = dict(zip(columns, cells, strict=True))
                result = {c: parse_cell(c, raw[c]) for c in columns if c not in point.params}
                done[index] = make_row(self.study, point, result)
        return done

    def _rewrite(self) -> None:
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.study.columns)
            for index in sorted(self.done):
                writer.writerow([cell(self.done[index][c]) for c in self.study.columns])
        os.replace(tmp, self.csv_path)

    def append(self, row: dict) -> None:
        self._writer.writerow([cell(row[c]) for c in self.study.columns])
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    def write_parquet(self) -> Path:
        return write_parquet(self.out)


def count_finished(out: str | Path) -> int:
    """How many complete rows out/results.csv holds (what a resume will not run again)."""
    path = Path(out) / RESULTS_CSV
    if not path.is_file():
        return 0
    with path.open(newline="", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        return sum(1 for cells in reader if len(cells) == len(header) and cells[:1] and cells[0].isdigit())


def _read_stored(path: Path) -> dict:
    """A study's stored study.yaml, checked to be one (a damaged file is an InputError naming it)."""
    stored = read_yaml(path)
    if not isinstance(stored, dict):
        raise InputError(
            f"expected the mapping `apex study` writes (name, base, vary, zip, run), got {type(stored).__name__}",
            file=str(path),
        )
    try:
        StudySpec.model_validate(stored)
    except ValidationError as exc:
        raise pydantic_error_to_input_error(exc, file=str(path), model=StudySpec) from None
    return stored


def read_rows(out: str | Path) -> tuple[dict, list[dict]]:
    """(the resolved study, its rows sorted by point) from a study's out directory."""
    out = Path(out)
    stored_path, csv_path = out / STUDY_YAML, out / RESULTS_CSV
    if not stored_path.is_file() or not csv_path.is_file():
        raise InputError(
            f"{out} is not a study's output directory (expected {STUDY_YAML} and {RESULTS_CSV})", field="DIR"
        )
    stored = _read_stored(stored_path)
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(read_text(csv_path), newline=""))
        missing = [c for c in ("point", "status") if c not in (reader.fieldnames or ())]
        if missing:
            raise InputError(
                f"the header lacks {', '.join(missing)}: not a results table written by `apex study`",
                file=str(csv_path),
                field=missing[0],
            )
        for raw in reader:
            if None in raw or not (raw.get("point") or "").isdigit():
                continue
            rows.append({c: parse_cell(c, v or "") for c, v in raw.items()})
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: {exc}", file=str(csv_path)) from None
    # axis values come back as text: restore the values the study file gave them
    axes = {**stored.get("vary", {}), **stored.get("zip", {})}
    for row in rows:
        for axis, values in axes.items():
            by_text = {cell(v): v for v in values}
            row[axis] = by_text.get(row.get(axis) or "", row.get(axis))
    rows.sort(key=lambda r: r["point"])
    return stored, rows


def write_parquet(out: str | Path) -> Path:
    """out/results.parquet from out/results.csv (axis values that mix types are stored as text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, rows = read_rows(out)
    if not rows:
        return Path(out) / RESULTS_PARQUET
    columns: dict[str, list] = {c: [r.get(c) for r in rows] for c in rows[0]}
    arrays = {}
    for name, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int} or kinds <= {float} or kinds <= {str} or kinds <= {bool}:
            arrays[name] = values
        elif kinds <= {int, float}:
            arrays[name] = [None if v is None else float(v) for v in values]
        else:
            arrays[name] = [None if v is None else cell(v) for v in values]
    path = Path(out) / RESULTS_PARQUET
    pq.write_table(pa.table(arrays), path)
    return path


def _canonical(data) -> str:
    return json.dumps(yaml.safe_load(yaml.safe_dump(data, sort_keys=True)), sort_keys=True)


def _difference(old: dict, new: dict) -> str:
    keys = [k for k in {**old, **new} if _canonical(old.get(k)) != _canonical(new.get(k))]
    return "differs in " + ", ".join(keys) if keys else "differs"


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
