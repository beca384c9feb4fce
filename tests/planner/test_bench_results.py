"""Reading benchmark result files into per-request records (`planner.bench_results`, `apex ingest`).

SYNTHETIC DATA: every result file in these tests is generated here from random numbers with a fixed seed, laid
out with the keys each tool's writer uses (cited in planner/bench_results/*). None of it is a measurement.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from planner.bench_results.load import detect_format, load_results
from simulator.errors import InputError

SYNTHETIC = "synthetic test fixture, not a measurement"


def _synthetic_requests(n=40, seed=7, failed=(5,)):
    """Per-request (ttft, itl list, input, output) drawn at random; the `failed` indices did not complete."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        out = int(rng.integers(2, 30))
        rows.append(
            {
                "ttft": float(rng.uniform(0.02, 0.4)),
                "itl": [float(x) for x in rng.uniform(0.005, 0.03, size=out - 1)],
                "input": int(rng.integers(16, 2048)),
                "output": out,
                "ok": i not in failed,
            }
        )
    return rows


def _serving_bench_dict(rows, **run) -> dict:
    """The per-request lists vLLM's and SGLang's writers share (failed requests: ttft 0, no itl, an error)."""
    return {
        **run,
        "duration": 12.5,
        "completed": sum(r["ok"] for r in rows),
        "input_lens": [r["input"] for r in rows],
        "output_lens": [r["output"] if r["ok"] else 0 for r in rows],
        "ttfts": [r["ttft"] if r["ok"] else 0.0 for r in rows],
        "itls": [r["itl"] if r["ok"] else [] for r in rows],
        "generated_texts": ["x" * r["output"] if r["ok"] else "" for r in rows],
        "errors": ["" if r["ok"] else "Never received a valid chunk" for r in rows],
    }


def write_vllm(path, rows, rate=4.0, concurrency=None):
    data = {
        "date": "20250101-000000",
        "endpoint_type": "openai",
        "backend": "openai",
        "label": None,
        "model_id": "meta-llama/Llama-3.1-8B",
        "tokenizer_id": "meta-llama/Llama-3.1-8B",
        "num_prompts": len(rows),
        "fixture": SYNTHETIC,  # what `--metadata fixture=...` would add
        "request_rate": rate,
        "burstiness": 1.0,
        "max_concurrency": concurrency,
        **_serving_bench_dict(rows),
    }
    path.write_text(json.dumps(data))
    return path


def write_sglang(path, runs):
    lines = [
        json.dumps(
            {
                "backend": "sglang",
                "dataset_name": "random",
                "request_rate": rate,
                "max_concurrency": None,
                "fixture": SYNTHETIC,
                **_serving_bench_dict(rows),
            }
        )
        for rows, rate in runs
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sse(text: str | None = None, usage: int | None = None) -> str:
    payload = {"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": text or ""}]}
    if usage is not None:
        payload = {
            "id": "cmpl-1",
            "object": "text_completion",
            "choices": [],
            "usage": {"completion_tokens": usage},
        }
    return "data: " + json.dumps(payload) + "\n\n"


def write_genai_perf(path, rows, rate=4.0):
    requests, t = [], 1_000_000_000
    for r in rows:
        sent = t
        t += 250_000_000
        if not r["ok"]:
            requests.append(
                {
                    "timestamp": sent,
                    "request_inputs": {"payload": "{}"},
                    "response_timestamps": [sent + 1],
                    "response_outputs": [{"response": "data: [DONE]\n\n"}],
                }
            )
            continue
        stamps = [sent + round(r["ttft"] * 1e9)]
        for gap in r["itl"]:
            stamps.append(stamps[-1] + round(gap * 1e9))
        outputs = [{"response": _sse("tok")} for _ in stamps]
        # a usage-only chunk and [DONE] after the last token: not tokens, dropped before timing
        stamps += [stamps[-1] + 1_000_000, stamps[-1] + 2_000_000]
        outputs += [{"response": _sse(usage=r["output"])}, {"response": "data: [DONE]\n\n"}]
        requests.append(
            {
                "timestamp": sent,
                "request_inputs": {"payload": "{}"},
                "response_timestamps": stamps,
                "response_outputs": outputs,
            }
        )
    data = {
        "service_kind": "openai",
        "endpoint": "v1/completions",
        "fixture": SYNTHETIC,
        "experiments": [{"experiment": {"mode": "request_rate", "value": rate}, "requests": requests}],
    }
    path.write_text(json.dumps(data))
    return path


