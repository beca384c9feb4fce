"""What every engine's scheduler shares: the queues, KV admission, preemption and the output update.

Token-budget model (vLLM v1): there is no prefill or decode "phase". Each request has `num_tokens` (prompt +
generated so far) and `num_computed_tokens` (tokens whose KV is cached); every iteration the scheduler grants
some requests new tokens so that num_computed_tokens catches up with num_tokens. A request whose computed
tokens reach num_tokens samples one new token. A grant of one token on a request whose prompt is already
cached is a decode; anything else is a prefill chunk.

The engine files compose these pieces in their own order (`schedule()`); `update_from_output()` is common.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from reference_engine.kv_cache import KVCache
from reference_engine.request import RequestStatus, RequestTable
from simulator.costmodel.interface import BatchShape

_EMPTY = np.empty(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Engine knobs, with the engines' own names."""

    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool
    block_size: int
    max_model_len: int | None = None  # prompt + output longer than this is refused (the model's context)
    prefix_caching: bool = False


@dataclass(frozen=True, slots=True)
class Batch:
    """One iteration's decision: which requests compute how many new tokens."""

    reqs: np.ndarray  # request indices
    num_new_tokens: np.ndarray  # tokens granted to each
    end_tokens: np.ndarray  # num_computed_tokens of each once the batch has run
    shape: BatchShape


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
        self.running = _EMPTY  # admission order: the tail is preempted first
        self.in_flight = np.zeros(
            table.num_requests, dtype=np.int64
        )  # micro-batches not yet finished it is in
        self.track_in_flight = False  # the replica turns it on when it pipelines micro-batches (pp > 1)
        self._mark = np.zeros(table.num_requests, dtype=bool)
        self.num_preemptions = 0
        self.prefix = kv if hasattr(kv, "lookup") else None  # reference_engine.prefix_cache.PrefixKVCache
        self.now_s = 0.0  # the time of the current schedule() (set by the replica)

    # --------------------------------------------------------------------------------------------- queues
    def add_request(self, req: int) -> None:
        self.table.status[req] = RequestStatus.WAITING
        self.waiting.append(req)

    def can_ever_fit(self, req: int) -> bool:
        """False when the request could never run here (it would wait forever): too big for the KV cache, or
        a prompt over the token budget on an engine that cannot split prompts, or longer than the model's context."""
        limit = self.config.max_model_len
        if limit is not None and self.table.input_tokens[req] + self.table.output_tokens[req] > limit:
            return False
        if self.kv.blocks_for(int(self.table.stop_tokens[req])) > self.kv.num_blocks:
            return False
        if not self.config.enable_chunked_prefill:
            return (
                int(self.table.num_tokens[req] - self.table.num_computed_tokens[req])
                <= self.config.max_num_batched_tokens
            )
        return True

    @property
    def num_outstanding(self) -> int:
        return len(self.waiting) + len(self.running)

    def has_work(self) -> bool:
        return bool(self.waiting) or len(self.running) > 0

    # ---------------------------------------------------------------------------------------- the pieces
    def _schedule_running(self, budget: int, *, prefills_only: bool = False):
        """Grant running requests (in admission order) their missing tokens within `budget`, preempting from
        the tail when KV runs out. Returns (reqs, grants, budget left, whether anyone was preempted)."""
        run = self.running
        if len(run) == 0:
            return _EMPTY, _EMPTY, budget, False
        computed = self.table.num_computed_tokens[run]
        need = self.table.num_tokens[run] - computed
        if not prefills_only and len(run) <= budget and (need == 1).all():
            # Steady decoding: one token each, within budget; only block boundaries need a new block.
            grant = np.ones(len(run), dtype=np.int64)
            if self.kv.allocate_many(run, computed + 1):
                return run, grant, budget - len(run), False
            return self._schedule_running_preempting(budget, prefills_only)
        keep = need > 1 if prefills_only else need > 0  # need == 0: its micro-batch is still in flight
        if not keep.all():
            run, need = run[keep], need[keep]
        prev = np.cumsum(need) - need
        k = int(np.searchsorted(prev, budget, side="left"))
        cand = run[:k]
        grant = np.minimum(need[:k], budget - prev[:k])
        if not self.config.enable_chunked_prefill and k and grant[-1] < need[k - 1]:
            cand, grant = cand[:-1], grant[:-1]
        if self.kv.allocate_many(cand, self.table.num_computed_tokens[cand] + grant):
            self._register_on_schedule(cand, grant)
            return cand, grant, budget - int(grant.sum()), False
        return self._schedule_running_preempting(budget, prefills_only)

    def _schedule_running_preempting(self, budget: int, prefills_only: bool):
        """The slow path of `_schedule_running`: allocate one by one; when short, preempt the latest admitted
        request that is not in flight (vLLM), possibly the request itself."""
        table, kv = self.table, self.kv
        order = list(self.running)
        reqs, grants = [], []
        preempted = False
        i = 0
        while i < len(order) and budget > 0:
            req = order[i]
            need = int(table.num_tokens[req] - table.num_computed_tokens[req])
            if need <= 0 or (prefills_only and need == 1):
                i += 1
                continue
            n = min(need, budget)
            if n < need and not self.config.enable_chunked_prefill:
                break
            scheduled = removed = False
            while not scheduled:
                if (
                    kv.allocate_slots(req, n, num_computed_tokens=int(table.num_computed_tokens[req]))
                    is not None
                ):
                    scheduled = True
                    break
                victim = next(
                    (j for j in range(len(order) - 1, i - 1, -1) if not self.in_flight[order[j]]), None
                )
                if victim is None:
                    break
                self._preempt(order.pop(victim))
                preempted = True
                if victim == i:
                    removed = True
                    break
            if scheduled:
                reqs.append(req)
                grants.append(n)
                budget -= n
            if not removed:
                i += 1
        self.running = np.asarray(order, dtype=np.int64)
        reqs, grants = np.asarray(reqs, dtype=np.int64), np.asarray(grants, dtype=np.int64)
        self._register_on_schedule(reqs, grants)
        return reqs, grants, budget, preempted

    def _preempt(self, req: int) -> None:
        """Recompute preemption: drop the KV cache, keep the generated tokens, requeue at the head."""
        if self.prefix is not None:
            self.kv.free(req, self.now_s, finished=False)
        else:
            self.kv.free(req)
        self.table.num_computed_tokens[req] = 0
        self.table.status[req] = RequestStatus.PREEMPTED
        self.table.num_preemptions[req] += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)

    def _admit_waiting(self, budget: int, *, max_seqs: int | None = None):
        """Admit queued requests in order while budget, sequence slots and KV blocks last.
        Returns (reqs, grants, budget left); admitted requests join the running tail."""
        table, kv, config = self.table, self.kv, self.config
        slots = (max_seqs or config.max_num_seqs) - len(self.running)
        reqs, grants = [], []
        while self.waiting and budget > 0 and len(reqs) < slots:
            req = self.waiting[0]
            computed = int(table.num_computed_tokens[req])
            fresh = self.prefix is not None and computed == 0
            hit = in_pool = 0
            if fresh:
                hit, in_pool = self.prefix.lookup(req, int(table.num_tokens[req]))
                computed = hit * kv.block_size
            n = int(table.num_tokens[req]) - computed
            if n > budget:
                if config.enable_chunked_prefill:
                    n = budget
                elif budget < config.max_num_batched_tokens or reqs:
                    break  # a whole prompt that does not fit what is left waits for the next iteration
            hold = int(table.stop_tokens[req]) if self.reserve_full_length else computed + n
            if fresh:
                if int(kv.blocks_for(hold)) - hit + in_pool > kv.num_free_blocks:
                    break
                self.prefix.acquire(req, hit, int(table.num_tokens[req]))
                table.num_computed_tokens[req] = computed
            if kv.allocate_slots(req, hold - computed, num_computed_tokens=computed) is None:
                break
            self._register_on_schedule(np.array([req]), np.array([n]))
            self.waiting.popleft()
            table.status[req] = RequestStatus.RUNNING
            reqs.append(req)
            grants.append(n)
            budget -= n
        if not reqs:
            return _EMPTY, _EMPTY, budget
        admitted = np.asarray(reqs, dtype=np.int64)
        self.running = np.concatenate((self.running, admitted))
        return admitted, np.asarray(grants, dtype=np.int64), budget

    def _make_batch(self, reqs: np.ndarray, grants: np.ndarray) -> Batch | None:
        """Advance num_computed_tokens at schedule time (as vLLM v1 does) and describe the work."""
        if len(reqs) == 0:
            return None
        table = self.table
        before = table.num_computed_tokens[reqs]
        end = before + grants
        table.num_computed_tokens[reqs] = end
        if self.track_in_flight:
            self.in_flight[reqs] += 1
        decode = (grants == 1) & (before >= table.input_tokens[reqs])
        if decode.all():
            shape = BatchShape(num_decode=len(reqs), decode_context_tokens=int(before.sum()))
        else:
            pre = ~decode
            new, cached = grants[pre], before[pre]
            num_new = int(new.sum())
            shape = BatchShape(
                num_prefill_tokens=num_new,
                num_prefill_seqs=len(new),
                prefill_attention_pairs=float((new * (cached + (new + 1) / 2)).sum()),
                prefill_context_tokens=num_new + int(cached.sum()),
                num_decode=int(decode.sum()),
                decode_context_tokens=int(before[decode].sum()),
            )
        return Batch(reqs, grants, end, shape)

    # ------------------------------------------------------------------------------------------- output
    def update_from_output(self, batch: Batch, now_s: float) -> np.ndarray:
        """Requests whose chunk completed their tokens emit one token; returns those that reached their stop
        length here (their KV is freed and they leave the running queue)."""
        done = self._sample(batch, now_s)
        if done is None:
            return _EMPTY
        if len(done):
            self._release(done, now_s)
        return done

    def _sample(self, batch: Batch, now_s: float) -> np.ndarray | None:
        """Record one token for each request whose chunk reached its token count; returns the requests that hit
        their stop length (None when no request sampled a token)."""
        table = self.table
        reqs = batch.reqs
        if self.track_in_flight:
            self.in_flight[reqs] -= 1
        if self.prefix is not None and not self.prefix.cache_on_schedule:
            running = table.status[reqs] == RequestStatus.RUNNING
            self._register_prompts(reqs[running], batch.end_tokens[running])
        sampled = reqs[batch.end_tokens == table.num_tokens[reqs]]
        if len(sampled) == 0:
            return None
        table.record_tokens(sampled, now_s)
        return sampled[table.num_tokens[sampled] >= table.stop_tokens[sampled]]

    def _register_on_schedule(self, reqs: np.ndarray, grants: np.ndarray) -> None:
        """vLLM caches the full blocks it allocates, before the next request is looked up."""
        if self.prefix is not None and self.prefix.cache_on_schedule and len(reqs):
            self._register_prompts(reqs, self.table.num_computed_tokens[reqs] + grants)

    def _register_prompts(self, reqs: np.ndarray, end: np.ndarray) -> None:
        """Full blocks of the prompts the chunks reached become cache entries."""
        upto = np.minimum(end, self.table.input_tokens[reqs]) // self.kv.block_size
        for req, u in zip(reqs.tolist(), upto.tolist(), strict=True):
            self.prefix.register_chunk(req, u)

    def _release(self, done: np.ndarray, now_s: float = 0.0) -> None:
        if self.prefix is not None:
            self.kv.free(done, now_s)
        else:
            self.kv.free(done)
        self._mark[done] = True
        self.running = self.running[~self._mark[self.running]]
        self._mark[done] = False
