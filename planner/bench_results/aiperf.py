"""AIPerf `profile_export.jsonl`: one record per request (AIPerf 0.2.0 and later).

Each line is a MetricRecordInfo (aiperf/common/models/record_models.py): `metadata` (`benchmark_phase`
"warmup" or "profiling", `request_start_ns` — kept as the request's send time —, ...), `metrics` {tag: {"value", "unit"}} and `error` (null when
the request succeeded). Tags used (aiperf/metrics/types/): `time_to_first_token`, `request_latency`,
`inter_chunk_latency` (list, gaps between streamed chunks), `input_sequence_length`, `output_sequence_length`;
values are in display units (ms for times). Warm-up records are skipped.

The offered load is not in the records: it is read from `profile_export_aiperf.json` next to the file
(`input_config.loadgen.request_rate` / `.concurrency`, present when the user set them), else left None.
"""

from __future__ import annotations

import json
from pathlib import Path

from planner.bench_results.fields import (
    integer,
    mapping,
    number,
    optional_int,
    parse_json,
    rate,
    read_text,
    require,
    seq,
)
from planner.bench_results.records import BenchmarkRun, RequestRecord
from simulator.errors import InputError

TO_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "sec": 1.0, "s": 1.0}
SUMMARY_FILE = "profile_export_aiperf.json"


def _metric(metrics: dict, tag: str, *, file: str, where: str, required: bool = True):
    if tag not in metrics:
        if required:
            raise InputError("required metric is missing", file=file, field=f"{where}.metrics.{tag}")
        return None, None
    entry = mapping(metrics[tag], file=file, field=f"{where}.metrics.{tag}")
    value = require(entry, "value", file=file, prefix=f"{where}.metrics.{tag}.")
    unit = entry.get("unit")
    return value, unit


def _seconds(value, unit, *, file: str, field: str) -> float:
    if unit not in TO_SECONDS:
        raise InputError(
            f"expected a time unit ({', '.join(TO_SECONDS)}), got {unit!r}", file=file, field=field + ".unit"
        )
    return number(value, file=file, field=field + ".value") * TO_SECONDS[unit]


def _load(path: Path) -> tuple[float | None, int | None]:
    summary = path.with_name(SUMMARY_FILE)
    if not summary.is_file():
        return None, None
    data = mapping(parse_json(read_text(summary), file=str(summary)), file=str(summary), field=None)
    loadgen = (data.get("input_config") or {}).get("loadgen") or {}
    if not isinstance(loadgen, dict):
        raise InputError("expected an object", file=str(summary), field="input_config.loadgen")
    return (
        rate(loadgen.get("request_rate"), file=str(summary), field="input_config.loadgen.request_rate"),
        optional_int(loadgen.get("concurrency"), file=str(summary), field="input_config.loadgen.concurrency"),
    )


def parse_aiperf(path: str) -> list[BenchmarkRun]:
    """The profiling-phase requests of an AIPerf profile_export.jsonl as one run."""
    text = read_text(path)
    requests, failed, seen = [], 0, 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        seen += 1
        where = f"line {lineno}"
        rec = mapping(parse_json(line, file=path, where=where), file=path, field=where)
        meta = mapping(
            require(rec, "metadata", file=path, prefix=f"{where}: "), file=path, field=f"{where}.metadata"
        )
        if meta.get("benchmark_phase") == "warmup":
            continue
        if rec.get("error") is not None:
            failed += 1
            continue
        metrics = mapping(
            require(rec, "metrics", file=path, prefix=f"{where}: "), file=path, field=f"{where}.metrics"
        )
        ttft, ttft_unit = _metric(metrics, "time_to_first_token", file=path, where=where)
        e2e, e2e_unit = _metric(metrics, "request_latency", file=path, where=where)
        chunks, chunk_unit = _metric(metrics, "inter_chunk_latency", file=path, where=where, required=False)
        field = f"{where}.metrics.inter_chunk_latency"
        gaps = ()
        if chunks is not None:
            gaps = tuple(
                _seconds(g, chunk_unit, file=path, field=f"{field}[{j}]")
                for j, g in enumerate(seq(chunks, file=path, field=field))
            )
        start_ns = meta.get("request_start_ns")
        isl, _ = _metric(metrics, "input_sequence_length", file=path, where=where, required=False)
        osl, _ = _metric(metrics, "output_sequence_length", file=path, where=where, required=False)
        requests.append(
            RequestRecord(
                ttft_s=_seconds(ttft, ttft_unit, file=path, field=f"{where}.metrics.time_to_first_token"),
                itl_s=gaps,
                e2e_s=_seconds(e2e, e2e_unit, file=path, field=f"{where}.metrics.request_latency"),
                input_tokens=None
                if isl is None
                else integer(isl, file=path, field=f"{where}.metrics.input_sequence_length.value"),
                output_tokens=None
                if osl is None
                else integer(osl, file=path, field=f"{where}.metrics.output_sequence_length.value"),
                sent_s=None
                if start_ns is None
                else integer(start_ns, file=path, field=f"{where}.metadata.request_start_ns") / 1e9,
            )
        )
    if seen == 0:
        raise InputError(
            "is empty; expected one JSON record per line (AIPerf profile_export.jsonl)", file=path
        )
    request_rate, concurrency = _load(Path(path))
    return [
        BenchmarkRun(
            tool="aiperf",
            source=path,
            request_rate=request_rate,
            max_concurrency=concurrency,
            requests=tuple(requests),
            failed=failed,
            duration_s=None,
        )
    ]


def is_aiperf_record(line: str) -> bool:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and "metadata" in data and "metrics" in data
