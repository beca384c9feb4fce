"""TensorRT-LLM in-flight batching (`batch_manager`, capacity policy GUARANTEED_NO_EVICT).

Generation requests first, then context (prefill) requests, within `max_batch_size` (our `max_num_seqs`,
default 2048) and `max_num_tokens` (our `max_num_batched_tokens`, default 8192). Context chunking is off by
default, so a prompt enters only whole. The default capacity policy admits a request only when the paged KV
cache can hold its full length (prompt + all output tokens), so requests are never evicted.
"""

from __future__ import annotations

from reference_engine.schedulers.common import Batch
from reference_engine.schedulers.vllm_v1 import VllmV1Scheduler


class TrtLlmScheduler(VllmV1Scheduler):
    reserve_full_length = True

    def schedule(self, now_s: float) -> Batch | None:
        return self._schedule_mixed()
