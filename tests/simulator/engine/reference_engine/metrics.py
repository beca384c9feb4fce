"""Metrics, computed after the run from the recorded request columns (docs/design.md §3.2 definitions).

* TTFT = first token time - arrival (queueing included); E2E = finish - arrival.
* TPOT = (E2E - TTFT) / (output tokens - 1) per request; requests with one output token have no TPOT.
* ITL = every gap between consecutive tokens of a request (a preemption's recompute shows up as one gap).
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
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reference_engine.request import RequestStatus, RequestTable

STATS = ("mean", "p50", "p90", "p99")


def summarize(values: np.ndarray) -> dict[str, float]:
    """mean, p50, p90, p99 of a distribution (NaN when empty)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {k: math.nan for k in STATS}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


@dataclass
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


@dataclass
class SimulationResult:
    """A simulation's metrics (to_json gives docs/design.md §6's keys) and its per-request records."""

    summary: dict
    table: RequestTable = field(repr=False)
    ids: np.ndarray = field(repr=False)
    num_steps: int = 0  # engine iterations, summed over replicas

    def to_json(self) -> dict:
        return json.loads(json.dumps(self.summary, default=float))

    def request_columns(self) -> dict[str, np.ndarray]:
        t = self.table
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
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({k: np.asarray(v) for k, v in columns.items()}), path)
            return
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(zip(*(v.tolist() for v in columns.values()), strict=True))


def slo_pass(ttft: np.ndarray, tpot: np.ndarray, e2e: np.ndarray, slo) -> np.ndarray:
    """Per request: at or under every stated threshold of every metric (NaN TPOT passes, NaN else fails)."""
    ok = np.isfinite(e2e)
    for name, values in (("ttft_s", ttft), ("tpot_s", tpot), ("e2e_s", e2e)):
        target = getattr(slo, name) if slo is not None else None
        if target is None:
            continue
        limits = [v for v in (getattr(target, k) for k in STATS) if v is not None]
        if limits:
            passes = values <= min(limits)
            ok &= (passes | np.isnan(values)) if name == "tpot_s" else passes
    return ok


def slo_met(stats: dict[str, dict[str, float]], slo) -> bool:
    """Every stated statistic of every metric at or under its threshold."""
    if slo is None:
        return True
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        target = getattr(slo, name)
        if target is None:
            continue
        for key in STATS:
            limit = getattr(target, key)
            if limit is not None and not stats[name][key] <= limit:
                return False
    return True


def makespan_s(table: RequestTable) -> float:
    """Last completion - first arrival (0 when nothing completed)."""
    done = table.status == RequestStatus.FINISHED
    return float(table.finish_s[done].max() - np.nanmin(table.arrival_s)) if done.any() else 0.0


def compute_metrics(table: RequestTable, totals: RunTotals, slo=None) -> dict:
    done = table.status == RequestStatus.FINISHED
    arrival, first, finish = table.arrival_s[done], table.first_token_s[done], table.finish_s[done]
    out = table.output_tokens[done]
    ttft, e2e = first - arrival, finish - arrival
    multi = out > 1
    tpot = (e2e[multi] - ttft[multi]) / (out[multi] - 1)
    itl = np.concatenate(table.itl_gaps) if table.itl_gaps else np.empty(0)
    makespan = makespan_s(table)
    num_out = int(out.sum())
    num_total = num_out + int(table.input_tokens[done].sum())
    per_s = (lambda x: x / makespan) if makespan > 0 else (lambda x: 0.0)

    all_ttft = table.first_token_s - table.arrival_s
    all_e2e = np.where(done, table.finish_s - table.arrival_s, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        all_tpot = np.where(table.output_tokens > 1, (all_e2e - all_ttft) / (table.output_tokens - 1), np.nan)
    passing = slo_pass(all_ttft, all_tpot, all_e2e, slo)
    stats = {
        "ttft_s": summarize(ttft),
        "tpot_s": summarize(tpot),
        "itl_s": summarize(itl),
        "e2e_s": summarize(e2e),
    }

    energy = totals.iteration_energy_j + totals.idle_energy_j
    hours = makespan / 3600
    return {
        "plan": totals.plan_label,
        "throughput": {
            "output_tokens_per_s": per_s(num_out),
            "total_tokens_per_s": per_s(num_total),
            "requests_per_s": per_s(int(done.sum())),
        },
        **stats,
        "energy": {"joules": energy, "joules_per_output_token": energy / num_out if num_out else math.nan},
        "cost": {
            "usd_per_hour": totals.usd_per_hour,
            "usd_per_million_output_tokens": totals.usd_per_hour * hours / num_out * 1e6
            if num_out
            else math.nan,
        },
        "memory": {
            "weights_gib_per_gpu": totals.weights_bytes_per_gpu / 2**30,
            "kv_cache_tokens": totals.kv_cache_tokens,
            "kv_cache_peak_tokens": totals.kv_peak_tokens,
        },
        "slo": {
            "attainment": float(passing.mean()) if len(passing) else math.nan,
            "goodput_rps": per_s(int(passing.sum())),
            "met": slo_met(stats, slo),
        },
        "requests": {
            "completed": int(done.sum()),
            "preempted": int((table.num_preemptions > 0).sum()),
            "preemptions": totals.num_preemptions,
            "rejected": int((table.status == RequestStatus.REJECTED).sum()),
            "total": table.num_requests,
        },
        "mfu": totals.flops / (makespan * totals.peak_flops) if makespan > 0 and totals.peak_flops else 0.0,
        "makespan_s": makespan,
    }
