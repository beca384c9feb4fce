"""What the planner knows about the requests: their lengths and arrivals, the workload classes the master routes,
and the deadlines the goals put on them (docs/design.md §5.2–§5.3).

* `workload_stats(scenario)` — means and rates (the analytic predictor's inputs).
* `WorkloadProfile` — per request: arrival, prefill tokens P = input − cacheable, decode tokens D = output − 1 and
  decode context X = D·input + D(D−1)/2 (the KV entries its decode steps read: a property of the request,
  whatever the schedule). `cacheable` is 0 unless the engine caches prefixes; then it is the most any prefix
  cache can serve the request's first prefill — its prompt tokens shared with earlier content
  (`SharedPrefixes.shared_tokens`) in whole KV blocks, at most input − 1 — so P stays a lower bound on the
  prefill work whatever is evicted. With speculative decoding (`engine.speculative`) a decode step verifies
  drafts in a prefill-like pass and advances a request by a random number of tokens, which the decode-step
  bounds do not model: the decode work (`decode_work`, `context_work`) and the decode-step floor are then 0,
  weaker bounds that stay valid (what is left bounds the prefill work, which speculation does not change); the classes (requests grouped by how prompt-heavy they are — e.g. chat vs summarisation —
  so that a class's requests cost every template alike); and the `Deadlines`.
* `Deadlines` — what a plan that meets the goals must do for most requests: with a percentile target q on
  TTFT, TPOT or E2E over n requests, at least ⌊(n−1)·q/100⌋ + 1 of them are at or under the limit (NumPy's
  interpolated percentile is at least its lower order statistic), so at most `misses` requests may miss
  (summed over the metrics: the union bound). Mean targets bound no single request and are not used.
  For max_goodput every request counts only if it meets every stated limit (its smallest per metric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.scenario import Scenario, engine_setting

NUM_CLASSES = 3  # prompt-heavy, balanced, generation-heavy (fewer when the workload has less variety)


@dataclass(frozen=True)
class WorkloadStats:
    """What the analytic predictor needs to know about the requests."""

    num_requests: int
    mean_input: float
    mean_output: float
    demand_rps: float
    last_arrival_s: float
    total_output_tokens: float


def workload_stats(scenario: Scenario) -> WorkloadStats:
    return WorkloadProfile.of(scenario).stats


@dataclass(frozen=True)
class Deadlines:
    """Per-request limits (s; inf when not stated) and how many requests may miss them."""

    ttft_s: float
    tpot_s: float
    e2e_s: float
    misses: int
    every_request: bool  # max_goodput: a request counts only if it meets every limit

    @property
    def any(self) -> bool:
        return math.isfinite(self.ttft_s) or math.isfinite(self.e2e_s)

    def describe(self) -> str:
        parts = [
            f"{name} ≤ {v:g} s"
            for name, v in (("TTFT", self.ttft_s), ("TPOT", self.tpot_s), ("E2E", self.e2e_s))
        ]
        parts = [
            p for p, v in zip(parts, (self.ttft_s, self.tpot_s, self.e2e_s), strict=True) if math.isfinite(v)
        ]
        who = "every counted request" if self.every_request else f"all but {self.misses} requests"
        return f"{who}: " + ", ".join(parts) if parts else "no per-request deadline"


def deadlines_of(goals, num_requests: int, num_multi_token: int) -> Deadlines:
    """The deadlines the goals imply (see the module docstring)."""
    slo = goals.slo
    if goals.objective == "max_goodput":
        limits = {}
        for metric in ("ttft_s", "tpot_s", "e2e_s"):
            target = getattr(slo, metric)
            values = [getattr(target, k) for k in ("mean", "p50", "p90", "p99")] if target else []
            stated = [v for v in values if v is not None]
            limits[metric] = min(stated) if stated else math.inf
        return Deadlines(limits["ttft_s"], limits["tpot_s"], limits["e2e_s"], 0, True)
    limits, misses = {}, 0
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        target = getattr(slo, metric)
        n = num_multi_token if metric == "tpot_s" else num_requests
        limits[metric] = math.inf
        for q, key in ((99, "p99"), (90, "p90"), (50, "p50")):
            v = getattr(target, key) if target else None
            if v is not None:
                limits[metric] = float(v)
                must = math.floor((n - 1) * q / 100) + 1 if n > 0 else 0
                misses += n - must
                break
    return Deadlines(limits["ttft_s"], limits["tpot_s"], limits["e2e_s"], misses, False)


@dataclass(frozen=True)
class WorkloadProfile:
    """Per-request arrays, classes and deadlines of a scenario's workload (see the module docstring)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    class_of: np.ndarray  # class index per request
    class_ids: tuple[str, ...]
    deadlines: Deadlines
    stats: WorkloadStats
    cacheable_tokens: np.ndarray | None = None  # per request (module docstring); None: nothing cacheable
    speculative: bool = False  # the engine decodes speculatively: no decode-step bounds (module docstring)

    @staticmethod
    def of(scenario: Scenario) -> WorkloadProfile:
        from simulator.workload import generate

        spec = scenario.spec.workload
        reqs = generate(spec, file=scenario.file)
        n = len(reqs)
        a = np.asarray(reqs.arrival_s, dtype=float)
        inp = np.asarray(reqs.input_tokens, dtype=np.int64)
        out = np.asarray(reqs.output_tokens, dtype=np.int64)
        span = float(a[-1] - a[0]) if n > 1 else 0.0
        arrival = spec.arrival
        if arrival is not None and arrival.rate is not None and arrival.process != "burst":
            demand = arrival.rate
        elif span > 0:
            demand = (n - 1) / span
        else:
            demand = (
                n / 60.0
            )  # all at once: ask the predictor for the capacity to clear them in about a minute
        stats = WorkloadStats(
            n,
            float(inp.mean()) if n else 0.0,
            float(out.mean()) if n else 0.0,
            demand,
            float(a[-1]) if n else 0.0,
            float(out.sum()),
        )
        class_of, ids = _classes(inp, out)
        dl = deadlines_of(scenario.spec.goals, n, int((out > 1).sum()))
        return WorkloadProfile(
            a,
            inp,
            out,
            class_of,
            ids,
            dl,
            stats,
            _cacheable(reqs, scenario.spec.engine),
            scenario.spec.engine.speculation is not None,
        )

    @property
    def num_requests(self) -> int:
        return len(self.arrival_s)

    @property
    def prefill_tokens(self) -> np.ndarray:
        """Prompt tokens each request's prefill computes at least (int64)."""
        if self.cacheable_tokens is None:
            return self.input_tokens
        return self.input_tokens - self.cacheable_tokens

    @property
    def prefill(self) -> np.ndarray:
        return self.prefill_tokens.astype(float)

    @property
    def decode(self) -> np.ndarray:
        return (self.output_tokens - 1).astype(float)

    @property
    def decode_work(self) -> np.ndarray:
        """Decode tokens the work bounds count (0 under speculative decoding, module docstring)."""
        return np.zeros(self.num_requests) if self.speculative else self.decode

    @property
    def context_work(self) -> np.ndarray:
        """Decode context the work bounds count (0 under speculative decoding)."""
        return np.zeros(self.num_requests) if self.speculative else self.context

    @property
    def context(self) -> np.ndarray:
        d = self.decode
        return d * self.input_tokens + d * (d - 1) / 2

    @property
    def span_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if self.num_requests > 1 else 0.0

    def members(self, k: int) -> np.ndarray:
        return self.class_of == k

    def mixes(self) -> list[tuple[float, float]]:
        """(prefill tokens, decode tokens) of each class."""
        p, d = self.prefill, self.decode_work
        return [
            (float(p[self.members(k)].sum()), float(d[self.members(k)].sum()))
            for k in range(len(self.class_ids))
        ]


