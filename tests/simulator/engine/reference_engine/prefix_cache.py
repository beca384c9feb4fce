"""Prefix caching block by block: the yardstick for `simulator/engine/prefix_cache.py`'s per-owner runs.

Every cached block is one entry keyed by its content — (root-most owner that has it, block index), found by
walking `SharedPrefixes` parents while the block lies inside the fork (the chained hash) — with a reference
count, the time it was last released at, and how many cached blocks extend it. The policy is the one
the aggregate engine documents: lookups take the leading cached blocks (at most (num_tokens - 1) // B), a
request's full prompt blocks are inserted by its chunks (at schedule time for vLLM, once run otherwise) and all
its full blocks when it leaves (a leaf request — one no other content extends — only its ancestors' blocks,
except when it is preempted), a block someone cached meanwhile is shared and the duplicate freed, and an
allocation short of content-free blocks evicts the unreferenced leaf released earliest (deepest first, then by
owner).
"""

from __future__ import annotations

import heapq

import numpy as np

from reference_engine.kv_cache import KVCache


class PrefixKVCache(KVCache):
    def __init__(
        self, num_blocks, block_size, num_requests, prefixes, table, reserve_full_length, on_schedule
    ):
        super().__init__(num_blocks, block_size, num_requests)
        if prefixes is None:
            self.parent, self.fork = [-1] * num_requests, [0] * num_requests
        else:
            self.parent, self.fork = prefixes.parent.tolist(), prefixes.fork.tolist()
        block = block_size
        has_child = set(p for p in self.parent if p >= 0)
        self.own_from = [
            (self.fork[r] // block if self.parent[r] >= 0 else 0) if r not in has_child else 1 << 62
            for r in range(num_requests)
        ]
        self.table = table
        self.reserve_full_length = reserve_full_length
        self.cache_on_schedule = on_schedule
        self.blocks: dict[tuple[int, int], list] = {}  # key -> [refs, release key, cached successors]
        self.shared = np.zeros(
            num_requests, dtype=np.int64
        )  # leading blocks of a request that are cache entries
        self.keys: dict[int, list] = {}
        self.evictable = 0
        self.heap: list = []
        self.lookups = self.queried_tokens = self.hit_tokens = self.evicted_blocks = 0

    def key(self, owner: int, block: int) -> tuple[int, int]:
        size = self.block_size
        while self.parent[owner] >= 0 and (block + 1) * size <= self.fork[owner]:
            owner = self.parent[owner]
        return owner, block

    # ---- what the scheduler calls
    def lookup(self, req: int, num_tokens: int) -> tuple[int, int]:
        limit = (num_tokens - 1) // self.block_size
        hit = unreferenced = 0
        while hit < limit:
            entry = self.blocks.get(self.key(req, hit))
            if entry is None:
                break
            unreferenced += entry[0] == 0
            hit += 1
        return hit, unreferenced

    def acquire(self, req: int, hit: int, num_tokens: int) -> None:
        self.lookups += 1
        self.queried_tokens += num_tokens
        self.hit_tokens += hit * self.block_size
        self.keys[req] = [self.key(req, b) for b in range(hit)]
        for k in self.keys[req]:
            self._ref(k)
        self.shared[req] = hit
        self.blocks_held[req] = hit

    def register(self, req: int, upto: int) -> None:
        have = int(self.shared[req])
        keys = self.keys.setdefault(req, [])
        for b in range(have, upto):
            k = self.key(req, b)
            if k in self.blocks:
                self._ref(k)
                self.num_free_blocks += 1  # our duplicate block
            else:
                self.blocks[k] = [1, None, 0]
                if b > 0:
                    self.blocks[self.key(k[0], b - 1)][2] += 1
            keys.append(k)
        if upto > have:
            self.shared[req] = upto

    def register_chunk(self, req: int, upto: int) -> None:
        self.register(req, min(upto, self.own_from[req]))

    def free(self, req, now_s: float = 0.0, finished: bool = True) -> None:
        for r in np.atleast_1d(req).tolist():
            self._release(r, now_s, finished)

    def check_conservation(self) -> bool:
        private = int(self.blocks_held.sum() - self.shared.sum())
        referenced = sum(1 for e in self.blocks.values() if e[0] > 0)
        return (
            self.num_free_blocks + private + referenced == self.num_blocks
            and self.num_free_blocks >= self.evictable
        )

    # ---- mechanics
    def _release(self, req: int, now_s: float, finished: bool) -> None:
        table = self.table
        computed = int(table.num_computed_tokens[req])
        if finished:
            self.register_chunk(req, computed // self.block_size)
        else:
            self.register(req, computed // self.block_size)
        self.num_free_blocks += int(self.blocks_held[req] - self.shared[req])
        keys = self.keys.pop(req, [])
        for b in range(len(keys) - 1, -1, -1):
            entry = self.blocks[keys[b]]
            entry[0] -= 1
            if entry[0] == 0:
                entry[1] = now_s
                self.evictable += 1
                self.num_free_blocks += 1
                if entry[2] == 0:
                    heapq.heappush(self.heap, (entry[1], -b, keys[b]))
        self.blocks_held[req] = 0
        self.shared[req] = 0

    def _ref(self, k) -> None:
        entry = self.blocks[k]
        if entry[0] == 0:
            self.evictable -= 1
            self.num_free_blocks -= 1
        entry[0] += 1

    def _take(self, n: int) -> None:
        self.num_free_blocks -= n
        short = self.evictable - self.num_free_blocks
        while short > 0:
            released, neg, k = heapq.heappop(self.heap)
            entry = self.blocks.get(k)
            if entry is None or entry[0] or entry[2] or entry[1] != released:
                continue
            del self.blocks[k]
            self.evictable -= 1
            self.evicted_blocks += 1
            short -= 1
            b = -neg
            if b > 0:
                pk = self.key(k[0], b - 1)
                parent = self.blocks[pk]
                parent[2] -= 1
                if parent[2] == 0 and parent[0] == 0:
                    heapq.heappush(self.heap, (parent[1], 1 - b, pk))
        self._note_peak()
