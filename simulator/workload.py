"""Workloads: requests (arrival time, input tokens, output tokens) from a generator, a preset or a trace file.

`generate(spec, file=...)` returns `Requests`, a frozen bundle of numpy columns sorted by arrival.
A closed-loop workload (`arrival: {process: closed, concurrency: N}`) has no arrival times before it runs: the
first N requests arrive at t = 0 and the others' times are NaN, set by the engine as each is sent
(`Requests.closed` says how). Generators draw arrivals, input lengths and output lengths from three RNG streams spawned from one seed, so
changing one distribution never reshuffles the others. Presets (configs/workloads/*.yaml) give lengths and a
default arrival process; the spec's own fields override them. Traces: APEX JSONL (`StartTimeOffset` ns,
`ContextTokens`, `GeneratedTokens`, `RequestID`), our JSONL (`arrival_s`, `input_tokens`, `output_tokens`)
and the Azure LLM trace CSV (`TIMESTAMP`, `ContextTokens`, `GeneratedTokens`).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from simulator.catalog import check_preset, preset_path
from simulator.errors import InputError, pydantic_error_to_input_error
from simulator.scenario import MAX_TOKENS, Arrival, LengthDist, WorkloadSpec
from simulator.yamlio import parse_json, read_text, read_yaml


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """`concurrency` clients, each sending its next request `think_time_s` after its previous one finished (or
    was rejected); requests are sent in workload order."""

    concurrency: int
    think_time_s: float = 0.0


@dataclass(frozen=True)
class Requests:
    """Requests as columns, sorted by arrival time (seconds from the start of the run). In a closed loop
    (`closed`), the requests after the first `closed.concurrency` have NaN arrival times until they run."""

    arrival_s: np.ndarray  # float64, non-decreasing (closed loop: 0 for the first N, then NaN)
    input_tokens: np.ndarray  # int64, >= 1
    output_tokens: np.ndarray  # int64, >= 1
    ids: np.ndarray  # str, one per request
    closed: ClosedLoop | None = None

    def __len__(self) -> int:
        return len(self.arrival_s)

    @staticmethod
    def from_columns(arrival_s, input_tokens, output_tokens, ids=None) -> Requests:
        """Build from sequences; ids default to "0", "1", ...; rows are sorted by arrival (stable)."""
        arrival = np.asarray(arrival_s, dtype=np.float64)
        order = np.argsort(arrival, kind="stable")
        ids = np.arange(len(arrival)).astype(str) if ids is None else np.asarray(ids, dtype=str)
        return Requests(
            arrival[order],
            np.asarray(input_tokens, dtype=np.int64)[order],
            np.asarray(output_tokens, dtype=np.int64)[order],
            ids[order],
        )


# ---------------------------------------------------------------------------------------------------- presets
@cache
def load_preset(name: str) -> dict:
    """The preset's fields as a dict (lengths, arrival, requests), without its documentation keys."""
    data = read_yaml(preset_path(name))
    return {k: v for k, v in data.items() if k in ("input_tokens", "output_tokens", "arrival", "requests")}


def resolve_preset(spec: WorkloadSpec, *, file: str | None = None) -> WorkloadSpec:
    """The spec with its preset's fields filled in where the spec leaves them unset."""
    if spec.preset is None:
        return spec
    check_preset(spec.preset, file=file)
    merged = dict(load_preset(spec.preset))
    merged.update(spec.model_dump(exclude_unset=True, exclude_none=True))
    merged.pop("preset")
    try:
        return WorkloadSpec.model_validate(merged)
    except ValidationError as exc:
        raise pydantic_error_to_input_error(exc, file=file, prefix="workload", model=WorkloadSpec) from None


