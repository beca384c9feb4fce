"""Layer partition: split a model's layers into contiguous pipeline stages over an ordered list of GPU groups.

Data (plain, solver-neutral):

* `LayerGroup`: `num_layers` consecutive identical layers with a reference time and a per-GPU memory per layer
  (a model is a sequence of groups, e.g. DeepSeek's 3 dense layers then 58 MoE layers);
* `StageSlot`: one pipeline stage's GPU group, in pipeline order: memory capacity per GPU, fixed memory per GPU
  (embedding, LM head, activations), `time_scale` (a layer's time on this group = reference time × time_scale),
  `memory_scale` (a layer's memory on this group = reference memory × memory_scale, e.g. 1/tp relative to the
  reference split), `fixed_time_s` (time the stage spends whatever its layers, e.g. the LM head on the last
  stage) and `send_time_s` (the activation send to the next stage, counted by the "sum" objective for every
  stage but the last).

Stage s holds layers [b_s, b_{s+1}) with b_0 = 0, b_S = L and at least one layer per stage. Objectives:
"bottleneck" minimizes max_s T_s (pipeline throughput); "sum" minimizes Σ_s T_s + Σ_{s<S-1} send_s (latency).

Three solvers from the same data: an exact dynamic program (`partition_dp`, the reference), a pyomo MILP
solved by HiGHS and a CP-SAT model. `solve_layer_partition(problem, backend=..., options=...)` dispatches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from formulations.result import SolutionStatus, SolveResult, SolverOptions, Termination, relative_gap

PartitionObjective = Literal["bottleneck", "sum"]
PartitionBackend = Literal["dp", "highs", "cpsat"]


@dataclass(frozen=True, slots=True)
class LayerGroup:
    """`num_layers` consecutive layers, each taking `time_s` (reference) and `memory_bytes` per GPU (reference)."""

    num_layers: int
    time_s: float
    memory_bytes: float
    name: str = "layers"


@dataclass(frozen=True, slots=True)
class StageSlot:
    """The GPU group of one pipeline stage (see the module docstring for the scales)."""

    name: str
    memory_capacity_bytes: float
    fixed_memory_bytes: float = 0.0
    time_scale: float = 1.0
    memory_scale: float = 1.0
    send_time_s: float = 0.0
    fixed_time_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LayerPartitionProblem:
    layers: tuple[LayerGroup, ...]
    stages: tuple[StageSlot, ...]
    objective: PartitionObjective = "bottleneck"

    def __post_init__(self):
        if self.objective not in ("bottleneck", "sum"):
            raise ValueError(f"objective must be 'bottleneck' or 'sum', got {self.objective!r}")
        if not self.stages:
            raise ValueError("a layer partition needs at least one stage")

    @property
    def layer_times_s(self) -> list[float]:
        return [g.time_s for g in self.layers for _ in range(g.num_layers)]

    @property
    def layer_memory_bytes(self) -> list[float]:
        return [g.memory_bytes for g in self.layers for _ in range(g.num_layers)]

    @property
    def num_layers(self) -> int:
        return sum(g.num_layers for g in self.layers)


@dataclass(frozen=True, slots=True)
class LayerSplit:
    """The decoded partition: half-open layer ranges per stage and what each stage costs."""

    bounds: tuple[tuple[int, int], ...]
    stage_times_s: tuple[float, ...]
    stage_memory_bytes: tuple[float, ...]
    bottleneck_s: float
    total_s: float  # Σ stage times + sends between stages


def evaluate_split(problem: LayerPartitionProblem, bounds: list[tuple[int, int]]) -> LayerSplit:
    """Stage times, memory and both objectives of a given split (the one place they are computed)."""
    times, mems = problem.layer_times_s, problem.layer_memory_bytes
    stage_t, stage_m = [], []
    for slot, (a, b) in zip(problem.stages, bounds, strict=True):
        stage_t.append(slot.fixed_time_s + slot.time_scale * sum(times[a:b]))
        stage_m.append(slot.fixed_memory_bytes + slot.memory_scale * sum(mems[a:b]))
    sends = sum(s.send_time_s for s in problem.stages[:-1])
    return LayerSplit(tuple(bounds), tuple(stage_t), tuple(stage_m), max(stage_t), sum(stage_t) + sends)


def split_objective(problem: LayerPartitionProblem, split: LayerSplit) -> float:
    return split.bottleneck_s if problem.objective == "bottleneck" else split.total_s


# ---- infeasibility -----------------------------------------------------------------------------------------


def explain_partition_infeasibility(problem: LayerPartitionProblem) -> tuple[str, ...]:
    """Reasons no split fits memory, or () if one does.

    Greedy packing is exact for feasibility: filling each stage with as many layers as fit (leaving one layer
    for every later stage) never hurts a later stage, because memory per layer is non-negative.
    """
    mems, num_layers, num_stages = problem.layer_memory_bytes, problem.num_layers, len(problem.stages)
    if num_layers < num_stages:
        return (f"{num_stages} stages need at least {num_stages} layers but the model has {num_layers}",)
    start = 0
    for s, slot in enumerate(problem.stages):
        last = s == num_stages - 1
        stop_max = num_layers if last else num_layers - (num_stages - 1 - s)
        used, stop = slot.fixed_memory_bytes, start
        while stop < stop_max and used + slot.memory_scale * mems[stop] <= slot.memory_capacity_bytes:
            used += slot.memory_scale * mems[stop]
            stop += 1
        if stop == start:
            need = slot.fixed_memory_bytes + slot.memory_scale * mems[start]
            return (
                f"stage {s} ({slot.name}) cannot hold even layer {start}: it needs {need / 2**30:.2f} GiB per "
                f"GPU (fixed {slot.fixed_memory_bytes / 2**30:.2f} GiB) but has "
                f"{slot.memory_capacity_bytes / 2**30:.2f} GiB",
            )
        if last and stop < num_layers:
            need = slot.fixed_memory_bytes + slot.memory_scale * sum(mems[start:])
            return (
                f"stage {s} ({slot.name}) would have to hold layers [{start}, {num_layers}) = "
                f"{need / 2**30:.2f} GiB per GPU but has {slot.memory_capacity_bytes / 2**30:.2f} GiB; "
                f"earlier stages are full, so the stages together cannot hold all {num_layers} layers",
            )
        start = stop
    return ()


def _infeasible(problem: LayerPartitionProblem, wall_s: float, log: str = "") -> SolveResult[LayerSplit]:
    reasons = explain_partition_infeasibility(problem) or ("the solver proved infeasibility",)
    return SolveResult(
        Termination.INFEASIBLE, SolutionStatus.NO_SOLUTION, None, None, None, wall_s, log, None, reasons
    )


# ---- exact dynamic program (reference) ---------------------------------------------------------------------


def partition_dp(problem: LayerPartitionProblem) -> SolveResult[LayerSplit]:
    """Exact O(S·L²) dynamic program over (stage, end layer); ties (within 1e-15 s) break towards earlier
    boundaries. Each stage's step is one numpy pass over every (end, start) pair of layers."""
    t0 = time.perf_counter()
    times, mems = problem.layer_times_s, problem.layer_memory_bytes
    num_layers, num_stages = len(times), len(problem.stages)
    pt = np.concatenate(([0.0], np.cumsum(times)))  # prefix sums, in the order a running sum adds them
    pm = np.concatenate(([0.0], np.cumsum(mems)))
    ends = np.arange(num_layers + 1)[:, None]  # j: stage s covers layers [i, j)
    starts = np.arange(num_layers + 1)[None, :]
    inf = math.inf
    # best[s][j]: optimum of stages 0..s covering layers [0, j); arg[s][j]: start of stage s.
    best = np.full((num_stages, num_layers + 1), inf)
    arg = np.full((num_stages, num_layers + 1), -1)
    bottleneck = problem.objective == "bottleneck"
    for s, slot in enumerate(problem.stages):
        send = slot.send_time_s if s < num_stages - 1 else 0.0
        # the first stage starts at layer 0; a later one where the stages before it end
        prev = np.where(starts == 0, 0.0, inf) if s == 0 else best[s - 1][None, :]
        mem = slot.fixed_memory_bytes + slot.memory_scale * (pm[:, None] - pm[None, :])
        stage_t = slot.fixed_time_s + slot.time_scale * (pt[:, None] - pt[None, :])
        value = np.maximum(prev, stage_t) if bottleneck else prev + stage_t + send
        ok = (starts >= s) & (starts < ends) & (prev < inf) & (mem <= slot.memory_capacity_bytes)
        value = np.where(ok, value, inf)
        low = value.min(axis=1)
        first = np.argmax(value <= (low + 1e-15)[:, None], axis=1)  # the earliest start within the tie
        live = np.isfinite(low)
        best[s] = np.where(live, value[np.arange(num_layers + 1), first], inf)
        arg[s] = np.where(live, first, -1)
    wall = time.perf_counter() - t0
    if best[-1][num_layers] == inf:
        return _infeasible(problem, wall)
    bounds, j = [], num_layers
    for s in range(num_stages - 1, -1, -1):
        i = int(arg[s][j])
        bounds.append((i, j))
        j = i
    split = evaluate_split(problem, bounds[::-1])
    obj = split_objective(problem, split)
    return SolveResult(
        Termination.OPTIMAL, SolutionStatus.OPTIMAL, obj, obj, 0.0, wall, "dynamic program", split
    )


