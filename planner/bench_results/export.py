"""Write per-request client times as the result files of each supported tool (the inverse of the parsers).

Used to test the serving calibration by recovery (tests/planner/test_calibrate_serving.py,
bench/bench_calibrate_recovery.py): a simulation with known coefficients is written in each format, read back by
`load_results` and fitted. Files written here are simulations, never measurements; each says so in a field the
tool's own writer does not use (`apex_note`), which the parsers ignore.

The simulator records inter-token gaps per engine step, not per request, so a request's ITL list is its mean
gap (E2E − TTFT) / (output tokens − 1) repeated: TTFT, E2E and TPOT are exact, the spread of one request's gaps
is not kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.engine.metrics import SimulationResult

NOTE = "written by APEX from a simulation (planner/bench_results/export.py); not a measurement"
EPOCH_NS = 1_700_000_000 * 10**9  # send times are written on a wall clock starting here


@dataclass(frozen=True)
class RunToWrite:
    """One run's completed requests as a client saw them (seconds) and the load that drove it."""

    sent_s: np.ndarray  # from the start of the run
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    request_rate: float  # requests/s; math.inf = all at once
    max_concurrency: int | None = None
    burstiness: float | None = None

    @staticmethod
    def from_simulation(
        result: SimulationResult,
        request_rate: float,
        max_concurrency: int | None = None,
        burstiness: float | None = None,
    ) -> RunToWrite:
        """The finished requests of a simulation, in arrival order."""
        cols = result.request_columns()
        done = np.isfinite(cols["e2e_s"])
        return RunToWrite(
            sent_s=np.asarray(cols["arrival_s"][done], dtype=float),
            input_tokens=np.asarray(cols["input_tokens"][done], dtype=int),
            output_tokens=np.asarray(cols["output_tokens"][done], dtype=int),
            ttft_s=np.asarray(cols["ttft_s"][done], dtype=float),
            e2e_s=np.asarray(cols["e2e_s"][done], dtype=float),
            request_rate=request_rate,
            max_concurrency=max_concurrency,
            burstiness=burstiness,
        )

    def gaps(self, i: int) -> list[float]:
        """Request i's inter-token gaps: its mean gap, once per token after the first."""
        n = int(self.output_tokens[i]) - 1
        return [float(self.e2e_s[i] - self.ttft_s[i]) / n] * n if n > 0 else []

    @property
    def duration_s(self) -> float:
        return float((self.sent_s + self.e2e_s).max() - self.sent_s.min())

    def _rate(self):
        return "inf" if math.isinf(self.request_rate) else float(self.request_rate)


def _serving_bench(run: RunToWrite) -> dict:
    """The per-request lists vLLM's and SGLang's writers share (keys cited in serving_bench.py)."""
    n = len(run.ttft_s)
    return {
        "apex_note": NOTE,
        "request_rate": run._rate(),
        "max_concurrency": run.max_concurrency,
        "duration": run.duration_s,
        "completed": n,
        "input_lens": [int(x) for x in run.input_tokens],
        "output_lens": [int(x) for x in run.output_tokens],
        "ttfts": [float(x) for x in run.ttft_s],
        "itls": [run.gaps(i) for i in range(n)],
        "errors": [""] * n,
    }


def write_vllm(runs: list[RunToWrite], path: str | Path) -> None:
    """`vllm bench serve --save-result --save-detailed` JSON (several runs: one per line, --append-result)."""
    lines = []
    for run in runs:
        data = {"endpoint_type": "openai", "backend": "vllm", **_serving_bench(run)}
        data["burstiness"] = 1.0 if run.burstiness is None else run.burstiness
        lines.append(json.dumps(data))
    Path(path).write_text("\n".join(lines) + "\n")


def write_sglang(runs: list[RunToWrite], path: str | Path) -> None:
    """SGLang `bench_serving --output-file X.jsonl --output-details`: one JSON object per line."""
    lines = [json.dumps({"backend": "sglang", "dataset_name": "random", **_serving_bench(r)}) for r in runs]
    Path(path).write_text("\n".join(lines) + "\n")


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event)}\n\n"


