"""Replica cost: breakdown sums, caching, pipeline send, KV transfer, cost and capacity."""

from __future__ import annotations

import pytest

from simulator import catalog
from simulator.costmodel import BatchShape, build_replica_cost, with_engine
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import ReplicaGroup, Stage
from simulator.scenario import DTypes, Engine


@pytest.fixture
def replica(h100, node):
    model = catalog.get_model("llama-3.1-70b")
    group = ReplicaGroup(stages=[Stage(layers=(0, 40), tp=4), Stage(layers=(40, 80), tp=4)])
    return build_replica_cost(model, group, {"h100-sxm": h100}, node, DTypes(), Engine())


def test_iteration_time_breakdown_sums_mixed_batch(replica):
    """Per-op times add up to iteration_time on a chunked-prefill + decode batch."""
    shape = BatchShape.from_requests([256], [1024], [300, 2000, 50])
    for stage in replica.stages:
        assert sum(c.time_s for c in stage.breakdown(shape)) == pytest.approx(stage.iteration_time(shape))


def test_iteration_time_cached_equals_fresh_and_grows_with_context(replica):
    """The cached path gives the same time, and more decode context costs more."""
    stage = replica.stages[0]
    short = BatchShape.from_requests(decode_context=[100] * 32)
    long = BatchShape.from_requests(decode_context=[4000] * 32)
    first = stage.iteration_time(short)
    assert stage.iteration_time(short) == first
    assert stage.iteration_time(long) > first


def test_replica_totals_two_stage_tp4(replica, h100):
    """Eight GPUs: price, idle power, capacity of the tightest stage, first/last flags."""
    assert replica.num_gpus == 8
    assert replica.usd_per_hour == pytest.approx(8 * h100.price_usd_per_hour)
    assert replica.idle_watts == pytest.approx(8 * h100.idle_w)
    assert replica.kv_capacity_tokens == min(s.memory.kv_capacity_tokens for s in replica.stages)
    assert replica.stages[0].first and replica.stages[1].last and replica.fits


def test_send_time_last_stage_zero_and_kv_transfer_positive(replica):
    """Activations go between stages only; moving KV takes time over the link."""
    assert replica.send_time(1, 100) == 0.0
    assert replica.send_time(0, 100) > 0.0
    assert replica.kv_transfer_time(4096, replica) > replica.kv_transfer_time(16, replica) > 0.0


def test_kv_transfer_across_nodes_uses_inter_node_fabric(h100):
    """Two 8-GPU replicas cannot share a node, so KV moves over InfiniBand (slower than NVLink)."""
    model = catalog.get_model("llama-3.1-8b")
    cluster = Cluster(node_groups=[NodeGroup(gpu="h100-sxm", nodes=2)])
    big = build_replica_cost(
        model,
        ReplicaGroup(stages=[Stage(layers=(0, 32), tp=8)]),
        {"h100-sxm": h100},
        cluster,
        DTypes(),
        Engine(),
    )
    small = build_replica_cost(
        model,
        ReplicaGroup(stages=[Stage(layers=(0, 32), tp=2)]),
        {"h100-sxm": h100},
        cluster,
        DTypes(),
        Engine(),
    )
    assert big.kv_transfer_time(4096, big) > small.kv_transfer_time(4096, small)


def test_build_replica_cost_moe_expert_parallel_runs(h100, node):
    """DeepSeek-V3 fp8 over 16 GPUs (ep16 across two nodes) prices with an all-to-all."""
    model = catalog.get_model("deepseek-v3")
    group = ReplicaGroup(stages=[Stage(layers=(0, 61), tp=1, ep=16)])
    rep = build_replica_cost(
        model, group, {"h100-sxm": h100}, node, DTypes(weights="fp8", kv_cache="fp8"), Engine()
    )
    shape = BatchShape.from_requests(decode_context=[2000] * 128)
    names = {c.name: c for c in rep.stages[0].breakdown(shape)}
    assert names["ep_all_to_all"].time_s > 0 and names["moe_experts"].time_s > 0
    assert rep.fits


def test_with_engine_equals_a_fresh_build_under_other_knobs(replica, h100, node):
    """Other knobs (token budget, max_num_seqs, memory fraction) re-plan the memory only: the copy has the
    memory plan and KV cache of a fresh build under them and prices every iteration as the original does."""
    model = catalog.get_model("llama-3.1-70b")
    group = ReplicaGroup(stages=[Stage(layers=(0, 40), tp=4), Stage(layers=(40, 80), tp=4)])
    other = Engine(max_num_seqs=512, max_num_batched_tokens=16384, gpu_memory_fraction=0.8)
    fresh = build_replica_cost(model, group, {"h100-sxm": h100}, node, DTypes(), other)
    again = with_engine(replica, model, group, node, DTypes(), other)
    assert fresh.kv_capacity_tokens != replica.kv_capacity_tokens  # the knobs do move the memory plan
    assert again.kv_capacity_tokens == fresh.kv_capacity_tokens
    assert [s.memory for s in again.stages] == [s.memory for s in fresh.stages]
    assert (again.fits, again.over_bytes, again.usd_per_hour) == (
        fresh.fits,
        fresh.over_bytes,
        fresh.usd_per_hour,
    )
    assert replica.kv_capacity_tokens == min(s.memory.kv_capacity_tokens for s in replica.stages)  # untouched
    shape = BatchShape.from_requests([256], [1024], [300, 2000, 50])
    for a, b in zip(again.stages, fresh.stages, strict=True):
        assert a.price(shape) == b.price(shape)


def test_with_engine_refuses_a_change_of_engine_kind(replica, node):
    """The engine kind changes host overheads, not only memory: with_engine says so instead of reusing prices."""
    model = catalog.get_model("llama-3.1-70b")
    group = ReplicaGroup(stages=[Stage(layers=(0, 40), tp=4), Stage(layers=(40, 80), tp=4)])
    with pytest.raises(ValueError, match="engine knobs only"):
        with_engine(replica, model, group, node, DTypes(), Engine(kind="sglang"))
