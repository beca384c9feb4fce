"""A recorded run (`engine.trace.Timeline`) as a Chrome / Perfetto trace: Trace Event Format JSON, which
ui.perfetto.dev and chrome://tracing open.

Tracks (timestamps in µs of simulated time at the engine):
* one process per replica ("replica 0 · colocated"), one thread per pipeline stage ("stage 0 · 8 GPUs"):
  one complete event (`X`) per iteration and stage, named decode / prefill / mixed, its batch composition in
  `args` (prefill tokens and sequences, decode sequences and their context tokens, batched tokens);
* counters on each replica process (`C`): "KV cache" (used_tokens) and "requests" (running, waiting), sampled
  when an iteration is scheduled and when it finishes (only when the value changed);
* a "requests" process holding each request's life as nestable async events (`b` / `e`, category "request",
  id = the request's position in the workload): a "request N" slice with its phases nested in it — queued,
  prefill, then decode (colocated) or kv transfer, queued (decode), decode (disaggregated); a request rejected
  as too large is an instant (`n`). A preempted request's recompute stays inside the phase it was in.

Bound: the trace holds the window [start, end) the recorder was given, cut further so that it holds at most
`max_events` events: everything is kept up to the first instant at which one more event would pass the cap,
nothing after it (iterations that start before the cut, samples before it, request phases clipped to it).
`TraceSummary.message()` says what was kept. `otherData.apex` in the JSON states the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.engine.request import RequestStatus
from simulator.engine.trace import Timeline

US = 1e6  # trace timestamps are µs
FINISHED = int(RequestStatus.FINISHED)


@dataclass(frozen=True)
class TraceSummary:
    """What a written trace holds."""

    events: int
    start_s: float
    end_s: float  # the kept window is [start_s, end_s)
    run_end_s: float
    iterations: int
    requests: int
    cut_by_cap: bool  # the event cap, not the window asked for, set end_s
    max_events: int

    def message(self) -> str:
        span = f"simulated time {self.start_s:.3f}–{self.end_s:.3f} s"
        text = f"{self.events:,} events, {self.iterations:,} iterations, {self.requests:,} requests, {span}"
        if self.cut_by_cap:
            return (
                f"{text}: the cap of {self.max_events:,} events was reached (the run went on to "
                f"{self.run_end_s:.3f} s); choose a span with --trace-window START:END or raise --trace-max-events"
            )
        if self.start_s <= 0.0 and self.end_s >= self.run_end_s:
            return f"{text} (the whole run)"
        return f"{text} of a run that ended at {self.run_end_s:.3f} s"


def _us(time_s: float) -> float:
    return round(time_s * US, 3)


def _replica_pid(index: int) -> int:
    return index + 1


def _metadata(timeline: Timeline) -> list[dict]:
    events = []
    for i, r in enumerate(timeline.replicas):
        pid = _replica_pid(i)
        events.append(
            {
                "ph": "M",
                "name": "process_name",
                "pid": pid,
                "tid": 0,
                "args": {"name": f"replica {i} · {r.role} · KV {r.kv_capacity_tokens:,} tokens"},
            }
        )
        events.append(
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
        )
        for s, gpus in enumerate(r.stage_gpus):
            name = f"stage {s} · {gpus} GPU{'s' if gpus != 1 else ''}"
            events.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": s + 1, "args": {"name": name}}
            )
            events.append(
                {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": s + 1, "args": {"sort_index": s}}
            )
    pid = _requests_pid(timeline)
    events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": "requests"}})
    events.append(
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
    )
    return events


def _requests_pid(timeline: Timeline) -> int:
    return len(timeline.replicas) + 1


def _request_phases(timeline: Timeline, start_s: float, end_s: float) -> list[tuple]:
    """(request, life start, life end, [(phase, start, end)], rejected) of the requests alive in [start_s,
    end_s), their phases clipped to it; zero-length phases are left out."""
    r = timeline.requests
    run_end = timeline.run_end_s
    status = r.status
    arrived = (status != RequestStatus.PENDING) & np.isfinite(r.arrival_s)
    life_end = np.where(np.isfinite(r.finish_s), r.finish_s, run_end)
    rejected = status == RequestStatus.REJECTED
    # a rejected request is an instant at its arrival; any other lives from arrival to finish (or the run's end)
    alive = arrived & (r.arrival_s < end_s) & np.where(rejected, r.arrival_s >= start_s, life_end > start_s)
    out = []
    for req in np.flatnonzero(alive).tolist():
        arrival = float(r.arrival_s[req])
        if rejected[req]:
            out.append((req, arrival, arrival, [], True))
            continue
        end = float(life_end[req])
        handed_off = math.isfinite(r.kv_landed_s[req]) or status[req] == RequestStatus.TRANSFERRING
        # each phase starts at its mark and lasts until the next mark (the last one until the request's end)
        starts = [
            ("queued", arrival),
            ("prefill", r.scheduled_s[req]),
            ("kv transfer" if handed_off else "decode", r.first_token_s[req]),
            ("queued (decode)", r.kv_landed_s[req]),
            ("decode", r.decode_scheduled_s[req]),
        ]
        marks = [(name, float(t)) for name, t in starts if math.isfinite(t)]
        phases = []
        for k, (name, begin) in enumerate(marks):
            finish = marks[k + 1][1] if k + 1 < len(marks) else end
            a, b = max(begin, start_s), min(finish, end_s)
            if finish > begin and b > a:
                phases.append((name, a, b))
        if phases:
            out.append((req, max(arrival, start_s), min(end, end_s), phases, False))
    return out


def chrome_trace(timeline: Timeline) -> tuple[dict, TraceSummary]:
    """The Trace Event Format object of the timeline, and what it holds (module docstring)."""
    start_s = timeline.start_s
    meta = _metadata(timeline)
    its = timeline.iterations
    pp = np.array([len(r.stage_gpus) for r in timeline.replicas], dtype=np.int64)
    requests = _request_phases(timeline, start_s, timeline.end_s)

    # The cap: every kept event is stamped at a unit time (an iteration's start, a sample's time, a request
    # phase's clipped start); keep the units before the first time at which the running count passes the cap.
    times = [its.start_s, timeline.kv.time_s, timeline.queue.time_s]
    weights = [pp[its.replica] if len(its) else np.zeros(0, dtype=np.int64)]
    weights += [
        np.ones(len(timeline.kv.time_s), dtype=np.int64),
        np.ones(len(timeline.queue.time_s), dtype=np.int64),
    ]
    req_times = []
    req_weights = []
    for _, life_start, _, phases, rejected in requests:
        req_times.append(life_start)
        req_weights.append(1 if rejected else 2)
        for _, a, _ in phases:
            req_times.append(a)
            req_weights.append(2)
    times.append(np.asarray(req_times, dtype=np.float64))
    weights.append(np.asarray(req_weights, dtype=np.int64))
    unit_t = np.concatenate(times)
    unit_w = np.concatenate(weights)
    order = np.argsort(unit_t, kind="stable")
    cumulative = np.cumsum(unit_w[order])
    budget = timeline.max_events - len(meta)
    cut_s, cut_by_cap = timeline.end_s, timeline.stopped_by_cap
    if len(cumulative) and cumulative[-1] > budget:
        first_over = int(np.searchsorted(cumulative, budget, side="right"))
        cut_s, cut_by_cap = min(float(unit_t[order][first_over]), cut_s), True
    window_end = min(cut_s, timeline.run_end_s)

    events: list[dict] = []
    keep = its.start_s < cut_s
    events.extend(_iteration_events(timeline, keep))
    for samples, name, series in (
        (timeline.kv, "KV cache", ("used_tokens",)),
        (timeline.queue, "requests", ("running", "waiting")),
    ):
        rows = samples.time_s < cut_s
        for replica, ts, values in zip(
            samples.replica[rows].tolist(),
            np.round(samples.time_s[rows] * US, 3).tolist(),
            samples.values[rows].tolist(),
            strict=True,
        ):
            events.append(
                {
                    "ph": "C",
                    "name": name,
                    "pid": _replica_pid(replica),
                    "tid": 0,
                    "ts": ts,
                    "args": dict(zip(series, values, strict=True)),
                }
            )
    kept_requests = 0
    for req, life_start, life_end, phases, rejected in requests:
        if life_start >= cut_s:
            continue
        kept_requests += 1
        events.extend(
            _request_events(timeline, req, life_start, min(life_end, cut_s), phases, rejected, cut_s)
        )
    events.sort(key=lambda e: e["ts"])
    trace_events = meta + events
    summary = TraceSummary(
        events=len(trace_events),
        start_s=start_s,
        end_s=window_end,
        run_end_s=timeline.run_end_s,
        iterations=int(keep.sum()),
        requests=kept_requests,
        cut_by_cap=cut_by_cap,
        max_events=timeline.max_events,
    )
    other = {
        "window_s": [start_s, window_end],
        "run_end_s": timeline.run_end_s,
        "max_events": timeline.max_events,
        "cut_by_cap": cut_by_cap,
        "iterations": summary.iterations,
        "requests": kept_requests,
    }
    return {"traceEvents": trace_events, "displayTimeUnit": "ms", "otherData": {"apex": other}}, summary


def _iteration_events(timeline: Timeline, keep: np.ndarray) -> list[dict]:
    """One complete event per kept iteration and stage (columns converted once, not per event)."""
    its = timeline.iterations
    rows = np.flatnonzero(keep)
    ts = np.round(its.stage_start_s[rows] * US, 3)
    end = np.round(its.stage_end_s[rows] * US, 3)
    dur = np.round(end - ts, 3)
    columns = zip(
        its.replica[rows].tolist(),
        its.index[rows].tolist(),
        its.prefill_tokens[rows].tolist(),
        its.prefill_seqs[rows].tolist(),
        its.decode_seqs[rows].tolist(),
        its.decode_context_tokens[rows].tolist(),
        its.batched_tokens[rows].tolist(),
        ts.tolist(),
        dur.tolist(),
        strict=True,
    )
    stages = [len(r.stage_gpus) for r in timeline.replicas]
    out = []
    for replica, index, prefill, seqs, decode, context, batched, starts, durations in columns:
        name = "mixed" if prefill and decode else "prefill" if prefill else "decode"
        args = {
            "iteration": index,
            "prefill_tokens": prefill,
            "prefill_seqs": seqs,
            "decode_seqs": decode,
            "decode_context_tokens": context,
            "batched_tokens": batched,
        }
        pid = _replica_pid(replica)
        for stage in range(stages[replica]):
            out.append(
                {
                    "ph": "X",
                    "cat": "iteration",
                    "name": name,
                    "pid": pid,
                    "tid": stage + 1,
                    "ts": starts[stage],
                    "dur": durations[stage],
                    "args": args,
                }
            )
    return out


def _request_events(
    timeline: Timeline, req: int, start_s: float, end_s: float, phases: list, rejected: bool, cut_s: float
) -> list[dict]:
    r = timeline.requests
    base = {"cat": "request", "id": f"0x{req:x}", "pid": _requests_pid(timeline), "tid": 0}
    if rejected:
        return [
            dict(
                base,
                ph="n",
                name=f"request {req} rejected",
                ts=_us(start_s),
                args={"input_tokens": int(r.input_tokens[req]), "output_tokens": int(r.output_tokens[req])},
            )
        ]
    finished = int(r.status[req]) == FINISHED and r.finish_s[req] <= end_s
    args = {
        "request": req,
        "input_tokens": int(r.input_tokens[req]),
        "output_tokens": int(r.output_tokens[req]),
        "replica": int(r.replica[req]),
        "preemptions": int(r.num_preemptions[req]),
        "status": "finished" if finished else "in flight at the trace's end",
    }
    name = f"request {req}"
    out = [dict(base, ph="b", name=name, ts=_us(start_s), args=args)]
    for phase, a, b in phases:
        b = min(b, cut_s)
        if b <= a:
            continue
        out.append(dict(base, ph="b", name=phase, ts=_us(a)))
        out.append(dict(base, ph="e", name=phase, ts=_us(b)))
    out.append(dict(base, ph="e", name=name, ts=_us(end_s)))
    return out


def write_chrome_trace(path: str | Path, timeline: Timeline) -> TraceSummary:
    """Write the timeline's trace to `path` (JSON); returns what it holds."""
    data, summary = chrome_trace(timeline)
    text = json.dumps(data, separators=(",", ":"))  # dumps uses the C encoder; dump to a file does not
    Path(path).write_text(text, encoding="utf-8")
    return summary
