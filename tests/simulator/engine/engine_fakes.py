"""A hand-checkable fake cost model and factories for the engine tests.

Iteration time of a stage = a + b * num_tokens + c * decode_context_tokens (seconds), energy = watts x time,
FLOPs = 2e9 per token; send and KV-transfer times are constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.costmodel.interface import BatchShape, OpCost
from simulator.engine.cluster import ReplicaSpec
from simulator.engine.request import RequestTable
from simulator.engine.run import simulate_requests
from simulator.engine.schedulers import SchedulerConfig, create_scheduler
from simulator.scenario import Engine
from simulator.workload import Requests


@dataclass
class FakeStage:
    a: float = 0.01
    b: float = 0.001
    c: float = 0.0
    num_gpus: int = 1
    watts: float = 500.0

    def iteration_time(self, shape: BatchShape) -> float:
        return self.a + self.b * shape.num_tokens + self.c * shape.decode_context_tokens

    def breakdown(self, shape: BatchShape) -> list[OpCost]:
        return [OpCost("all", self.iteration_time(shape), self.flops(shape), 0.0, "compute")]

    def prime(self, num_tokens, num_seqs) -> None:
        pass  # nothing cached

    def decode_attention_time(self, shape: BatchShape) -> float:
        return 0.0  # no decode-attention operator in the breakdown

    def energy(self, shape: BatchShape, time_s: float) -> float:
        return self.watts * self.num_gpus * time_s

    def flops(self, shape: BatchShape) -> float:
        return 2e9 * shape.num_tokens

    def price(self, shape: BatchShape) -> tuple[float, float, float]:
        t = self.iteration_time(shape)
        return t, self.energy(shape, t), self.flops(shape)

    def price_decode(self, num_decode: int, context_tokens: int) -> tuple[float, float, float]:
        return self.price(BatchShape(num_decode=num_decode, decode_context_tokens=context_tokens))


@dataclass
class FakeReplicaCost:
    stages: list = field(default_factory=lambda: [FakeStage()])
    kv_capacity_tokens: int = 1_000_000
    weights_bytes_per_gpu: float = 2**30
    usd_per_hour: float = 2.0
    idle_watts: float = 100.0
    send_s: float = 0.0
    kv_transfer_s: float = 0.0

    @property
    def num_gpus(self) -> int:
        return sum(s.num_gpus for s in self.stages)

    def send_time(self, stage_index: int, num_tokens: int) -> float:
        return self.send_s

    def kv_transfer_time(self, num_tokens: int, to) -> float:
        return self.kv_transfer_s


def make_cost(*, a=0.01, b=0.001, c=0.0, kv_tokens=1_000_000, stages=None, **kw) -> FakeReplicaCost:
    return FakeReplicaCost(stages=stages or [FakeStage(a, b, c)], kv_capacity_tokens=kv_tokens, **kw)


def make_requests(n: int, *, prompt=100, output=10, arrival=0.0) -> Requests:
    """n requests; prompt, output and arrival may be scalars or sequences."""
    return Requests.from_columns(
        np.broadcast_to(np.asarray(arrival, dtype=float), (n,)),
        np.broadcast_to(prompt, (n,)),
        np.broadcast_to(output, (n,)),
    )


def make_engine(kind="vllm-v1", **knobs) -> Engine:
    return Engine(kind=kind, **knobs)


def run(requests: Requests, cost=None, *, count=1, specs=None, seed=0, slo=None, **engine_knobs):
    """Simulate on `count` replicas of `cost` (or explicit ReplicaSpecs); returns (result, system)."""
    specs = specs or [ReplicaSpec(cost=cost or make_cost(), count=count)]
    return simulate_requests(requests, specs, make_engine(**engine_knobs), seed=seed, slo=slo)


def make_scheduler(
    kind="vllm-v1",
    requests=None,
    *,
    kv_tokens=1_000_000,
    max_num_seqs=256,
    max_num_batched_tokens=8192,
    chunked=True,
    block_size=16,
):
    """A scheduler over a fresh table, without the loop (for schedule()/update_from_output() tests)."""
    requests = requests or make_requests(4)
    table = RequestTable(requests.arrival_s, requests.input_tokens, requests.output_tokens)
    config = SchedulerConfig(max_num_seqs, max_num_batched_tokens, chunked, block_size)
    return create_scheduler(kind, table, config, kv_tokens)


def batch_requests(batch) -> list[int]:
    """The requests a Batch schedules: cohort members, then single requests."""
    members = [req for c in batch.cohorts for req in sorted(c.members())]
    return members + [req for req, _ in batch.singles]