# ---- MILP (pyomo + HiGHS) ----------------------------------------------------------------------------------


def build_partition_milp(problem: LayerPartitionProblem):
    """The pyomo model. Binary `in_first[s, i]` = 1 iff layer i sits in stages 0..s (a monotone staircase).

    Layer i is in stage s iff in_first[s, i] − in_first[s−1, i] = 1, so contiguity is implied by the staircase.
    """
    import pyomo.environ as pyo

    times, mems = problem.layer_times_s, problem.layer_memory_bytes
    num_layers, num_stages = len(times), len(problem.stages)
    m = pyo.ConcreteModel(name="layer_partition")
    m.S = pyo.RangeSet(0, num_stages - 1)
    m.L = pyo.RangeSet(0, num_layers - 1)
    m.in_first = pyo.Var(m.S, m.L, domain=pyo.Binary)
    m.stage_time = pyo.Var(m.S, domain=pyo.NonNegativeReals)

    def in_stage(s, i):
        return m.in_first[s, i] - (m.in_first[s - 1, i] if s > 0 else 0)

    # Every layer is in some stage: in_first[S-1, i] = 1.
    m.all_assigned = pyo.Constraint(m.L, rule=lambda m, i: m.in_first[num_stages - 1, i] == 1)
    # Stages are prefixes: layer i+1 in stages ≤ s implies layer i is too.
    m.prefix = pyo.Constraint(
        m.S, pyo.RangeSet(0, num_layers - 2), rule=lambda m, s, i: m.in_first[s, i] >= m.in_first[s, i + 1]
    )
    # Nested: in stages ≤ s implies in stages ≤ s+1.
    m.nested = pyo.Constraint(
        pyo.RangeSet(0, num_stages - 2), m.L, rule=lambda m, s, i: m.in_first[s, i] <= m.in_first[s + 1, i]
    )
    # Each stage holds at least one layer: Σ_i in_stage(s, i) ≥ 1.
    m.nonempty = pyo.Constraint(m.S, rule=lambda m, s: sum(in_stage(s, i) for i in m.L) >= 1)
    # Memory: fixed_s + memory_scale_s · Σ_i mem_i · in_stage(s, i) ≤ capacity_s.
    m.memory = pyo.Constraint(
        m.S,
        rule=lambda m, s: (
            problem.stages[s].fixed_memory_bytes
            + problem.stages[s].memory_scale * sum(mems[i] * in_stage(s, i) for i in m.L)
            <= problem.stages[s].memory_capacity_bytes
        ),
    )
    # Stage time: T_s = fixed_s + time_scale_s · Σ_i t_i · in_stage(s, i).
    m.time_def = pyo.Constraint(
        m.S,
        rule=lambda m, s: (
            m.stage_time[s]
            == problem.stages[s].fixed_time_s
            + problem.stages[s].time_scale * sum(times[i] * in_stage(s, i) for i in m.L)
        ),
    )
    if problem.objective == "bottleneck":
        m.bottleneck = pyo.Var(domain=pyo.NonNegativeReals)
        m.bottleneck_def = pyo.Constraint(m.S, rule=lambda m, s: m.stage_time[s] <= m.bottleneck)
        m.obj = pyo.Objective(expr=m.bottleneck, sense=pyo.minimize)
    else:
        sends = sum(s.send_time_s for s in problem.stages[:-1])
        m.obj = pyo.Objective(expr=sum(m.stage_time[s] for s in m.S) + sends, sense=pyo.minimize)
    return m


