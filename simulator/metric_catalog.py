"""The one list of simulation metrics: dotted path into the simulation JSON, label, unit, better direction.

CLI tables, study columns, report CSVs and plots read their metrics from here, so a metric is named, unitted
and ordered once. `path` is a key path of `SimulationSummary.to_json()` (docs/design.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.results import STATS


@dataclass(frozen=True, slots=True)
class Metric:
    path: str  # e.g. "ttft_s.p99"
    label: str  # e.g. "TTFT p99"
    unit: str  # e.g. "s"; "" for counts and fractions
    better: str | None  # "higher", "lower", or None when neither is better
    study: bool = False  # a column of every study row (planner/studies.py), in catalog order

    @property
    def title(self) -> str:
        """Label with its unit, for plot axes and table headers: "TTFT p99 (s)"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    def value(self, summary: dict) -> float | None:
        """This metric in a simulation JSON; None when absent or not a number."""
        node = summary
        for key in self.path.split("."):
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node) if isinstance(node, (int, float)) else None


def _distribution(name: str, label: str, *, study: bool) -> list[Metric]:
    return [Metric(f"{name}.{stat}", f"{label} {stat}", "s", "lower", study) for stat in STATS]


# The steady-state block (simulator.engine.steady): the same figures inside the window without warm-up and drain.
STEADY: tuple[Metric, ...] = (
    Metric("steady.window.start_s", "steady window start", "s", None),
    Metric("steady.window.end_s", "steady window end", "s", None),
    Metric("steady.window.requests", "requests in the steady window", "", None),
    Metric("steady.window.occupancy", "requests in the system at steady state (median)", "", None),
    Metric("steady.window.arrival_rps", "steady arrival rate", "req/s", None),
    Metric("steady.throughput.output_tokens_per_s", "steady output throughput", "tok/s", "higher"),
    Metric("steady.throughput.total_tokens_per_s", "steady total throughput", "tok/s", "higher"),
    Metric("steady.throughput.requests_per_s", "steady request throughput", "req/s", "higher"),
    *_distribution("steady.ttft_s", "steady TTFT", study=False),
    *_distribution("steady.tpot_s", "steady TPOT", study=False),
    *_distribution("steady.e2e_s", "steady end-to-end latency", study=False),
    Metric("steady.slo.attainment", "steady SLO attainment", "", "higher"),
    Metric("steady.slo.goodput_rps", "steady goodput", "req/s", "higher"),
    Metric("steady.slo.met", "steady SLOs met", "", "higher"),
    Metric("steady.keeps_up", "completions keep up with arrivals (steady)", "", "higher"),
)


METRICS: tuple[Metric, ...] = (
    Metric("throughput.output_tokens_per_s", "output throughput", "tok/s", "higher", True),
    Metric("throughput.total_tokens_per_s", "total throughput", "tok/s", "higher", True),
    Metric("throughput.requests_per_s", "request throughput", "req/s", "higher", True),
    *_distribution("ttft_s", "TTFT", study=True),
    *_distribution("tpot_s", "TPOT", study=True),
    *_distribution("itl_s", "ITL", study=False),
    *_distribution("e2e_s", "end-to-end latency", study=True),
    Metric("energy.joules", "energy", "J", "lower", True),
    Metric("energy.joules_per_output_token", "energy per output token", "J/tok", "lower", True),
    Metric("cost.usd_per_hour", "cost", "$/h", "lower", True),
    Metric("cost.usd_per_million_output_tokens", "cost per million output tokens", "$/Mtok", "lower", True),
    Metric("memory.weights_gib_per_gpu", "weights per GPU", "GiB", None),
    Metric("memory.kv_cache_tokens", "KV cache capacity", "tokens", None),
    Metric("memory.kv_cache_peak_tokens", "KV cache peak use", "tokens", None),
    Metric("slo.attainment", "SLO attainment", "", "higher", True),
    Metric("slo.goodput_rps", "goodput", "req/s", "higher", True),
    Metric("slo.met", "SLOs met", "", "higher"),
    Metric("requests.completed", "requests completed", "", "higher", True),
    Metric("requests.preempted", "requests preempted", "", "lower", True),
    Metric("requests.preemptions", "preemptions", "", "lower"),
    Metric("requests.rejected", "requests rejected (can never run)", "", "lower"),
    Metric("requests.total", "requests", "", None),
    Metric("mfu", "MFU", "", "higher"),
    Metric("makespan_s", "makespan", "s", None, True),
    *STEADY,
    Metric("prefix_cache.enabled", "prefix caching on", "", None),
    Metric("prefix_cache.lookups", "prefix-cache lookups", "", None),
    Metric("prefix_cache.queried_tokens", "tokens looked up in the prefix cache", "tokens", None),
    Metric(
        "prefix_cache.saved_prefill_tokens",
        "prefill tokens served from the prefix cache",
        "tokens",
        "higher",
        True,
    ),
    Metric("prefix_cache.hit_rate", "prefix-cache hit rate", "", "higher", True),
    Metric("prefix_cache.evicted_blocks", "prefix-cache blocks evicted", "", None, True),
)
BY_PATH: dict[str, Metric] = {m.path: m for m in METRICS}
STUDY_METRICS: tuple[str, ...] = tuple(m.path for m in METRICS if m.study)


def metric(path: str) -> Metric:
    """The catalog entry of `path`; KeyError names the known paths."""
    try:
        return BY_PATH[path]
    except KeyError:
        raise KeyError(f"unknown metric {path!r}; expected one of: {', '.join(BY_PATH)}") from None
