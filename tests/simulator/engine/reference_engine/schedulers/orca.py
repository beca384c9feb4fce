"""Orca (Yu et al., OSDI 2022): iteration-level scheduling with selective batching, no paging.

Every iteration mixes decode tokens of running requests with whole prompts of newly admitted ones, up to
`max_num_seqs` and `max_num_batched_tokens`. Without paged attention, a request's KV cache is one contiguous
reservation for its full length (prompt + output; the simulator knows the output length, standing in for the
request's max tokens), taken at admission — so there is no preemption. The KV cache is built with 1-token
blocks by `create_scheduler`.
"""

from __future__ import annotations

from reference_engine.schedulers.common import Batch
from reference_engine.schedulers.vllm_v1 import VllmV1Scheduler


class OrcaScheduler(VllmV1Scheduler):
    reserve_full_length = True

    def schedule(self, now_s: float) -> Batch | None:
        return self._schedule_mixed()
