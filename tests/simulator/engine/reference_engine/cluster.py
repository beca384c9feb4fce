"""The serving system: replicas, routers and the event handlers that move requests between them.

Arrivals are routed to an entry replica (colocated, or prefill in a disaggregated plan). A prefill replica
stops a request after its first token (the first-token time is the end of prefill), frees its KV and sends
the cache to a decode replica; it lands after `ReplicaCost.kv_transfer_time`, and decoding goes on there.
In a closed loop (`closed`), the first `concurrency` requests arrive at t = 0 and each request that finishes
or is rejected sends the next one in workload order `think_time_s` later (added with closed-loop arrivals, to
check the aggregate engine's closed loop against).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reference_engine.loop import (
    PRIORITY_ARRIVAL,
    PRIORITY_KV_ARRIVAL,
    PRIORITY_STEP_DONE,
    PRIORITY_WAKE,
    EventLoop,
)
from reference_engine.replica import Replica
from reference_engine.request import RequestStatus, RequestTable
from reference_engine.router import Router
from reference_engine.schedulers import SchedulerConfig, create_scheduler
from simulator.costmodel.interface import ReplicaCost


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
    ):
        self.table = table
        self.closed = closed
        self.replicas: list[Replica] = []
        for spec in specs:
            for _ in range(spec.count):
                scheduler = create_scheduler(
                    engine_kind, table, config, spec.cost.kv_capacity_tokens, prefixes
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
        self.outstanding = np.zeros(len(self.replicas), dtype=np.int64)
        self._entry_index = np.array([r.index for r in self.entry])
        self._decode_index = np.array([r.index for r in self.decode], dtype=np.int64)
        self.loop = EventLoop()
        self.num_completed = 0
        self.num_rejected = 0
        self._next_arrival = 0
        self.progress: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------------------------------------- running
    def run(self, *, until_s: float = math.inf, max_requests: int | None = None) -> None:
        """Simulate until every request is finished or rejected, the clock passes until_s, or max_requests
        requests have completed."""
        if self.table.num_requests and self._next_arrival == 0 and self.closed is not None:
            self._next_arrival = min(self.closed.concurrency, self.table.num_requests)
            for req in range(self._next_arrival):
                self.loop.schedule(0.0, PRIORITY_ARRIVAL, self._on_arrival, req)
        if self.table.num_requests and self._next_arrival == 0:
            self._next_arrival = 1
            self.loop.schedule(self.table.arrival_s[0], PRIORITY_ARRIVAL, self._on_arrival, 0)
        stop = None if max_requests is None else (lambda: self.num_completed >= max_requests)
        self.loop.run(until_s=until_s, stop=stop)

    def _on_arrival(self, now_s: float, req: int):
        events = []
        n = self._next_arrival
        if self.closed is not None:
            self.table.arrival_s[req] = now_s
        elif n < self.table.num_requests:
            self._next_arrival = n + 1
            events.append((self.table.arrival_s[n], PRIORITY_ARRIVAL, self._on_arrival, n))
        replica = self.entry[self.entry_router.choose(self.outstanding[self._entry_index])]
        table = self.table
        if replica.role == "prefill":
            table.stop_tokens[req] = table.input_tokens[req] + 1
        events.extend(self._enqueue(replica, req, now_s))
        return events

    def _enqueue(self, replica: Replica, req: int, now_s: float):
        if not replica.scheduler.can_ever_fit(req):
            self.table.status[req] = RequestStatus.REJECTED
            self.num_rejected += 1
            return self._send_next(1, now_s)
        self.table.replica[req] = replica.index
        self.outstanding[replica.index] += 1
        replica.scheduler.add_request(req)
        if replica.num_in_flight < replica.pp and not replica.wake_pending:
            replica.wake_pending = True
            return ((now_s, PRIORITY_WAKE, self._on_wake, replica),)
        return ()

    def _on_wake(self, now_s: float, replica: Replica):
        replica.wake_pending = False
        return self._start(replica, now_s)

    def _start(self, replica: Replica, now_s: float):
        started, again_s = replica.start_batches(now_s)
        events = [
            (done_s, PRIORITY_STEP_DONE, self._on_step_done, (replica, batch)) for done_s, batch in started
        ]
        if again_s is not None and not replica.wake_pending:
            replica.wake_pending = True
            events.append((again_s, PRIORITY_WAKE, self._on_wake, replica))
        return events

    def _on_step_done(self, now_s: float, payload):
        replica, batch = payload
        done = replica.finish_batch(batch, now_s)
        events = []
        if len(done):
            self.outstanding[replica.index] -= len(done)
            table = self.table
            if replica.role == "prefill":
                more = table.output_tokens[done] > 1
                self._finish(done[~more], now_s)
                for req in done[more].tolist():
                    events.append(self._handoff(replica, req, now_s))
            else:
                self._finish(done, now_s)
        events.extend(self._start(replica, now_s))
        return events

    def _finish(self, done: np.ndarray, now_s: float) -> None:
        if len(done) == 0:
            return
        self.table.status[done] = RequestStatus.FINISHED
        self.table.finish_s[done] = now_s
        for event in self._send_next(len(done), now_s):
            self.loop.schedule(*event)
        before = self.num_completed
        self.num_completed += len(done)
        if self.progress is not None and (
            self.num_completed * 100 // self.table.num_requests > before * 100 // self.table.num_requests
        ):
            self.progress(self.num_completed, self.table.num_requests)

    def _send_next(self, count: int, now_s: float):
        """Closed loop: the arrival events of the next `count` requests, after the think time."""
        if self.closed is None:
            return ()
        events = []
        for _ in range(count):
            n = self._next_arrival
            if n >= self.table.num_requests:
                break
            self._next_arrival = n + 1
            events.append((now_s + self.closed.think_time_s, PRIORITY_ARRIVAL, self._on_arrival, n))
        return events

    def _handoff(self, prefill: Replica, req: int, now_s: float):
        """Send req's KV cache (its prompt) from the prefill replica to a decode replica."""
        table = self.table
        table.status[req] = RequestStatus.TRANSFERRING
        decode = self.decode[self.decode_router.choose(self.outstanding[self._decode_index])]
        table.stop_tokens[req] = table.input_tokens[req] + table.output_tokens[req]
        self.outstanding[decode.index] += 1  # counted from the handoff so routing sees transfers in flight
        arrive_s = now_s + prefill.cost.kv_transfer_time(int(table.num_computed_tokens[req]), decode.cost)
        return (arrive_s, PRIORITY_KV_ARRIVAL, self._on_kv_arrival, (decode, req))

    def _on_kv_arrival(self, now_s: float, payload):
        decode, req = payload
        self.outstanding[decode.index] -= 1
        return self._enqueue(decode, req, now_s)

    # ---------------------------------------------------------------------------------------------- checks
    def kv_blocks_conserved(self) -> bool:
        return all(r.scheduler.kv.check_conservation() for r in self.replicas)
