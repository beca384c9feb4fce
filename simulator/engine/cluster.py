"""The serving system: replicas, routers and the event handlers that move requests between them.

Arrivals are routed to an entry replica (colocated, or prefill in a disaggregated plan). A prefill replica
stops a request after its first token (the first-token time is the end of prefill), frees its KV and sends
the cache to a decode replica; it lands after `ReplicaCost.kv_transfer_time`, and decoding goes on there.
A replica without pipelining that finishes an iteration starts the next one and, when that one ends before
any other queued event, runs it inline (the order the event heap would give it, without the heap).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.costmodel.interface import ReplicaCost
from simulator.engine.loop import (
    PRIORITY_ARRIVAL,
    PRIORITY_KV_ARRIVAL,
    PRIORITY_STEP_DONE,
    PRIORITY_WAKE,
    EventLoop,
)
from simulator.engine.replica import Replica
from simulator.engine.request import RequestStatus, RequestTable
from simulator.engine.router import Router
from simulator.engine.schedulers import Batch, SchedulerConfig, create_scheduler


@dataclass(frozen=True)
class ReplicaSpec:
    """`count` replicas of one role priced by one ReplicaCost."""

    cost: ReplicaCost
    count: int = 1
    role: str = "colocated"


class ServingSystem:
    def __init__(
        self,
        table: RequestTable,
        specs: list[ReplicaSpec],
        *,
        engine_kind: str,
        config: SchedulerConfig,
        router: str,
        rng: np.random.Generator,
    ):
        self.table = table
        self.replicas: list[Replica] = []
        for spec in specs:
            for _ in range(spec.count):
                scheduler = create_scheduler(engine_kind, table, config, spec.cost.kv_capacity_tokens)
                self.replicas.append(Replica(len(self.replicas), spec.role, scheduler, spec.cost))
        self.entry = [r for r in self.replicas if r.role in ("colocated", "prefill")]
        self.decode = [r for r in self.replicas if r.role == "decode"]
        if not self.entry:
            raise ValueError("a plan needs colocated or prefill replicas to take arrivals")
        if any(r.role == "prefill" for r in self.replicas) and not self.decode:
            raise ValueError("a plan with prefill replicas needs decode replicas")
        entry_rng, decode_rng = rng.spawn(2)
        self.entry_router = Router(router, len(self.entry), entry_rng)
        self.decode_router = Router(router, len(self.decode), decode_rng) if self.decode else None
        self.outstanding = [0] * len(self.replicas)
        self._entry_index = [r.index for r in self.entry]
        self._decode_index = [r.index for r in self.decode]
        self._arrival_s = table.arrival_s.tolist()
        self.loop = EventLoop()
        self.num_completed = 0
        self.num_rejected = 0
        self._next_arrival = 0  # the first request that has not arrived yet
        self._arrival_queued = False  # its arrival is an event in the loop
        # One entry replica without pipelining owns the arrival stream: routing is trivial and nothing else
        # reads its queue, so while it is busy it takes arrivals in when it next schedules (every arrival
        # up to that instant, as the event order would have), and only an idle owner waits on an arrival event.
        self._owner = self.entry[0] if len(self.entry) == 1 and self.entry[0].pp == 1 else None
        self.progress: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------------------------------------- running
    def run(self, *, until_s: float = math.inf, max_requests: int | None = None) -> None:
        """Simulate until every request is finished or rejected, the clock passes until_s, or max_requests
        requests have completed."""
        self._queue_arrival()
        stop = None if max_requests is None else (lambda: self.num_completed >= max_requests)
        self.loop.run(until_s=until_s, stop=stop)
        if self._owner is not None:  # arrivals the event order would have run before the loop stopped
            stopped = stop is not None and stop()
            self._take_arrivals(self._owner, self.loop.now_s if stopped else until_s)

    def _queue_arrival(self) -> None:
        """Make the next arrival an event (unless it is one already)."""
        n = self._next_arrival
        if n < self.table.num_requests and not self._arrival_queued:
            self._arrival_queued = True
            self.loop.schedule(self._arrival_s[n], PRIORITY_ARRIVAL, self._on_arrival, n)

    def _on_arrival(self, now_s: float, req: int) -> None:
        self._arrival_queued = False
        self._next_arrival = req + 1
        owner = self._owner
        if owner is None:
            self._queue_arrival()
            replica = self.entry[self.entry_router.choose(self.outstanding, self._entry_index)]
        else:
            replica = owner
        self._arrive(replica, req, now_s)
        if owner is not None and not owner.wake_pending and not owner.num_in_flight:
            self._queue_arrival()  # rejected: the owner is still idle

    def _take_arrivals(self, owner: Replica, now_s: float) -> None:
        """The owner takes in every request that arrived by now_s (it is about to schedule)."""
        arrival_s, n, total = self._arrival_s, self._next_arrival, self.table.num_requests
        while n < total and arrival_s[n] <= now_s:
            self._arrive(owner, n, arrival_s[n], wake=False)
            n += 1
        self._next_arrival = n

    def _arrive(self, replica: Replica, req: int, now_s: float, *, wake: bool = True) -> None:
        if replica.role == "prefill":
            self.table.stop[req] = self.table.prompt[req] + 1
        self._enqueue(replica, req, now_s, wake=wake)

    def _enqueue(self, replica: Replica, req: int, now_s: float, *, wake: bool = True) -> None:
        if not replica.scheduler.can_ever_fit(req):
            self.table.status[req] = RequestStatus.REJECTED
            self.num_rejected += 1
            return
        self.table.replica[req] = replica.index
        self.outstanding[replica.index] += 1
        replica.scheduler.add_request(req)
        if wake and replica.num_in_flight < replica.pp and not replica.wake_pending:
            replica.wake_pending = True
            self.loop.schedule(now_s, PRIORITY_WAKE, self._on_wake, replica)

    def _on_wake(self, now_s: float, replica: Replica) -> None:
        replica.wake_pending = False
        if replica is self._owner:
            self._take_arrivals(replica, now_s)
        self._start(replica, now_s)

    def _start(self, replica: Replica, now_s: float) -> None:
        started, again_s = replica.start_batches(now_s)
        if not started and replica is self._owner and not replica.num_in_flight:
            self._queue_arrival()  # idle: wait for the next arrival
        for done_s, batch in started:
            self.loop.schedule(done_s, PRIORITY_STEP_DONE, self._on_step_done, (replica, batch))
        if again_s is not None and not replica.wake_pending:
            replica.wake_pending = True
            self.loop.schedule(again_s, PRIORITY_WAKE, self._on_wake, replica)

    def _on_step_done(self, now_s: float, payload) -> None:
        replica, batch = payload
        loop = self.loop
        while True:
            done = replica.finish_batch(batch, now_s)
            if done:
                self._done(replica, done, now_s)
            if replica.pp > 1:
                self._start(replica, now_s)
                return
            owner = replica is self._owner
            if owner:
                self._take_arrivals(replica, now_s)
            now_s = self._decode_in_place(replica, now_s)
            if now_s is None:
                return
            if owner:
                self._take_arrivals(replica, now_s)
            started, _ = replica.start_batches(now_s)
            if not started:
                if owner:
                    self._queue_arrival()  # idle: wait for the next arrival
                return
            done_s, batch = started[0]
            if not loop.runs_next(done_s):
                loop.schedule(done_s, PRIORITY_STEP_DONE, self._on_step_done, (replica, batch))
                return
            now_s = loop.now_s = done_s
            loop.num_events += 1

    def _decode_in_place(self, replica: Replica, now_s: float) -> float | None:
        """Steady decoding on a one-stage replica: while the next iteration is one cohort's decode and it ends
        before any queued event, run it here, without a Batch or an event. Returns the time reached, or None
        when the iteration started last ends after a queued event (it is then queued itself)."""
        scheduler = replica.scheduler
        cohort = scheduler.steady_cohort()
        if cohort is None:
            return now_s
        loop = self.loop
        arrival_s = self._arrival_s if replica is self._owner else ()
        total = len(arrival_s)
        while True:
            if self._next_arrival < total and arrival_s[self._next_arrival] <= now_s:
                return now_s  # a request arrived: the scheduler admits it
            n, context = cohort.count, cohort.context_tokens()
            if not scheduler.start_steady(cohort):
                return now_s
            done_s = replica.run_decode(n, context, now_s)
            if not loop.runs_next(done_s):
                cohort.in_flight = True
                replica.num_in_flight += 1
                batch = Batch((cohort,), (), n, n, context, None)
                loop.schedule(done_s, PRIORITY_STEP_DONE, self._on_step_done, (replica, batch))
                return None
            now_s = loop.now_s = done_s
            loop.num_events += 1
            done: list[int] = []
            scheduler.sample_cohort(cohort, now_s, done)
            if done:
                self._done(replica, done, now_s)
                if cohort.count == 0:
                    scheduler.drop_if_empty(cohort)
                    return now_s

    def _done(self, replica: Replica, done: list[int], now_s: float) -> None:
        self.outstanding[replica.index] -= len(done)
        if replica.role == "prefill":
            self._prefill_done(replica, done, now_s)
        else:
            self._finish(done, now_s)

    def _prefill_done(self, replica: Replica, done: list[int], now_s: float) -> None:
        output = self.table.output
        finished = [req for req in done if output[req] <= 1]
        self._finish(finished, now_s)
        for req in done:
            if output[req] > 1:
                self._handoff(replica, req, now_s)

    def _finish(self, done: list[int], now_s: float) -> None:
        if not done:
            return
        table = self.table
        for req in done:
            table.status[req] = RequestStatus.FINISHED
            table.finish_s[req] = now_s
        before = self.num_completed
        self.num_completed += len(done)
        total = table.num_requests
        if self.progress is not None and self.num_completed * 100 // total > before * 100 // total:
            self.progress(self.num_completed, total)

    def _handoff(self, prefill: Replica, req: int, now_s: float) -> None:
        """Send req's KV cache (its prompt) from the prefill replica to a decode replica."""
        table = self.table
        table.status[req] = RequestStatus.TRANSFERRING
        decode = self.decode[self.decode_router.choose(self.outstanding, self._decode_index)]
        table.stop[req] = table.prompt[req] + table.output[req]
        self.outstanding[decode.index] += 1  # counted from the handoff so routing sees transfers in flight
        arrive_s = now_s + prefill.cost.kv_transfer_time(table.computed[req], decode.cost)
        self.loop.schedule(arrive_s, PRIORITY_KV_ARRIVAL, self._on_kv_arrival, (decode, req))

    def _on_kv_arrival(self, now_s: float, payload) -> None:
        decode, req = payload
        self.outstanding[decode.index] -= 1
        self._enqueue(decode, req, now_s)

    # ---------------------------------------------------------------------------------------------- checks
    def kv_blocks_conserved(self) -> bool:
        return all(r.scheduler.kv_conserved() for r in self.replicas)
