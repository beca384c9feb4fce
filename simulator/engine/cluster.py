"""The serving system: replicas, routers and the event handlers that move requests between them.

Arrivals are routed to an entry replica (colocated, or prefill in a disaggregated plan). A prefill replica
stops a request after its first token (the first-token time is the end of prefill), frees its KV and sends
the cache to a decode replica; it lands after `ReplicaCost.kv_transfer_time`, and decoding goes on there.
A replica without pipelining that finishes an iteration starts the next one and, when that one ends before
any other queued event, runs it inline (the order the event heap would give it, without the heap).
In a closed loop (`closed`), the first `concurrency` requests arrive at t = 0 and each request that finishes
or is rejected sends the next one in workload order `think_time_s` later (its arrival time is set then); every
arrival is then an event (no replica owns a stream of known times).
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
from simulator.engine.prefix_cache import ContentIndex, PrefixCacheStats, PrefixKVCache
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
        closed=None,
        prefixes=None,
        trace=None,
    ):
        self.table = table
        self.closed = closed  # simulator.workload.ClosedLoop, or None for arrivals at the table's times
        self.replicas: list[Replica] = []
        content = None
        if config.prefix_caching and prefixes is not None:
            content = ContentIndex(prefixes, table.num_requests, config.block_size)
        for spec in specs:
            for _ in range(spec.count):
                scheduler = create_scheduler(
                    engine_kind, table, config, spec.cost.kv_capacity_tokens, content
                )
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
        single = len(self.entry) == 1 and self.entry[0].pp == 1
        self._owner = self.entry[0] if single and closed is None else None
        self.progress: Callable[[int, int], None] | None = None
        # a trace.TraceRecorder (apex simulate --trace-out), else None: then no trace work at all
        self.trace = trace
        for r in self.replicas:
            r.trace = trace

    # ------------------------------------------------------------------------------------------- running
    def run(self, *, until_s: float = math.inf, max_requests: int | None = None) -> None:
        """Simulate until every request is finished or rejected, the clock passes until_s, or max_requests
        requests have completed."""
        if self.closed is None:
            self._queue_arrival()
        elif self._next_arrival == 0:
            self._send_next(min(self.closed.concurrency, self.table.num_requests), 0.0, think=False)
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
        if self.closed is not None:
            self.table.arrival_s[req] = now_s
            self._arrive(
                self.entry[self.entry_router.choose(self.outstanding, self._entry_index)], req, now_s
            )
            return
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
        if n >= total or arrival_s[n] > now_s:
            return
        table, scheduler = self.table, owner.scheduler
        prefill = owner.role == "prefill"
        while n < total and arrival_s[n] <= now_s:
            if prefill:
                table.stop[n] = table.prompt[n] + 1
            if scheduler.can_ever_fit(n):
                table.replica[n] = owner.index
                scheduler.add_request(n)
                self.outstanding[owner.index] += 1
            else:
                table.status[n] = RequestStatus.REJECTED
                self.num_rejected += 1
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
            if self.closed is not None:
                self._send_next(1, now_s)
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
            replica.scheduler.now_s = now_s
            batch = replica.scheduler.schedule(now_s)  # one stage, free now: start_batches reduced to this
            if batch is None:
                if owner:
                    self._queue_arrival()  # idle: wait for the next arrival
                return
            done_s = replica.start(batch, now_s)
            if not loop.runs_next(done_s):
                loop.schedule(done_s, PRIORITY_STEP_DONE, self._on_step_done, (replica, batch))
                return
            now_s = loop.now_s = done_s
            loop.num_events += 1

    def _decode_in_place(self, replica: Replica, now_s: float) -> float | None:
        """Steady decoding on a one-stage replica: while the next iteration is one cohort's decode and it ends
        before any queued event, run it here, without a Batch or an event. Returns the time reached, or None
        when the iteration started last ends after a queued event (it is then queued itself).

        Each iteration is what `schedule()` + `update_from_output()` do for a lone cohort (the equivalence
        tests hold them to it), written out on the cohort's aggregates: the new KV blocks of the members whose
        blocks are full, one fused price, the stage's accounts, one run-length encoded gap, and the members
        whose last token this was."""
        if self.trace is not None:
            return now_s  # a trace sees every iteration: through schedule(), same decisions and times
        scheduler = replica.scheduler
        cohort = scheduler.steady_cohort()
        if cohort is None:
            return now_s
        loop = self.loop
        heap = loop.queued()
        # Only a finish can queue an event here (a closed loop's next request): the first queued event is read
        # again after finishes; the owner's next arrival stays where it is.
        horizon_s = heap[0][0] if heap else math.inf
        until_s, stop = loop.until_s, loop.stop
        arrival_s = math.inf
        if replica is self._owner and self._next_arrival < self.table.num_requests:
            arrival_s = self._arrival_s[self._next_arrival]
        if now_s >= arrival_s:
            return now_s  # a request arrived: the scheduler admits it
        kv = scheduler.kv
        phases = cohort.phases
        block_phases = len(phases) if phases is not None else 0
        price = replica.stages[0].price_decode
        values, counts = self.table.gaps.values, self.table.gaps.counts
        busy = energy = flops = 0.0
        steps = 0
        spec = scheduler.spec
        while True:
            n = cohort.count
            context = cohort.offset_sum + n * cohort.steps
            advance = 1 if spec is None else spec.draw()
            if block_phases:
                blocks = phases[-cohort.steps % block_phases] if advance == 1 else cohort.new_blocks(advance)
                if blocks:
                    if blocks > kv.num_free_blocks:
                        if spec is not None:
                            spec.pending = advance  # this step's draw: schedule() takes it
                        break  # short of KV: schedule() preempts
                    kv.take(blocks)
            cohort.steps += advance
            time_s, energy_j, flops_j = price(n, context)
            busy += time_s
            energy += energy_j
            flops += flops_j
            steps += 1
            done_s = now_s + time_s
            if done_s >= horizon_s or done_s > until_s or (stop is not None and stop()):
                cohort.in_flight = True
                replica.num_in_flight += 1
                batch = Batch((cohort,), (), n, n, context, None)
                loop.schedule(done_s, PRIORITY_STEP_DONE, self._on_step_done, (replica, batch))
                now_s = None
                break
            values.append(done_s - cohort.last_s)
            counts.append(n)
            cohort.last_s = now_s = done_s
            heap_top = cohort.finishes[0][0]
            if heap_top <= cohort.steps:
                done: list[int] = []
                scheduler.release_finished(cohort, done)
                self._done(replica, done, now_s)
                horizon_s = heap[0][0] if heap else math.inf
                if cohort.count == 0:
                    scheduler.drop_if_empty(cohort)
                    break
            if now_s >= arrival_s:
                break  # a request arrived: the scheduler admits it
        replica.account_decode_steps(steps, busy, energy, flops, done_s if now_s is None else now_s)
        loop.num_events += steps - (now_s is None)
        if now_s is not None:
            loop.now_s = now_s
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
        if self.closed is not None:
            self._send_next(len(done), now_s)
        total = table.num_requests
        if self.progress is not None and self.num_completed * 100 // total > before * 100 // total:
            self.progress(self.num_completed, total)

    def _send_next(self, count: int, now_s: float, *, think: bool = True) -> None:
        """Closed loop: `count` clients are free at now_s; each sends the next request after its think time."""
        at = now_s + self.closed.think_time_s if think else now_s
        for _ in range(count):
            n = self._next_arrival
            if n >= self.table.num_requests:
                return
            self._next_arrival = n + 1
            self.loop.schedule(at, PRIORITY_ARRIVAL, self._on_arrival, n)

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
        if self.trace is not None:
            self.trace.kv_landed(req, now_s)
        self._enqueue(decode, req, now_s)

    def prefix_cache_stats(self) -> PrefixCacheStats:
        """The replicas' prefix-cache counters, summed."""
        total = PrefixCacheStats(False)
        for r in self.replicas:
            kv = r.scheduler.kv
            if isinstance(kv, PrefixKVCache):
                total = total + kv.stats()
        return total

    # ---------------------------------------------------------------------------------------------- checks
    def kv_blocks_conserved(self) -> bool:
        return all(r.scheduler.kv_conserved() for r in self.replicas)
