"""vLLM v0 (`vllm/core/scheduler.py`, `_schedule_default`): prefill first, whole prompts.

Each iteration either runs prefills only — waiting prompts admitted whole while `max_num_batched_tokens`,
`max_num_seqs` and KV blocks allow — or, when no prompt can be admitted, one decode token for every running
request. When a decode cannot get a KV slot the latest-admitted running request is preempted (recompute).
With `enable_chunked_prefill` v0 switches to `_schedule_chunked_prefill`, which batches like v1.
"""

from __future__ import annotations

from simulator.engine.schedulers.common import Batch
from simulator.engine.schedulers.vllm_v1 import VllmV1Scheduler


class VllmV0Scheduler(VllmV1Scheduler):
    def _decode_budget(self) -> int:
        budget = self.config.max_num_batched_tokens
        return budget if self.config.enable_chunked_prefill else max(budget, len(self.running))

    def schedule(self, now_s: float) -> Batch | None:
        if self.config.enable_chunked_prefill:
            return self._schedule_mixed()
        if self.waiting:
            admitted, _ = self._admit_waiting(self.config.max_num_batched_tokens)
            if admitted:
                return self._make_batch([], admitted)
        cohorts, singles, _, _ = self._schedule_running(
            max(self.config.max_num_batched_tokens, len(self.running))
        )
        return self._make_batch(cohorts, singles)