def _cacheable(reqs, engine) -> np.ndarray | None:
    """The prompt tokens a prefix cache could serve each request at most (module docstring), or None."""
    if reqs.prefixes is None or not engine_setting(engine, "prefix_caching"):
        return None
    block = max(engine.block_size, 1)
    shared = np.minimum(reqs.prefixes.shared_tokens(), reqs.input_tokens - 1)
    return np.maximum(shared, 0) // block * block


def _classes(inp: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Requests grouped by tertiles of log(input/output): how prompt-heavy they are."""
    n = len(inp)
    if n == 0:
        return np.zeros(0, dtype=np.int64), ("all",)
    ratio = np.log(np.maximum(inp, 1) / np.maximum(out, 1))
    distinct = len(np.unique(np.round(ratio, 3)))
    k = min(NUM_CLASSES, distinct, max(n // 20, 1))
    if k <= 1:
        return np.zeros(n, dtype=np.int64), ("all",)
    edges = np.quantile(ratio, np.linspace(0, 1, k + 1)[1:-1])
    class_of = np.searchsorted(edges, ratio, side="right")
    used = sorted(set(class_of.tolist()))
    remap = {c: i for i, c in enumerate(used)}
    class_of = np.array([remap[c] for c in class_of.tolist()], dtype=np.int64)
    names = (
        ("generation-heavy", "balanced", "prompt-heavy") if len(used) == 3 else tuple(f"c{i}" for i in used)
    )
    if len(used) == 2:
        names = ("generation-heavy", "prompt-heavy")
    return class_of, names