def write_aiperf(directory, rows, rate=4.0, warmup=2):
    lines = []
    for i in range(warmup):
        lines.append(
            {
                "metadata": {"session_num": i, "benchmark_phase": "warmup", "request_start_ns": 1},
                "metrics": {"time_to_first_token": {"value": 1.0, "unit": "ms"}},
                "error": None,
            }
        )
    for i, r in enumerate(rows):
        meta = {
            "session_num": i,
            "benchmark_phase": "profiling",
            "request_start_ns": 10 + i,
            "worker_id": "w",
            "record_processor_id": "p",
            "was_cancelled": False,
        }
        if not r["ok"]:
            lines.append(
                {
                    "metadata": meta,
                    "metrics": {"error_isl": {"value": r["input"], "unit": "tokens"}},
                    "error": {"code": 500, "type": "ServerError", "message": "synthetic failure"},
                }
            )
            continue
        e2e = r["ttft"] + sum(r["itl"])
        lines.append(
            {
                "metadata": meta,
                "metrics": {
                    "input_sequence_length": {"value": r["input"], "unit": "tokens"},
                    "time_to_first_token": {"value": r["ttft"] * 1000, "unit": "ms"},
                    "request_latency": {"value": e2e * 1000, "unit": "ms"},
                    "inter_chunk_latency": {"value": [g * 1000 for g in r["itl"]], "unit": "ms"},
                    "output_sequence_length": {"value": r["output"], "unit": "tokens"},
                    "inter_token_latency": {
                        "value": 1000 * sum(r["itl"]) / max(1, r["output"] - 1),
                        "unit": "ms",
                    },
                },
                "error": None,
            }
        )
    path = directory / "profile_export.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    (directory / "profile_export_aiperf.json").write_text(
        json.dumps({"fixture": SYNTHETIC, "input_config": {"loadgen": {"request_rate": rate}}})
    )
    return path


def _check(run, rows, *, tokens=True, input_tokens=True):
    ok = [r for r in rows if r["ok"]]
    assert len(run.requests) == len(ok) and run.failed == len(rows) - len(ok)
    for rec, r in zip(run.requests, ok, strict=True):
        assert rec.ttft_s == pytest.approx(r["ttft"], abs=1e-9)
        assert rec.itl_s == pytest.approx(r["itl"], abs=1e-9)
        assert rec.e2e_s == pytest.approx(r["ttft"] + sum(r["itl"]), abs=1e-8)
        assert rec.output_tokens == (r["output"] if tokens else None)
        assert rec.input_tokens == (r["input"] if input_tokens else None)
        assert rec.tpot_s == (pytest.approx(sum(r["itl"]) / (r["output"] - 1)) if tokens else None)


def test_vllm_bench_serve_json_round_trips(tmp_path):
    rows = _synthetic_requests()
    path = write_vllm(tmp_path / "vllm.json", rows, rate=4.0, concurrency=64)
    assert detect_format(str(path)) == "vllm"
    (run,) = load_results(str(path))
    _check(run, rows)
    assert (run.tool, run.request_rate, run.max_concurrency, run.duration_s) == ("vllm-bench", 4.0, 64, 12.5)


def test_vllm_appended_results_and_inf_rate(tmp_path):
    rows = _synthetic_requests(n=6, failed=())
    a = json.loads(write_vllm(tmp_path / "a.json", rows, rate=2.0).read_text())
    b = json.loads(write_vllm(tmp_path / "b.json", rows, rate="inf").read_text())
    path = tmp_path / "appended.json"
    path.write_text(json.dumps(a) + "\n" + json.dumps(b))
    runs = load_results(str(path), "vllm")
    assert [r.request_rate for r in runs] == [2.0, math.inf]
    assert runs[1].summary()["request_rate"] == "inf" and runs[1].source.endswith("(line 2)")


def test_sglang_bench_serving_jsonl_one_run_per_line(tmp_path):
    first, second = _synthetic_requests(seed=1), _synthetic_requests(seed=2, failed=())
    path = write_sglang(tmp_path / "sglang.jsonl", [(first, 2.0), (second, 8.0)])
    assert detect_format(str(path)) == "sglang"
    runs = load_results(str(path))
    assert [r.request_rate for r in runs] == [2.0, 8.0]
    _check(runs[0], first)
    _check(runs[1], second)


