"""Speculative decoding in the engine (docs/design.md §3.2): how many tokens each decode step advances.

A step drafts k tokens (a draft model, an EAGLE head or an MTP module), the target verifies them in one pass, and
a request keeps the leading accepted drafts plus the token the target itself produces at the first rejection (or
after the last draft): accepted + 1 tokens. Position i is accepted with probability a_i when positions 1..i−1
were (the per-position rates of `scenario.Speculative`), so P(accepted ≥ i) = Π_{j≤i} a_j.

The aggregate engine advances every request of a decode step by the same draw (one per step and replica, from
the run's seeded stream): each request's own sequence of advances has the stated distribution — its steps are
independent draws — while requests decoding in the same step move together, which keeps decode steps free of
per-request work. The KV slots for the accepted tokens are allocated with the step; the verify tokens do not
count against the token budget. The price of a step is `costmodel.speculative.SpeculativeStage`'s.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 4096  # uniforms drawn at a time


class AcceptanceSampler:
    """Draws the tokens one speculative step advances (accepted + 1), from per-position acceptance rates."""

    __slots__ = ("survive", "rng", "pending", "_buffer")

    def __init__(self, acceptance: list[float], rng: np.random.Generator):
        self.survive = np.cumprod(np.asarray(acceptance, dtype=float)).tolist()  # P(accepted >= i), i = 1..k
        self.rng = rng
        self.pending: int | None = (
            None  # a draw made for a step that has not run yet (the next draw returns it)
        )
        self._buffer: list[float] = []

    def draw(self) -> int:
        if self.pending is not None:
            tokens, self.pending = self.pending, None
            return tokens
        if not self._buffer:
            self._buffer = self.rng.random(_CHUNK).tolist()
            self._buffer.reverse()
        u = self._buffer.pop()
        tokens = 1
        for p in self.survive:
            if u >= p:
                break
            tokens += 1
        return tokens
