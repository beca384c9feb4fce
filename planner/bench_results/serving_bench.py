"""`vllm bench serve` result JSON and SGLang `bench_serving` JSONL: the same per-request columns.

Both writers keep, per request (index i), `input_lens[i]`, `output_lens[i]`, `ttfts[i]` (seconds), `itls[i]`
(list of seconds between streamed chunks) and `errors[i]` ("" when it succeeded), plus the run's
`request_rate`, `max_concurrency` and `duration` — vLLM 0.11.0 vllm/benchmarks/serve.py (result dict and
result_json, per-request lists kept only with --save-detailed), SGLang 0.5.3 python/sglang/bench_serving.py
(result | result_details, per-request lists only with --output-details). Neither writes the end-to-end latency
per request; both measure it as the time of the last chunk, which is TTFT + ΣITL
(vllm/benchmarks/lib/endpoint_request_func.py), so that is what `e2e_s` holds.

* vLLM: one JSON object per file, or several on separate lines with --append-result.
* SGLang: one JSON object per line (each run appends a line).
"""

from __future__ import annotations

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

PER_REQUEST = ("input_lens", "output_lens", "ttfts", "itls")
HINT = {
    "vllm-bench": "run `vllm bench serve` with --save-result --save-detailed to keep per-request fields",
    "sglang-bench": "run `python -m sglang.bench_serving` with --output-file and --output-details",
}


def run_from_dict(data: dict, *, tool: str, file: str, where: str | None) -> BenchmarkRun:
    """One run from a writer's result object; `where` prefixes field names (e.g. 'line 3')."""
    prefix = f"{where}: " if where else ""
    columns = {
        k: seq(require(data, k, file=file, prefix=prefix, hint=HINT[tool]), file=file, field=prefix + k)
        for k in PER_REQUEST
    }
    errors = data.get("errors")
    if errors is not None:
        columns["errors"] = seq(errors, file=file, field=prefix + "errors")
    n = len(columns["ttfts"])
    for key, col in columns.items():
        if len(col) != n:
            raise InputError(
                f"has {len(col)} entries but ttfts has {n}; the per-request lists must be equally long",
                file=file,
                field=prefix + key,
            )
    requests, failed = [], 0
    for i in range(n):
        if errors is not None and errors[i]:
            failed += 1
            continue
        ttft = number(columns["ttfts"][i], file=file, field=f"{prefix}ttfts[{i}]")
        gaps = tuple(
            number(g, file=file, field=f"{prefix}itls[{i}][{j}]")
            for j, g in enumerate(seq(columns["itls"][i], file=file, field=f"{prefix}itls[{i}]"))
        )
        requests.append(
            RequestRecord(
                ttft_s=ttft,
                itl_s=gaps,
                e2e_s=ttft + sum(gaps),
                input_tokens=integer(columns["input_lens"][i], file=file, field=f"{prefix}input_lens[{i}]"),
                output_tokens=integer(
                    columns["output_lens"][i], file=file, field=f"{prefix}output_lens[{i}]"
                ),
            )
        )
    duration = data.get("duration")
    burstiness = data.get("burstiness")  # vllm/benchmarks/serve.py result_json["burstiness"]
    return BenchmarkRun(
        tool=tool,
        source=f"{file} ({where})" if where else file,
        request_rate=None
        if data.get("request_rate") == "trace"
        else rate(data.get("request_rate"), file=file, field=prefix + "request_rate"),
        max_concurrency=optional_int(
            data.get("max_concurrency"), file=file, field=prefix + "max_concurrency"
        ),
        requests=tuple(requests),
        failed=failed,
        duration_s=None if duration is None else number(duration, file=file, field=prefix + "duration"),
        burstiness=None
        if burstiness is None or burstiness in ("inf", "Infinity")
        else number(burstiness, file=file, field=prefix + "burstiness", minimum=1e-6),
    )


def _lines(text: str):
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield lineno, line


def parse_vllm_bench(path: str) -> list[BenchmarkRun]:
    """Runs of a `vllm bench serve --save-result --save-detailed` file (several with --append-result)."""
    text = read_text(path)
    stripped = text.strip()
    if not stripped:
        raise InputError(
            "is empty; expected the JSON object `vllm bench serve --save-result` writes", file=path
        )
    objects = (
        [(None, parse_json(stripped, file=path))]
        if "\n{" not in stripped
        else [(f"line {n}", parse_json(line, file=path, where=f"line {n}")) for n, line in _lines(text)]
    )
    return [
        run_from_dict(mapping(obj, file=path, field=where), tool="vllm-bench", file=path, where=where)
        for where, obj in objects
    ]


def parse_sglang_bench(path: str) -> list[BenchmarkRun]:
    """Runs of a SGLang `bench_serving --output-file X.jsonl --output-details` file, one per line."""
    text = read_text(path)
    runs = [
        run_from_dict(
            mapping(parse_json(line, file=path, where=f"line {n}"), file=path, field=f"line {n}"),
            tool="sglang-bench",
            file=path,
            where=f"line {n}",
        )
        for n, line in _lines(text)
    ]
    if not runs:
        raise InputError(
            "is empty; expected one JSON object per line (SGLang bench_serving --output-file)", file=path
        )
    return runs
