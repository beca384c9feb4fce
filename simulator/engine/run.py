"""Run a list of requests through replicas priced by ReplicaCosts and collect the result.

This is the cost-model-agnostic entry point (tests drive it with a hand-checkable fake cost);
`simulator.simulate.simulate` builds the real costs from a Scenario and calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from simulator.costmodel.speculative import SpeculativeReplicaCost
from simulator.engine.cluster import ReplicaSpec, ServingSystem
from simulator.engine.metrics import RunTotals, SimulationResult, compute_metrics, makespan_s
from simulator.engine.request import RequestTable
from simulator.engine.schedulers import SchedulerConfig
from simulator.engine.speculative import AcceptanceSampler
from simulator.engine.trace import TraceRecorder
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
    frontend_s: float = 0.0,
    draft_cost: float | None = None,
    trace: TraceRecorder | None = None,
) -> tuple[SimulationResult, ServingSystem]:
    """Simulate `requests` (a workload.Requests) on the replicas; returns the result and the final system
    state (for invariant checks). The router's RNG stream is spawned from `seed`, apart from the workload's.

    `frontend_s` (costmodel/host.py): every request reaches the engine that long after the client sent it. The
    same delay for every request is a translation in time of the engine's whole run, so it is added to the
    first-token and finish times the client observes instead of shifting the arrivals (TTFT and E2E grow,
    ITL not). Under a closed loop the client's next send waits on the engine's finish, not the observed one:
    the frontend delay is then not added to the think time (a stated approximation).

    With `engine.speculative`, decode steps are speculative (engine/speculative.py): priced by
    `costmodel.speculative`, with the draft step at `engine.speculative.draft_cost` or else `draft_cost` (the
    caller's default for the method: one layer's share of the model), advancing by draws from a stream spawned
    from `seed` per replica.

    `trace` records the run's timeline (at the engine, without the frontend delay); `trace.timeline` holds it
    after the run."""
    if trace is not None and trace.has_run:
        raise ValueError("this TraceRecorder already holds a run: use a new one for each run")
    closed = requests.closed
    # a closed loop writes arrival times as it sends requests: into a copy, never into the caller's Requests
    arrival = requests.arrival_s.copy() if closed is not None else requests.arrival_s
    table = RequestTable(arrival, requests.input_tokens, requests.output_tokens)
    streams = np.random.SeedSequence(seed).spawn(6)
    router_ss = streams[3]  # (4 is the workload's prefix model, simulator/workload.py)
    speculative = engine.speculation
    if speculative is not None:
        share = speculative.draft_cost if speculative.draft_cost is not None else draft_cost
        if share is None:
            raise ValueError(f"speculative {speculative.method}: no draft_cost given and no default for it")
        specs = [
            replace(s, cost=SpeculativeReplicaCost(s.cost, speculative.num_tokens, share)) for s in specs
        ]
    system = ServingSystem(
        table,
        specs,
        engine_kind=engine.kind,
        config=scheduler_config(engine, max_model_len),
        router=engine.router,
        rng=np.random.default_rng(router_ss),
        closed=closed,
        prefixes=requests.prefixes,
        trace=trace,
    )
    system.progress = progress
    if speculative is not None:
        rates = speculative.acceptance_rates()
        replica_streams = streams[5].spawn(len(system.replicas))
        for replica, ss in zip(system.replicas, replica_streams, strict=True):
            replica.scheduler.spec = AcceptanceSampler(rates, np.random.default_rng(ss))
    system.run(until_s=until_s, max_requests=max_requests)
    records = table.records()
    if trace is not None:
        trace.finish(system, records)
    if frontend_s:
        records = replace(
            records, first_token_s=records.first_token_s + frontend_s, finish_s=records.finish_s + frontend_s
        )
    return SimulationResult(
        compute_metrics(records, _totals(system, records, plan_label, peak_flops, unused_idle_watts), slo),
        records,
        requests.ids,
        num_steps=sum(r.num_iterations for r in system.replicas),
    ), system


def _totals(
    system: ServingSystem, records, plan_label: str, peak_flops: float, unused_idle_watts: float
) -> RunTotals:
    makespan = makespan_s(records)
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
        prefix_cache=system.prefix_cache_stats(),
    )