def test_genai_perf_profile_export_drops_non_token_chunks(tmp_path):
    rows = _synthetic_requests()
    path = write_genai_perf(tmp_path / "profile_export.json", rows, rate=3.0)
    assert detect_format(str(path)) == "genai-perf"
    (run,) = load_results(str(path))
    _check(run, rows, input_tokens=False)  # output tokens from the streamed usage; input not in the export
    assert (run.request_rate, run.max_concurrency) == (3.0, None)


def test_aiperf_records_skip_warmup_and_read_the_load(tmp_path):
    rows = _synthetic_requests()
    path = write_aiperf(tmp_path, rows, rate=5.0)
    assert detect_format(str(path)) == "aiperf"
    (run,) = load_results(str(path))
    _check(run, rows)
    assert run.request_rate == 5.0


def test_summary_statistics(tmp_path):
    rows = _synthetic_requests(failed=())
    (run,) = load_results(str(write_vllm(tmp_path / "v.json", rows)))
    s = run.summary()
    ttfts = np.array([r["ttft"] for r in rows])
    assert s["ttft_s"]["mean"] == pytest.approx(ttfts.mean())
    assert s["ttft_s"]["p99"] == pytest.approx(np.percentile(ttfts, 99))
    assert s["itl_s"]["p50"] == pytest.approx(np.median([g for r in rows for g in r["itl"]]))
    assert s["completed"] == 40 and s["failed"] == 0


def _broken(tmp_path, name, mutate, writer=write_vllm):
    rows = _synthetic_requests(n=8)
    path = writer(tmp_path / name, rows)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    ("mutate", "field", "needle"),
    [
        (
            lambda d: [d.pop(k) for k in ("input_lens", "output_lens", "ttfts", "itls", "errors")],
            "input_lens",
            "--save-detailed",
        ),
        (lambda d: d["ttfts"].__setitem__(3, "fast"), "ttfts[3]", "expected a finite number"),
        (lambda d: d["ttfts"].__setitem__(2, -0.5), "ttfts[2]", ">= 0"),
        (lambda d: d["itls"].__setitem__(1, 0.1), "itls[1]", "expected a list"),
        (lambda d: d["output_lens"].pop(), "output_lens", "equally long"),
        (lambda d: d.__setitem__("request_rate", "fast"), "request_rate", "request rate"),
    ],
)
def test_malformed_vllm_files_name_the_field(tmp_path, mutate, field, needle):
    path = _broken(tmp_path, "v.json", mutate)
    with pytest.raises(InputError) as info:
        load_results(path)
    assert info.value.file == path and info.value.field == field and needle in info.value.detail


def test_malformed_genai_perf_and_aiperf_name_the_field(tmp_path):
    path = _broken(
        tmp_path,
        "g.json",
        lambda d: d["experiments"][0]["requests"][2].pop("response_timestamps"),
        writer=write_genai_perf,
    )
    with pytest.raises(InputError) as info:
        load_results(path)
    assert info.value.field == "experiments[0].requests[2].response_timestamps"
    rows = _synthetic_requests(n=4, failed=())
    jsonl = write_aiperf(tmp_path, rows, warmup=0)
    lines = jsonl.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["metrics"]["time_to_first_token"]["unit"] = "fortnights"
    lines[1] = json.dumps(rec)
    jsonl.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        load_results(str(jsonl))
    assert info.value.field == "line 2.metrics.time_to_first_token.unit" and "time unit" in info.value.detail


def test_ingest_cli_summarizes_and_exits_2_on_bad_files(tmp_path, run_cli):
    rows = _synthetic_requests()
    path = write_vllm(tmp_path / "v.json", rows)
    code, out, _ = run_cli("ingest", str(path), "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["completed"] == 39 and summary["failed"] == 1 and summary["tool"] == "vllm-bench"
    code, out, _ = run_cli("ingest", str(path))
    assert code == 0 and "vllm-bench" in out
    (tmp_path / "notes.json").write_text(json.dumps({"hello": 1}))
    code, _, err = run_cli("ingest", str(tmp_path / "notes.json"))
    assert code == 2 and "notes.json" in err and "--format" in err
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = run_cli("ingest", str(tmp_path / "bad.json"), "--format", "vllm")
    assert code == 2 and "bad.json" in err and "not valid JSON" in err
    code, _, err = run_cli("ingest", str(tmp_path / "missing.json"))
    assert code == 2 and "no such result file" in err
    code, _, err = run_cli("ingest", str(path), "--format", "csv")
    assert code == 2 and "--format" in err
