"""`apex ingest RESULTS...`: read benchmark result files into per-request records and summarize each run
(register with `app.command("ingest")(ingest_command)`). A malformed file exits 2 naming the file and field."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from planner.bench_results.load import FORMATS, load_results
from planner.render import console


def _ms(stats: dict | None, key: str) -> str:
    return "-" if not stats else f"{1000 * stats[key]:.1f}"


def ingest_command(
    results: Annotated[
        list[str], typer.Argument(help="result files (vllm bench serve, SGLang, GenAI-Perf, AIPerf)")
    ],
    fmt: Annotated[str, typer.Option("--format", help=f"one of: {', '.join(FORMATS)}")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON summary per run per line")] = False,
):
    """Read benchmark result files into per-request records (TTFT, ITL, E2E, token counts) and summarize them."""
    runs = [run for path in results for run in load_results(path, fmt)]
    if as_json:
        for run in runs:
            print(json.dumps(run.summary()), flush=True)
        return
    t = Table(title="Benchmark runs (latencies in ms)", title_justify="left")
    for col in (
        "source",
        "tool",
        "rate",
        "conc.",
        "ok",
        "failed",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "E2E p50",
        "E2E p99",
        "out tok mean",
    ):
        t.add_column(col, justify="left" if col in ("source", "tool") else "right")
    for run in runs:
        s = run.summary()
        out = s["output_tokens"]
        t.add_row(
            escape(run.source),
            run.tool,
            "-" if s["request_rate"] is None else str(s["request_rate"]),
            "-" if s["max_concurrency"] is None else str(s["max_concurrency"]),
            str(s["completed"]),
            str(s["failed"]),
            _ms(s["ttft_s"], "p50"),
            _ms(s["ttft_s"], "p99"),
            _ms(s["itl_s"], "p50"),
            _ms(s["itl_s"], "p99"),
            _ms(s["e2e_s"], "p50"),
            _ms(s["e2e_s"], "p99"),
            "-" if not out else f"{out['mean']:.0f}",
        )
    console.print(t)
