"""The timeline recorder of `apex simulate --trace-out`: what the engine did, iteration by iteration.

The engine holds a recorder only when a trace was asked for (`ServingSystem(trace=...)`); without one no
method here runs and the engine keeps its fast paths. With one, a one-stage replica's steady decode steps go
through the scheduler one by one instead of running in place (`ServingSystem._decode_in_place`), so that every
iteration is seen; the decisions and times are the same (the equivalence tests hold both paths to them).

What is recorded, in simulated seconds at the engine (a calibrated frontend delay is not drawn):
* every iteration that starts inside the window [start_s, end_s): its replica, the span of each pipeline stage
  and its batch composition, and the replica's KV use and queue lengths once it was scheduled;
* KV use and queue lengths each time an iteration inside the window finishes (a value equal to the replica's
  previous one is not recorded again: a counter holds its value until the next sample);
* for every request, the first time each replica scheduled it and when its KV cache landed on a decode replica
  (the request phases of the trace; one entry per request and replica, however long the run).

The iteration records are bounded: once `max_events` trace events' worth of iteration slices and counter
samples are recorded, recording stops and the window ends there (`stopped_by_cap`). `finish()` returns the
frozen `Timeline` that `simulator.trace_export` turns into a Chrome / Perfetto trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_EVENTS = 200_000  # ≈30 MB of JSON: loads in ui.perfetto.dev and chrome://tracing


@dataclass(frozen=True)
class TraceReplica:
    """One replica as the trace names it."""

    role: str
    stage_gpus: tuple[int, ...]  # GPUs of each pipeline stage
    kv_capacity_tokens: int


@dataclass(frozen=True)
class Iterations:
    """Iterations that started in the window, in start order (numpy columns, one row per iteration)."""

    replica: np.ndarray
    index: np.ndarray  # the iteration's number on its replica (0-based, counted over the whole run)
    start_s: np.ndarray
    stage_start_s: np.ndarray  # (iterations, max pp); NaN past a replica's last stage
    stage_end_s: np.ndarray
    prefill_tokens: np.ndarray
    prefill_seqs: np.ndarray
    decode_seqs: np.ndarray
    decode_context_tokens: np.ndarray
    batched_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.start_s)


@dataclass(frozen=True)
class Samples:
    """A counter per replica at instants in the window (time order); a sample is recorded only when the value
    differs from that replica's previous one."""

    replica: np.ndarray
    time_s: np.ndarray
    values: np.ndarray  # (samples, series)


@dataclass(frozen=True)
class RequestTimes:
    """Each request's life at the engine (workload order; NaN: did not happen)."""

    arrival_s: np.ndarray
    scheduled_s: np.ndarray  # first scheduled (on its entry replica)
    first_token_s: np.ndarray
    kv_landed_s: np.ndarray  # disaggregated: its KV cache reached the decode replica
    decode_scheduled_s: np.ndarray  # disaggregated: first scheduled on the decode replica
    finish_s: np.ndarray
    status: np.ndarray  # RequestStatus values
    replica: np.ndarray  # the replica it ended on
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    num_preemptions: np.ndarray


@dataclass(frozen=True)
class Timeline:
    """A recorded run: what `simulator.trace_export` writes."""

    replicas: tuple[TraceReplica, ...]
    iterations: Iterations
    kv: Samples  # series: KV cache tokens in use
    queue: Samples  # series: running, waiting requests
    requests: RequestTimes
    start_s: float  # the window asked for ...
    end_s: float  # ... and where recording ended (the cap may have moved it earlier)
    run_end_s: float  # the simulated time the run stopped at
    max_events: int
    stopped_by_cap: bool


