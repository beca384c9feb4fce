"""The event kernel: a heap of (time_s, priority, seq, handler, payload); handlers return new events.

Same-time events run in priority order, then in the order they were scheduled (`seq`), so a run is
deterministic. Handlers never act inline for "zero delay": they return events instead.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable

PRIORITY_ARRIVAL = 0  # a request arrives before any step at the same instant could batch it
PRIORITY_KV_ARRIVAL = 1  # a transferred KV cache lands before the decode replica's step at that instant
PRIORITY_STEP_DONE = 2  # finished work frees KV blocks before the scheduler next looks
PRIORITY_WAKE = 3  # an idle replica schedules last, seeing everything that happened at this instant

Event = tuple[float, int, Callable, object]  # (time_s, priority, handler, payload) as handlers return them


class EventLoop:
    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self.now_s = 0.0
        self.num_events = 0

    def schedule(self, time_s: float, priority: int, handler: Callable, payload: object = None) -> None:
        heapq.heappush(self._heap, (time_s, priority, next(self._seq), handler, payload))

    def schedule_all(self, events: Iterable[Event]) -> None:
        for time_s, priority, handler, payload in events:
            self.schedule(time_s, priority, handler, payload)

    def run(self, until_s: float = math.inf, stop: Callable[[], bool] | None = None) -> None:
        """Process events in order until none are left, the clock passes until_s, or stop() is true."""
        heap, pop = self._heap, heapq.heappop
        while heap:
            if heap[0][0] > until_s or (stop is not None and stop()):
                return
            time_s, _, _, handler, payload = pop(heap)
            self.now_s = time_s
            self.num_events += 1
            new = handler(time_s, payload)
            if new:
                self.schedule_all(new)
