"""Per-request state as numpy columns, indexed by the request's position in the workload.

The hot loop touches whole batches at once (`num_computed_tokens[batch] += grant`), so state lives in arrays
rather than in one object per request. A request sits on one replica at a time (a disaggregated request moves
from a prefill replica to a decode replica), so one table serves the whole run.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class RequestStatus(IntEnum):
    """Where a request is in its life; one enum, not a set of booleans."""

    PENDING = 0  # not arrived yet
    WAITING = 1  # queued on a replica, holds no KV cache
    RUNNING = 2  # admitted: holds KV blocks, scheduled every iteration it fits the budget
    PREEMPTED = 3  # evicted from KV; waits at the head of the queue to recompute its tokens
    TRANSFERRING = 4  # prefill done on a prefill replica; its KV cache is on the wire to a decode replica
    FINISHED = 5
    REJECTED = 6  # can never fit the replica (prompt + output exceed its KV cache or token budget)


class RequestTable:
    """Columns of request state (the engine's) and of recorded times (the metrics')."""

    def __init__(self, arrival_s: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray):
        n = len(arrival_s)
        self.num_requests = n
        self.arrival_s = np.asarray(arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(input_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(output_tokens, dtype=np.int64)
        self.status = np.full(n, RequestStatus.PENDING, dtype=np.int8)
        # num_tokens = prompt + tokens generated so far; the engine catches num_computed_tokens up with it.
        self.num_tokens = self.input_tokens.copy()
        self.num_computed_tokens = np.zeros(n, dtype=np.int64)
        self.num_output_tokens = np.zeros(n, dtype=np.int64)
        # The request leaves its current replica once num_tokens reaches stop_tokens (a prefill replica stops
        # after the first token).
        self.stop_tokens = self.input_tokens + self.output_tokens
        self.replica = np.full(n, -1, dtype=np.int64)
        self.first_token_s = np.full(n, np.nan)
        self.last_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.num_preemptions = np.zeros(n, dtype=np.int64)
        self.itl_gaps: list[
            np.ndarray
        ] = []  # one array of inter-token gaps per iteration that sampled tokens

    def record_tokens(self, reqs: np.ndarray, now_s: float) -> None:
        """Each request in `reqs` emitted one token at now_s: count it and record TTFT / ITL times."""
        previous = self.num_output_tokens[reqs]
        had = previous > 0
        if had.all():
            self.itl_gaps.append(now_s - self.last_token_s[reqs])
        else:
            self.itl_gaps.append(now_s - self.last_token_s[reqs[had]])
            self.first_token_s[reqs[~had]] = now_s
        self.last_token_s[reqs] = now_s
        self.num_output_tokens[reqs] = previous + 1
        self.num_tokens[reqs] += 1
