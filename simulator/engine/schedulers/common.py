"""What every engine's scheduler shares: the queues, KV admission, preemption and the output update.

Token-budget model (vLLM v1): there is no prefill or decode "phase". Each request has `num_tokens` (prompt +
generated so far) and `computed` tokens (whose KV is cached); every iteration the scheduler grants some
requests new tokens so that computed catches up with num_tokens. A request whose computed tokens reach
num_tokens samples one new token. A grant of one token on a request whose prompt is already cached is a
decode; anything else is a prefill chunk.

State is kept as aggregates: running decoders are members of `Cohort`s (O(1) to schedule, sample and price),
the few other running requests (prefill chunks in progress, recomputes, P/D arrivals) are `singles`. The
running order (admission order; the tail is preempted first) is the insertion order of `running`. When a
decision needs members one by one — the token budget cuts through the decoders, a prefill chunk was admitted
before a decoder and the budget runs out, or the KV cache is short and someone must be preempted — the exact
per-request algorithm (`_schedule_running_exact`) runs on materialized state instead, so decisions are the same
as scheduling request by request.

The engine files compose these pieces in their own order (`schedule()`); `update_from_output()` is common.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from simulator.costmodel.interface import BatchShape
from simulator.engine.cohort import Cohort
from simulator.engine.kv_cache import KVCache
from simulator.engine.prefix_cache import PrefixKVCache
from simulator.engine.request import RequestStatus, RequestTable


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Engine knobs, with the engines' own names."""

    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool
    block_size: int
    max_model_len: int | None = None  # prompt + output longer than this is refused (the model's context)
    prefix_caching: bool = False  # keep full KV blocks by content for later requests (engine/prefix_cache.py)


class Batch(NamedTuple):
    """One iteration's decision: whole cohorts decoding one token each, plus single requests' chunks.

    An immutable record built every iteration (a NamedTuple: several times cheaper to build than a frozen
    dataclass)."""

    cohorts: tuple[Cohort, ...]
    singles: tuple[tuple[int, int], ...]  # (request, computed tokens once the batch has run)
    num_tokens: int  # through the GEMMs
    num_decode: int
    decode_context_tokens: int
    shape: BatchShape | None  # None for a decode-only batch (priced from num_decode and the context)


