"""Metrics, computed after the run from the recorded request columns (docs/design.md §3.2 definitions).

* TTFT = first token time - arrival (queueing included); E2E = finish - arrival.
* TPOT = (E2E - TTFT) / (output tokens - 1) per request; requests with one output token have no TPOT.
* ITL = every gap between consecutive tokens of a request (a preemption's recompute shows up as one gap),
  run-length encoded (a cohort's iteration adds one gap with its member count), percentiles exact.
* Throughput over the makespan = last completion - first arrival.
* SLOs (Goals.slo): a request *attains* the SLO when each metric given is at or under every threshold stated
  for it (TTFT, TPOT, E2E; a request without TPOT passes that one); attainment is the fraction of all
  requests (rejected ones fail) and goodput the attaining requests per second of makespan. The goals are
  *met* (`slo.met`) when each stated statistic (mean, p50, p90, p99) of each metric is at or under its
  threshold, e.g. `ttft_s: {p99: 2}` holds when the 99th percentile of TTFT is at most 2 s.
* Energy = the stages' iteration energies + idle power of the plan's GPUs while their stage is not running
  an iteration + idle power of the cluster's GPUs outside the plan, over the makespan.
* Cost = $/h of the plan's GPUs; $ per million output tokens = that rate over the makespan / tokens.
* MFU = useful FLOPs / (makespan x peak FLOP/s of the plan's GPUs).
* Steady state (`steady`): the same latencies, SLOs and throughput inside the run's steady-state window, which
  leaves out the warm-up and the drain (`steady.py` states the rule); the figures above are the whole run's.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulator.engine.prefix_cache import PrefixCacheStats
from simulator.engine.request import RequestRecords, RequestStatus
from simulator.engine.slo import slo_met, slo_pass
from simulator.engine.steady import steady_state
from simulator.results import (
    Cost,
    Distribution,
    Energy,
    Memory,
    PrefixCacheSummary,
    RequestCounts,
    SimulationSummary,
    SLOResult,
    Throughput,
)


@dataclass(frozen=True)
class RunTotals:
    """What the replicas accumulated during the run, plus the plan-level constants the metrics need."""

    plan_label: str
    iteration_energy_j: float
    idle_energy_j: float  # plan GPUs between iterations + cluster GPUs outside the plan, over the makespan
    usd_per_hour: float
    flops: float
    peak_flops: float  # of all the plan's GPUs together
    weights_bytes_per_gpu: float
    kv_cache_tokens: int  # per replica, the smallest
    kv_peak_tokens: int
    num_preemptions: int
    prefix_cache: PrefixCacheStats | None = None  # None: a caller that does not count (all zero)


@dataclass(frozen=True)
class SimulationResult:
    """A simulation's metrics (`summary`, typed; `to_json()` gives docs/design.md §6's keys) and its
    per-request records."""

    summary: SimulationSummary
    records: RequestRecords = field(repr=False)
    ids: np.ndarray = field(repr=False)
    num_steps: int = 0  # engine iterations, summed over replicas

    def to_json(self) -> dict:
        return self.summary.to_json()

    def request_columns(self) -> dict[str, np.ndarray]:
        t = self.records
        ttft = t.first_token_s - t.arrival_s
        e2e = t.finish_s - t.arrival_s
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(t.output_tokens > 1, (e2e - ttft) / (t.output_tokens - 1), np.nan)
        return {
            "id": self.ids,
            "arrival_s": t.arrival_s,
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "status": np.array([RequestStatus(s).name.lower() for s in t.status]),
            "replica": t.replica,
            "ttft_s": ttft,
            "tpot_s": tpot,
            "e2e_s": e2e,
            "finish_s": t.finish_s,
            "preemptions": t.num_preemptions,
        }

    def write_requests(self, path: str | Path) -> None:
        """One row per request, as Parquet (a .parquet suffix, via pyarrow) or CSV."""
        path = Path(path)
        columns = self.request_columns()
        if path.suffix == ".parquet":
            import pyarrow as pa  # imported here: only this output needs it (start-up time)
            import pyarrow.parquet as pq

            pq.write_table(pa.table({k: np.asarray(v) for k, v in columns.items()}), path)
            return
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(zip(*(v.tolist() for v in columns.values()), strict=True))


def makespan_s(records: RequestRecords) -> float:
    """Last completion - first arrival (0 when nothing completed)."""
    done = records.status == RequestStatus.FINISHED
    # nanmin: in a closed loop the requests never sent have no arrival time
    return float(records.finish_s[done].max() - np.nanmin(records.arrival_s)) if done.any() else 0.0


def compute_metrics(records: RequestRecords, totals: RunTotals, slo=None) -> SimulationSummary:
    t = records
    done = t.status == RequestStatus.FINISHED
    arrival, first, finish = t.arrival_s[done], t.first_token_s[done], t.finish_s[done]
    out = t.output_tokens[done]
    ttft, e2e = first - arrival, finish - arrival
    multi = out > 1
    tpot = (e2e[multi] - ttft[multi]) / (out[multi] - 1)
    makespan = makespan_s(t)
    num_out = int(out.sum())
    num_total = num_out + int(t.input_tokens[done].sum())
    per_s = (lambda x: x / makespan) if makespan > 0 else (lambda x: 0.0)

    all_ttft = t.first_token_s - t.arrival_s
    all_e2e = np.where(done, t.finish_s - t.arrival_s, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        all_tpot = np.where(t.output_tokens > 1, (all_e2e - all_ttft) / (t.output_tokens - 1), np.nan)
    passing = slo_pass(all_ttft, all_tpot, all_e2e, slo)
    stats = {
        "ttft_s": Distribution.of(ttft),
        "tpot_s": Distribution.of(tpot),
        "itl_s": Distribution.of_counts(t.itl_values_s, t.itl_counts),
        "e2e_s": Distribution.of(e2e),
    }
    energy = totals.iteration_energy_j + totals.idle_energy_j
    hours = makespan / 3600
    return SimulationSummary(
        plan=totals.plan_label,
        throughput=Throughput(per_s(num_out), per_s(num_total), per_s(int(done.sum()))),
        **stats,
        energy=Energy(energy, energy / num_out if num_out else None),
        cost=Cost(totals.usd_per_hour, totals.usd_per_hour * hours / num_out * 1e6 if num_out else None),
        memory=Memory(totals.weights_bytes_per_gpu / 2**30, totals.kv_cache_tokens, totals.kv_peak_tokens),
        slo=SLOResult(
            attainment=float(passing.mean()) if len(passing) else None,
            goodput_rps=per_s(int(passing.sum())),
            met=slo_met(stats, slo),
        ),
        requests=RequestCounts(
            completed=int(done.sum()),
            preempted=int((t.num_preemptions > 0).sum()),
            preemptions=totals.num_preemptions,
            rejected=int((t.status == RequestStatus.REJECTED).sum()),
            total=t.num_requests,
        ),
        mfu=totals.flops / (makespan * totals.peak_flops) if makespan > 0 and totals.peak_flops else 0.0,
        makespan_s=makespan,
        steady=steady_state(t, passing, slo),
        prefix_cache=_prefix_summary(totals.prefix_cache or PrefixCacheStats(False)),
    )


def _prefix_summary(stats: PrefixCacheStats) -> PrefixCacheSummary:
    return PrefixCacheSummary(
        enabled=stats.enabled,
        lookups=stats.lookups,
        queried_tokens=stats.queried_tokens,
        saved_prefill_tokens=stats.hit_tokens,
        hit_rate=stats.hit_rate,
        evicted_blocks=stats.evicted_blocks,
    )