class TraceRecorder:
    """Collects a run's timeline in [start_s, end_s), up to about max_events trace events (module docstring)."""

    def __init__(self, start_s: float = 0.0, end_s: float = math.inf, max_events: int = DEFAULT_MAX_EVENTS):
        if not (math.isfinite(start_s) and start_s >= 0.0 and end_s > start_s and max_events >= 1):
            raise ValueError(f"bad trace window [{start_s}, {end_s}) or cap {max_events}")
        self.start_s, self.end_s, self.max_events = float(start_s), float(end_s), int(max_events)
        self.stopped_by_cap = False
        self._events = 0
        self._iterations: list[tuple] = []
        self._kv: list[tuple] = []  # (replica, time, (tokens,))
        self._queue: list[tuple] = []  # (replica, time, (running, waiting))
        self._last: dict[int, tuple] = {}  # replica -> (last KV sample, last queue sample)
        self._scheduled: dict[int, list[tuple[int, float]]] = {}  # request -> [(replica, first scheduled)]
        self._kv_landed: dict[int, float] = {}
        self._timeline: Timeline | None = None

    # --------------------------------------------------------------------------------- the engine's hooks
    def iteration(self, replica, batch, now_s: float, stage_spans: list[tuple[float, float]]) -> None:
        """`replica` (an engine Replica) started `batch` at now_s; stage i runs over stage_spans[i]."""
        index = replica.index
        if batch.singles:
            scheduled = self._scheduled
            for req, _ in batch.singles:
                seen = scheduled.get(req)
                if seen is None:
                    scheduled[req] = [(index, now_s)]
                elif seen[-1][0] != index:
                    seen.append((index, now_s))
        if not self.start_s <= now_s < self.end_s:
            return
        kv, queue = self._changes(replica)
        if not self._room(now_s, len(stage_spans) + (kv is not None) + (queue is not None)):
            return
        shape = batch.shape
        prefill_tokens = shape.num_prefill_tokens if shape is not None else 0
        prefill_seqs = shape.num_prefill_seqs if shape is not None else 0
        self._iterations.append(
            (
                index,
                replica.num_iterations - 1,
                now_s,
                tuple(stage_spans),
                prefill_tokens,
                prefill_seqs,
                batch.num_decode,
                batch.decode_context_tokens,
                batch.num_tokens,
            )
        )
        self._sample(index, now_s, kv, queue)

    def finished(self, replica, now_s: float) -> None:
        """A micro-batch of `replica` finished at now_s and its requests were updated."""
        if not self.start_s <= now_s < self.end_s:
            return
        kv, queue = self._changes(replica)
        if self._room(now_s, (kv is not None) + (queue is not None)):
            self._sample(replica.index, now_s, kv, queue)

    def kv_landed(self, req: int, now_s: float) -> None:
        """A disaggregated request's KV cache reached its decode replica."""
        self._kv_landed[req] = now_s

    def _changes(self, replica) -> tuple[tuple | None, tuple | None]:
        """The replica's KV use and queue lengths, each None when equal to its previous sample."""
        scheduler = replica.scheduler
        kv_cache = scheduler.kv
        kv = ((kv_cache.num_blocks - kv_cache.num_free_blocks) * kv_cache.block_size,)
        queue = (len(scheduler.running), len(scheduler.waiting))
        last_kv, last_queue = self._last.get(replica.index, (None, None))
        return (None if kv == last_kv else kv), (None if queue == last_queue else queue)

    def _room(self, now_s: float, events: int) -> bool:
        """True when `events` more trace events fit under the cap (else the window ends at now_s). Records come
        in time order: the engine's clock never goes back."""
        if self._events + events > self.max_events:
            self.end_s, self.stopped_by_cap = now_s, True
            return False
        self._events += events
        return True

    def _sample(self, index: int, now_s: float, kv: tuple | None, queue: tuple | None) -> None:
        last_kv, last_queue = self._last.get(index, (None, None))
        if kv is not None:
            self._kv.append((index, now_s, kv))
            last_kv = kv
        if queue is not None:
            self._queue.append((index, now_s, queue))
            last_queue = queue
        self._last[index] = (last_kv, last_queue)

    # ----------------------------------------------------------------------------------------- the result
    def finish(self, system, records) -> Timeline:
        """Freeze what was recorded; `system` is the ServingSystem that ran, `records` its RequestRecords at the
        engine (before any frontend delay)."""
        replicas = tuple(
            TraceReplica(r.role, tuple(int(s.num_gpus) for s in r.stages), int(r.cost.kv_capacity_tokens))
            for r in system.replicas
        )
        run_end_s = float(system.loop.now_s)
        self._timeline = Timeline(
            replicas=replicas,
            iterations=self._iteration_columns(max((len(r.stage_gpus) for r in replicas), default=1)),
            kv=_sample_columns(self._kv, 1),
            queue=_sample_columns(self._queue, 2),
            requests=self._request_times(records),
            start_s=self.start_s,
            end_s=self.end_s,
            run_end_s=run_end_s,
            max_events=self.max_events,
            stopped_by_cap=self.stopped_by_cap,
        )
        return self._timeline

    @property
    def has_run(self) -> bool:
        """True once a run was recorded (a recorder records one run)."""
        return self._timeline is not None

    @property
    def timeline(self) -> Timeline:
        """The frozen timeline (after the run)."""
        if self._timeline is None:
            raise RuntimeError("the run has not finished: no timeline yet")
        return self._timeline

    def _iteration_columns(self, max_pp: int) -> Iterations:
        rows = self._iterations
        n = len(rows)
        starts = np.full((n, max_pp), np.nan)
        ends = np.full((n, max_pp), np.nan)
        for i, row in enumerate(rows):
            for s, (a, b) in enumerate(row[3]):
                starts[i, s], ends[i, s] = a, b

        def column(k: int, dtype) -> np.ndarray:
            return np.fromiter((row[k] for row in rows), dtype=dtype, count=n)

        return Iterations(
            replica=column(0, np.int64),
            index=column(1, np.int64),
            start_s=column(2, np.float64),
            stage_start_s=starts,
            stage_end_s=ends,
            prefill_tokens=column(4, np.int64),
            prefill_seqs=column(5, np.int64),
            decode_seqs=column(6, np.int64),
            decode_context_tokens=column(7, np.int64),
            batched_tokens=column(8, np.int64),
        )

    def _request_times(self, records) -> RequestTimes:
        n = records.num_requests
        scheduled = np.full(n, np.nan)
        decode_scheduled = np.full(n, np.nan)
        for req, seen in self._scheduled.items():
            scheduled[req] = seen[0][1]
            if len(seen) > 1:
                decode_scheduled[req] = seen[-1][1]
        landed = np.full(n, np.nan)
        for req, time_s in self._kv_landed.items():
            landed[req] = time_s
        return RequestTimes(
            arrival_s=records.arrival_s,
            scheduled_s=scheduled,
            first_token_s=records.first_token_s,
            kv_landed_s=landed,
            decode_scheduled_s=decode_scheduled,
            finish_s=records.finish_s,
            status=records.status,
            replica=records.replica,
            input_tokens=records.input_tokens,
            output_tokens=records.output_tokens,
            num_preemptions=records.num_preemptions,
        )


def _sample_columns(rows: list[tuple], series: int) -> Samples:
    n = len(rows)
    return Samples(
        replica=np.fromiter((row[0] for row in rows), dtype=np.int64, count=n),
        time_s=np.fromiter((row[1] for row in rows), dtype=np.float64, count=n),
        values=np.array([row[2] for row in rows], dtype=np.int64).reshape(n, series),
    )
