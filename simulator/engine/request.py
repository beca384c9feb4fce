"""Per-request state of a run, indexed by the request's position in the workload.

The engine touches single requests only at events (arrival, admission, a prefill chunk, first token,
preemption, finish), so the mutable state lives in Python lists, which read and write one entry several times
faster than numpy arrays do. A running decode request is a member of a `cohort.Cohort`: while it is, its
`computed` / `num_tokens` / `last_token_s` entries are stale and the cohort's aggregates hold the truth
(`Cohort.materialize` writes them back when it leaves). A request sits on one replica at a time (a
disaggregated request moves from a prefill replica to a decode replica), so one table serves the whole run.
`records()` gives the finished run as numpy columns for the metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


class GapCounts:
    """Inter-token gaps, run-length encoded: a cohort of n decoders sampling at once adds one (gap, n)."""

    __slots__ = ("values", "counts")

    def __init__(self):
        self.values: list[float] = []
        self.counts: list[int] = []

    def add(self, gap_s: float, count: int) -> None:
        self.values.append(gap_s)
        self.counts.append(count)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.values, dtype=np.float64), np.asarray(self.counts, dtype=np.int64)


class RequestTable:
    """Lists of request state (the engine's) and of recorded times (the metrics')."""

    def __init__(self, arrival_s, input_tokens, output_tokens):
        self.arrival_s = np.asarray(arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(input_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(output_tokens, dtype=np.int64)
        n = self.num_requests = len(self.arrival_s)
        self.prompt: list[int] = self.input_tokens.tolist()
        self.output: list[int] = self.output_tokens.tolist()
        # The request leaves its current replica once num_tokens reaches stop (a prefill replica stops after
        # the first token).
        self.stop: list[int] = (self.input_tokens + self.output_tokens).tolist()
        # num_tokens = prompt + tokens generated so far; the engine catches computed up with it.
        self.num_tokens: list[int] = list(self.prompt)
        self.computed: list[int] = [0] * n
        self.last_token_s: list[float] = [math.nan] * n
        # micro-batches not yet finished that hold a chunk of this request (outside any cohort); with pp > 1 a
        # prompt's next chunk may be scheduled while the previous one is still in the pipeline
        self.in_flight: list[int] = [0] * n
        self.cohort: list = [None] * n  # the Cohort a running decoder belongs to
        self.offset: list[int] = [0] * n  # a cohort member's computed tokens minus the cohort's steps
        self.status: list[int] = [RequestStatus.PENDING] * n
        self.replica: list[int] = [-1] * n
        self.first_token_s: list[float] = [math.nan] * n
        self.finish_s: list[float] = [math.nan] * n
        self.num_preemptions: list[int] = [0] * n
        self.gaps = GapCounts()

    def records(self) -> RequestRecords:
        """The run's per-request outcome as numpy columns (cohort members are materialized first)."""
        for cohort in {c for c in self.cohort if c is not None}:
            cohort.materialize_all(self)
        num_tokens = np.asarray(self.num_tokens, dtype=np.int64)
        values, counts = self.gaps.arrays()
        return RequestRecords(
            arrival_s=self.arrival_s,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            status=np.asarray(self.status, dtype=np.int8),
            replica=np.asarray(self.replica, dtype=np.int64),
            first_token_s=np.asarray(self.first_token_s, dtype=np.float64),
            finish_s=np.asarray(self.finish_s, dtype=np.float64),
            num_preemptions=np.asarray(self.num_preemptions, dtype=np.int64),
            num_output_tokens=num_tokens - self.input_tokens,
            itl_values_s=values,
            itl_counts=counts,
        )


@dataclass(frozen=True)
class RequestRecords:
    """What happened to each request (numpy columns, workload order) and every inter-token gap (encoded)."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    status: np.ndarray  # RequestStatus values
    replica: np.ndarray  # the replica it ended on (-1: never placed)
    first_token_s: np.ndarray
    finish_s: np.ndarray
    num_preemptions: np.ndarray
    num_output_tokens: np.ndarray  # tokens generated when the run ended
    itl_values_s: np.ndarray  # distinct-run gap values ...
    itl_counts: np.ndarray  # ... and how many tokens had each

    @property
    def num_requests(self) -> int:
        return len(self.arrival_s)
