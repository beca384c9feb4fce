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
from planner.capacity.search import DEFAULT_REQUESTS, CapacityOptions, capacity_of
from planner.errors import NoPlanError
from planner.objective import Violation
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
SCREEN = CapacityOptions(seeds=1, tolerance=0.03, requests=2000)  # a template coefficient: 1 seed, 3%


@dataclass
class Measured:
    """A template's measured capacity (one replica), with the result that measured it."""

    rate_rps: float
    result: CapacityResult | None  # None: no rate sustained (capacity 0)
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
    verified: dict[str, CapacityResult] = {}
    candidates: list[Candidate] = []
    rounds = 0
    stopped = "time limit"
    simulations = 0
    best: Candidate | None = None
    limit = max_templates or max(2, len(scenario.cluster.gpus_by_type()))
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
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                measured[tid], sims = _measure(scenario, templates[tid], left)
                simulations += sims
                if progress is not None:
                    progress(len(measured), len(templates))
            continue
        plan = _plan_of(templates, solution.counts)
        key = short_label(plan)
        if key in verified:  # the master returned a plan already verified and cut: nothing new to learn
            stopped = "the master repeats a verified plan"
            break
        options = CapacityOptions(
            seeds=seeds, tolerance=tolerance, time_limit_s=max(deadline - time.perf_counter(), 1.0)
        )
        try:
            result = capacity_of(scenario.with_plan(plan), options)
        except NoPlanError as exc:
            result = None
            why = str(exc)
        simulations += result.simulations if result else 0
        verified[key] = result
        cand = _candidate(scenario, plan, result, why if result is None else "")
        candidates.append(cand)
        if _holds(objective, goals.rate, result, claimed, plan.num_gpus, tolerance):
            best = cand
            stopped = "the plan the master chose holds in `apex capacity`"
            if goals.rate is not None:
                better, sims = _near_misses(
                    scenario,
                    problem,
                    solution,
                    templates,
                    measured,
                    goals.rate,
                    seeds,
                    tolerance,
                    deadline,
                    solver,
                )
                simulations += sims
                candidates += better
                held = [c for c in better if c.feasible]
                if held:
                    best = held[-1]
                    stopped += f"; {len(held)} cheaper plan(s) short of the target on the sum also hold"
            break
        cuts += _cuts(problem, solution, result)
    if best is None:
        feasible = [c for c in candidates if c.feasible]
        if not feasible:
            closest = candidates[-1] if candidates else None
            if closest is None:
                raise NoPlanError(stopped)
            detail = "; ".join(v.describe() for v in closest.violations)
            raise NoPlanError(f"{stopped}; the closest plan verified, {closest.name}, {detail}")
        best = (
            max(feasible, key=lambda c: c.objective)
            if objective_spec(objective).sense == "max"
            else min(feasible, key=lambda c: c.objective)
        )
    ordered = sorted(candidates, key=lambda c: c.rank_key(objective))
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
    for t in template_structures(scenario):
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
        return Measured(0.0, None, str(exc)), 0
    return Measured(r.rate_rps, r), r.simulations


def _near_misses(
    scenario, problem, solution, templates, measured, rate, seeds, tolerance, deadline, solver
) -> tuple[list[Candidate], int]:
    """Plans better on the objective than `solution` whose summed capacity is within NEAR of the target rate,
    verified one by one (best first) while they hold: replicas behind one router often sustain more together
    than their sum (pooling), so the sum is conservative. Returns the verified candidates (in order) and the
    simulations spent."""
    out: list[Candidate] = []
    sims = 0
    objective = problem.objective if problem.objective != "max_throughput" else scenario.spec.goals.objective
    value = solution.metrics[objective]
    tried: list[dict[str, int]] = [{t.id: solution.counts.get(t.id, 0) for t in problem.templates}]
    while time.perf_counter() < deadline:
        bounds = (
            ObjectiveBound("max_throughput", rate / (1 + NEAR)),
            ObjectiveBound(objective, value - 1e-6 * max(1.0, abs(value))),
        )
        res = solve_master_highspy(
            problem.with_(objective=objective, objective_bounds=bounds, no_good=tuple(tried)), solver
        )
        if not res.has_solution or any(t not in measured for t in res.solution.counts):
            break
        tried.append({t.id: res.solution.counts.get(t.id, 0) for t in problem.templates})
        plan = _plan_of(templates, res.solution.counts)
        options = CapacityOptions(
            seeds=seeds, tolerance=tolerance, time_limit_s=max(deadline - time.perf_counter(), 1.0)
        )
        try:
            result = capacity_of(scenario.with_plan(plan), options)
        except NoPlanError as exc:
            out.append(_candidate(scenario, plan, None, str(exc)))
            break
        sims += result.simulations
        cand = _candidate(scenario, plan, result, "")
        out.append(cand)
        if not cand.feasible:
            break
        value = res.solution.metrics[objective]
    return out, sims


