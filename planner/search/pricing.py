"""Template pricing: enumerate the replica structures of the plan space and price each with the cost model
(docs/design.md §5.2).

`price_templates(scenario, stats)` returns `PricedTemplate`s: the template, its `ReplicaCost` (the very object
the simulator would build for one replica: the bounds evaluate it, `bounds.py`) and its *predicted*
coefficients per workload class — the analytic first pass of `formulations.templates.analytic_capacity`
(largest decode batch meeting TPOT and KV, prefill share, M/M/1 TTFT), energy above idle and a latency score.
Predictions order the candidates; they are never used as bounds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from formulations.templates import (
    CapacityEstimate,
    Template,
    TemplateCoefficients,
    analytic_capacity,
    enumerate_structures,
)
from planner.search.workload import WorkloadProfile, WorkloadStats
from simulator.costmodel import build_replica_cost
from simulator.costmodel.clock import clock_levels_mhz
from simulator.costmodel.interface import BatchShape
from simulator.scenario import Scenario, engine_setting


@dataclass
class PricedTemplate:
    template: Template
    analytic: TemplateCoefficients  # predicted, per class (the analytic model)
    estimate: CapacityEstimate  # for the whole workload
    cost: object = None  # simulator.costmodel.ReplicaCostModel of one replica


def _target(percentiles) -> float:
    """The loosest stated statistic of an SLO (the analytic model predicts means)."""
    if percentiles is None:
        return math.inf
    values = [
        v for v in (percentiles.mean, percentiles.p50, percentiles.p90, percentiles.p99) if v is not None
    ]
    return max(values) if values else math.inf


def template_structures(scenario: Scenario, *, partition_backend: str = "highs", solver_time_s: float = 5.0):
    """The replica structures of the plan space (formulations.templates.enumerate_structures with the
    scenario's dtype, memory fraction and engine knobs; uneven splits from the layer-partition model)."""
    spec = scenario.spec
    engine = spec.engine
    max_seqs = engine_setting(engine, "max_num_seqs")
    max_tokens = engine_setting(engine, "max_num_batched_tokens")
    return enumerate_structures(
        scenario.model,
        scenario.cluster,
        scenario.gpus,
        weights_dtype=spec.dtype.weights,
        memory_fraction=engine_setting(engine, "gpu_memory_fraction"),
        engine_grid=((max_seqs, max_tokens),),
        allow_mixed_gpus=len(scenario.cluster.gpus_by_type()) > 1,
        partition_backend=partition_backend,
        partition_time_s=solver_time_s,
    )


def price_templates(
    scenario: Scenario,
    stats: WorkloadStats | None = None,
    *,
    profile: WorkloadProfile | None = None,
    deadline: float | None = None,
    partition_backend: str = "highs",
) -> list[PricedTemplate]:
    """Enumerate replica templates and price each one with the cost model (templates whose replica does not
    fit in memory or does not fit the cluster are left out). Stops pricing at `deadline`."""
    profile = profile or WorkloadProfile.of(scenario)
    spec = scenario.spec
    engine = spec.engine
    max_seqs = engine_setting(engine, "max_num_seqs")
    max_tokens = engine_setting(engine, "max_num_batched_tokens")
    ttft_target = _target(spec.goals.slo.ttft_s)
    tpot_target = _target(spec.goals.slo.tpot_s)
    inventory = scenario.cluster.gpus_by_type()
    means = _class_means(profile)
    out = []
    structures = template_structures(scenario, partition_backend=partition_backend)
    for t in [clocked for s in structures for clocked in clocked_templates(scenario, s)]:
        if deadline is not None and time.perf_counter() > deadline:
            break
        if any(n > inventory.get(g, 0) for g, n in t.gpus_by_type.items()):
            continue
        cost = build_replica_cost(
            scenario.model,
            t.replica_group(1),
            scenario.gpus,
            scenario.cluster,
            spec.dtype,
            engine,
            calibration=spec.calibration,
        )
        if not cost.fits or cost.kv_capacity_tokens < engine.block_size:
            continue
        step = step_time_fn(cost, max_tokens)
        est_all = analytic_capacity(
            step,
            cost.kv_capacity_tokens,
            profile.stats.mean_input,
            profile.stats.mean_output,
            ttft_target,
            tpot_target,
            max_seqs,
        )
        # the operating point: the fewest replicas of this template that carry the demand, each at its share
        demand = profile.stats.demand_rps
        replicas = max(1, math.ceil(demand / est_all.requests_per_s)) if est_all.requests_per_s > 0 else 1
        caps, energy, latency = {}, {}, {}
        for cid, (mean_in, mean_out) in means.items():
            est = analytic_capacity(
                step, cost.kv_capacity_tokens, mean_in, mean_out, ttft_target, tpot_target, max_seqs
            )
            if est.requests_per_s > 0:
                caps[cid] = est.requests_per_s
            batch = _operating_batch(step, est, demand / replicas, mean_in, mean_out)
            energy[cid] = _energy(cost.stages, mean_in, mean_out, batch)
            latency[cid] = _latency(est, mean_in, mean_out, 1, step)
        mean_in, mean_out = profile.stats.mean_input, profile.stats.mean_output
        full = max(est_all.decode_batch, 1)
        growth = _latency(est_all, mean_in, mean_out, full, step) - _latency(
            est_all, mean_in, mean_out, 1, step
        )
        coeffs = TemplateCoefficients(
            capacity_rps=caps,
            energy_per_request_j=energy,
            idle_w=cost.idle_watts,
            usd_per_hour=cost.usd_per_hour,
            latency_score=latency,
            latency_growth_s=max(growth, 0.0),
        )
        out.append(PricedTemplate(t, coeffs, est_all, cost))
    return out


def searches_clocks(scenario: Scenario) -> bool:
    """Whether the plan space has a clock dimension: the scenario asks for it (`sm_clock_mhz: auto`; it
    multiplies the templates by the number of clocks, so it is not on by default; docs/design.md §5.2)."""
    return scenario.spec.sm_clock_mhz == "auto"


def clocked_templates(scenario: Scenario, structure: Template) -> list[Template]:
    """`structure` at each clock the planner tries (`costmodel.clock.clock_levels_mhz`), or just as it is when the
    space has no clock dimension or the stages mix GPU types."""
    if not searches_clocks(scenario):
        return [structure]
    types = list(structure.gpus_by_type)
    if len(types) != 1:
        return [structure]
    return [replace(structure, sm_clock_mhz=mhz) for mhz in clock_levels_mhz(scenario.gpus[types[0]])]


def _class_means(profile: WorkloadProfile) -> dict[str, tuple[float, float]]:
    out = {}
    for k, cid in enumerate(profile.class_ids):
        m = profile.members(k)
        if m.any():
            out[cid] = (float(profile.input_tokens[m].mean()), float(profile.output_tokens[m].mean()))
    return out


def _shape(prefill: int, decode: int, context: int) -> BatchShape:
    if prefill:
        return BatchShape.from_requests([prefill], [0])
    return BatchShape(num_decode=decode, decode_context_tokens=context)


def step_time_fn(cost, max_tokens: int):
    """(prefill tokens, decodes, decode context) -> seconds: one iteration of a replica priced on its stages, the
    analytic model's step (also used by planner.capacity's prediction)."""
    stages = cost.stages
    pp = len(stages)

    def step_time(prefill: int, decode: int, context: int) -> float:
        if prefill:  # one request's prefill runs through every stage in turn
            shape = _shape(min(prefill, max_tokens), 0, 0)
            chunks = math.ceil(prefill / max_tokens)
            return chunks * sum(s.iteration_time(shape) for s in stages) + sum(
                cost.send_time(i, prefill) for i in range(pp - 1)
            )
        # pp micro-batches in flight: a request's next token comes after pp rounds of the slowest stage
        micro = max(1, math.ceil(decode / pp))
        shape = _shape(0, micro, int(context * micro / max(decode, 1)))
        return max(
            pp * max(s.iteration_time(shape) for s in stages), sum(s.iteration_time(shape) for s in stages)
        )

    return step_time


def _operating_batch(step, est: CapacityEstimate, rate: float, mean_in: float, mean_out: float) -> int:
    """The decode batch a replica runs at `rate` requests/s (Little's law: requests decoding ≈ rate × decode
    time, with the step time at that batch), capped by the capacity estimate's batch."""
    cap = max(est.decode_batch, 1)
    batch = 1.0
    per_request = mean_in + mean_out / 2
    for _ in range(20):
        t = step(0, max(int(batch), 1), int(max(int(batch), 1) * per_request))
        new = min(cap, max(1.0, rate * mean_out * t))
        if abs(new - batch) < 0.5:
            batch = new
            break
        batch = new
    return max(int(round(batch)), 1)


def _energy(stages, mean_in: float, mean_out: float, batch: int) -> float:
    """Predicted energy a request adds above idle (J), decoding in batches of `batch`."""
    pp = len(stages)
    prefill_shape = _shape(int(round(mean_in)), 0, 0)
    e = 0.0
    for s in stages:
        t = s.iteration_time(prefill_shape)
        e += max(s.energy(prefill_shape, t) - s.energy(_shape(0, 0, 0), t), 0.0)
    micro = max(1, math.ceil(batch / pp))
    ctx = int(micro * (mean_in + mean_out / 2))
    decode_shape = _shape(0, micro, ctx)
    per_token = 0.0
    for s in stages:
        t = s.iteration_time(decode_shape)
        per_token += max(s.energy(decode_shape, t) - s.energy(_shape(0, 0, 0), t), 0.0) / micro
    return e + mean_out * per_token


def _latency(est: CapacityEstimate, mean_in: float, mean_out: float, batch: int, step) -> float:
    """Predicted mean E2E latency of a request (s), decoding in batches of `batch`."""
    ttft = est.ttft_s if math.isfinite(est.ttft_s) else est.prefill_time_s
    return ttft + mean_out * step(0, batch, int(batch * (mean_in + mean_out / 2)))