def solve_partition_milp(problem: LayerPartitionProblem, options: SolverOptions) -> SolveResult[LayerSplit]:
    from formulations.highs_util import solve_pyomo_highs

    m = build_partition_milp(problem)
    run = solve_pyomo_highs(m, options)
    if not run.has_incumbent:
        if run.termination == Termination.INFEASIBLE:
            return _infeasible(problem, run.wall_s, run.log)
        return SolveResult(
            run.termination, SolutionStatus.NO_SOLUTION, None, run.bound, None, run.wall_s, run.log
        )
    num_layers, num_stages = problem.num_layers, len(problem.stages)
    counts = [sum(round(m.in_first[s, i].value) for i in range(num_layers)) for s in range(num_stages)]
    bounds = [(0 if s == 0 else counts[s - 1], counts[s]) for s in range(num_stages)]
    split = evaluate_split(problem, bounds)
    obj = split_objective(problem, split)
    status = SolutionStatus.OPTIMAL if run.termination == Termination.OPTIMAL else SolutionStatus.FEASIBLE
    return SolveResult(
        run.termination, status, obj, run.bound, relative_gap(obj, run.bound), run.wall_s, run.log, split
    )


# ---- CP-SAT ------------------------------------------------------------------------------------------------

#: CP-SAT needs integers. Times are scaled so that the whole model's time on the slowest group maps to
#: CPSAT_TIME_TICKS ticks (rounded to the nearest tick, so each layer's time is off by at most half a tick,
#: i.e. a relative error ≤ L / (2·CPSAT_TIME_TICKS) on a stage). Memory is kept in whole bytes: layer memory
#: rounded up and capacity rounded down, so a CP-SAT split always fits the real numbers. The reported
#: objective is recomputed in seconds from the decoded split; the bound is converted back from ticks.
CPSAT_TIME_TICKS = 1_000_000