# ------------------------------------------------------------------------------------------------- generators
def sample_lengths(dist: LengthDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """n token counts from `dist`, rounded and clipped to [dist.min, dist.max] (max defaults to MAX_TOKENS)."""
    if dist.dist == "fixed":
        values = np.full(n, float(dist.value))
    elif dist.dist == "uniform":
        values = rng.integers(dist.low, dist.high, size=n, endpoint=True).astype(np.float64)
    elif dist.dist == "normal":
        values = rng.normal(dist.mean, dist.std, size=n)
    elif dist.dist == "lognormal":
        # mean/std are of the lengths themselves: sigma^2 = ln(1 + std^2/mean^2), mu = ln(mean) - sigma^2/2.
        sigma2 = np.log1p((dist.std / dist.mean) ** 2)
        values = rng.lognormal(np.log(dist.mean) - sigma2 / 2, np.sqrt(sigma2), size=n)
    else:
        weights = np.ones(len(dist.values)) if dist.weights is None else np.asarray(dist.weights, dtype=float)
        values = rng.choice(np.asarray(dist.values, dtype=np.float64), size=n, p=weights / weights.sum())
    upper = dist.max if dist.max is not None else MAX_TOKENS
    return np.clip(np.rint(values), dist.min, upper).astype(np.int64)


def sample_arrivals(arrival: Arrival, n: int, rng: np.random.Generator) -> np.ndarray:
    """n arrival times (seconds, non-decreasing); the first arrival is at t=0."""
    if arrival.process == "burst":
        return np.zeros(n)
    if arrival.process == "constant":
        gaps = np.full(n, 1.0 / arrival.rate)
    elif arrival.process == "poisson":
        gaps = rng.exponential(1.0 / arrival.rate, size=n)
    else:  # gamma with coefficient of variation cv: shape 1/cv^2, mean 1/rate
        shape = 1.0 / arrival.cv**2
        gaps = rng.gamma(shape, 1.0 / (arrival.rate * shape), size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def generate(spec: WorkloadSpec, *, file: str | None = None) -> Requests:
    """The requests of a workload spec; trace paths are relative to the scenario `file`. With a closed-loop
    arrival the lengths (generated, or the trace's) are sent by `concurrency` clients instead of at their times."""
    spec = resolve_preset(spec, file=file)
    if spec.trace is not None:
        base = Path(file).parent if file else Path.cwd()
        path = Path(spec.trace) if Path(spec.trace).is_absolute() else base / spec.trace
        requests = read_trace(path, spec.trace_format)
        if spec.requests is not None and spec.requests < len(requests):
            requests = Requests(
                *(
                    col[: spec.requests]
                    for col in (
                        requests.arrival_s,
                        requests.input_tokens,
                        requests.output_tokens,
                        requests.ids,
                    )
                )
            )
    else:
        arrivals_ss, input_ss, output_ss = np.random.SeedSequence(spec.seed).spawn(3)
        n = spec.requests
        arrival = spec.arrival or Arrival(process="burst")
        open_loop = arrival if arrival.process != "closed" else Arrival(process="burst")
        requests = Requests.from_columns(
            sample_arrivals(open_loop, n, np.random.default_rng(arrivals_ss)),
            sample_lengths(spec.input_tokens, n, np.random.default_rng(input_ss)),
            sample_lengths(spec.output_tokens, n, np.random.default_rng(output_ss)),
        )
    if spec.arrival is not None and spec.arrival.process == "closed":
        return closed_loop(requests, ClosedLoop(spec.arrival.concurrency, spec.arrival.think_time_s))
    return requests


def closed_loop(requests: Requests, loop: ClosedLoop) -> Requests:
    """The same requests (in order) sent by a closed loop: the first `concurrency` at t = 0, the others when
    a client frees up (NaN until then)."""
    arrival = np.full(len(requests), np.nan)
    arrival[: loop.concurrency] = 0.0
    return Requests(arrival, requests.input_tokens, requests.output_tokens, requests.ids, loop)


# ------------------------------------------------------------------------------------------------------ traces
APEX_FIELDS = ("StartTimeOffset", "ContextTokens", "GeneratedTokens")
JSONL_FIELDS = ("arrival_s", "input_tokens", "output_tokens")
AZURE_FIELDS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def read_trace(path: str | Path, trace_format: str = "auto") -> Requests:
    """Read a trace file; every defect raises InputError naming the file, the line or row and the field."""
    path = Path(path)
    if not path.is_file():
        raise InputError("trace file not found", file=str(path), field="workload.trace")
    if trace_format == "auto":
        trace_format = "azure" if path.suffix.lower() == ".csv" else "json"
    try:
        rows = _read_csv(path) if trace_format == "azure" else _read_jsonl(path)
    except InputError as exc:  # bytes that are not UTF-8, a line that is not JSON: about the whole file
        raise exc if exc.field else exc.within(field_prefix="workload.trace") from None
    if not rows:
        raise InputError("the trace has no requests", file=str(path), field="workload.trace")
    first = rows[0][1]
    if trace_format in ("json", "auto"):
        trace_format = "apex" if "StartTimeOffset" in first else "jsonl"
    fields = {"apex": APEX_FIELDS, "jsonl": JSONL_FIELDS, "azure": AZURE_FIELDS}[trace_format]
    where = "row" if trace_format == "azure" else "line"
    times, inputs, outputs, ids = [], [], [], []
    for lineno, row in rows:
        for key in fields:
            if row.get(key) in (None, ""):
                raise InputError(
                    f"{where} {lineno}: missing field {key!r} (a {trace_format} trace needs "
                    f"{', '.join(fields)})",
                    file=str(path),
                    field=key,
                )
        times.append(_parse_time(row[fields[0]], trace_format, path, where, lineno, fields[0]))
        inputs.append(_parse_count(row[fields[1]], path, where, lineno, fields[1], minimum=1))
        # A request always produces its first token, so 0 generated tokens counts as 1.
        outputs.append(max(1, _parse_count(row[fields[2]], path, where, lineno, fields[2], minimum=0)))
        ids.append(str(row.get("RequestID", row.get("id", len(ids)))))
        if len(times) > 1 and times[-1] < times[-2]:
            raise InputError(
                f"{where} {lineno}: arrival times must be non-decreasing ({times[-1]!r} comes after "
                f"{times[-2]!r})",
                file=str(path),
                field=fields[0],
            )
    arrival = np.asarray(times, dtype=np.float64)
    return Requests(
        arrival - arrival[0],
        np.asarray(inputs, dtype=np.int64),
        np.asarray(outputs, dtype=np.int64),
        np.asarray(ids, dtype=str),
    )


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        # NaN / Infinity parse here and are refused by the field checks, which name the field
        row = parse_json(line, file=str(path), where=f"line {lineno}", finite=False)
        if not isinstance(row, dict):
            raise InputError(f"line {lineno}: expected a JSON object per line", file=str(path))
        rows.append((lineno, row))
    return rows


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    missing = [k for k in AZURE_FIELDS if k not in (reader.fieldnames or ())]
    if missing:
        raise InputError(
            f"row 1: the header lacks {', '.join(missing)} (an Azure trace has {', '.join(AZURE_FIELDS)})",
            file=str(path),
            field=missing[0],
        )
    return [(i, row) for i, row in enumerate(reader, start=2)]


def _parse_time(value, trace_format, path, where, lineno, field) -> float:
    if trace_format == "azure" and isinstance(value, str) and not _is_number(value):
        try:
            # Azure timestamps look like "2023-11-16 18:15:46.6805900" (100 ns digits).
            stamp = np.datetime64(value.strip().replace(" ", "T")[:29], "ns")
        except ValueError:
            raise InputError(
                f"{where} {lineno}: {value!r} is not a timestamp", file=str(path), field=field
            ) from None
        return stamp.astype(np.int64) / 1e9
    if isinstance(value, bool) or not _is_number(value):
        raise InputError(f"{where} {lineno}: {value!r} is not a number", file=str(path), field=field)
    seconds = float(value) / 1e9 if trace_format == "apex" else float(value)
    if not np.isfinite(seconds) or seconds < 0:
        raise InputError(
            f"{where} {lineno}: time {value!r} must be a non-negative number", file=str(path), field=field
        )
    return seconds


def _parse_count(value, path, where, lineno, field, *, minimum: int) -> int:
    number = float(value) if not isinstance(value, bool) and _is_number(value) else math.nan
    if not math.isfinite(number) or number != int(number):
        raise InputError(
            f"{where} {lineno}: {value!r} is not a whole number of tokens", file=str(path), field=field
        )
    count = int(number)
    if not minimum <= count <= MAX_TOKENS:
        raise InputError(
            f"{where} {lineno}: {value!r} tokens; expected a whole number from {minimum} to {MAX_TOKENS:,}",
            file=str(path),
            field=field,
        )
    return count


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