def write_genai_perf(runs: list[RunToWrite], path: str | Path) -> None:
    """GenAI-Perf profile_export.json: one experiment per run, per request its send and per-token timestamps;
    the last response also streams `usage.completion_tokens` (the export has no token counts otherwise)."""
    experiments = []
    for run in runs:
        requests = []
        for i in range(len(run.ttft_s)):
            sent = EPOCH_NS + round(run.sent_s[i] * 1e9)
            t = run.sent_s[i] + run.ttft_s[i]
            stamps = [t]
            for gap in run.gaps(i):
                t += gap
                stamps.append(t)
            outputs = [{"response": _sse({"choices": [{"delta": {"content": "x"}}]})} for _ in stamps]
            usage = {"choices": [], "usage": {"completion_tokens": int(run.output_tokens[i])}}
            outputs[-1] = {"response": outputs[-1]["response"] + _sse(usage) + "data: [DONE]\n\n"}
            requests.append(
                {
                    "timestamp": sent,
                    "response_timestamps": [EPOCH_NS + round(s * 1e9) for s in stamps],
                    "response_outputs": outputs,
                }
            )
        mode, value = (
            ("concurrency", run.max_concurrency)
            if run.max_concurrency is not None
            else ("request_rate", float(run.request_rate))
        )
        experiments.append({"experiment": {"mode": mode, "value": value}, "requests": requests})
    Path(path).write_text(json.dumps({"apex_note": NOTE, "experiments": experiments}))


def write_aiperf(run: RunToWrite, path: str | Path) -> None:
    """AIPerf profile_export.jsonl (times in ms, send times in ns) and profile_export_aiperf.json beside it with
    the load (input_config.loadgen)."""
    path = Path(path)
    lines = []
    for i in range(len(run.ttft_s)):
        ms = {"unit": "ms"}
        lines.append(
            json.dumps(
                {
                    "metadata": {
                        "benchmark_phase": "profiling",
                        "request_start_ns": EPOCH_NS + round(run.sent_s[i] * 1e9),
                        "apex_note": NOTE,
                    },
                    "metrics": {
                        "time_to_first_token": {"value": 1e3 * float(run.ttft_s[i]), **ms},
                        "request_latency": {"value": 1e3 * float(run.e2e_s[i]), **ms},
                        "inter_chunk_latency": {"value": [1e3 * g for g in run.gaps(i)], **ms},
                        "input_sequence_length": {"value": int(run.input_tokens[i]), "unit": "tokens"},
                        "output_sequence_length": {"value": int(run.output_tokens[i]), "unit": "tokens"},
                    },
                    "error": None,
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    loadgen = {"request_rate": run._rate() if run.max_concurrency is None else None}
    if run.max_concurrency is not None:
        loadgen["concurrency"] = run.max_concurrency
    summary = {"apex_note": NOTE, "input_config": {"loadgen": loadgen}}
    path.with_name("profile_export_aiperf.json").write_text(json.dumps(summary))


FORMATS = ("vllm", "sglang", "genai-perf", "aiperf")


def write_results(fmt: str, runs: list[RunToWrite], folder: str | Path) -> list[str]:
    """Write `runs` as `fmt` files under `folder` (AIPerf: one folder per run, ep0/, ep1/, ... as the emitted
    benchmark scripts lay them out); returns the paths to pass to `apex calibrate` / `apex ingest`."""
    folder = Path(folder)
    if fmt == "vllm":
        write_vllm(runs, folder / "vllm-bench.json")
        return [str(folder / "vllm-bench.json")]
    if fmt == "sglang":
        write_sglang(runs, folder / "sglang-bench.jsonl")
        return [str(folder / "sglang-bench.jsonl")]
    if fmt == "genai-perf":
        write_genai_perf(runs, folder / "profile_export.json")
        return [str(folder / "profile_export.json")]
    if fmt != "aiperf":
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    paths = []
    for i, run in enumerate(runs):
        (folder / f"ep{i}").mkdir(parents=True, exist_ok=True)
        write_aiperf(run, folder / f"ep{i}" / "profile_export.jsonl")
        paths.append(str(folder / f"ep{i}" / "profile_export.jsonl"))
    return paths
