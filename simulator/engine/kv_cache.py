"""Paged KV cache of one replica: blocks of `block_size` tokens, counted, never listed.

Only counts matter to timing, so the cache keeps how many blocks are free. What a request holds follows from its
state (paged engines: `blocks_for(computed tokens)`; engines that reserve the full length: `blocks_for(stop)`),
so the scheduler computes it when it frees a request instead of keeping a column up to date every step; block
conservation (free + held == total) is checked by `Scheduler.kv_conserved`.
"""

from __future__ import annotations


class KVCache:
    __slots__ = ("num_blocks", "block_size", "num_free_blocks", "peak_used_blocks")

    def __init__(self, num_blocks: int, block_size: int):
        self.num_blocks = int(num_blocks)
        self.block_size = int(block_size)
        self.num_free_blocks = int(num_blocks)
        self.peak_used_blocks = 0

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks that hold num_tokens tokens."""
        return -(-num_tokens // self.block_size)

    def take(self, num_blocks: int) -> None:
        """Hand out num_blocks (the caller checked they are free)."""
        self.num_free_blocks -= num_blocks
        used = self.num_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used

    def give(self, num_blocks: int) -> None:
        self.num_free_blocks += num_blocks
