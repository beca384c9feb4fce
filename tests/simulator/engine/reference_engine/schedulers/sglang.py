"""SGLang (`python/sglang/srt/managers/scheduler.py`): prefill priority, chunked prefill, separate batches.

When a prompt is waiting (or a chunked prompt is half done) the iteration is a prefill batch: the unfinished
chunk first, then new prompts, chunked to `chunked_prefill_size` (our `max_num_batched_tokens`, 8192 by
default). Otherwise every running request decodes one token (up to `max_running_requests`, our
`max_num_seqs`). Prefill and decode are not mixed (`enable_mixed_chunk` is off by default). When decode runs
out of KV, requests are retracted (we retract the latest admitted) and recomputed later.
"""

from __future__ import annotations

import numpy as np

from reference_engine.schedulers.common import Batch, Scheduler


class SGLangScheduler(Scheduler):
    def schedule(self, now_s: float) -> Batch | None:
        budget = self.config.max_num_batched_tokens
        reqs, grants, budget, preempted = self._schedule_running(budget, prefills_only=True)
        if self.waiting and budget > 0 and not preempted:
            new, new_grants, budget = self._admit_waiting(budget)
            reqs, grants = np.concatenate((reqs, new)), np.concatenate((grants, new_grants))
        if len(reqs):
            return self._make_batch(reqs, grants)
        reqs, grants, _, _ = self._schedule_running(max(budget, len(self.running)))
        return self._make_batch(reqs, grants)
