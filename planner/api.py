"""The Python API for scripts; every CLI action is one call here.

`check(scenario)` validates a scenario and reports per-GPU memory of its plan; `simulate(scenario)` replays its
workload on its plan. Scenarios may be YAML paths, dicts or `Scenario` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simulator.errors import InputError
from simulator.scenario import Scenario, load_scenario

ScenarioLike = str | Path | dict | Scenario

__all__ = [
    "check",
    "simulate",
    "plan",
    "study",
    "estimate",
    "calibrate",
    "calibrate_serving",
    "capacity",
    "load",
]


@dataclass(frozen=True)
class StageMemoryRow:
    """Memory of one GPU of one stage of one replica group."""

    replica_group: int
    stage: int
    layers: tuple[int, int]
    gpu: str
    num_gpus: int
    parallelism: str
    weights_gib: float
    capacity_gib: float
    kv_cache_tokens: int
    fits: bool
    needed_gib: float = 0.0  # weights + activation workspace + runtime reserve, before any KV cache
    usable_gib: float = (
        0.0  # what the engine's memory rule lets them use (gpu_memory_fraction; all for trtllm)
    )


@dataclass(frozen=True)
class CheckReport:
    """Result of `check`: the resolved scenario and, when it has a plan, the memory of every stage."""

    scenario: Scenario
    rows: list[StageMemoryRow]

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.rows)


def load(scenario: ScenarioLike, *, plan: str | dict | None = None) -> Scenario:
    """Validate and resolve a scenario (optionally overriding its plan)."""
    return load_scenario(scenario, plan_override=plan)


def check(scenario: ScenarioLike, *, plan: str | dict | None = None) -> CheckReport:
    """Validate a scenario; with a plan, report for each stage whether its weights fit on its GPUs."""
    sc = load(scenario, plan=plan)
    from simulator.admission import ReplicaLimit, enforce, length_field, screen
    from simulator.scenario import engine_setting
    from simulator.workload import generate

    requests = generate(sc.spec.workload, file=sc.file)  # a bad trace or preset is found here, not later
    rows: list[StageMemoryRow] = []
    if sc.plan is not None:
        from simulator.costmodel import stage_memory

        for gi, group in enumerate(sc.plan.replicas):
            last = len(group.stages) - 1
            for si, stage in enumerate(group.stages):
                gpu = sc.gpus[stage.gpu or next(iter(sc.gpus))]
                mem = stage_memory(
                    sc.model, stage, gpu, sc.spec.dtype, sc.spec.engine, first=si == 0, last=si == last
                )
                rows.append(
                    StageMemoryRow(
                        replica_group=gi,
                        stage=si,
                        layers=stage.layers,
                        gpu=gpu.name,
                        num_gpus=stage.num_gpus,
                        parallelism=_stage_parallelism(stage),
                        weights_gib=mem.weights_bytes / 2**30,
                        capacity_gib=gpu.memory_gib,
                        kv_cache_tokens=mem.kv_capacity_tokens,
                        fits=mem.fits,
                        needed_gib=(mem.weights_bytes + mem.activation_bytes + mem.reserve_bytes) / 2**30,
                        usable_gib=gpu.memory_gib
                        * (
                            1.0
                            if sc.spec.engine.kind == "trtllm"
                            else engine_setting(sc.spec.engine, "gpu_memory_fraction")
                        ),
                    )
                )
    limits = None
    if rows and all(r.fits for r in rows):  # a plan that does not fit is reported by its rows
        limits = [
            ReplicaLimit(g.role, min(r.kv_cache_tokens for r in rows if r.replica_group == gi))
            for gi, g in enumerate(sc.plan.replicas)
        ]
    admission = screen(
        requests.input_tokens,
        requests.output_tokens,
        sc.model,
        sc.spec.engine,
        limits,
        workload_field=length_field(sc.spec.workload),
    )
    enforce(admission, file=sc.file, plan_label=sc.plan.label() if sc.plan else None)
    return CheckReport(scenario=sc, rows=rows)


def _stage_parallelism(stage) -> str:
    text = f"attention tp{stage.attention.tp}" + (
        f"×dp{stage.attention.dp}" if stage.attention.dp > 1 else ""
    )
    return text + f", ffn tp{stage.ffn.tp}" + (f"×ep{stage.ffn.ep}" if stage.ffn.ep > 1 else "")


def simulate(scenario: ScenarioLike, *, plan: str | dict | None = None, progress=None, trace=None):
    """Replay the scenario's workload on its plan; returns a SimulationResult (`.to_json()` for the dict).

    `trace` (a `simulator.engine.trace.TraceRecorder`) records the timeline for `write_trace`."""
    sc = load(scenario, plan=plan)
    if sc.plan is None:
        raise InputError(
            "the scenario has no plan to simulate: add 'plan:' (e.g. tp=8) or pass --plan",
            file=sc.file,
            field="plan",
        )
    from simulator.simulate import simulate as run_simulation

    return run_simulation(sc, progress=progress, trace=trace)


def write_trace(path: str | Path, trace):
    """Write the timeline a `simulate(..., trace=recorder)` run recorded as a Chrome / Perfetto trace (JSON);
    returns its `TraceSummary` (`.message()` says what was kept)."""
    from simulator.trace_export import write_chrome_trace

    return write_chrome_trace(path, trace.timeline)


def calibrate(measurements: str | Path, *, gpu: str = "h100-sxm"):
    """Fit the cost model's global coefficients of `gpu` to measured points.

    A kernel-times file (points with `op`, format of data/reference/kernels.yaml) gives a `KernelFit` with the
    error on every other GPU of the file (leave-one-GPU-out); a step/serving file (format of
    data/reference/calibration.yaml) gives a `CalibrationResult`."""
    from simulator import catalog
    from simulator.costmodel import calibrate as fit
    from simulator.costmodel.kernel_fit import fit_kernels
    from simulator.yamlio import read_yaml

    data = read_yaml(measurements)
    if not isinstance(data, dict) or not isinstance(data.get("points"), list) or not data["points"]:
        raise InputError(
            "expected a mapping with a non-empty 'points' list (see data/reference/calibration.yaml or "
            "data/reference/kernels.yaml)",
            file=str(measurements),
            field="points",
        )
    catalog.get_gpu(gpu, field="--gpu")
    if all(isinstance(p, dict) and "op" in p for p in data["points"]):
        return fit_kernels(measurements, gpu)
    try:
        return fit(measurements, gpu=gpu)
    except InputError as exc:
        raise exc.within(file=str(measurements)) from None


def calibrate_serving(
    results: list[str | Path],
    scenario: ScenarioLike,
    *,
    plan: str | dict | None = None,
    fit: tuple[str, ...] | None = None,
    hold_out: str = "alternate",
    fmt: str = "auto",
):
    """Fit engine host figures, the frontend cost and GPU efficiency scales (planner/calibration/params.py) to
    benchmark result files run against the scenario's plan; a `ServingFit` (`.to_calibration()` for the file)."""
    from planner.calibration import DEFAULT_FIT
    from planner.calibration import calibrate_serving as fit_runs

    return fit_runs(
        [str(p) for p in results], scenario, plan=plan, fit=fit or DEFAULT_FIT, hold_out=hold_out, fmt=fmt
    )


