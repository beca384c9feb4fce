"""`load_results(path, fmt)`: any supported result file → its benchmark runs (InputError, exit 2, when malformed).

Formats: `vllm` (`vllm bench serve --save-result --save-detailed` JSON), `sglang` (`bench_serving --output-file
--output-details` JSONL), `genai-perf` (profile_export.json), `aiperf` (profile_export.jsonl). `auto` tells
them apart by their keys.
"""

from __future__ import annotations

import json

from planner.bench_results.aiperf import is_aiperf_record, parse_aiperf
from planner.bench_results.fields import read_text
from planner.bench_results.genai_perf import parse_genai_perf
from planner.bench_results.records import BenchmarkRun
from planner.bench_results.serving_bench import parse_sglang_bench, parse_vllm_bench
from simulator.errors import InputError

PARSERS = {
    "vllm": parse_vllm_bench,
    "sglang": parse_sglang_bench,
    "genai-perf": parse_genai_perf,
    "aiperf": parse_aiperf,
}
FORMATS = ("auto", *PARSERS)


def detect_format(path: str) -> str:
    """The format of a result file from its first JSON value's keys."""
    text = read_text(path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    if is_aiperf_record(first):
        return "aiperf"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = json.loads(first)
        except json.JSONDecodeError:
            raise InputError(
                "is neither JSON nor JSON lines; expected a benchmark result file", file=path
            ) from None
    if isinstance(data, dict):
        if "experiments" in data:
            return "genai-perf"
        if "endpoint_type" in data:  # vllm/benchmarks/serve.py result_json["endpoint_type"]
            return "vllm"
        if "dataset_name" in data:  # sglang/bench_serving.py result["dataset_name"]
            return "sglang"
    raise InputError(
        "is not a result file of a supported tool (expected the keys of `vllm bench serve`, SGLang bench_serving, "
        "GenAI-Perf profile_export.json or AIPerf profile_export.jsonl); pass --format to say which",
        file=path,
    )


def load_results(path: str, fmt: str = "auto") -> list[BenchmarkRun]:
    """The runs in a result file."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", field="--format")
    return PARSERS[detect_format(path) if fmt == "auto" else fmt](path)
