"""The contract between the cost model and its users (the simulator's engine loop and the formulations).

The simulator describes one iteration of one pipeline stage as a `BatchShape` (aggregates over the requests
in the batch, so pricing is O(1) whatever the batch size) and asks a `StageCost` for its price — time, energy
and FLOPs together (`price`, `price_decode`); the formulations and the planner's bounds use `iteration_time`,
which is the same number. A
`ReplicaCost` bundles the stages of one replica with its memory plan (KV capacity) and transfer times.
All times are seconds, sizes bytes, energies joules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BatchShape:
    """One iteration's work, as sums over the requests in the batch.

    Prefill chunks: request i computes `new_i` tokens with `cached_i` tokens already in its KV cache.
    Decode requests: request j generates one token attending to `context_j` cached tokens.
    """

    num_prefill_tokens: int = 0  # sum_i new_i
    num_prefill_seqs: int = 0  # number of prefill chunks
    prefill_attention_pairs: float = 0.0  # sum_i new_i * (cached_i + (new_i + 1) / 2): causal query-key pairs
    prefill_context_tokens: int = 0  # sum_i (cached_i + new_i): KV entries the prefill chunks touch
    num_decode: int = 0  # decode requests (one new token each)
    decode_context_tokens: int = 0  # sum_j context_j: KV entries decode reads

    @property
    def num_tokens(self) -> int:
        """Tokens that go through the GEMMs this iteration."""
        return self.num_prefill_tokens + self.num_decode

    @property
    def num_seqs(self) -> int:
        return self.num_prefill_seqs + self.num_decode

    @staticmethod
    def from_requests(
        prefill_new: Sequence[int] = (),
        prefill_cached: Sequence[int] = (),
        decode_context: Sequence[int] = (),
    ) -> BatchShape:
        """Build the aggregates from per-request lengths (each request with its own length, never a mean)."""
        pairs = sum(n * (c + (n + 1) / 2) for n, c in zip(prefill_new, prefill_cached, strict=True))
        return BatchShape(
            num_prefill_tokens=int(sum(prefill_new)),
            num_prefill_seqs=len(prefill_new),
            prefill_attention_pairs=float(pairs),
            prefill_context_tokens=int(sum(prefill_new) + sum(prefill_cached)),
            num_decode=len(decode_context),
            decode_context_tokens=int(sum(decode_context)),
        )


@dataclass(frozen=True, slots=True)
class OpCost:
    """The price of one operator (summed over the layers it repeats on) in one iteration."""

    name: str
    time_s: float
    flops: float
    bytes: float
    bound: str  # "compute", "memory", "network" or "overhead"
    fixed_s: float = 0.0  # the part of time_s that does not shrink with the work (launch floors, latency)


class StageCost(Protocol):
    """Prices iterations of one pipeline stage (its layers, on its GPUs, with its parallelism)."""

    num_gpus: int

    def iteration_time(self, shape: BatchShape) -> float:
        """Seconds for one forward pass of this stage over `shape` (collectives and fixed costs included)."""

    def breakdown(self, shape: BatchShape) -> list[OpCost]:
        """Per-operator costs whose times add up to iteration_time(shape)."""

    def energy(self, shape: BatchShape, time_s: float) -> float:
        """Joules all GPUs of the stage spend on this iteration lasting time_s (idle power included)."""

    def flops(self, shape: BatchShape) -> float:
        """Useful FLOPs of this iteration on this stage (all its GPUs)."""

    def price(self, shape: BatchShape) -> tuple[float, float, float]:
        """(iteration_time, energy at that time, flops) of `shape` in one pass: what the simulator calls once
        per iteration and stage. Equal to the three methods above (and to `breakdown` summed)."""

    def price_decode(self, num_decode: int, context_tokens: int) -> tuple[float, float, float]:
        """`price` of the decode-only shape (num_decode sequences reading context_tokens cached tokens), without
        building a BatchShape: the simulator's steady decode steps."""

    def prime(self, num_tokens, num_seqs) -> None:
        """A hint, changing no price: iterations with these token and sequence counts (arrays) are about to be
        priced, so price what they share together now (the planner's bounds)."""

    def decode_attention_time(self, shape: BatchShape) -> float:
        """Seconds of the decode-attention operator ("attention_decode") of `breakdown(shape)`, 0 without
        decodes: the one operator that reads the decode context (the planner's bounds take it apart)."""


class ReplicaCost(Protocol):
    """One replica: its stages in pipeline order, its memory plan and its transfer times."""

    stages: Sequence[StageCost]
    kv_capacity_tokens: int  # tokens of KV cache the replica can hold (the tightest stage decides)
    weights_bytes_per_gpu: float  # the largest over its GPUs
    num_gpus: int
    usd_per_hour: float
    idle_watts: float

    def send_time(self, stage_index: int, num_tokens: int) -> float:
        """Seconds to pass activations of num_tokens from stage stage_index to the next one."""

    def kv_transfer_time(self, num_tokens: int, to: ReplicaCost) -> float:
        """Seconds to move the KV cache of num_tokens tokens from this replica to replica `to`."""