def estimate(scenario: ScenarioLike, *, plan: str | dict | None = None, batch_sizes=(1, 8, 32, 128)):
    """Price one prefill of the mean input and decode steps at a few batch sizes on the scenario's plan."""
    from planner.estimate import estimate_plan

    sc = load(scenario, plan=plan)
    if sc.plan is None:
        raise InputError(
            "the scenario has no plan to estimate: add 'plan:' or pass --plan", file=sc.file, field="plan"
        )
    return estimate_plan(sc, batch_sizes=batch_sizes)


def capacity(
    scenario: ScenarioLike,
    *,
    plan: str | dict | None = None,
    slo: dict | str | None = None,
    seeds: int = 3,
    tolerance: float = 0.01,
    requests: int | None = None,
    time_limit_s: float = 600.0,
    progress=None,
):
    """The highest arrival rate the scenario's plan (or `plan`) sustains with every SLO met at its statistic in
    steady state, and the tokens/s per GPU and per user there; returns a `planner.capacity.CapacityResult`
    (`.to_json()` for the dict). `slo` overrides the goals' SLOs (as `apex plan --slo`)."""
    from planner.capacity import CapacityOptions, capacity_of
    from planner.capacity_command import check_capacity_flags
    from planner.plan_api import with_goals

    check_capacity_flags(seeds=seeds, tolerance=tolerance, requests=requests, time_limit=time_limit_s)
    sc = with_goals(load(scenario, plan=plan), slo=slo)
    options = CapacityOptions(seeds=seeds, tolerance=tolerance, requests=requests, time_limit_s=time_limit_s)
    return capacity_of(sc, options, progress=progress)


from planner.plan_api import plan  # noqa: E402  (re-exported: plan search, docs/design.md §6)
from planner.study_api import study  # noqa: E402  (re-exported: what-if studies)
