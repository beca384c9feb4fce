"""`apex estimate`: one prefill of the mean input and decode steps at a few batch sizes, priced operator by
operator on every stage of the scenario's plan, with per-GPU memory, MFU, MBU, energy and the fixed-cost share
(launch floors, collective latency, engine host time: what does not shrink with a smaller batch)."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.costmodel import BatchShape, build_replica_cost
from simulator.costmodel.energy import mbu, mfu
from simulator.scenario import Scenario
from simulator.workload import generate


@dataclass(frozen=True)
class PhaseEstimate:
    """One iteration of one stage: its label, per-operator costs, total time, MFU, MBU and the fixed part."""

    label: str
    ops: list  # list[OpCost]
    time_s: float
    mfu: float
    mbu: float
    fixed_s: float = (
        0.0  # launch floors, collective latency, host step: the time that does not shrink with work
    )
    energy_j: float = 0.0  # the stage's GPUs over the iteration, idle power included (costmodel/energy.py)

    @property
    def fixed_share(self) -> float:
        return self.fixed_s / self.time_s if self.time_s > 0 else 0.0


@dataclass(frozen=True)
class StageEstimate:
    replica_group: int
    stage: int
    description: str
    weights_gib: float
    kv_cache_tokens: int
    fits: bool
    phases: list[PhaseEstimate]


@dataclass(frozen=True)
class EstimateReport:
    scenario: Scenario
    mean_input_tokens: int
    mean_output_tokens: int
    stages: list[StageEstimate]


def _phase(stage_cost, label: str, shape: BatchShape) -> PhaseEstimate:
    ops = stage_cost.breakdown(shape)
    time_s = sum(op.time_s for op in ops)
    _, busiest_bytes = stage_cost.gpu_work(shape)
    return PhaseEstimate(
        label=label,
        ops=ops,
        time_s=time_s,
        mfu=mfu(
            stage_cost.gpu, stage_cost.flops(shape), time_s, stage_cost.num_gpus, stage_cost.compute_dtype
        ),
        mbu=mbu(stage_cost.gpu, busiest_bytes, time_s, 1),
        fixed_s=sum(op.fixed_s if op.bound != "overhead" or op.fixed_s else op.time_s for op in ops),
        energy_j=stage_cost.energy(shape, time_s),
    )


def estimate_plan(sc: Scenario, *, batch_sizes=(1, 8, 32, 128)) -> EstimateReport:
    """Price a prefill of the workload's mean input and decode steps at `batch_sizes` on every stage."""
    requests = generate(sc.spec.workload, file=sc.file)
    mean_in = max(1, round(float(requests.input_tokens.mean())))
    mean_out = max(1, round(float(requests.output_tokens.mean())))
    decode_context = mean_in + mean_out // 2
    stages = []
    for gi, group in enumerate(sc.plan.replicas):
        replica = build_replica_cost(
            sc.model,
            group,
            sc.gpus,
            sc.cluster,
            sc.spec.dtype,
            sc.spec.engine,
            calibration=sc.spec.calibration,
        )
        for si, (stage, cost) in enumerate(zip(group.stages, replica.stages, strict=True)):
            phases = [_phase(cost, f"prefill {mean_in} tokens", BatchShape.from_requests([mean_in], [0]))]
            for b in batch_sizes:
                shape = BatchShape.from_requests(decode_context=[decode_context] * b)
                phases.append(_phase(cost, f"decode batch {b}", shape))
            stages.append(
                StageEstimate(
                    replica_group=gi,
                    stage=si,
                    description=f"layers [{stage.layers[0]}, {stage.layers[1]}) on {stage.num_gpus}×{cost.gpu.name}"
                    + (f" at {cost.gpu.clock_ghz * 1000:.0f} MHz" if cost.gpu.sm_clock_ghz else ""),
                    weights_gib=cost.memory.weights_bytes / 2**30,
                    kv_cache_tokens=cost.memory.kv_capacity_tokens,
                    fits=cost.memory.fits,
                    phases=phases,
                )
            )
    return EstimateReport(scenario=sc, mean_input_tokens=mean_in, mean_output_tokens=mean_out, stages=stages)