def build_partition_cpsat(problem: LayerPartitionProblem):
    """The CP-SAT model and its variables: stage boundaries `start[s]` and per-layer stage literals."""
    from ortools.sat.python import cp_model

    times, mems = problem.layer_times_s, problem.layer_memory_bytes
    num_layers, num_stages = len(times), len(problem.stages)
    slowest = max(s.fixed_time_s + s.time_scale * sum(times) for s in problem.stages) or 1e-30
    ticks_per_s = CPSAT_TIME_TICKS / slowest
    m = cp_model.CpModel()
    # in_first[s][i]: layer i sits in stages 0..s (the same staircase as the MILP).
    in_first = [[m.new_bool_var(f"in_first_{s}_{i}") for i in range(num_layers)] for s in range(num_stages)]
    for i in range(num_layers):
        m.add(in_first[num_stages - 1][i] == 1)
    for s in range(num_stages):
        for i in range(num_layers - 1):
            m.add_implication(in_first[s][i + 1], in_first[s][i])
        if s + 1 < num_stages:
            for i in range(num_layers):
                m.add_implication(in_first[s][i], in_first[s + 1][i])

    def in_stage(s, i):
        return in_first[s][i] - (in_first[s - 1][i] if s > 0 else 0)

    stage_ticks = []
    for s, slot in enumerate(problem.stages):
        # Each stage holds at least one layer.
        m.add(sum(in_stage(s, i) for i in range(num_layers)) >= 1)
        # Memory in bytes (rounded conservatively).
        mem_coeffs = [math.ceil(slot.memory_scale * mems[i]) for i in range(num_layers)]
        m.add(
            sum(c * in_stage(s, i) for i, c in enumerate(mem_coeffs))
            <= math.floor(slot.memory_capacity_bytes - slot.fixed_memory_bytes)
        )
        t = m.new_int_var(0, 2 * CPSAT_TIME_TICKS + num_layers, f"stage_ticks_{s}")
        m.add(
            t
            == round(slot.fixed_time_s * ticks_per_s)
            + sum(round(slot.time_scale * times[i] * ticks_per_s) * in_stage(s, i) for i in range(num_layers))
        )
        stage_ticks.append(t)
    if problem.objective == "bottleneck":
        bottleneck = m.new_int_var(0, 2 * CPSAT_TIME_TICKS + num_layers, "bottleneck_ticks")
        m.add_max_equality(bottleneck, stage_ticks)
        m.minimize(bottleneck)
    else:
        m.minimize(sum(stage_ticks))
    return m, in_first, ticks_per_s


