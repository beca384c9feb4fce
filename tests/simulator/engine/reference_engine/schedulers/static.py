"""Static batching (e.g. HuggingFace `generate`): a batch is formed, prefilled, and decoded to completion.

A batch takes up to `max_num_seqs` queued requests whose prompts fit `max_num_batched_tokens` and whose full
length fits the KV cache (reserved at formation). One iteration prefills every prompt; then each iteration
decodes one token for every member, padding included: a member that finished keeps its slot (and its
context is still read) until the longest member is done, when the whole batch is released.
"""

from __future__ import annotations

import numpy as np

from reference_engine.schedulers.common import _EMPTY, Batch, Scheduler
from simulator.costmodel.interface import BatchShape


class StaticScheduler(Scheduler):
    reserve_full_length = True

    def schedule(self, now_s: float) -> Batch | None:
        if len(self.running) == 0:
            reqs, grants, _ = self._admit_waiting(self.config.max_num_batched_tokens)
            return self._make_batch(reqs, grants)
        table = self.table
        unfinished = table.num_tokens[self.running] < table.stop_tokens[self.running]
        in_flight = table.num_computed_tokens[self.running] >= table.num_tokens[self.running]
        active = self.running[unfinished & ~in_flight]
        if len(active) == 0:
            return None
        batch = self._make_batch(active, np.ones(len(active), dtype=np.int64))
        padding = self.running[~unfinished]
        pad_context = int(table.num_computed_tokens[padding].sum())
        shape = BatchShape(
            num_decode=batch.shape.num_decode + len(padding),
            decode_context_tokens=batch.shape.decode_context_tokens + pad_context,
        )
        return Batch(batch.reqs, batch.num_new_tokens, batch.end_tokens, shape)

    def update_from_output(self, batch: Batch, now_s: float) -> np.ndarray:
        """Like every engine, but a static batch frees its KV only when all of its requests have finished."""
        done = self._sample(batch, now_s)
        if done is None:
            return _EMPTY
        table = self.table
        if bool((table.num_tokens[self.running] >= table.stop_tokens[self.running]).all()):
            self._release(self.running.copy())
        return done
