"""Paged KV cache of one replica: blocks of `block_size` tokens, counted per request.

Only counts matter to timing, so the cache keeps how many blocks each request holds and how many are free
(block conservation: free + held == total, checked by `check_conservation`). `allocate_slots` returns the
blocks it added, or None when memory is short; the scheduler, not the cache, decides whom to preempt.
"""

from __future__ import annotations

import numpy as np


class KVCache:
    def __init__(self, num_blocks: int, block_size: int, num_requests: int):
        self.num_blocks = int(num_blocks)
        self.block_size = int(block_size)
        self.num_free_blocks = int(num_blocks)
        self.blocks_held = np.zeros(num_requests, dtype=np.int64)
        self.peak_used_blocks = 0

    def blocks_for(self, num_tokens):
        """Blocks that hold num_tokens tokens (works on arrays)."""
        return -(-num_tokens // self.block_size)

    def allocate_slots(self, req: int, num_new_tokens: int, *, num_computed_tokens: int) -> int | None:
        """Grow req's blocks to hold num_computed_tokens + num_new_tokens; the blocks added, or None if short."""
        need = int(self.blocks_for(num_computed_tokens + num_new_tokens)) - int(self.blocks_held[req])
        if need <= 0:
            return 0
        if need > self.num_free_blocks:
            return None
        self.blocks_held[req] += need
        self._take(need)
        return need

    def allocate_many(self, reqs: np.ndarray, num_total_tokens: np.ndarray) -> bool:
        """All-or-nothing: grow every req to hold its num_total_tokens; False (nothing changed) if short."""
        need = np.maximum(self.blocks_for(num_total_tokens) - self.blocks_held[reqs], 0)
        total = int(need.sum())
        if total > self.num_free_blocks:
            return False
        if total:
            self.blocks_held[reqs] += need
            self._take(total)
        return True

    def free(self, req) -> None:
        """Return all blocks of req (an index or an array of indices)."""
        held = self.blocks_held[req]
        self.num_free_blocks += int(np.sum(held))
        self.blocks_held[req] = 0

    def check_conservation(self) -> bool:
        return (
            self.num_free_blocks + int(self.blocks_held.sum()) == self.num_blocks
            and self.num_free_blocks >= 0
        )

    def _take(self, n: int) -> None:
        """Hand out n free blocks (the prefix cache evicts cached blocks to make room)."""
        self.num_free_blocks -= n
        self._note_peak()

    def _note_peak(self) -> None:
        used = self.num_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used
