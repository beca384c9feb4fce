"""SGLang (`python/sglang/srt/managers/scheduler.py`): prefill priority, chunked prefill, separate batches.

When a prompt is waiting (or a chunked prompt is half done) the iteration is a prefill batch: the unfinished
chunk first, then new prompts, chunked to `chunked_prefill_size` (our `max_num_batched_tokens`, 8192 by
default). Otherwise every running request decodes one token (up to `max_running_requests`, our
`max_num_seqs`). Prefill and decode are not mixed (`enable_mixed_chunk` is off by default). When decode runs
out of KV, requests are retracted (we retract the latest admitted) and recomputed later.
"""

from __future__ import annotations

from simulator.engine.schedulers.common import Batch, Scheduler


class SGLangScheduler(Scheduler):
    def _decode_budget(self) -> int:
        return max(self.config.max_num_batched_tokens, len(self.running))

    def schedule(self, now_s: float) -> Batch | None:
        budget = self.config.max_num_batched_tokens
        _, singles, budget, preempted = self._schedule_running(budget, prefills_only=True)
        if self.waiting and budget > 0 and not preempted:
            admitted, budget = self._admit_waiting(budget)
            singles += admitted
        if singles:
            return self._make_batch([], singles)
        cohorts, singles, _, _ = self._schedule_running(max(budget, len(self.running)))
        return self._make_batch(cohorts, singles)
