"""Turn a measured benchmark run into the requests the simulator replays, and the latencies it must match.

Per run (`ReplayRun.of`):
* lengths — each completed request's input and output tokens from the file; a file without input lengths
  (GenAI-Perf) takes them from the scenario's workload (its generator and seed, in order); output tokens without
  a count are the streamed chunks;
* arrivals, in this order of preference:
  1. the send time of every request, where the file has it (AIPerf `request_start_ns`, GenAI-Perf `timestamp`);
  2. a concurrency limit (`--max-concurrency`, GenAI-Perf concurrency mode): the client is replayed — requests
     leave in file order, each when one of the N slots is free, a slot freeing after the request's *measured*
     E2E (and, with a finite rate as well, not before its turn in the arrival process below);
  3. a finite request rate without send times (`vllm bench serve`, SGLang): the arrival process drawn at that
     rate with the scenario's workload seed — Poisson, or gamma with vLLM's `burstiness` — so the replay has the
     measured load, not the measured instants; this is why the fit compares statistics per run, not requests;
  4. rate inf: all at t = 0.
Requests that returned no token are left out of both sides.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from planner.bench_results.records import BenchmarkRun
from simulator.errors import InputError
from simulator.scenario import Arrival, Scenario
from simulator.workload import Requests, generate, sample_arrivals


@dataclass(frozen=True)
class ReplayRun:
    """One benchmark run ready to replay: the requests, the measured latencies, and how both were obtained."""

    label: str  # short name in tables, e.g. "run 2 (4 req/s)"
    source: str
    tool: str
    requests: Requests
    measured_ttft_s: np.ndarray  # per completed request
    measured_tpot_s: np.ndarray  # (E2E − TTFT)/(output − 1); NaN for one-token requests
    achieved_rate: float  # requests/s over the run's span: the load order runs are split by
    arrivals: str  # how the arrival times were obtained
    lengths: str  # where the lengths came from
    left_out: int  # requests in the file that returned no token

    @staticmethod
    def of(run: BenchmarkRun, scenario: Scenario, index: int) -> ReplayRun:
        records = [r for r in run.requests if r.num_tokens >= 1]
        left_out = len(run.requests) - len(records)
        if not records:
            raise InputError("holds no request that returned a token; nothing to calibrate", file=run.source)
        n = len(records)
        ttft = np.array([r.ttft_s for r in records])
        e2e = np.array([r.e2e_s for r in records])
        out = np.array([r.num_tokens for r in records], dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(out > 1, (e2e - ttft) / (out - 1), np.nan)
        inputs, lengths = _input_lengths(records, scenario, run.source)
        arrival, arrivals = _arrivals(run, records, e2e, scenario)
        span = float((arrival + e2e).max() - arrival.min())
        return ReplayRun(
            label=f"run {index} ({_load_text(run)})",
            source=run.source,
            tool=run.tool,
            requests=Requests.from_columns(arrival, inputs, out),
            measured_ttft_s=ttft,
            measured_tpot_s=tpot,
            achieved_rate=n / span if span > 0 else math.inf,
            arrivals=arrivals,
            lengths=lengths,
            left_out=left_out,
        )


def _load_text(run: BenchmarkRun) -> str:
    parts = []
    if run.request_rate is not None:
        parts.append("all at once" if math.isinf(run.request_rate) else f"{run.request_rate:g} req/s")
    if run.max_concurrency is not None:
        parts.append(f"concurrency {run.max_concurrency}")
    return ", ".join(parts) or "send times"


def _input_lengths(records, scenario: Scenario, source: str) -> tuple[np.ndarray, str]:
    if all(r.input_tokens is not None for r in records):
        return np.array(
            [r.input_tokens for r in records], dtype=np.int64
        ), "input and output tokens from the file"
    spec = scenario.spec.workload
    workload = spec if spec.trace is not None else spec.model_copy(update={"requests": len(records)})
    drawn = generate(workload, file=scenario.file).input_tokens
    if len(drawn) < len(records):
        raise InputError(
            f"the file has no input lengths and the scenario's trace has only {len(drawn)} requests for its "
            f"{len(records)}",
            file=source,
            field="input_tokens",
        )
    return drawn[: len(records)].astype(
        np.int64
    ), "input tokens from the scenario's workload (not in the file)"


def _drawn(run: BenchmarkRun, n: int, scenario: Scenario) -> tuple[np.ndarray, str]:
    """Arrival times of the run's rate process, drawn with the scenario's workload seed."""
    burst = run.burstiness
    if burst is None or burst == 1.0:
        arrival, name = Arrival(process="poisson", rate=run.request_rate), "Poisson"
    else:
        arrival, name = Arrival(process="gamma", rate=run.request_rate, cv=1 / math.sqrt(burst)), "gamma"
    seed = scenario.spec.workload.seed
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])  # the workload's arrival stream
    return sample_arrivals(arrival, n, rng), f"{name} at {run.request_rate:g} req/s, seed {seed}"


def _arrivals(run: BenchmarkRun, records, e2e: np.ndarray, scenario: Scenario) -> tuple[np.ndarray, str]:
    n = len(records)
    if all(r.sent_s is not None for r in records):
        sent = np.array([r.sent_s for r in records])
        return sent - sent.min(), "send times from the file"
    rate = run.request_rate
    finite = rate is not None and not math.isinf(rate)
    if run.max_concurrency is not None:
        intended, how = _drawn(run, n, scenario) if finite else (np.zeros(n), "")
        starts = closed_loop_starts(e2e, run.max_concurrency, intended)
        text = f"{run.max_concurrency} client slots freed by the measured E2E" + (f" ({how})" if how else "")
        return starts, text
    if finite:
        arrival, how = _drawn(run, n, scenario)
        return arrival, f"drawn: {how} (the file has no send times)"
    if rate is not None:
        return np.zeros(n), "all at t = 0"
    raise InputError(
        "records neither send times, a request rate nor a concurrency; the load it ran cannot be replayed",
        file=run.source,
        field="request_rate",
    )


def closed_loop_starts(latency_s: np.ndarray, concurrency: int, intended_s: np.ndarray) -> np.ndarray:
    """Start times of requests sent in order by a client holding `concurrency` slots: request i starts at its
    intended time or when a slot frees, whichever is later; its slot frees `latency_s[i]` after it starts."""
    free = [0.0] * concurrency
    starts = np.empty(len(latency_s))
    for i, (lat, want) in enumerate(zip(latency_s, intended_s, strict=True)):
        start = max(float(want), heapq.heappop(free))
        starts[i] = start
        heapq.heappush(free, start + float(lat))
    return starts
