"""The event kernel: a heap of (time_s, priority, seq, handler, payload); handlers schedule new events.

Same-time events run in priority order, then in the order they were scheduled (`seq`), so a run is
deterministic. Handlers never act inline for "zero delay": they schedule events instead. A handler may run an
event of its own inline only when it is strictly earlier than every queued event (`runs_next`), which is the
order the heap would have given it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

PRIORITY_ARRIVAL = 0  # a request arrives before any step at the same instant could batch it
PRIORITY_KV_ARRIVAL = 1  # a transferred KV cache lands before the decode replica's step at that instant
PRIORITY_STEP_DONE = 2  # finished work frees KV blocks before the scheduler next looks
PRIORITY_WAKE = 3  # an idle replica schedules last, seeing everything that happened at this instant


class EventLoop:
    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self.now_s = 0.0
        self.num_events = 0
        self.until_s = math.inf
        self.stop: Callable[[], bool] | None = None

    def schedule(self, time_s: float, priority: int, handler: Callable, payload: object = None) -> None:
        heapq.heappush(self._heap, (time_s, priority, next(self._seq), handler, payload))

    def queued(self) -> list:
        """The heap of queued events (read-only: its first entry is the next event)."""
        return self._heap

    def runs_next(self, time_s: float) -> bool:
        """True when an event at time_s would be the next one processed (strictly before every queued event,
        within until_s, the stop condition false): its handler may then run it inline."""
        heap = self._heap
        if (heap and heap[0][0] <= time_s) or time_s > self.until_s:
            return False
        return self.stop is None or not self.stop()

    def run(self, until_s: float = math.inf, stop: Callable[[], bool] | None = None) -> None:
        """Process events in order until none are left, the clock passes until_s, or stop() is true."""
        self.until_s, self.stop = until_s, stop
        heap, pop = self._heap, heapq.heappop
        while heap:
            if heap[0][0] > until_s or (stop is not None and stop()):
                return
            time_s, _, _, handler, payload = pop(heap)
            self.now_s = time_s
            self.num_events += 1
            handler(time_s, payload)