def solve_partition_cpsat(problem: LayerPartitionProblem, options: SolverOptions) -> SolveResult[LayerSplit]:
    from formulations.cpsat_util import solve_cpsat

    if problem.num_layers < len(problem.stages):
        return _infeasible(problem, 0.0)
    m, in_first, ticks_per_s = build_partition_cpsat(problem)
    run = solve_cpsat(m, options)
    if not run.has_incumbent:
        if run.termination == Termination.INFEASIBLE:
            return _infeasible(problem, run.wall_s, run.log)
        return SolveResult(run.termination, SolutionStatus.NO_SOLUTION, None, None, None, run.wall_s, run.log)
    num_layers, num_stages = problem.num_layers, len(problem.stages)
    counts = [sum(run.solver.value(in_first[s][i]) for i in range(num_layers)) for s in range(num_stages)]
    bounds = [(0 if s == 0 else counts[s - 1], counts[s]) for s in range(num_stages)]
    split = evaluate_split(problem, bounds)
    obj = split_objective(problem, split)
    bound = run.bound / ticks_per_s
    if problem.objective == "sum":
        bound += sum(s.send_time_s for s in problem.stages[:-1])
    bound = min(bound, obj) if run.termination == Termination.OPTIMAL else bound
    status = SolutionStatus.OPTIMAL if run.termination == Termination.OPTIMAL else SolutionStatus.FEASIBLE
    return SolveResult(
        run.termination, status, obj, bound, relative_gap(obj, bound), run.wall_s, run.log, split
    )


def solve_layer_partition(
    problem: LayerPartitionProblem, *, backend: PartitionBackend = "dp", options: SolverOptions | None = None
) -> SolveResult[LayerSplit]:
    """Solve with the named backend ("dp" exact, "highs" MILP, "cpsat"); solver backends need `options`."""
    if backend == "dp":
        return partition_dp(problem)
    if options is None:
        raise ValueError(f"backend {backend!r} needs explicit SolverOptions")
    if backend == "highs":
        return solve_partition_milp(problem, options)
    if backend == "cpsat":
        return solve_partition_cpsat(problem, options)
    raise ValueError(f"unknown backend {backend!r}; expected 'dp', 'highs' or 'cpsat'")
