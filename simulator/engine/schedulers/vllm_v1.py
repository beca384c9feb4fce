"""vLLM v1 (`vllm/v1/core/sched/scheduler.py`): one token budget per iteration, decodes first.

There is no "decoding phase" nor "prefill phase": each request has num_computed_tokens and num_tokens, and at
each step the scheduler tries to assign tokens so that num_computed_tokens catches up with num_tokens.
Running requests are served first, in admission order (their decode token or their next prefill chunk), and
when the KV cache is short the latest-admitted running request is preempted and recomputed later. Then, if
nobody was preempted, waiting requests are admitted while budget, `max_num_seqs` and KV blocks last, with
their prompts chunked to the budget that is left. Defaults: max_num_seqs 256, max_num_batched_tokens 8192.
"""

from __future__ import annotations

from simulator.engine.schedulers.common import Batch, Scheduler


class VllmV1Scheduler(Scheduler):
    def schedule(self, now_s: float) -> Batch | None:
        return self._schedule_mixed()

    def _schedule_mixed(self) -> Batch | None:
        cohorts, singles, budget, preempted = self._schedule_running(self.config.max_num_batched_tokens)
        if not preempted and self.waiting:
            admitted, budget = self._admit_waiting(budget)
            singles += admitted
        return self._make_batch(cohorts, singles)
