"""Schedulers, one engine per file; `create_scheduler(kind, ...)` is the registry.

Open `common.py` first (the token-budget mechanics every engine shares), then `vllm_v1.py` (the reference
ordering). To add an engine: subclass `Scheduler`, write `schedule()` from the shared pieces, register it in
`SCHEDULERS`.
"""

from __future__ import annotations

from simulator.engine.kv_cache import KVCache
from simulator.engine.prefix_cache import ContentIndex, PrefixKVCache
from simulator.engine.request import RequestTable
from simulator.engine.schedulers.common import Batch, Scheduler, SchedulerConfig
from simulator.engine.schedulers.orca import OrcaScheduler
from simulator.engine.schedulers.sglang import SGLangScheduler
from simulator.engine.schedulers.static import StaticScheduler
from simulator.engine.schedulers.trtllm import TrtLlmScheduler
from simulator.engine.schedulers.vllm_v0 import VllmV0Scheduler
from simulator.engine.schedulers.vllm_v1 import VllmV1Scheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    "vllm-v0": VllmV0Scheduler,
    "vllm-v1": VllmV1Scheduler,
    "sglang": SGLangScheduler,
    "trtllm": TrtLlmScheduler,
    "orca": OrcaScheduler,
    "static": StaticScheduler,
}


# Engines whose prefix cache inserts blocks when it allocates them (vLLM); the others once the chunk has run.
CACHE_ON_SCHEDULE = frozenset({"vllm-v0", "vllm-v1"})


def create_scheduler(
    kind: str,
    table: RequestTable,
    config: SchedulerConfig,
    kv_capacity_tokens: int,
    content: ContentIndex | None = None,
) -> Scheduler:
    """A scheduler of engine `kind` over a fresh KV cache of kv_capacity_tokens tokens; with
    `config.prefix_caching`, a cache that keeps blocks by the content `content` describes (built for
    config.block_size; None: every request's content is its own).

    Orca has no paging: its cache is one contiguous reservation per request, modelled as 1-token blocks.
    """
    block_size = 1 if kind == "orca" else config.block_size
    if config.prefix_caching:
        index = content or ContentIndex(None, table.num_requests, block_size)
        kv = PrefixKVCache(
            kv_capacity_tokens // block_size, block_size, index, table.num_requests, kind in CACHE_ON_SCHEDULE
        )
    else:
        kv = KVCache(kv_capacity_tokens // block_size, block_size)
    return SCHEDULERS[kind](table, config, kv)


__all__ = ["SCHEDULERS", "Batch", "Scheduler", "SchedulerConfig", "create_scheduler"]
