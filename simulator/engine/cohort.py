"""A cohort: running decode requests that are scheduled together, one token each, as aggregates.

Every iteration a cohort is in, each member computes one token, so the cohort keeps no per-member counters:
member i has computed `offset_i + steps` tokens, the batch reads `offset_sum + count * steps` cached tokens, a
member needs a new KV block exactly when its computed tokens are a multiple of the block size (members are
counted by `offset mod block_size` in `phases`), and it finishes at the step `stop_i - 1 - offset_i` (a heap).
Scheduling a cohort, sampling its tokens and pricing it are O(1); a finish is O(log n). Members share the time
of their last token (`last_s`), so one iteration adds a single (gap, count) to the inter-token gaps.

Per-member work happens only when a request joins (first token, the end of a recompute, a P/D hand-off), leaves
(finish, preemption) or when the scheduler must look at members one by one (its exact slow path).
"""

from __future__ import annotations

import heapq


class Cohort:
    __slots__ = ("steps", "count", "offset_sum", "phases", "finishes", "last_s", "in_flight")

    def __init__(self, block_size: int, last_s: float):
        """block_size 0: the engine reserves each request's full length at admission (no blocks while decoding)."""
        self.steps = 0  # iterations this cohort was scheduled in
        self.count = 0
        self.offset_sum = 0
        self.phases = [0] * block_size if block_size else None
        self.finishes: list[tuple[int, int]] = []  # heap of (step of the last token, request)
        self.last_s = last_s
        self.in_flight = False  # scheduled in a micro-batch that has not finished yet

    def context_tokens(self) -> int:
        """Cached tokens the members read in their next decode: the sum of their computed tokens."""
        return self.offset_sum + self.count * self.steps

    def new_blocks(self, advance: int = 1) -> int:
        """KV blocks the members need to compute `advance` more tokens each (one per token position that starts
        a block: member phase r starts one at step s + j when r + s + j ≡ 0 mod the block size)."""
        phases = self.phases
        if phases is None:
            return 0
        size, steps = len(phases), self.steps
        if advance == 1:
            return phases[-steps % size]
        return sum(phases[(-steps - j) % size] for j in range(advance))

    def add(self, table, req: int, computed: int) -> None:
        """req joins with `computed` tokens cached and one sampled token not yet computed."""
        offset = computed - self.steps
        table.cohort[req] = self
        table.offset[req] = offset
        self.count += 1
        self.offset_sum += offset
        if self.phases is not None:
            self.phases[offset % len(self.phases)] += 1
        heapq.heappush(self.finishes, (table.stop[req] - 1 - offset, req))

    def pop_finished(self, table) -> list[int]:
        """Members whose last token was sampled at this step (or before it, within a speculative step's
        accepted tokens); they leave the cohort."""
        heap, step = self.finishes, self.steps
        if not heap or heap[0][0] > step:
            return []
        out = []
        while heap and heap[0][0] <= step:
            req = heapq.heappop(heap)[1]
            self._forget(table, req)
            out.append(req)
        return out

    def remove(self, table, reqs: set[int]) -> None:
        """Take members out (preemption, a split), writing their state back to the table first."""
        for req in reqs:
            self.materialize(table, req)
            self._forget(table, req)
        self.finishes = [e for e in self.finishes if e[1] not in reqs]
        heapq.heapify(self.finishes)

    def members(self) -> list[int]:
        return [req for _, req in self.finishes]

    def absorb(self, table, other: Cohort) -> None:
        """Take in every member of `other` (same last_s, both idle)."""
        for _, req in other.finishes:
            self.add(table, req, table.offset[req] + other.steps)
        other.finishes, other.count, other.offset_sum = [], 0, 0

    def materialize(self, table, req: int) -> None:
        """Write req's computed / num_tokens / last token time back to the table."""
        computed = table.offset[req] + self.steps
        table.computed[req] = computed
        table.num_tokens[req] = computed if self.in_flight else computed + 1
        table.last_token_s[req] = self.last_s

    def materialize_all(self, table) -> None:
        for _, req in self.finishes:
            self.materialize(table, req)

    def _forget(self, table, req: int) -> None:
        offset = table.offset[req]
        table.cohort[req] = None
        self.count -= 1
        self.offset_sum -= offset
        if self.phases is not None:
            self.phases[offset % len(self.phases)] -= 1
