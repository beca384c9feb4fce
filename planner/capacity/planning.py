"""Planning on capacity (docs/design.md §5.7): `objective: max_rate_per_gpu`, and `goals.rate` with
`objective: min_gpus` or `min_cost` — the plan that sustains the most requests/s per GPU within the SLOs, or the
fewest GPUs / dollars that sustain `goals.rate` requests/s.

The master MILP (`formulations.master`) already has what these need: per-template capacities are its template
coefficients (one workload class, the scenario's mix), the max_throughput demand rows make its throughput the
plan's capacity, `ObjectiveBound("max_throughput", rate)` is the target row, and the objectives are the table's
(`formulations.objectives`). Per template the capacity of one replica is measured lazily with `apex capacity`:

```
upper[t]  ← the proven upper bound of one replica of t (planner.capacity.bracket); templates whose latency
            floors already miss an SLO are left out
loop:
  solve the master with cap[t] = measured[t] if measured, else upper[t]   (optimistic for the unmeasured)
  a template of the solution not measured yet → measure it (capacity of one replica; 1 seed, screening), again
  all measured → verify the plan with `apex capacity` (the scenario's seeds); it holds (sustains the target
            rate / the ratio the master claimed, within the tolerance) → done; else cut those templates'
            capacities by what the plan sustained over what the master assumed, and solve again
```

Because unmeasured templates enter with capacities no simulation can beat, a solution made of measured
templates is optimal for the measured coefficients (a plan's capacity taken as the sum over its replicas);
the verification then checks that sum on the plan itself. max_rate_per_gpu is a ratio, solved by Dinkelbach's
method (`solve_max_rate_per_gpu`), and among the plans at the best ratio the one with the most capacity is taken
(the deployment that fills the cluster at that ratio).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from formulations.master import (
    Budgets,
    CapacityCut,
    DomainPool,
    MasterProblem,
    MasterSolution,
    MasterTemplate,
    ObjectiveBound,
    WorkloadClass,
    solve_master_highspy,
    solve_max_rate_per_gpu,
)
from formulations.objectives import objective_spec
from formulations.result import SolverOptions
from formulations.templates import TemplateCoefficients
from planner.capacity.bracket import bracket
from planner.capacity.load import load_model, rate_load
from planner.capacity.result import CapacityResult
from planner.capacity.search import DEFAULT_REQUESTS, CapacityOptions, capacity_of, sustained_at
from planner.errors import NoPlanError
from planner.objective import Violation, objective_value
from planner.search.labels import short_label
from planner.search.pool import Candidate
from planner.search.pricing import template_structures
from planner.search.result import PlanSearchResult, SearchStats
from simulator.costmodel import build_replica_cost
from simulator.engine.cluster import ReplicaSpec
from simulator.errors import InputError
from simulator.plan import Plan
from simulator.scenario import Scenario

CLASS = "all"  # one workload class: capacity is measured on the scenario's whole mix
NEAR = 0.1  # plans this far short of the target on the summed capacity are verified too (`_near_misses`)
NEAR_TRIES = 4
# A template's coefficient: one seed, 5%, runs from 500 requests (lengthened while the window is short).
SCREEN = CapacityOptions(seeds=1, tolerance=0.05, requests=500)


@dataclass(frozen=True, slots=True)
class Measured:
    """A template's measured capacity (one replica); 0 with the reason when it sustains no rate."""

    rate_rps: float
    why: str = ""


def check_capacity_goals(scenario: Scenario) -> None:
    """goals.rate against the objective table (refused, optional or required) and an SLO to plan within."""
    goals = scenario.spec.goals
    spec = objective_spec(goals.objective)
    if goals.rate is not None and spec.rate_target == "refused":
        allowed = "min_gpus or min_cost"
        raise InputError(
            f"goals.rate (the req/s a plan must sustain) is a target for objective {allowed}, not "
            f"{goals.objective}; remove it or change the objective",
            file=scenario.file,
            field="goals.rate",
        )
    if goals.rate is None and spec.rate_target == "required":
        raise InputError(
            f"objective {goals.objective} needs goals.rate: the requests/s the plan must sustain within the SLOs",
            file=scenario.file,
            field="goals.rate",
        )
    if spec.planned_on_capacity(goals.rate):
        slo = goals.slo
        if all(getattr(slo, m) is None for m in ("ttft_s", "tpot_s", "e2e_s")):
            raise InputError(
                f"objective {goals.objective} plans on capacity within the SLOs, and the scenario states none: "
                "add goals.slo (e.g. ttft_s: {p99: 2.0}) or pass --slo",
                file=scenario.file,
                field="goals.slo",
            )
        load_model(scenario)  # a closed loop is refused here, naming the field


