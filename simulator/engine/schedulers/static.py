"""Static batching (e.g. HuggingFace `generate`): a batch is formed, prefilled, and decoded to completion.

A batch takes up to `max_num_seqs` queued requests whose prompts fit `max_num_batched_tokens` and whose full
length fits the KV cache (reserved at formation). One iteration prefills every prompt; then each iteration
decodes one token for every member, padding included: a member that finished keeps its slot (and its
context is still read) until the longest member is done, when the whole batch is released.
"""

from __future__ import annotations

from simulator.costmodel.interface import BatchShape
from simulator.engine.schedulers.common import Batch, Scheduler


class StaticScheduler(Scheduler):
    reserve_full_length = True

    def __init__(self, *args):
        super().__init__(*args)
        self.num_padding = 0  # finished members still in the batch
        self.padding_context = 0  # the cached tokens they still read

    def steady_cohort(self):
        """Never: a static batch's decode also reads its padding (priced through `schedule`)."""
        return None

    def schedule(self, now_s: float) -> Batch | None:
        if not self.running:
            admitted, _ = self._admit_waiting(self.config.max_num_batched_tokens)
            return self._make_batch([], admitted)
        table = self.table
        cohorts = [c for c in self.cohorts if not c.in_flight]
        singles = [(r, 1) for r in self.singles if table.computed[r] < table.num_tokens[r]]
        batch = self._make_batch(cohorts, singles)
        if batch is None or not self.num_padding:
            return batch
        num_decode = batch.num_decode + self.num_padding
        context = batch.decode_context_tokens + self.padding_context
        if batch.shape is None:
            return Batch(batch.cohorts, batch.singles, num_decode, num_decode, context, None)
        s = batch.shape
        shape = BatchShape(
            num_prefill_tokens=s.num_prefill_tokens,
            num_prefill_seqs=s.num_prefill_seqs,
            prefill_attention_pairs=s.prefill_attention_pairs,
            prefill_context_tokens=s.prefill_context_tokens,
            num_decode=num_decode,
            decode_context_tokens=context,
        )
        return Batch(
            batch.cohorts, batch.singles, s.num_prefill_tokens + num_decode, num_decode, context, shape
        )

    def update_from_output(self, batch: Batch, now_s: float) -> list[int]:
        """Like every engine, but a static batch frees its KV only when all of its requests have finished."""
        done = super().update_from_output(batch, now_s)
        if self.num_padding == len(self.running):
            for req in self.running:
                self.kv.give(self.held_blocks(req))
            self.running.clear()
            self.num_padding = self.padding_context = 0
        return done

    def _on_done(self, req: int, now_s: float) -> None:
        """A finished member stays in the batch as padding (its KV is still reserved)."""
        self.num_padding += 1
        self.padding_context += self.table.computed[req]
