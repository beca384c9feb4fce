"""Schedulers, one engine per file; `create_scheduler(kind, ...)` is the registry.

Open `common.py` first (the token-budget mechanics every engine shares), then `vllm_v1.py` (the reference
ordering). To add an engine: subclass `Scheduler`, write `schedule()` from the shared pieces, register it in
`SCHEDULERS`.
"""

from __future__ import annotations

from reference_engine.kv_cache import KVCache
from reference_engine.prefix_cache import PrefixKVCache
from reference_engine.request import RequestTable
from reference_engine.schedulers.common import Batch, Scheduler, SchedulerConfig
from reference_engine.schedulers.orca import OrcaScheduler
from reference_engine.schedulers.sglang import SGLangScheduler
from reference_engine.schedulers.static import StaticScheduler
from reference_engine.schedulers.trtllm import TrtLlmScheduler
from reference_engine.schedulers.vllm_v0 import VllmV0Scheduler
from reference_engine.schedulers.vllm_v1 import VllmV1Scheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    "vllm-v0": VllmV0Scheduler,
    "vllm-v1": VllmV1Scheduler,
    "sglang": SGLangScheduler,
    "trtllm": TrtLlmScheduler,
    "orca": OrcaScheduler,
    "static": StaticScheduler,
}


def create_scheduler(
    kind: str, table: RequestTable, config: SchedulerConfig, kv_capacity_tokens: int, prefixes=None
) -> Scheduler:
    """A scheduler of engine `kind` over a fresh KV cache of kv_capacity_tokens tokens (with
    config.prefix_caching, one that keeps blocks by the content `prefixes` describes).

    Orca has no paging: its cache is one contiguous reservation per request, modelled as 1-token blocks.
    """
    block_size = 1 if kind == "orca" else config.block_size
    cls = SCHEDULERS[kind]
    if config.prefix_caching:
        kv = PrefixKVCache(
            kv_capacity_tokens // block_size,
            block_size,
            table.num_requests,
            prefixes,
            table,
            cls.reserve_full_length,
            kind in ("vllm-v0", "vllm-v1"),
        )
    else:
        kv = KVCache(kv_capacity_tokens // block_size, block_size, table.num_requests)
    return cls(table, config, kv)


__all__ = ["SCHEDULERS", "Batch", "Scheduler", "SchedulerConfig", "create_scheduler"]