def plan_on_capacity(
    scenario: Scenario,
    *,
    seeds: int = 3,
    tolerance: float = 0.01,
    time_limit_s: float = 300.0,
    max_templates: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PlanSearchResult:
    """The plan the capacity objective asks for (module docstring), verified by `apex capacity`."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    goals = scenario.spec.goals
    objective = goals.objective
    solver = SolverOptions(time_limit_s=30.0, mip_rel_gap=1e-6, threads=1, seed=0)
    structures = _structures(scenario)
    if not structures:
        raise NoPlanError(f"no replica structure of {scenario.model.name} fits the cluster's GPUs")
    model = load_model(scenario)
    first = rate_load(scenario, model, scenario.spec.workload.seed, DEFAULT_REQUESTS)
    uppers: dict[str, float] = {}
    templates: dict[str, object] = {}
    prices = {tid: cost.usd_per_hour for tid, (_, cost) in structures.items()}
    left_out: dict[str, str] = {}
    for tid, (template, cost) in structures.items():
        br = bracket(scenario, [ReplicaSpec(cost)], first.input_tokens, first.output_tokens)
        if br.floor_misses:
            left_out[tid] = "; ".join(br.floor_misses)
            continue
        uppers[tid] = br.upper_rps
        templates[tid] = template
    if not templates:
        raise NoPlanError(
            "no replica structure meets the SLOs at any rate: " + "; ".join(sorted(set(left_out.values())))
        )
    measured: dict[str, Measured] = {}
    cuts: list[CapacityCut] = []
    verified: dict[str, tuple[bool, str]] = {}
    rejected: list[Candidate] = []
    rounds = 0
    stopped = "time limit"
    simulations = 0
    held: Plan | None = None
    limit = max_templates or max(2, len(scenario.cluster.gpus_by_type()))

    def verify(plan: Plan, needed: float) -> bool:
        nonlocal simulations
        options = CapacityOptions(seeds=seeds, tolerance=tolerance, time_limit_s=_left(deadline))
        try:
            ok, why, sims = sustained_at(scenario.with_plan(plan), needed, options)
        except NoPlanError as exc:
            ok, why, sims = False, str(exc), 0
        simulations += sims
        verified[short_label(plan)] = (ok, why)
        if not ok:
            error = f"does not sustain {needed:.4g} req/s on every seed: {why}"
            rejected.append(_rejected(scenario, plan, error))
        return ok

    while time.perf_counter() < deadline:
        rounds += 1
        problem = _master(scenario, templates, prices, uppers, measured, cuts, limit)
        solution, claimed = _solve(problem, objective, goals.rate, solver)
        if solution is None:
            most = solve_master_highspy(problem, solver)  # max_throughput: the most any count vector claims
            claim = most.solution.metrics["max_throughput"] if most.has_solution else 0.0
            if goals.rate is None:
                stopped = "no count vector fits the cluster and budgets"
            else:
                known = (
                    "with the capacities measured so far" if measured else "even on the proven upper bounds"
                )
                stopped = (
                    f"no plan of the cluster reaches {goals.rate:g} req/s: at most {claim:.4g} req/s {known}"
                )
            break
        unmeasured = [t for t in solution.counts if t not in measured]
        if unmeasured:
            for tid in unmeasured:
                if time.perf_counter() >= deadline:
                    break
                measured[tid], sims = _measure(scenario, templates[tid], _left(deadline))
                simulations += sims
                if progress is not None:
                    progress(len(measured), len(templates))
            continue
        plan = _plan_of(templates, solution.counts)
        if short_label(plan) in verified:  # cut and proposed again: nothing new to learn
            stopped = "the master repeats a verified plan"
            break
        needed = goals.rate if goals.rate is not None else claimed * plan.num_gpus * (1 - 2 * tolerance)
        if verify(plan, needed):
            held = plan
            stopped = "the plan the master chose sustains its target on every seed"
            if goals.rate is not None:
                better = _near_misses(
                    problem, solution, templates, measured, goals.rate, deadline, solver, verify
                )
                if better is not None:
                    held = better
                    stopped += "; a cheaper plan short of the target on the summed capacities does too"
            break
        cuts += _cuts(problem, solution, needed)
    if held is None:
        why = f"; the last plan verified, {rejected[-1].name}, {rejected[-1].error}" if rejected else ""
        raise NoPlanError(stopped + why)
    final = capacity_of(
        scenario.with_plan(held),
        CapacityOptions(seeds=seeds, tolerance=tolerance, time_limit_s=_left(deadline)),
    )
    simulations += final.simulations
    best = _candidate(scenario, held, final)
    candidates = [best, *rejected]
    ordered = sorted(candidates[1:], key=lambda c: c.rank_key(objective))
    stats = SearchStats(
        "highs (master MILP on measured capacities) + apex capacity",
        rounds,
        simulations,
        None,
        None,
        time.perf_counter() - t0,
        stopped,
        templates=len(structures),
        bound_kind="none",
        bound_note=objective_spec(objective).bound_note,
        space_note=(
            f"count vectors over {len(templates)} templates (of {len(structures)}; "
            f"{len(left_out)} miss an SLO at any rate) with at most {limit} of them; "
            f"{len(measured)} templates measured, {len(verified)} plans verified"
        ),
    )
    return PlanSearchResult(
        objective, best, [best] + [c for c in ordered if c is not best], {}, stats, scenario
    )


def _structures(scenario: Scenario) -> dict[str, tuple[object, object]]:
    """Replica templates of the plan space that fit the cluster and memory, with one replica's cost."""
    inventory = scenario.cluster.gpus_by_type()
    spec = scenario.spec
    out = {}
    for t in template_structures(scenario, partition_backend="dp"):
        if any(n > inventory.get(g, 0) for g, n in t.gpus_by_type.items()):
            continue
        cost = build_replica_cost(
            scenario.model,
            t.replica_group(1),
            scenario.gpus,
            scenario.cluster,
            spec.dtype,
            spec.engine,
            calibration=spec.calibration,
        )
        if cost.fits and cost.kv_capacity_tokens >= spec.engine.block_size:
            out[t.id] = (t, cost)
    return out


def _master(scenario, templates, prices, uppers, measured, cuts, max_templates) -> MasterProblem:
    """One class (the scenario's mix); capacity = measured or the proven upper bound; the scenario's rows."""
    domain: dict[str, int] = {}
    for g in scenario.cluster.node_groups:
        domain[g.gpu] = max(domain.get(g.gpu, 0), g.domain_gpus)
    columns = []
    for tid, t in templates.items():
        cap = measured[tid].rate_rps if tid in measured else uppers[tid]
        coeffs = TemplateCoefficients(capacity_rps={CLASS: cap} if cap > 0 else {}, usd_per_hour=prices[tid])
        columns.append(MasterTemplate(tid, t.gpus_by_type, coeffs, t.domain_need_by_type(domain)))
    pools = tuple(
        DomainPool(g.gpu, g.domain_gpus, g.num_gpus // g.domain_gpus, g.name)
        for g in scenario.cluster.node_groups
    )
    b = scenario.spec.goals.budget
    return MasterProblem(
        tuple(columns),
        (WorkloadClass(CLASS, 1.0),),
        pools,
        Budgets(b.usd_per_hour, None, b.num_gpus, None),
        objective="max_throughput",
        rows_of="max_throughput",
        capacity_cuts=tuple(cuts),
        max_templates=max_templates,
        min_replicas=1,
    )


def _solve(
    problem: MasterProblem, objective: str, rate: float | None, solver
) -> tuple[MasterSolution | None, float]:
    """The master's choice and what it claims: the ratio (max_rate_per_gpu) or the capacity (a rate target)."""
    if objective == "max_rate_per_gpu":
        res, q = solve_max_rate_per_gpu(problem, solver)
        return (res.solution if res.has_solution else None), q
    target = problem.with_(
        objective=objective,
        objective_bounds=(ObjectiveBound("max_throughput", float(rate)),),
    )
    res = solve_master_highspy(target, solver)
    if not res.has_solution:
        return None, 0.0
    return res.solution, res.solution.metrics["max_throughput"]


def _measure(scenario: Scenario, template, time_left: float) -> tuple[Measured, int]:
    """Capacity of one replica of `template` (screening options), 0 when it sustains no rate."""
    plan = Plan(replicas=[template.replica_group(1)])
    try:
        r = capacity_of(scenario.with_plan(plan), replace(SCREEN, time_limit_s=max(time_left, 1.0)))
    except NoPlanError as exc:
        return Measured(0.0, str(exc)), 0
    return Measured(r.rate_rps), r.simulations


def _near_misses(problem, solution, templates, measured, rate, deadline, solver, verify) -> Plan | None:
    """The best plan, better on the objective than `solution`, whose summed capacity is within NEAR of the
    target rate and that sustains it when verified (tried best first, NEAR_TRIES at most): replicas behind one
    router often sustain more together than their sum (pooling), so the sum is conservative."""
    objective = problem.objective
    if objective == "max_throughput":  # the capacity master's own objective: the caller's is in the metrics
        return None
    value = solution.metrics[objective]
    tried = [{t.id: solution.counts.get(t.id, 0) for t in problem.templates}]
    found = None
    for _ in range(NEAR_TRIES):
        if time.perf_counter() >= deadline:
            break
        bounds = (
            ObjectiveBound("max_throughput", rate / (1 + NEAR)),
            ObjectiveBound(objective, value - 1e-6 * max(1.0, abs(value))),
        )
        res = solve_master_highspy(problem.with_(objective_bounds=bounds, no_good=tuple(tried)), solver)
        if not res.has_solution or any(t not in measured for t in res.solution.counts):
            break
        tried.append({t.id: res.solution.counts.get(t.id, 0) for t in problem.templates})
        plan = _plan_of(templates, res.solution.counts)
        if verify(plan, rate):
            found, value = plan, res.solution.metrics[objective]
    return found


def _left(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 1.0)


def _plan_of(templates, counts: dict[str, int]) -> Plan:
    return Plan(replicas=[templates[t].replica_group(n) for t, n in sorted(counts.items()) if n > 0])


def _cuts(problem: MasterProblem, solution: MasterSolution, needed: float) -> list[CapacityCut]:
    """The plan did not sustain `needed`: scale its templates' capacities so that its sum is just below it."""
    by_id = {t.id: t for t in problem.templates}
    assumed = sum(n * problem.capacity(by_id[t], CLASS) for t, n in solution.counts.items())
    ratio = min(0.999 * needed / assumed, 0.999) if assumed > 0 else 0.0
    return [CapacityCut(t, CLASS, problem.capacity(by_id[t], CLASS) * ratio) for t in solution.counts]


def _rejected(scenario: Scenario, plan: Plan, error: str) -> Candidate:
    spec = objective_spec(scenario.spec.goals.objective)
    metrics = {"capacity": {"rate_rps": None, "num_gpus": plan.num_gpus, "requests_per_s_per_gpu": None}}
    return Candidate(plan, plan.label(), metrics, spec.worst, (), plan.num_gpus, error, "capacity")


def _candidate(scenario: Scenario, plan: Plan, result: CapacityResult) -> Candidate:
    """The chosen plan as a plan-search candidate: the simulation at its capacity, with the capacity block; its
    objective is read through the objective table's metric."""
    goals = scenario.spec.goals
    metrics = dict(result.at_capacity)
    metrics["capacity"] = result.to_json()["capacity"]
    value = objective_value(metrics, goals)
    violations = []
    b = goals.budget
    if b.num_gpus is not None and plan.num_gpus > b.num_gpus:
        violations.append(Violation("budget.num_gpus", float(plan.num_gpus), float(b.num_gpus), "GPUs"))
    usd = float(metrics["cost"]["usd_per_hour"])
    if b.usd_per_hour is not None and usd > b.usd_per_hour * (1 + 1e-9):
        violations.append(Violation("budget.usd_per_hour", usd, float(b.usd_per_hour), "$/h"))
    return Candidate(plan, plan.label(), metrics, value, tuple(violations), plan.num_gpus, None, "capacity")
