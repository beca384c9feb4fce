"""Typed simulation results: a frozen dataclass tree whose `to_json()` gives docs/design.md §6's keys.

A statistic that is undefined (no request completed, no output token) is None — `null` in JSON — never NaN.
`simulator.metric_catalog` names every leaf (path, label, unit, which direction is better).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STATS = ("mean", "p50", "p90", "p99")
_QUANTILES = (0.50, 0.90, 0.99)


@dataclass(frozen=True, slots=True)
class Distribution:
    """mean, p50, p90, p99 of a set of values (None when the set is empty)."""

    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    @staticmethod
    def of(values) -> Distribution:
        values = np.asarray(values, dtype=np.float64)
        if len(values) == 0:
            return Distribution()
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return Distribution(float(values.mean()), float(p50), float(p90), float(p99))

    @staticmethod
    def of_counts(values, counts) -> Distribution:
        """The distribution of `values[i]` repeated `counts[i]` times, exactly as `of` on the expanded array
        (numpy's default linear interpolation between order statistics), without expanding it."""
        values = np.asarray(values, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.int64)
        keep = counts > 0
        values, counts = values[keep], counts[keep]
        total = int(counts.sum())
        if total == 0:
            return Distribution()
        order = np.argsort(values, kind="stable")
        values, counts = values[order], counts[order]
        ends = np.cumsum(counts)  # order statistics [ends[i-1], ends[i]) hold values[i]

        def at(rank: np.ndarray) -> np.ndarray:
            return values[np.searchsorted(ends, rank, side="right")]

        pos = np.asarray(_QUANTILES) * (total - 1)
        lo = np.floor(pos)
        frac = pos - lo
        a, b = at(lo), at(np.minimum(lo + 1, total - 1))
        # numpy's lerp: a + (b - a) t, computed from the nearer end for t >= 0.5
        diff = b - a
        p = np.where(frac >= 0.5, b - diff * (1 - frac), a + diff * frac)
        # not np.dot: a BLAS call wakes OpenBLAS's thread pool, whose idle workers then spin for tens of ms of CPU
        mean = float((values * counts).sum() / total)
        return Distribution(mean, float(p[0]), float(p[1]), float(p[2]))

    def to_json(self) -> dict:
        return {"mean": self.mean, "p50": self.p50, "p90": self.p90, "p99": self.p99}


@dataclass(frozen=True, slots=True)
class Throughput:
    output_tokens_per_s: float | None  # None only in a steady state that has no window
    total_tokens_per_s: float | None
    requests_per_s: float | None

    def to_json(self) -> dict:
        return {
            "output_tokens_per_s": self.output_tokens_per_s,
            "total_tokens_per_s": self.total_tokens_per_s,
            "requests_per_s": self.requests_per_s,
        }


@dataclass(frozen=True, slots=True)
class Energy:
    joules: float
    joules_per_output_token: float | None

    def to_json(self) -> dict:
        return {"joules": self.joules, "joules_per_output_token": self.joules_per_output_token}


@dataclass(frozen=True, slots=True)
class Cost:
    usd_per_hour: float
    usd_per_million_output_tokens: float | None

    def to_json(self) -> dict:
        return {
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_output_tokens": self.usd_per_million_output_tokens,
        }


@dataclass(frozen=True, slots=True)
class Memory:
    weights_gib_per_gpu: float
    kv_cache_tokens: int
    kv_cache_peak_tokens: int

    def to_json(self) -> dict:
        return {
            "weights_gib_per_gpu": self.weights_gib_per_gpu,
            "kv_cache_tokens": self.kv_cache_tokens,
            "kv_cache_peak_tokens": self.kv_cache_peak_tokens,
        }


@dataclass(frozen=True, slots=True)
class SLOResult:
    attainment: float | None  # share of all requests meeting every SLO (None without requests)
    goodput_rps: float | None  # None only in a steady state that has no window
    met: bool | None

    def to_json(self) -> dict:
        return {"attainment": self.attainment, "goodput_rps": self.goodput_rps, "met": self.met}


@dataclass(frozen=True, slots=True)
class RequestCounts:
    completed: int
    preempted: int  # requests preempted at least once
    preemptions: int
    rejected: int
    total: int

    def to_json(self) -> dict:
        return {
            "completed": self.completed,
            "preempted": self.preempted,
            "preemptions": self.preemptions,
            "rejected": self.rejected,
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class PrefixCacheSummary:
    """Prefix caching over the run (engine/prefix_cache.py): each admission of a request with nothing computed
    queries its tokens; hits are the leading cached tokens it reused (prefill tokens not computed); evictions
    are cached blocks dropped to make room. `enabled` false: all zero and no hit rate."""

    enabled: bool
    lookups: int
    queried_tokens: int
    saved_prefill_tokens: int
    hit_rate: float | None
    evicted_blocks: int

    def to_json(self) -> dict:
        return {
            "enabled": self.enabled,
            "lookups": self.lookups,
            "queried_tokens": self.queried_tokens,
            "saved_prefill_tokens": self.saved_prefill_tokens,
            "hit_rate": self.hit_rate,
            "evicted_blocks": self.evicted_blocks,
        }


@dataclass(frozen=True, slots=True)
class SteadyWindow:
    """The steady-state window of a run (simulator.engine.steady): [start_s, end_s], the requests that arrived
    in it, the median number in the system (L) and the arrival rate inside it; None bounds: no window."""

    start_s: float | None
    end_s: float | None
    requests: int
    occupancy: float
    arrival_rps: float | None

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s if self.start_s is not None and self.end_s is not None else 0.0

    def to_json(self) -> dict:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "requests": self.requests,
            "occupancy": self.occupancy,
            "arrival_rps": self.arrival_rps,
        }


@dataclass(frozen=True, slots=True)
class SteadyState:
    """The run's figures inside its steady-state window (docs/design.md §3.2): latencies and SLOs of the requests
    that arrived in it, throughput of the completions in it, and whether completions kept up with arrivals.
    Every figure is None when the run has no window (a burst, or too short to settle)."""

    window: SteadyWindow
    throughput: Throughput
    ttft_s: Distribution
    tpot_s: Distribution
    e2e_s: Distribution
    slo: SLOResult
    keeps_up: bool | None

    @property
    def sustained(self) -> bool:
        """The steady-state verdict: a window exists, completions keep up with arrivals and every SLO holds."""
        return bool(self.keeps_up) and bool(self.slo.met)

    def to_json(self) -> dict:
        return {
            "window": self.window.to_json(),
            "throughput": self.throughput.to_json(),
            "ttft_s": self.ttft_s.to_json(),
            "tpot_s": self.tpot_s.to_json(),
            "e2e_s": self.e2e_s.to_json(),
            "slo": self.slo.to_json(),
            "keeps_up": self.keeps_up,
        }


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """A simulation's metrics (docs/design.md §3.2 definitions)."""

    plan: str
    throughput: Throughput
    ttft_s: Distribution
    tpot_s: Distribution
    itl_s: Distribution
    e2e_s: Distribution
    energy: Energy
    cost: Cost
    memory: Memory
    slo: SLOResult
    requests: RequestCounts
    mfu: float
    makespan_s: float
    steady: SteadyState | None = None
    prefix_cache: PrefixCacheSummary | None = None

    def to_json(self) -> dict:
        """docs/design.md §6's simulation JSON (undefined statistics are None)."""
        return {
            "plan": self.plan,
            "throughput": self.throughput.to_json(),
            "ttft_s": self.ttft_s.to_json(),
            "tpot_s": self.tpot_s.to_json(),
            "itl_s": self.itl_s.to_json(),
            "e2e_s": self.e2e_s.to_json(),
            "energy": self.energy.to_json(),
            "cost": self.cost.to_json(),
            "memory": self.memory.to_json(),
            "slo": self.slo.to_json(),
            "requests": self.requests.to_json(),
            "mfu": self.mfu,
            "makespan_s": self.makespan_s,
            **({"steady": self.steady.to_json()} if self.steady is not None else {}),
            **({"prefix_cache": self.prefix_cache.to_json()} if self.prefix_cache is not None else {}),
        }
