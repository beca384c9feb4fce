"""The steady-state measurement window of a run (docs/design.md §3.2, "Steady state").

A finite run starts empty (warm-up: batches are small, nobody waits) and ends with a drain (no new arrivals,
so the batch shrinks, prefills stop interfering and latency falls; the makespan stretches past the arrivals,
so whole-run throughput sits below the offered rate). Both flatter or penalise a plan by an amount that depends
on the run's length. The window keeps the part of the run that looks like a run that never started or ended.
By Little's law the system holds L requests at steady state; the rule is stated in those L:

* L is the time-weighted median of the number of requests in the system (arrived, not finished) between the
  first and the last arrival;
* the warm-up ends at the L-th completion (the system has filled and turned its population over once);
* the drain starts with the last L arrivals (they are the ones still in the system when arrivals stop), so the
  window ends at the arrival of the last request before them.

The measured requests are those that arrive inside the window (latencies, SLO attainment and goodput are theirs);
throughput counts the completions inside it. A plan *keeps up* when those completions are at least
(1 − KEEP_UP_TOLERANCE) of the arrivals inside it; the steady-state verdict (`SteadyState.sustained`) is: it
keeps up and every SLO holds on the measured requests. A run without a span of arrivals (a burst), or too short
to settle (fewer than L completions, or the warm-up reaching past the drain, or fewer than MIN_REQUESTS in the
window), has no window: its steady figures are None.
"""

from __future__ import annotations

import numpy as np

from simulator.engine.request import RequestRecords, RequestStatus
from simulator.engine.slo import slo_met
from simulator.results import Distribution, SLOResult, SteadyState, SteadyWindow, Throughput

KEEP_UP_TOLERANCE = 0.05  # completions may fall this far below arrivals in the window (the run's own noise)
MIN_REQUESTS = 50  # a window holding fewer requests has no percentile worth reporting


def median_occupancy(arrival_s: np.ndarray, finish_s: np.ndarray, start_s: float, end_s: float) -> float:
    """Time-weighted median over [start_s, end_s] of the number of requests arrived and not finished
    (`finish_s` NaN: not finished)."""
    if not end_s > start_s:
        return 0.0
    finish = finish_s[np.isfinite(finish_s)]
    times = np.concatenate([arrival_s, finish])
    steps = np.concatenate([np.ones(len(arrival_s)), -np.ones(len(finish))])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(steps[order])
    # level[i] holds on [times[i], times[i+1]); clip the intervals to the span
    edges = np.clip(np.append(times, end_s), start_s, end_s)
    weight = np.diff(edges)
    keep = weight > 0
    level, weight = level[keep], weight[keep]
    if len(level) == 0:
        return 0.0
    by_level = np.argsort(level, kind="stable")
    cumulative = np.cumsum(weight[by_level])
    return float(level[by_level][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def steady_window(records: RequestRecords) -> tuple[SteadyWindow, np.ndarray]:
    """The window of the run (module docstring) and a mask of the requests measured in it."""
    status = records.status
    arrived = (status != RequestStatus.PENDING) & np.isfinite(records.arrival_s)
    measured = np.zeros(records.num_requests, dtype=bool)
    arrival = records.arrival_s[arrived]
    if len(arrival) < 2:
        return SteadyWindow(None, None, 0, 0.0, None), measured
    first, last = float(arrival.min()), float(arrival.max())
    served = arrived & (status != RequestStatus.REJECTED)  # a rejected request never occupies a replica
    finish = np.where(status == RequestStatus.FINISHED, records.finish_s, np.nan)
    occupancy = median_occupancy(records.arrival_s[served], finish[served], first, last)
    population = max(int(round(occupancy)), 1)
    completions = np.sort(finish[np.isfinite(finish)])
    in_order = np.sort(arrival)
    none = SteadyWindow(None, None, 0, occupancy, None)
    if len(completions) < population or len(in_order) <= population:
        return none, measured
    start = max(float(completions[population - 1]), first)
    end = float(in_order[len(in_order) - 1 - population])
    if not end > start:
        return none, measured
    inside = arrived & (records.arrival_s >= start) & (records.arrival_s <= end)
    count = int(inside.sum())
    if count < MIN_REQUESTS:
        return none, measured
    return SteadyWindow(start, end, count, occupancy, count / (end - start)), inside


def steady_state(records: RequestRecords, passing: np.ndarray, slo) -> SteadyState:
    """The run's steady-state figures; `passing` marks the requests meeting every SLO (`slo.slo_pass`)."""
    window, measured = steady_window(records)
    if window.start_s is None:
        empty = Distribution()
        return SteadyState(
            window, Throughput(None, None, None), empty, empty, empty, SLOResult(None, None, None), None
        )
    t = records
    length = window.length_s
    done = t.status == RequestStatus.FINISHED
    completed = done & (t.finish_s > window.start_s) & (t.finish_s <= window.end_s)
    num_out = float(t.output_tokens[completed].sum())
    num_in = float(t.input_tokens[completed].sum())
    throughput = Throughput(num_out / length, (num_out + num_in) / length, float(completed.sum()) / length)
    sel = measured & done
    ttft = t.first_token_s[sel] - t.arrival_s[sel]
    e2e = t.finish_s[sel] - t.arrival_s[sel]
    out = t.output_tokens[sel]
    multi = out > 1
    tpot = (e2e[multi] - ttft[multi]) / (out[multi] - 1)
    stats = {"ttft_s": Distribution.of(ttft), "tpot_s": Distribution.of(tpot), "e2e_s": Distribution.of(e2e)}
    passed = int((passing & measured).sum())
    slo_result = SLOResult(passed / window.requests, passed / length, slo_met(stats, slo))
    keeps_up = throughput.requests_per_s >= (1.0 - KEEP_UP_TOLERANCE) * window.arrival_rps
    return SteadyState(window, throughput, **stats, slo=slo_result, keeps_up=bool(keeps_up))
