"""Run a list of requests through replicas priced by ReplicaCosts and collect the result.

This is the cost-model-agnostic entry point (tests drive it with a hand-checkable fake cost);
`simulator.simulate.simulate` builds the real costs from a Scenario and calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from reference_engine.cluster import ReplicaSpec, ServingSystem
from reference_engine.metrics import RunTotals, SimulationResult, compute_metrics, makespan_s
from reference_engine.request import RequestTable
from reference_engine.schedulers import SchedulerConfig
from simulator.scenario import Engine, engine_setting


def scheduler_config(engine: Engine, max_model_len: int | None = None) -> SchedulerConfig:
    """The engine's knobs with its kind's defaults filled in (and the model's context length, if given)."""
    return SchedulerConfig(
        max_num_seqs=engine_setting(engine, "max_num_seqs"),
        max_num_batched_tokens=engine_setting(engine, "max_num_batched_tokens"),
        enable_chunked_prefill=engine_setting(engine, "enable_chunked_prefill"),
        block_size=engine.block_size,
        max_model_len=max_model_len,
        prefix_caching=engine_setting(engine, "prefix_caching"),
    )


def simulate_requests(
    requests,
    specs: list[ReplicaSpec],
    engine: Engine,
    *,
    seed: int = 0,
    slo=None,
    plan_label: str = "",
    peak_flops: float = 0.0,
    unused_idle_watts: float = 0.0,
    until_s: float = math.inf,
    max_requests: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_model_len: int | None = None,
) -> tuple[SimulationResult, ServingSystem]:
    """Simulate `requests` (a workload.Requests) on the replicas; returns the result and the final system
    state (for invariant checks). The router's RNG stream is spawned from `seed`, apart from the workload's."""
    closed = requests.closed
    arrival = requests.arrival_s.copy() if closed is not None else requests.arrival_s
    table = RequestTable(arrival, requests.input_tokens, requests.output_tokens)
    router_ss = np.random.SeedSequence(seed).spawn(4)[3]
    system = ServingSystem(
        table,
        specs,
        engine_kind=engine.kind,
        config=scheduler_config(engine, max_model_len),
        router=engine.router,
        rng=np.random.default_rng(router_ss),
        closed=closed,
        prefixes=requests.prefixes,
    )
    system.progress = progress
    system.run(until_s=until_s, max_requests=max_requests)
    return SimulationResult(
        compute_metrics(table, _totals(system, plan_label, peak_flops, unused_idle_watts), slo),
        table,
        requests.ids,
        num_steps=sum(r.num_iterations for r in system.replicas),
    ), system


def _totals(system: ServingSystem, plan_label: str, peak_flops: float, unused_idle_watts: float) -> RunTotals:
    makespan = makespan_s(system.table)
    idle_j = unused_idle_watts * makespan
    for r in system.replicas:
        watts_per_gpu = r.cost.idle_watts / r.cost.num_gpus
        for stage, busy_s in zip(r.stages, r.stage_busy_s, strict=True):
            idle_j += watts_per_gpu * stage.num_gpus * max(makespan - busy_s, 0.0)
    return RunTotals(
        plan_label=plan_label,
        iteration_energy_j=sum(r.energy_j for r in system.replicas),
        idle_energy_j=idle_j,
        usd_per_hour=sum(r.cost.usd_per_hour for r in system.replicas),
        flops=sum(r.flops for r in system.replicas),
        peak_flops=peak_flops,
        weights_bytes_per_gpu=max(r.cost.weights_bytes_per_gpu for r in system.replicas),
        kv_cache_tokens=min(r.cost.kv_capacity_tokens for r in system.replicas),
        kv_peak_tokens=max(
            r.scheduler.kv.peak_used_blocks * r.scheduler.kv.block_size for r in system.replicas
        ),
        num_preemptions=sum(r.scheduler.num_preemptions for r in system.replicas),
    )
