"""`simulate(scenario)`: replay the scenario's workload on its plan, iteration by iteration (docs/design.md §3.2).

Builds one ReplicaCost per replica group with the cost model, generates (or reads) the requests, runs them
through `simulator.engine` and returns a `SimulationResult` (`to_json()` gives docs/design.md §6's keys). The same
seed gives the same result. Requests that can never run (`simulator.admission`) are counted in
`requests.rejected`, with a warning; when none can run, simulate raises InputError before starting.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from simulator.admission import ReplicaLimit, enforce, length_field, screen
from simulator.costmodel.calibration import Calibration, host_overhead, load_calibration
from simulator.engine.cluster import ReplicaSpec
from simulator.engine.metrics import SimulationResult
from simulator.engine.run import simulate_requests
from simulator.engine.trace import TraceRecorder
from simulator.errors import InputError
from simulator.scenario import Scenario
from simulator.workload import Requests, generate


def simulate(
    scenario: Scenario,
    *,
    progress: Callable[[int, int], None] | None = None,
    until_s: float = math.inf,
    max_requests: int | None = None,
    requests: Requests | None = None,
    calibration: Calibration | None = None,
    trace: TraceRecorder | None = None,
) -> SimulationResult:
    """Simulate the scenario's plan; stop early at simulated time until_s or after max_requests completions.

    `requests` replaces the scenario's workload (a benchmark run replayed by `apex calibrate`) and `calibration`
    its calibration file (trial coefficients of a fit); `trace` records the timeline (`simulator.trace_export`)."""
    spec = scenario.spec
    if calibration is None and spec.calibration is not None:
        calibration = load_calibration(spec.calibration)
    specs = replica_specs(scenario, calibration)
    if requests is None:
        requests = generate(spec.workload, file=scenario.file)
    limits = [ReplicaLimit(s.role, s.cost.kv_capacity_tokens) for s in specs]
    admission = screen(
        requests.input_tokens,
        requests.output_tokens,
        scenario.model,
        spec.engine,
        limits,
        workload_field=length_field(spec.workload),
    )
    enforce(admission, file=scenario.file, plan_label=scenario.plan.label())
    return simulate_workload(
        scenario,
        requests,
        specs,
        progress=progress,
        until_s=until_s,
        max_requests=max_requests,
        calibration=calibration,
        trace=trace,
    )


def simulate_workload(
    scenario: Scenario,
    requests: Requests,
    specs: list[ReplicaSpec],
    *,
    progress: Callable[[int, int], None] | None = None,
    until_s: float = math.inf,
    max_requests: int | None = None,
    seed: int | None = None,
    calibration: Calibration | None = None,
    trace: TraceRecorder | None = None,
) -> SimulationResult:
    """Simulate `requests` (instead of the scenario's workload) on replicas already priced as `specs`
    (`replica_specs(scenario)`), with the scenario's engine and SLOs; the router's stream comes from `seed`
    (default the workload's), the frontend delay from `calibration` (default the scenario's file). No admission
    screen: that is the caller's."""
    spec = scenario.spec
    if calibration is None and spec.calibration is not None:
        calibration = load_calibration(spec.calibration)
    result, _ = simulate_requests(
        requests,
        specs,
        spec.engine,
        seed=spec.workload.seed if seed is None else seed,
        slo=spec.goals.slo,
        plan_label=scenario.plan.label(),
        peak_flops=_plan_peak_flops(scenario),
        unused_idle_watts=_unused_idle_watts(scenario),
        until_s=until_s,
        max_requests=max_requests,
        progress=progress,
        max_model_len=scenario.model.max_context,
        frontend_s=host_overhead(spec.engine.kind, calibration).frontend_s,
        draft_cost=1.0 / scenario.model.num_layers,  # an EAGLE head / MTP module: one of the model's layers
        trace=trace,
    )
    return result


def replica_specs(scenario: Scenario, calibration: Calibration | None = None) -> list[ReplicaSpec]:
    """One ReplicaSpec per replica group of the scenario's plan, priced by the cost model (with `calibration`,
    else the scenario's calibration file)."""
    from simulator.costmodel import build_replica_cost

    if scenario.plan is None:
        raise InputError(
            "simulate needs a plan: add `plan:` to the scenario (e.g. 'tp=8') or pass --plan",
            file=scenario.file,
            field="plan",
        )
    spec = scenario.spec
    specs = []
    for gi, group in enumerate(scenario.plan.replicas):
        cost = build_replica_cost(
            scenario.model,
            group,
            scenario.gpus,
            scenario.cluster,
            spec.dtype,
            spec.engine,
            calibration=calibration if calibration is not None else spec.calibration,
        )
        if not getattr(cost, "fits", True) or cost.kv_capacity_tokens <= 0:
            raise InputError(
                f"replica group {gi} does not fit in GPU memory: weights and workspace leave no room "
                "for the KV cache; use more GPUs per stage (tp/pp) or smaller dtypes",
                file=scenario.file,
                field=f"plan.replicas[{gi}]",
            )
        specs.append(ReplicaSpec(cost=cost, count=group.count, role=group.role))
    return specs


def _default_gpu(scenario: Scenario) -> str:
    return next(iter(scenario.cluster.gpus_by_type()))


def _plan_peak_flops(scenario: Scenario) -> float:
    """Dense peak FLOP/s of all the plan's GPUs at the weights' compute dtype."""
    dtype = scenario.spec.dtype.weights
    return sum(
        scenario.gpus[name].datasheet_flops(dtype) * count
        for name, count in scenario.plan.gpus_by_type(_default_gpu(scenario)).items()
    )


def _unused_idle_watts(scenario: Scenario) -> float:
    """Idle power of the cluster's GPUs that the plan leaves unused."""
    used = scenario.plan.gpus_by_type(_default_gpu(scenario))
    return sum(
        scenario.gpus[name].idle_w * max(count - used.get(name, 0), 0)
        for name, count in scenario.cluster.gpus_by_type().items()
    )