class Scheduler:
    """Queues and mechanics; subclasses (one per engine) implement `schedule()`."""

    # Reserve KV for the whole request (prompt + every output token) at admission: Orca, TensorRT-LLM's
    # GUARANTEED_NO_EVICT policy and static batching. Such engines never preempt.
    reserve_full_length = False

    def __init__(self, table: RequestTable, config: SchedulerConfig, kv: KVCache):
        self.table = table
        self.config = config
        self.kv = kv
        self.waiting: deque[int] = deque()
        self.running: dict[int, None] = {}  # admission order
        self.singles: dict[int, None] = {}  # running requests outside any cohort, admission order
        self.cohorts: list[Cohort] = []
        self.num_preemptions = 0
        self._cohort_blocks = 0 if self.reserve_full_length else kv.block_size
        # prefix caching: the cache, and per request how many leading blocks are cache units (not its own)
        self._prefix = kv if isinstance(kv, PrefixKVCache) else None
        self._shared = self._prefix.shared if self._prefix is not None else None
        self.now_s = 0.0  # the time of the current schedule() (set by the replica): when a preemption happens
        # speculative decoding (engine/speculative.py): the sampler, and the tokens this step's decodes advance
        self.spec = None
        self.advance = 1

    # --------------------------------------------------------------------------------------------- queues
    def add_request(self, req: int) -> None:
        self.table.status[req] = RequestStatus.WAITING
        self.waiting.append(req)

    def can_ever_fit(self, req: int) -> bool:
        """False when the request could never run here (it would wait forever): too big for the KV cache, or
        a prompt over the token budget on an engine that cannot split prompts, or longer than the model's context."""
        table = self.table
        limit = self.config.max_model_len
        if limit is not None and table.prompt[req] + table.output[req] > limit:
            return False
        # a speculative step writes KV for every draft token it verifies: up to k past the request's last token
        lookahead = len(self.spec.survive) if self.spec is not None else 0
        if self.kv.blocks_for(table.stop[req] + lookahead) > self.kv.num_blocks:
            return False
        if not self.config.enable_chunked_prefill:
            return table.num_tokens[req] - table.computed[req] <= self.config.max_num_batched_tokens
        return True

    @property
    def num_outstanding(self) -> int:
        return len(self.waiting) + len(self.running)

    def has_work(self) -> bool:
        return bool(self.waiting) or bool(self.running)

    def held_blocks(self, req: int) -> int:
        """KV blocks a running request holds as its own (its computed tokens, or its full length when reserved,
        less the leading blocks that are prefix-cache units)."""
        blocks = self.kv.blocks_for(self._held_tokens(req))
        return blocks - self._shared[req] if self._shared is not None else blocks

    def _computed_now(self, req: int) -> int:
        table = self.table
        cohort = table.cohort[req]
        return table.offset[req] + cohort.steps if cohort is not None else table.computed[req]

    def _held_tokens(self, req: int) -> int:
        return self.table.stop[req] if self.reserve_full_length else self._computed_now(req)

    def _free_kv(self, req: int, now_s: float, finished: bool) -> None:
        """Give back what a leaving request (finished, or preempted, at now_s) holds; with prefix caching its
        full blocks stay cached (`PrefixKVCache.release`)."""
        if self._prefix is None:
            self.kv.give(self.held_blocks(req))
            return
        table = self.table
        cohort = table.cohort[req]
        computed = table.offset[req] + cohort.steps if cohort is not None else table.computed[req]
        held = table.stop[req] if self.reserve_full_length else computed
        self._prefix.release(req, computed, held, now_s, finished)

    def kv_conserved(self) -> bool:
        kv = self.kv
        held = sum(self.held_blocks(r) for r in self.running)
        if self._prefix is not None:
            held += self._prefix.referenced_units()
            if kv.num_free_blocks < self._prefix.evictable:
                return False
        return kv.num_free_blocks + held == kv.num_blocks and kv.num_free_blocks >= 0

    def steady_cohort(self) -> Cohort | None:
        """The cohort, when the next iteration is exactly its decode and nothing else: no queue, no chunk in
        progress, one idle cohort within the budget (the replica may then run decode steps in place)."""
        if self.waiting or self.singles or len(self.cohorts) != 1:
            return None
        cohort = self.cohorts[0]
        if cohort.in_flight or cohort.count > self._decode_budget():
            return None
        return cohort

    def _decode_budget(self) -> int:
        """Tokens the decoders may take in a decode-only iteration (v1: the whole token budget)."""
        return self.config.max_num_batched_tokens

    def sample_cohort(self, cohort: Cohort, now_s: float, done: list[int]) -> None:
        """Every member of the cohort emitted one token at now_s; those at their stop length leave (into
        `done`, their KV freed)."""
        cohort.in_flight = False
        gaps = self.table.gaps
        gaps.values.append(now_s - cohort.last_s)
        gaps.counts.append(cohort.count)
        cohort.last_s = now_s
        heap = cohort.finishes
        if heap and heap[0][0] <= cohort.steps:
            self.release_finished(cohort, done)

    def release_finished(self, cohort: Cohort, done: list[int]) -> None:
        """Members whose last token the cohort's latest step sampled leave (into `done`, their KV freed)."""
        table = self.table
        for req in cohort.pop_finished(table):
            computed = table.offset[req] + cohort.steps
            table.computed[req] = computed
            table.num_tokens[req] = computed + 1
            self._on_done(req, cohort.last_s)
            done.append(req)

    # ---------------------------------------------------------------------------------------- the pieces
    def _schedule_running(self, budget: int, *, prefills_only: bool = False):
        """Grant running requests (in admission order) their missing tokens within `budget`, preempting from
        the tail when KV runs out. Returns (cohorts, [(request, grant)], budget left, whether anyone was
        preempted); the KV blocks are allocated."""
        table = self.table
        idle = [] if prefills_only else [c for c in self.cohorts if not c.in_flight]
        if idle and self.spec is not None:
            self.advance = self.spec.draw()
        num_decode = 0
        for c in idle:
            num_decode += c.count
        singles = []
        total = num_decode
        if self.singles:
            floor = 1 if prefills_only else 0
            for req in self.singles:  # a chunk in flight may be followed by the next chunk (need > 0)
                need = table.num_tokens[req] - table.computed[req]
                if need > floor:
                    singles.append((req, need))
                    total += need
        if total == 0:
            return [], [], budget, False
        if total > budget:
            if num_decode >= budget or (num_decode and not self._decoders_first(singles[0][0])):
                return self._schedule_running_exact(budget, prefills_only)
            left = budget - num_decode
            granted = []
            for req, need in singles:
                if left <= 0:
                    break
                grant = need if need <= left else left
                if grant < need and not self.config.enable_chunked_prefill:
                    break  # a whole prompt that does not fit waits
                granted.append((req, grant))
                left -= grant
            singles = granted
        blocks = 0
        if self._cohort_blocks:
            advance = self.advance
            for c in idle:
                blocks += c.new_blocks(advance)
            blocks_for = self.kv.blocks_for
            for req, grant in singles:
                computed = table.computed[req]
                blocks += blocks_for(computed + grant) - blocks_for(computed)
        if blocks > self.kv.num_free_blocks:
            return self._schedule_running_exact(budget, prefills_only)
        if blocks:
            self.kv.take(blocks)
        if self._prefix is not None and self._prefix.cache_on_schedule:
            self._register_allocated(singles)
        used = num_decode
        for _, grant in singles:
            used += grant
        return idle, singles, budget - used, False

    def _decoders_first(self, first_single: int) -> bool:
        """True when no idle decoder was admitted after the first single that wants tokens (so the budget
        reaches every decoder before any chunk)."""
        table = self.table
        for req in reversed(self.running):
            if req == first_single:
                return True
            cohort = table.cohort[req]
            if cohort is not None and not cohort.in_flight:
                return False
        return True

    def _schedule_running_exact(self, budget: int, prefills_only: bool):
        """The per-request path of `_schedule_running`: allocate one by one in admission order; when short,
        preempt the latest admitted request that is not in flight (vLLM), possibly the request itself."""
        table, kv = self.table, self.kv
        order = list(self.running)
        computed, need_of, idle = {}, {}, {}
        lookahead: dict[
            int, int
        ] = {}  # speculative decoders: KV slots for the accepted tokens past the first
        for req in order:
            cohort = table.cohort[req]
            if cohort is not None:
                c = table.offset[req] + cohort.steps
                computed[req], idle[req] = c, not cohort.in_flight
                need_of[req] = 0 if cohort.in_flight else 1
                if self.advance > 1 and not cohort.in_flight:
                    lookahead[req] = self.advance - 1
            else:
                computed[req], idle[req] = table.computed[req], not table.in_flight[req]
                need_of[req] = table.num_tokens[req] - table.computed[req]
        scheduled: list[tuple[int, int]] = []
        preempted = False
        i = 0
        while i < len(order) and budget > 0:
            req = order[i]
            need = need_of[req]
            if need <= 0 or (prefills_only and need == 1):
                i += 1
                continue
            n = min(need, budget)
            if n < need and not self.config.enable_chunked_prefill:
                break
            done = removed = False
            while not done:
                blocks = (
                    0
                    if self.reserve_full_length
                    else kv.blocks_for(computed[req] + n + lookahead.get(req, 0))
                    - kv.blocks_for(computed[req])
                )
                if blocks <= kv.num_free_blocks:
                    if blocks > 0:
                        kv.take(blocks)
                    done = True
                    break
                victim = next((j for j in range(len(order) - 1, i - 1, -1) if idle[order[j]]), None)
                if victim is None:
                    break
                self._preempt(order.pop(victim))
                preempted = True
                if victim == i:
                    removed = True
                    break
            if done:
                scheduled.append((req, n))
                budget -= n
            if not removed:
                i += 1
        cohorts, singles = self._regroup(scheduled)
        if self._prefix is not None and self._prefix.cache_on_schedule:
            self._register_allocated(singles)
        return cohorts, singles, budget, preempted

    def _regroup(self, scheduled: list[tuple[int, int]]) -> tuple[list[Cohort], list[tuple[int, int]]]:
        """Split the scheduled requests into whole cohorts (a cohort the budget cut through is split) and
        single (request, grant) pairs."""
        table = self.table
        picked: dict[Cohort, set[int]] = {}
        singles = []
        for req, n in scheduled:
            cohort = table.cohort[req]
            if cohort is None:
                singles.append((req, n))
            else:
                picked.setdefault(cohort, set()).add(req)
        cohorts = []
        for cohort, members in picked.items():
            if len(members) < cohort.count:  # the budget cut through it: split off the smaller side
                others = {r for r in cohort.members() if r not in members}
                moving = members if len(members) <= len(others) else others
                part = self._split(cohort, moving)
                if moving is members:
                    cohort = part
            cohorts.append(cohort)
        return cohorts, singles

    def _split(self, cohort: Cohort, reqs: set[int]) -> Cohort:
        """Move `reqs` out of an idle cohort into a new one with the same steps and last token time."""
        table = self.table
        computed = {req: table.offset[req] + cohort.steps for req in reqs}
        cohort.remove(table, reqs)
        part = Cohort(self._cohort_blocks, cohort.last_s)
        part.steps = cohort.steps
        for req in reqs:
            part.add(table, req, computed[req])
        self.cohorts.append(part)
        return part

    def _preempt(self, req: int) -> None:
        """Recompute preemption: drop the KV cache, keep the generated tokens, requeue at the head."""
        table = self.table
        self._free_kv(req, self.now_s, False)
        cohort = table.cohort[req]
        if cohort is not None:
            cohort.remove(table, {req})
            self.drop_if_empty(cohort)
        else:
            del self.singles[req]
        del self.running[req]
        table.computed[req] = 0
        table.status[req] = RequestStatus.PREEMPTED
        table.num_preemptions[req] += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)

    def _admit_waiting(self, budget: int, *, max_seqs: int | None = None):
        """Admit queued requests in order while budget, sequence slots and KV blocks last.
        Returns ([(request, grant)], budget left); admitted requests join the running tail."""
        table, kv, config = self.table, self.kv, self.config
        waiting = self.waiting
        slots = (max_seqs or config.max_num_seqs) - len(self.running)
        admitted = []
        prefix = self._prefix
        while waiting and budget > 0 and len(admitted) < slots:
            req = waiting[0]
            computed = table.computed[req]
            hit = in_pool = 0
            if prefix is not None and computed == 0 and prefix.may_hit(req):  # new or preempted: reuse its
                hit, in_pool = prefix.lookup(req, table.num_tokens[req])  # cached leading blocks
                computed = hit * kv.block_size
            n = table.num_tokens[req] - computed
            if n > budget:
                if config.enable_chunked_prefill:
                    n = budget
                elif budget < config.max_num_batched_tokens or admitted:
                    break  # a whole prompt that does not fit what is left waits for the next iteration
            blocks = kv.blocks_for(table.stop[req] if self.reserve_full_length else computed + n) - hit
            if blocks + in_pool > kv.num_free_blocks:
                break
            if prefix is not None and table.computed[req] == 0:
                prefix.acquire(req, hit, table.num_tokens[req])  # referenced before new blocks may evict
                table.computed[req] = computed
            if blocks > 0:
                kv.take(blocks)
            if prefix is not None and prefix.cache_on_schedule and prefix.own_from[req] > prefix.shared[req]:
                self._register_chunk(req, computed + n)  # before the next request's lookup, as vLLM does
            waiting.popleft()
            table.status[req] = RequestStatus.RUNNING
            self.running[req] = None
            self.singles[req] = None
            admitted.append((req, n))
            budget -= n
        return admitted, budget

    def _make_batch(self, cohorts: list[Cohort], singles: list[tuple[int, int]]) -> Batch | None:
        """Advance computed tokens at schedule time (as vLLM v1 does) and describe the work."""
        if not cohorts and not singles:
            return None
        num_decode = context = 0
        advance = self.advance
        for c in cohorts:
            num_decode += c.count
            context += c.context_tokens()
            c.steps += advance
            c.in_flight = True
        if not singles:
            return Batch(tuple(cohorts), (), num_decode, num_decode, context, None)
        table = self.table
        computed, prompt, in_flight = table.computed, table.prompt, table.in_flight
        ends = []
        new = seqs = cached_new = 0
        pairs = 0.0
        for req, grant in singles:
            before = computed[req]
            end = computed[req] = before + grant
            in_flight[req] += 1
            ends.append((req, end))
            if grant == 1 and before >= prompt[req]:
                num_decode += 1
                context += before
            else:
                new += grant
                seqs += 1
                cached_new += before + grant
                pairs += grant * (before + (grant + 1) / 2)
        if not new:
            return Batch(tuple(cohorts), tuple(ends), num_decode, num_decode, context, None)
        shape = BatchShape(
            num_prefill_tokens=new,
            num_prefill_seqs=seqs,
            prefill_attention_pairs=pairs,
            prefill_context_tokens=cached_new,
            num_decode=num_decode,
            decode_context_tokens=context,
        )
        return Batch(tuple(cohorts), tuple(ends), new + num_decode, num_decode, context, shape)

    # ------------------------------------------------------------------------------------------- output
    def update_from_output(self, batch: Batch, now_s: float) -> list[int]:
        """Every request whose chunk completed its tokens emits one token; returns those that reached their stop
        length here (their KV is freed and they leave the running queue)."""
        table = self.table
        gaps = table.gaps
        done: list[int] = []
        cohorts = batch.cohorts
        for c in cohorts:
            self.sample_cohort(c, now_s, done)
        target = None
        if len(cohorts) == 1:
            target = cohorts[0]
            if target.count == 0:
                self.drop_if_empty(target)
                target = None
            cohorts = ()
        for c in cohorts:  # several cohorts sampled together (pipelines, cut budgets) merge: same last token
            if c.count == 0:
                self.drop_if_empty(c)
            elif target is None:
                target = c
            elif c.count > target.count:
                c.absorb(table, target)
                self.drop_if_empty(target)
                target = c
            else:
                target.absorb(table, c)
                self.drop_if_empty(c)
        if batch.singles:
            num_tokens, prompt, stop = table.num_tokens, table.prompt, table.stop
            register = self._prefix is not None and not self._prefix.cache_on_schedule
            if register:
                own_from, shared = self._prefix.own_from, self._prefix.shared
            for req, end in batch.singles:
                table.in_flight[req] -= 1
                if register and table.status[req] == RequestStatus.RUNNING and own_from[req] > shared[req]:
                    self._register_chunk(req, end)  # SGLang / TensorRT-LLM: once the chunk has run
                if end != num_tokens[req]:
                    continue  # a prefill chunk short of the prompt: no token yet
                if num_tokens[req] > prompt[req]:
                    gaps.add(now_s - table.last_token_s[req], 1)
                else:
                    table.first_token_s[req] = now_s
                table.last_token_s[req] = now_s
                num_tokens[req] = end + 1
                if end + 1 >= stop[req]:
                    del self.singles[req]
                    self._on_done(req, now_s)
                    done.append(req)
                    continue
                if target is None:
                    target = Cohort(self._cohort_blocks, now_s)
                    self.cohorts.append(target)
                del self.singles[req]
                target.add(table, req, end)
        return done

    def _register_allocated(self, singles: list[tuple[int, int]]) -> None:
        """vLLM caches the full blocks it allocates for a chunk (allocate_slots -> cache_blocks)."""
        computed = self.table.computed
        own_from, shared = self._prefix.own_from, self._prefix.shared
        for req, grant in singles:
            if own_from[req] > shared[req]:  # else nothing to register (a leaf past its ancestors' units)
                self._register_chunk(req, computed[req] + grant)

    def _register_chunk(self, req: int, end: int) -> None:
        """A chunk brought the request's KV to `end` tokens: its full prompt blocks become cache units (blocks
        of generated tokens are registered when the request leaves, `PrefixKVCache.release`)."""
        prefix = self._prefix
        prompt = self.table.prompt[req]
        units = (end if end < prompt else prompt) // prefix.block_size
        cap = prefix.own_from[req]  # a leaf registers only its ancestors' units
        if units > cap:
            units = cap
        if units > prefix.shared[req]:
            prefix.register(req, units)

    def _on_done(self, req: int, now_s: float) -> None:
        """A request reached its stop length at now_s (computed / num_tokens are in the table): free it."""
        self._free_kv(req, now_s, True)
        del self.running[req]

    def drop_if_empty(self, cohort: Cohort) -> None:
        """Forget a cohort whose last member left."""
        if cohort.count == 0 and cohort in self.cohorts:
            self.cohorts.remove(cohort)