def _plan_of(templates, counts: dict[str, int]) -> Plan:
    return Plan(replicas=[templates[t].replica_group(n) for t, n in sorted(counts.items()) if n > 0])


def _holds(objective, rate, result: CapacityResult | None, claimed: float, num_gpus: int, tol: float) -> bool:
    """The verified capacity meets the target rate, or the ratio the master claimed, within the tolerance."""
    if result is None or not result.confirmed:
        return False
    if objective == "max_rate_per_gpu":
        return result.rate_rps / num_gpus >= claimed * (1 - 2 * tol)
    return result.rate_rps >= rate


def _cuts(
    problem: MasterProblem, solution: MasterSolution, result: CapacityResult | None
) -> list[CapacityCut]:
    """Scale the capacities of the plan's templates by what the plan sustained over what the master assumed
    (zero when it sustained nothing)."""
    by_id = {t.id: t for t in problem.templates}
    assumed = sum(n * problem.capacity(by_id[t], CLASS) for t, n in solution.counts.items())
    ratio = (result.rate_rps / assumed) if result is not None and assumed > 0 else 0.0
    ratio = min(ratio, 0.999)  # strictly lower, so the same count vector cannot claim the same again
    return [CapacityCut(t, CLASS, problem.capacity(by_id[t], CLASS) * ratio) for t in solution.counts]


def _candidate(scenario: Scenario, plan: Plan, result: CapacityResult | None, why: str) -> Candidate:
    """A verified plan as a plan-search candidate: the simulation at its capacity with the capacity block."""
    goals = scenario.spec.goals
    spec = objective_spec(goals.objective)
    if result is None:
        metrics = {"capacity": {"rate_rps": 0.0, "num_gpus": plan.num_gpus, "requests_per_s_per_gpu": 0.0}}
        violations = (Violation("capacity.rate_rps", 0.0, float(goals.rate or 0.0), "req/s"),)
        return Candidate(plan, plan.label(), metrics, spec.worst, violations, plan.num_gpus, why, "capacity")
    metrics = dict(result.at_capacity)
    metrics["capacity"] = result.to_json()["capacity"]
    value = metrics["capacity"]["requests_per_s_per_gpu"] if goals.objective == "max_rate_per_gpu" else None
    if goals.objective == "min_gpus":
        value = float(plan.num_gpus)
    elif goals.objective == "min_cost":
        value = float(metrics["cost"]["usd_per_hour"])
    violations = []
    if goals.rate is not None and result.rate_rps < goals.rate:
        violations.append(Violation("capacity.rate_rps", result.rate_rps, float(goals.rate), "req/s"))
    if not result.confirmed:
        violations.append(Violation("capacity.confirmed", 0.0, 1.0, ""))
    b = goals.budget
    if b.num_gpus is not None and plan.num_gpus > b.num_gpus:
        violations.append(Violation("budget.num_gpus", float(plan.num_gpus), float(b.num_gpus), "GPUs"))
    usd = float(metrics["cost"]["usd_per_hour"])
    if b.usd_per_hour is not None and usd > b.usd_per_hour * (1 + 1e-9):
        violations.append(Violation("budget.usd_per_hour", usd, float(b.usd_per_hour), "$/h"))
    return Candidate(plan, plan.label(), metrics, value, tuple(violations), plan.num_gpus, None, "capacity")
