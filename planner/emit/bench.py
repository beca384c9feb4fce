"""Benchmark scripts that replay the scenario's workload against the emitted deployment: `vllm bench serve`
(vLLM 0.11.0), `genai-perf profile` (0.0.16) and `aiperf profile` (0.2.0), flags from planner/emit/flags/.

The requests are the ones APEX simulated (same generator and seed, or the same trace). With several endpoints
(colocated replicas without a router) request i goes to endpoint i mod E, one client per endpoint, as a
round-robin router would spread them. How faithfully each tool replays the workload:

* aiperf: exactly — a trace of (arrival time, input length, output length) per request, run with
  --fixed-schedule (aiperf's mooncake_trace format);
* vllm bench serve: the arrival process exactly for Poisson, gamma (--burstiness = 1/cv²), constant
  (--burstiness inf) and burst (--request-rate inf); lengths as vLLM's random dataset draws them, uniform in
  mean × [1 − r, 1 + r] with r matching the input lengths' standard deviation (capped below 1);
* genai-perf: the mean rate with perf_analyzer's constant spacing (--concurrency n for a burst) and normally
  distributed lengths with the workload's mean and standard deviation.

A closed-loop workload (`process: closed`) runs every tool at the workload's concurrency (split over the
endpoints like the requests): vllm bench serve --max-concurrency with --request-rate inf, genai-perf and
aiperf --concurrency (aiperf then sends the trace's requests in order, without --fixed-schedule). None of them
pauses between requests, so a think time is not replayed (a warning says so).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from planner.emit.artifacts import EmittedFile, EngineOutput, script
from planner.emit.commands import Command, render
from planner.emit.flag_table import load_table
from planner.emit.layout import Layout
from simulator.workload import Requests

RESULTS = "results"
PERCENTILES = "50,90,99"


@dataclass(frozen=True)
class WorkloadSummary:
    """The statistics of the replayed requests the approximate tools use."""

    requests: int
    rate: float | None  # requests/s; None = all at t=0
    process: str  # poisson | gamma | constant | burst | closed | trace
    cv: float
    input_mean: float
    input_std: float
    output_mean: float
    output_std: float
    seed: int
    concurrency: int | None = None  # closed loop: requests in flight
    think_time_s: float = 0.0


def summarize(layout: Layout, requests: Requests) -> WorkloadSummary:
    spec = layout.scenario.spec.workload
    n = len(requests)
    span = float(requests.arrival_s[-1] - requests.arrival_s[0]) if n > 1 else 0.0
    if requests.closed is not None:
        process, cv, rate = "closed", 1.0, None
    elif spec.trace is not None:
        process, cv = "trace", 1.0
        rate = (n - 1) / span if span > 0 else None
    else:
        arrival = spec.arrival
        process = arrival.process if arrival is not None else "burst"
        cv = arrival.cv if arrival is not None else 1.0
        rate = None if process == "burst" else float(arrival.rate)
    inp = requests.input_tokens.astype(float)
    out = requests.output_tokens.astype(float)
    return WorkloadSummary(
        requests=n,
        rate=rate,
        process=process,
        cv=cv,
        input_mean=float(inp.mean()),
        input_std=float(inp.std()),
        output_mean=float(out.mean()),
        output_std=float(out.std()),
        seed=spec.seed,
        concurrency=requests.closed.concurrency if requests.closed is not None else None,
        think_time_s=requests.closed.think_time_s if requests.closed is not None else 0.0,
    )


def _host_port(url: str) -> str:
    return url.removeprefix("http://")


def _share(n: int, k: int, e: int) -> int:
    """How many of n requests endpoint k of e receives under i mod e routing."""
    return len(range(k, n, e))


def emit(layout: Layout, requests: Requests, endpoints: list[str]) -> EngineOutput:
    """bench/: the request list, per-endpoint aiperf traces and the three benchmark scripts."""
    out = EngineOutput("bench", "")
    s = summarize(layout, requests)
    e = len(endpoints)
    model = layout.model_id
    closed = s.concurrency is not None  # a closed loop's arrival times are set as it runs (null here)
    rows = [
        {
            "arrival_s": None if closed else round(float(a), 6),
            "input_tokens": int(i),
            "output_tokens": int(o),
        }
        for a, i, o in zip(requests.arrival_s, requests.input_tokens, requests.output_tokens, strict=True)
    ]
    out.files.append(EmittedFile("bench/requests.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    t0 = float(requests.arrival_s[0]) if len(requests) else 0.0
    for k in range(e):
        lines = [
            json.dumps(
                ({} if closed else {"timestamp": int(round((float(requests.arrival_s[i]) - t0) * 1000))})
                | {
                    "input_length": int(requests.input_tokens[i]),
                    "output_length": int(requests.output_tokens[i]),
                }
            )
            + "\n"
            for i in range(k, len(requests), e)
        ]
        out.files.append(EmittedFile(f"bench/workload-ep{k}.jsonl", "".join(lines)))
    header = [
        f"Replays the {s.requests} requests of scenario {layout.scenario.name} ({s.process} arrivals, "
        + (f"{s.concurrency} in flight" if closed else (f"{s.rate:.4g} req/s" if s.rate else "all at t=0"))
        + f", input {s.input_mean:.0f}±{s.input_std:.0f}, output {s.output_mean:.0f}±{s.output_std:.0f} tokens)",
        f"against {e} endpoint(s): " + " ".join(endpoints),
        "Results land in bench/results/; read them with `apex ingest`.",
    ]
    vllm_table = load_table("vllm")
    rate = "inf" if s.rate is None else f"{s.rate / e:.6g}"
    burstiness = {"poisson": "1", "trace": "1", "constant": "inf", "gamma": f"{1 / s.cv**2:.6g}"}.get(
        s.process, "1"
    )
    ratio = min(0.95, math.sqrt(3) * s.input_std / s.input_mean) if s.input_mean else 0.0
    vllm_cmds = []
    for k, url in enumerate(endpoints):
        opts = [
            ("--backend", "openai"),
            ("--base-url", url),
            ("--endpoint", "/v1/completions"),
            ("--model", model),
            ("--tokenizer", model),
            ("--dataset-name", "random"),
            ("--num-prompts", str(_share(s.requests, k, e))),
            ("--random-input-len", str(int(round(s.input_mean)))),
            ("--random-output-len", str(int(round(s.output_mean)))),
            ("--random-range-ratio", f"{ratio:.4f}"),
            ("--request-rate", rate),
        ]
        if closed:
            opts.append(("--max-concurrency", str(max(1, _share(s.concurrency, k, e)))))
        if s.rate is not None:
            opts.append(("--burstiness", burstiness))
        opts += [
            ("--ignore-eos", None),
            ("--seed", str(s.seed + k)),
            ("--percentile-metrics", "ttft,tpot,itl,e2el"),
            ("--metric-percentiles", PERCENTILES),
            ("--save-result", None),
            ("--save-detailed", None),
            ("--result-dir", f"{RESULTS}/vllm-bench"),
            ("--result-filename", f"ep{k}.json"),
        ]
        vllm_cmds.append(Command("vllm", "vllm bench serve", ("vllm", "bench", "serve"), tuple(opts)))
    notes = []
    if closed and s.concurrency < e:
        notes.append(
            f"closed loop: {s.concurrency} clients over {e} endpoints; each endpoint gets at least one client"
        )
    if closed and s.think_time_s > 0:
        notes.append(
            f"closed loop: the benchmark tools send each client's next request at once; the scenario's think "
            f"time of {s.think_time_s:g} s is not replayed"
        )
    if s.process == "trace":
        notes.append("vllm bench serve: trace arrivals replayed as a Poisson stream of the trace's mean rate")
    if s.process == "gamma" and e > 1:
        notes.append(
            "vllm bench serve: the merged stream of per-endpoint gamma processes is only close to gamma"
        )
    _parallel(
        out,
        "bench/vllm-bench.sh",
        header
        + [
            f"vLLM {vllm_table.version} `vllm bench serve`; lengths "
            f"uniform in mean × [1 − {ratio:.2f}, 1 + {ratio:.2f}] (vLLM's random dataset)."
        ],
        vllm_cmds,
    )
    genai = []
    for k, url in enumerate(endpoints):
        opts = [
            ("--model", model),
            ("--tokenizer", model),
            ("--endpoint-type", "completions"),
            ("--streaming", None),
            ("--url", _host_port(url)),
            ("--synthetic-input-tokens-mean", str(int(round(s.input_mean)))),
            ("--synthetic-input-tokens-stddev", str(int(round(s.input_std)))),
            ("--output-tokens-mean", str(int(round(s.output_mean)))),
            ("--output-tokens-stddev", str(int(round(s.output_std)))),
            ("--extra-inputs", "ignore_eos:true"),
        ]
        share = _share(s.requests, k, e)
        if closed:
            opts.append(("--concurrency", str(max(1, _share(s.concurrency, k, e)))))
        elif s.rate is None:
            opts.append(("--concurrency", str(share)))
        else:
            opts.append(("--request-rate", f"{s.rate / e:.6g}"))
        opts += [
            ("--request-count", str(share)),
            ("--random-seed", str(s.seed + k)),
            ("--artifact-dir", f"{RESULTS}/genai-perf/ep{k}"),
            ("--profile-export-file", "profile_export.json"),
        ]
        genai.append(Command("genai-perf", "genai-perf profile", ("genai-perf", "profile"), tuple(opts)))
    _parallel(
        out,
        "bench/genai-perf.sh",
        header
        + [
            f"GenAI-Perf {load_table('genai-perf').version}: mean rate "
            "with constant spacing, normal lengths of the workload's mean and std."
        ],
        genai,
    )
    aiperf = []
    for k, url in enumerate(endpoints):
        opts = [
            ("--model", model),
            ("--tokenizer", model),
            ("--endpoint-type", "completions"),
            ("--streaming", None),
            ("--url", _host_port(url)),
            ("--input-file", f"workload-ep{k}.jsonl"),
            ("--custom-dataset-type", "mooncake_trace"),
            *(
                (("--concurrency", str(max(1, _share(s.concurrency, k, e)))),)
                if closed
                else (("--fixed-schedule", None),)
            ),
            ("--extra-inputs", "ignore_eos:true"),
            ("--random-seed", str(s.seed + k)),
            ("--artifact-dir", f"{RESULTS}/aiperf/ep{k}"),
        ]
        aiperf.append(Command("aiperf", "aiperf profile", ("aiperf", "profile"), tuple(opts)))
    _parallel(
        out,
        "bench/aiperf.sh",
        header
        + [
            f"AIPerf {load_table('aiperf').version}: "
            + (
                "bench/workload-ep*.jsonl (input and output lengths, in order) at the closed loop's concurrency."
                if closed
                else "exact replay of bench/workload-ep*.jsonl (arrival ms, input and output lengths) with "
                "--fixed-schedule."
            )
        ],
        aiperf,
    )
    out.warnings += notes
    return out


def _parallel(out: EngineOutput, path: str, title: list[str], cmds: list[Command]) -> None:
    """A script starting one client per endpoint in the background and failing if any client fails."""
    body = ["pids=()\n"]
    for cmd in cmds:
        body += [render(cmd, suffix="&"), "pids+=($!)\n"]
        out.commands.append(cmd)
    body.append('for pid in "${pids[@]}"; do wait "$pid"; done\n')
    out.files.append(EmittedFile(path, script(title, body), executable=True))


def lengths_summary(requests: Requests) -> dict:
    """Mean and std of the replayed lengths (for the emit manifest)."""
    return {
        "requests": len(requests),
        "input_tokens": {
            "mean": float(np.mean(requests.input_tokens)),
            "std": float(np.std(requests.input_tokens)),
        },
        "output_tokens": {
            "mean": float(np.mean(requests.output_tokens)),
            "std": float(np.std(requests.output_tokens)),
        },
    }
