"""Prefix caching: KV blocks kept by content after their request, reused by later requests (docs/design.md §3.2).

What the engines do, and what is modelled:

* **Content.** vLLM identifies a full block by the hash of its tokens chained with its prefix's hash (design doc
  "Automatic Prefix Caching", `vllm/v1/core/kv_cache_utils.py` `hash_block_tokens`); SGLang's RadixAttention
  keys a radix tree by the tokens themselves (Zheng et al., "SGLang", NeurIPS 2024, §3; `mem_cache/radix_cache.py`,
  one node per page of `page_size` tokens, 1 by default). Both reuse exactly the leading whole pages a new
  request has in common with cached content. Tokens are not simulated, so content is `workload.SharedPrefixes`:
  unit u (tokens [u·B, (u+1)·B) of B = `block_size`) of a request is the *same* unit as unit u of its parent when
  it lies inside the shared fork, and is keyed by the root-most such owner — the chained hash, by construction.
* **Lookup.** At admission, a request with nothing computed (new, or preempted) gets the longest run of cached
  units from its start, at most `(num_tokens - 1) // B` (both engines recompute the last token for its logits:
  vLLM `get_computed_blocks` caps the hit at `num_tokens - 1`, SGLang at `len(input_ids) - 1`); those tokens are
  computed and the prefill prices only the rest, with the hit tokens as attention context. The hit units are
  referenced, not copied: shared prefixes take KV memory once.
* **Insertion.** vLLM caches a request's full blocks when it allocates them (`allocate_slots` → `cache_blocks`,
  at schedule time); SGLang inserts a prompt after its prefill chunk ran (`cache_unfinished_req`) and TensorRT-LLM
  stores context blocks after the context step — `cache_on_schedule` says which. Blocks past the prompt (generated
  tokens, and a recomputed request's) are registered when the request leaves (finish or preemption): another
  request contains a running request's output only once the user has seen it, so hits are the same, and the
  decode steps stay free of per-request work. A *leaf* request — one no other content extends (the last turn of
  a conversation, a request of no session) — caches only the units of its ancestors: its own units can be hit
  by nothing but itself after a preemption, so they are registered when it is preempted and never when it
  finishes (an engine caches them too, and evicts them unused: the same decisions, without the bookkeeping of
  blocks no one will look up; `evicted_blocks` counts only blocks someone could have hit). A unit already cached under its
  key (two requests computed it at once) is referenced and the duplicate block returned, as SGLang's `insert`
  does (vLLM keeps the duplicate until the request frees it: a few blocks of difference).
* **Eviction.** Unreferenced cached units count as free (vLLM's free queue holds them; SGLang's evictable size).
  An allocation takes content-free blocks first and then evicts the least recently released unit, deepest first
  among units released at one instant (then by owner): vLLM frees a request's blocks tail first to the back of its LRU free queue and
  allocates from the front; SGLang evicts the leaf with the oldest access time. A unit is evicted only when no
  cached unit extends it (a leaf). (vLLM's single queue may also pop an older cached block while content-free
  blocks wait behind it — one partial block per finished request; we take content-free blocks first, as SGLang's
  allocator does.)

State is kept per content *owner* (a request or a shared prefix), not per block: an owner's cached units are one
run [first own unit, end), the units referenced by running requests are a prefix of that run, and the
unreferenced rest is a short list of segments by release time, oldest at the tail. Lookups, references and
releases cost O(owners on the request's path); an eviction O(log owners) per owner it touches. The steady
decode loop only calls `take`, which evicts when content-free blocks run out.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np

from simulator.engine.kv_cache import KVCache

_FAR = 1 << 62  # an own range that never ends


@dataclass(frozen=True, slots=True)
class PrefixCacheStats:
    """Prefix-cache counters of a run (summed over replicas), as vLLM's `PrefixCacheStats` counts them: each
    admission of a request with nothing computed queries its tokens and hits the cached ones."""

    enabled: bool
    lookups: int = 0
    queried_tokens: int = 0
    hit_tokens: int = 0  # = prefill tokens not computed
    evicted_blocks: int = 0

    @property
    def hit_rate(self) -> float | None:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens else None

    def __add__(self, other: PrefixCacheStats) -> PrefixCacheStats:
        return PrefixCacheStats(
            self.enabled or other.enabled,
            self.lookups + other.lookups,
            self.queried_tokens + other.queried_tokens,
            self.hit_tokens + other.hit_tokens,
            self.evicted_blocks + other.evicted_blocks,
        )


class ContentIndex:
    """For one block size: each owner's first own unit (`lo`) and the owner of the unit before it (`up`: -1 at
    the root). The path of a request, root first, is `up`, `up` of `up`, ..., the request; shared by the
    replicas of a system."""

    def __init__(self, prefixes, num_requests: int, block_size: int):
        if prefixes is None:
            self.lo = [0] * num_requests
            self.up = [-1] * num_requests
            self.leaf = [True] * num_requests
            return
        leaf = np.ones(len(prefixes.parent), dtype=bool)
        leaf[prefixes.parent[prefixes.parent >= 0]] = False
        self.leaf = leaf[:num_requests].tolist()  # per request: no owner's content extends it
        parent = prefixes.parent.tolist()
        lo = (np.where(prefixes.parent >= 0, prefixes.fork, 0) // block_size).tolist()
        up = [-1] * len(parent)
        for o in range(len(parent)):
            p = parent[o]
            while p >= 0 and lo[p] >= lo[o]:  # unit lo[o]-1 lies in p's own shared fork: look higher
                p = parent[p]
            up[o] = p if lo[o] > 0 else -1
        self.lo, self.up = lo, up

    def path(self, owner: int) -> list[tuple[int, int, int]]:
        """(owner, first unit, end unit) from the root to `owner`, whose own range never ends."""
        up = self.up
        if up[owner] < 0:
            return [(owner, self.lo[owner], _FAR)]
        chain = [owner]
        while up[chain[-1]] >= 0:
            chain.append(up[chain[-1]])
        chain.reverse()
        lo = self.lo
        out = []
        for i, o in enumerate(chain):
            out.append((o, lo[o], lo[chain[i + 1]] if i + 1 < len(chain) else _FAR))
        return out


class PrefixKVCache(KVCache):
    """A paged KV cache that keeps full blocks by content (module docstring). `num_free_blocks` counts
    content-free blocks and unreferenced cached ones; `shared[req]` is how many leading blocks of a running
    request are cache units (the rest of what it holds is its own, `Scheduler.held_blocks`)."""

    __slots__ = (
        "index",
        "cache_on_schedule",
        "end",
        "max_ref",
        "refs",
        "tails",
        "children",
        "heap",
        "held",
        "shared",
        "paths",
        "own_from",
        "evictable",
        "lookups",
        "queried_tokens",
        "hit_tokens",
        "evicted_blocks",
    )

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        index: ContentIndex,
        num_requests: int,
        cache_on_schedule: bool,
    ):
        super().__init__(num_blocks, block_size)
        self.index = index
        self.cache_on_schedule = cache_on_schedule
        self.end = list(index.lo)  # per owner: its cached own units are [lo, end)
        self.max_ref = list(index.lo)  # per owner: units [lo, max_ref) are referenced by running requests
        self.refs: dict[int, dict[int, int]] = {}  # owner -> {referenced end: how many requests}
        self.tails: dict[int, deque] = {}  # owner -> [lo, hi, release time] unreferenced runs, tail first
        self.children: dict[int, dict[int, int]] = {}  # owner -> {lo of a cached child: how many}
        self.heap: list[tuple[float, int, int]] = []  # (release time, -tail unit, owner), lazily checked
        self.held: dict[int, list[list[int]]] = {}  # request -> [[owner, end], ...] root first
        self.shared = [0] * num_requests
        self.paths: dict[int, list] = {}
        # per request, the first unit its chunks and its finish register: its own first unit for a leaf
        n = num_requests
        self.own_from = np.where(index.leaf, index.lo[:n], _FAR).tolist() if n else []
        self.evictable = 0
        self.lookups = self.queried_tokens = self.hit_tokens = self.evicted_blocks = 0

    # ------------------------------------------------------------------------------------------ accounting
    def take(self, num_blocks: int) -> None:
        """Hand out num_blocks, evicting cached units when content-free blocks run out."""
        self.num_free_blocks -= num_blocks
        short = self.evictable - self.num_free_blocks
        if short > 0:
            self._evict(short)
        used = self.num_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used

    def referenced_units(self) -> int:
        """Cached units some running request references (for block conservation)."""
        lo = self.index.lo
        return sum(self.max_ref[o] - lo[o] for o in self.refs)

    def stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(True, self.lookups, self.queried_tokens, self.hit_tokens, self.evicted_blocks)

    # --------------------------------------------------------------------------------------- request life
    def _path(self, req: int) -> list:
        path = self.paths.get(req)
        if path is None:
            path = self.paths[req] = self.index.path(req)
        return path

    def may_hit(self, req: int) -> bool:
        """False when the request has no ancestor and nothing of its own cached (its lookup finds nothing)."""
        return self.index.up[req] >= 0 or self.end[req] != self.index.lo[req]

    def lookup(self, req: int, num_tokens: int) -> tuple[int, int]:
        """(cached units the request may use from its start, how many of them no running request references):
        a pure query."""
        limit = (num_tokens - 1) // self.block_size
        hit = unreferenced = 0
        end, max_ref = self.end, self.max_ref
        for owner, lo, hi in self._path(req):
            if lo >= limit:
                break
            stop = end[owner]
            top = min(hi, limit, stop)
            if top <= lo:
                break
            free_from = max(lo, max_ref[owner])
            if top > free_from:
                unreferenced += top - free_from
            hit = top
            if top < min(hi, limit):
                break
        return hit, unreferenced

    def acquire(self, req: int, units: int, num_tokens: int) -> None:
        """The request (holding nothing) takes the first `units` cached units of its path; counts the lookup."""
        self.lookups += 1
        self.queried_tokens += num_tokens
        if units:
            self.hit_tokens += units * self.block_size
            refs = self.held[req] = []
            for owner, lo, hi in self._path(req):
                if lo >= units:
                    break
                top = hi if hi < units else units
                self._ref(owner, top)
                refs.append([owner, top])
            self.shared[req] = units

    def register(self, req: int, units: int) -> None:
        """The request computed its first `units` units: make those past what it references cache units (their
        owners' runs grow; a unit someone cached meanwhile is referenced and its duplicate block freed)."""
        have = self.shared[req]
        if units <= have:
            return
        refs = self.held.setdefault(req, [])
        end, lo_of, up = self.end, self.index.lo, self.index.up
        freed = 0
        for owner, lo, hi in self._path(req):
            if hi <= have:
                continue
            if lo >= units:
                break
            new = hi if hi < units else units
            cur = have if have > lo else lo
            stop = end[owner]
            if stop > cur:
                freed += (new if new < stop else stop) - cur
            if new > stop:
                if stop == lo_of[owner] and up[owner] >= 0:
                    kids = self.children.setdefault(up[owner], {})
                    kids[lo] = kids.get(lo, 0) + 1
                end[owner] = new
            if refs and refs[-1][0] == owner:
                self._unref_count(owner, refs[-1][1])
                refs[-1][1] = new
            else:
                refs.append([owner, new])
            self._ref(owner, new)
        self.shared[req] = units
        self.num_free_blocks += freed

    def release(self, req: int, computed: int, held_tokens: int, now_s: float, finished: bool) -> None:
        """The request leaves (finished, or preempted) at now_s with `computed` tokens of KV, holding blocks for
        `held_tokens`: its full blocks become cache units (a finished leaf's own ones are freed), its own partial
        block is freed, and its references are dropped (units no one else references join the evictable pool as
        released at now_s: units released at one instant go deepest first, then by owner, whatever order the
        engine frees requests in)."""
        size = self.block_size
        units = computed // size
        if finished and self.own_from[req] < units:
            units = self.own_from[req]
        shared = self.shared
        if units > shared[req]:
            self.register(req, units)
        self.num_free_blocks += -(-held_tokens // size) - shared[req]
        if not shared[req]:
            return  # it references nothing
        shared[req] = 0
        refs = self.held.pop(req)
        for owner, top in reversed(refs):
            self._unref(owner, top, now_s)

    # ------------------------------------------------------------------------------------------ references
    def _ref(self, owner: int, top: int) -> None:
        counts = self.refs.get(owner)
        if counts is None:
            counts = self.refs[owner] = {}
        counts[top] = counts.get(top, 0) + 1
        old = self.max_ref[owner]
        if top <= old:
            return
        self.max_ref[owner] = top
        tail = self.tails.get(owner)
        if not tail:
            return
        taken = 0
        while tail and tail[-1][0] < top:  # the newest (lowest) unreferenced units are referenced again
            seg = tail[-1]
            if seg[1] <= top:
                taken += seg[1] - seg[0]
                tail.pop()
            else:
                taken += top - seg[0]
                seg[0] = top
        self.evictable -= taken
        self.num_free_blocks -= taken

    def _unref_count(self, owner: int, top: int) -> None:
        """Forget one reference to [.., top) without releasing units (it is about to be replaced by a longer one)."""
        counts = self.refs[owner]
        if counts[top] == 1:
            del counts[top]
        else:
            counts[top] -= 1

    def _unref(self, owner: int, top: int, key: float) -> None:
        counts = self.refs[owner]
        self._unref_count(owner, top)
        if top < self.max_ref[owner] or top in counts:
            return
        new = max(counts) if counts else self.index.lo[owner]
        if not counts:
            del self.refs[owner]
        self.max_ref[owner] = new
        tail = self.tails.get(owner)
        if tail is None:
            tail = self.tails[owner] = deque()
        was_empty = not tail
        tail.append([new, top, key])
        self.evictable += top - new
        self.num_free_blocks += top - new
        if was_empty:
            self._push(owner)

    # -------------------------------------------------------------------------------------------- eviction
    def _limit(self, owner: int) -> int:
        """The lowest end the owner's run may shrink to: above its cached children's first units."""
        kids = self.children.get(owner)
        return max(kids) if kids else self.index.lo[owner]

    def _push(self, owner: int) -> None:
        """Queue the owner's tail for eviction when it is a leaf: at the run's end, no cached child on it."""
        tail = self.tails.get(owner)
        end = self.end[owner]
        if tail and tail[0][1] == end and self._limit(owner) < end:
            heapq.heappush(self.heap, (tail[0][2], 1 - end, owner))

    def _evict(self, units: int) -> None:
        heap, end, lo_of, up = self.heap, self.end, self.index.lo, self.index.up
        while units > 0:
            if not heap:
                raise RuntimeError("prefix cache: fewer evictable units than counted")
            key, neg, owner = heapq.heappop(heap)
            tail = self.tails.get(owner)
            stop = end[owner]
            if not tail or tail[0][2] != key or tail[0][1] != stop or 1 - neg != stop:
                continue  # stale entry
            limit = self._limit(owner)
            if limit >= stop:
                continue  # a cached child extends it: not a leaf any more
            seg = tail[0]
            floor = seg[0] if seg[0] > limit else limit
            while heap and heap[0][2] == owner:
                heapq.heappop(heap)  # its other entries are stale or duplicates; _push re-queues it below
            if heap and heap[0][0] == key:
                # another owner's leaf released at the same instant: units interleave by depth, then owner
                after = -heap[0][1] + (owner > heap[0][2])
                if after > floor:
                    floor = after
            n = stop - floor if stop - floor < units else units
            stop -= n
            end[owner] = stop
            units -= n
            self.evictable -= n
            self.evicted_blocks += n
            if stop == seg[0]:
                tail.popleft()
            else:
                seg[1] = stop
            if stop == lo_of[owner] and up[owner] >= 0:
                parent = up[owner]
                kids = self.children[parent]
                if kids[lo_of[owner]] == 1:
                    del kids[lo_of[owner]]
                else:
                    kids[lo_of[owner]] -= 1
                self._push(parent)
            self._push(owner)
