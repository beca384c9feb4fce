"""The solve–simulate loop behind `apex plan` (docs/design.md §5.4).

```
profile   ← the workload's requests, classes and deadlines               (workload.py)
templates ← replica structures priced by the cost model                  (pricing.py)
bounds    ← per template, rates the simulator cannot beat                (bounds.py, coarse cells first)
space     ← the bound master and the predictive master over the plans    (space.py)
pool      ← the heuristic baselines, simulated                           (every simulation is counted)
loop:
  remaining ← the bound master's optimum over the count vectors not simulated yet; refine the bounds of
              its templates (fine cells) until they are all refined
  bound     ← the better of the best simulated plan and `remaining` (min objectives: the lower one)
  stop when the best simulated plan is within ε of the bound, when nothing remains, after `patience` rounds
       without progress (a better plan, or the bound moving by more than ε; twice the rounds where no bound is
       proven; never for min_cost, whose bound closes by simulating what it allows), or at the time limit
  candidates ← the next best count vectors of the bound master (objectives with a proven bound, restricted
               to those that could beat the best plan by more than ε) and of the predictive master (min_energy,
               min_latency); simulate them; every simulated vector is excluded from both masters
```

Every candidate — loop or baseline — is judged by the same objective and enters one pool; the reported gap is
between the pool's best plan and the bound over the whole space. Where the objective has no provable bound
(min_latency) no bound or gap is reported.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from formulations.master import ObjectiveBound, explain_master_infeasibility, solve_master_highspy
from formulations.objectives import objective_spec
from formulations.result import SolverOptions
from planner.errors import NoPlanError
from planner.search.bounding import bound_space, limits_for, template_limits
from planner.search.bounds import FINE, IterationLimits, with_precision
from planner.search.clock_choice import attach_clock_choice
from planner.search.heuristics import heuristic_plans
from planner.search.pool import Candidate, Simulations, best_first
from planner.search.pricing import (
    Census,
    PricedTemplate,
    SpaceOptions,
    is_core,
    price_space,
)
from planner.search.result import PlanSearchResult, SearchStats, no_plan_error
from planner.search.settings import apply_settings, scenario_settings
from planner.search.space import PlanSpace
from planner.search.workload import WorkloadProfile
from simulator.costmodel.memory import stage_weight_bytes
from simulator.plan import Stage
from simulator.scenario import Scenario, engine_setting

log = logging.getLogger("apex.plan")

VALUE_OF_COUNTS = ("min_cost",)  # objectives whose simulated value is a function of the count vector alone


@dataclass(frozen=True)
class SearchOptions:
    """Knobs of the loop. `epsilon`: stop when the best plan is within this relative gap of the bound;
    `patience`: stop after this many rounds without a better plan; `max_templates`: plans mix at most this
    many templates (default: two, or the number of GPU types when larger); `time_limit_s` covers the whole
    command (templates, bounds, rounds, baselines, placement)."""

    top_k: int = 3
    time_limit_s: float = 300.0
    epsilon: float = 0.02
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    max_rounds: int = 50
    solver_time_limit_s: float = 30.0
    patience: int = 4
    max_templates: int | None = None
    partition_backend: str = "dp"  # exact; "cpsat" and "highs" solve the same layer-partition model
    placement_reserve_s: float = 10.0  # of the time limit, kept for placing the best plan
    exhaustive_limit: int = 3000  # --exhaustive simulates the whole space when it has at most this many plans
    space: SpaceOptions = SpaceOptions()  # the dimensions of the plan space (pricing.py)
    started_at: float | None = None  # time.perf_counter() when the command started (the limit counts from it)


@dataclass
class Prepared:
    """Everything computed before the first simulation (shared by the loop and --exhaustive)."""

    profile: WorkloadProfile
    priced: list[PricedTemplate]
    space: PlanSpace | None
    phases_s: dict[str, float]
    census: Census | None = None
    baseline_templates: list = field(default_factory=list)  # what the heuristic baselines choose from


def deadline_of(t0: float, options: SearchOptions) -> float:
    """When the search must stop so that placement still fits in the time limit."""
    reserve = min(options.placement_reserve_s, 0.25 * options.time_limit_s)
    return t0 + max(options.time_limit_s - reserve, 0.0)


def prepare(scenario: Scenario, options: SearchOptions, deadline: float) -> Prepared:
    """Profile, templates, bounds and the plan space (NoPlanError when no template fits or a budget is below
    what any plan needs)."""
    phases: dict[str, float] = {}
    t = time.perf_counter()
    profile = WorkloadProfile.of(scenario)
    _check_idle_floor(scenario)
    priced_space = price_space(
        scenario, profile, options.space, deadline=deadline, partition_backend=options.partition_backend
    )
    priced = priced_space.templates
    phases["templates"] = time.perf_counter() - t
    if not priced:
        raise NoPlanError(_why_no_template(scenario))
    t = time.perf_counter()
    need_energy = scenario.spec.goals.objective == "min_energy" or scenario.spec.goals.budget.joules_per_token
    variants = feature_profiles(scenario, priced, profile)
    bounds: dict = {}
    for feature, members in _by_feature(priced).items():
        found, _ = bound_space(scenario, members, variants[feature], deadline, energy=bool(need_energy))
        bounds.update(found)
    phases["bounds"] = time.perf_counter() - t
    max_templates = options.max_templates or max(2, len(scenario.cluster.gpus_by_type()))
    space = PlanSpace(
        scenario,
        weakest_profile(scenario, profile, variants),
        {p.template.id: p for p in priced},
        bounds,
        max_templates,
        profiles={p.template.id: variants[_feature(p)] for p in priced},
    )
    return Prepared(profile, priced, space, phases, priced_space.census, priced_space.baseline_templates)


def _feature(p: PricedTemplate) -> tuple:
    s = p.template.settings
    return (s.prefix_caching, s.speculative)


def _by_feature(priced: list[PricedTemplate]) -> dict[tuple, list[PricedTemplate]]:
    out: dict[tuple, list[PricedTemplate]] = {}
    for p in priced:
        out.setdefault(_feature(p), []).append(p)
    return out


def feature_profiles(
    scenario: Scenario, priced: list[PricedTemplate], own: WorkloadProfile
) -> dict[tuple, WorkloadProfile]:
    """Per feature variant (prefix caching, speculative; None = as the scenario says) the workload profile its
    templates are bounded with: the prompt tokens a cache could serve only where that variant caches, the
    decode-step bounds dropped only where it speculates (workload.py)."""
    out = {(None, None): own}
    for feature in {_feature(p) for p in priced}:
        if feature not in out:
            settings = replace(scenario_settings(scenario), prefix_caching=feature[0], speculative=feature[1])
            out[feature] = WorkloadProfile.of(apply_settings(scenario, settings))
    return out


def weakest_profile(scenario: Scenario, own: WorkloadProfile, variants: dict[tuple, WorkloadProfile]):
    """The profile the plan space's template-independent parts use (the deadline window, request sizes, KV
    rows): the variant that caches and speculates wherever the scenario lets the planner choose, whose
    prefill and decode work are the least, so what is built on it holds for every variant."""
    own_settings = scenario_settings(scenario)
    key = (
        True if own_settings.prefix_caching is not None else None,
        True if own_settings.speculative is not None else None,
    )
    return variants.get(key, own)


def iteration_limits(scenario: Scenario, priced: PricedTemplate, profile: WorkloadProfile) -> IterationLimits:
    return template_limits(scenario, priced, profile)


def limits_of(scenario: Scenario, kv_tokens: int, shortest_prompt: int) -> IterationLimits:
    """What one iteration of a replica with `kv_tokens` of KV cache can hold under the scenario's engine, for a
    workload whose shortest prompt is `shortest_prompt` (also used by planner.capacity's bracket)."""
    return limits_for(scenario_settings(scenario), scenario.spec.engine, kv_tokens, shortest_prompt)


def run_search(
    scenario: Scenario,
    options: SearchOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    simulate_fn: Callable | None = None,
    with_baselines: bool = True,
) -> PlanSearchResult:
    """Search the plan space of `scenario` for its goals (see the module docstring)."""
    options = options or SearchOptions()
    t0 = options.started_at or time.perf_counter()
    deadline = deadline_of(t0, options)
    prep = prepare(scenario, options, deadline)
    space = prep.space
    objective = scenario.spec.goals.objective
    spec = objective_spec(objective)
    solver = SolverOptions(time_limit_s=options.solver_time_limit_s, mip_rel_gap=1e-6, threads=1, seed=0)
    pool: dict[str, Candidate] = {}
    baselines: dict[str, Candidate] = {}
    rounds, stale, stopped = 0, 0, "time limit"
    # without a bound, patience is the only stopping rule, so it gets twice the rounds
    patience = options.patience * (2 if spec.bound == "none" else 1)
    remaining: float | None = None
    settled_bound: float | None = None  # the bound when patience last restarted
    remaining_known = False
    solver_says = ""
    with Simulations(
        scenario,
        workers=options.workers,
        simulate_fn=simulate_fn,
        progress=progress,
        makespan_floor=space.makespan_floor,
    ) as sims:

        def simulate(plans, source):
            out = sims.run(plans, deadline=deadline, source=source)
            for p, c in zip(plans, out, strict=True):
                if c is None:
                    continue
                pool.setdefault(sims.key(p), c)
                counts = space.counts_of(p)
                if counts:
                    space.exclude(counts)
            return out

        if with_baselines:
            plans = heuristic_plans(scenario, prep.baseline_templates)
            results = simulate(list(plans.values()), "baseline")
            baselines = {n: c for n, c in zip(plans, results, strict=True) if c is not None}
        t_loop = time.perf_counter()
        while rounds < options.max_rounds:
            if time.perf_counter() >= deadline:
                stopped = "time limit"
                break
            rounds += 1
            incumbent = _best(pool.values(), objective)
            remaining, first = _remaining(space, solver, deadline)
            remaining_known = True
            if first is None and remaining is None and rounds == 1 and incumbent is None:
                solver_says = _explain(space, solver)
            bound, gap = _bound_and_gap(incumbent, remaining, spec)
            log.info(
                "round %d: %d simulated, incumbent %s, remaining bound %s, gap %s",
                rounds,
                sims.count,
                _fmt(incumbent.objective if incumbent else None),
                _fmt(remaining),
                "-" if gap is None else f"{100 * gap:.2f}%",
            )
            if first is None and remaining is not None:  # the solve ran out of time: nothing is proven
                stopped = "time limit"
                break
            if first is None:
                stopped = (
                    "every plan the bound allows was simulated" if pool else "no plan can meet the goals"
                )
                break
            if gap is not None and gap <= options.epsilon:
                stopped = f"within {100 * options.epsilon:g}% of the bound"
                break
            if settled_bound is None:
                settled_bound = bound
            elif _bound_moved(bound, settled_bound, incumbent, options.epsilon):
                # the bound closes in on the incumbent: that is progress, patience restarts
                stale, settled_bound = 0, bound
            # where a plan's value is known before it is simulated (min_cost: its $/h), every plan the bound
            # master still allows would, if it met the goals, be the better plan its bound says: simulating
            # them closes the bound, so patience never stops that search short of it
            if stale >= patience and objective not in VALUE_OF_COUNTS:
                why = "no bound is proven" if spec.bound == "none" else "the bound is not closed"
                stopped = f"{patience} rounds without a better plan ({why})"
                break
            plans = _proposals(space, within(solver, deadline), options, incumbent, spec, deadline)
            if rounds == 1:  # also the predicted best of the core space (see core_templates)
                core = _core_proposal(
                    space, prep.priced, within(solver, deadline), incumbent, spec, options.epsilon
                )
                plans = core + plans
            plans = list({sims.key(p): p for p in plans if sims.key(p) not in pool}.values())
            if not plans:
                stopped = "no new candidate"
                break
            before = incumbent.objective if incumbent else None
            results = simulate(plans, "search")
            for p, c in zip(plans, results, strict=True):
                if c is not None:
                    _learn(space, p, c)
            after = _best(pool.values(), objective)
            improved = after is not None and (before is None or spec.better(after.objective, before))
            stale = 0 if improved else stale + 1
            if improved:
                settled_bound = None
            if sims.timed_out:
                stopped = "time limit"
                break
        else:
            stopped = "round limit"
        prep.phases_s["loop"] = time.perf_counter() - t_loop
    incumbent = _best(pool.values(), objective)
    if not remaining_known or stopped == "time limit":
        remaining, _ = _remaining(space, solver, deadline, refine=False)
    bound, gap = _bound_and_gap(incumbent, remaining, spec)
    candidates = best_first(pool.values(), objective)
    if not candidates:
        raise no_plan_error(scenario, None, "no plan could be simulated before the time limit", solver_says)
    best = candidates[0]
    if not best.feasible:
        raise no_plan_error(scenario, best, solver_says=solver_says)
    search = SearchStats(
        "highs (master MILP) + simulator",
        rounds,
        sims.count,
        bound,
        gap,
        time.perf_counter() - t0,
        stopped,
        templates=len(prep.priced),
        bound_kind=spec.bound,
        bound_note=spec.bound_note,
        space_plans=None,
        space_note=space_note(space),
        phases_s=prep.phases_s,
        census=prep.census.to_json() if prep.census is not None else {},
    )
    result = PlanSearchResult(objective, best, candidates, baselines, search, scenario)
    return attach_clock_choice(
        result, pool, simulate_fn=simulate_fn, makespan_floor=space.makespan_floor, deadline=deadline
    )


def space_note(space: PlanSpace) -> str:
    return (
        f"count vectors over {len(space.priced)} templates with at most {space.max_templates} of them, "
        "within the GPU inventory, NVLink domains and $/h / GPU budgets"
    )


# ---- the bound -------------------------------------------------------------------------------------------


def _best(cands, objective: str) -> Candidate | None:
    feasible = [c for c in cands if c.feasible]
    return best_first(feasible, objective)[0] if feasible else None


def _bound_and_gap(
    incumbent: Candidate | None, remaining: float | None, spec
) -> tuple[float | None, float | None]:
    """The bound over the whole space: the better of the incumbent (exact) and the unsimulated plans'."""
    if spec.bound == "none" or (remaining is not None and not math.isfinite(remaining)):
        return None, None  # no bound, or none proven over the unsimulated plans (a solve out of time)
    inc = incumbent.objective if incumbent is not None else None
    if remaining is None:
        bound = inc
    elif inc is None:
        bound = remaining
    else:
        bound = max(inc, remaining) if spec.sense == "max" else min(inc, remaining)
    if inc is None or bound is None:
        return bound, None
    shortfall = bound - inc if spec.sense == "max" else inc - bound
    return bound, max(shortfall, 0.0) / max(abs(inc), 1e-12)


def _bound_moved(bound: float | None, settled: float | None, incumbent, epsilon: float) -> bool:
    """Whether the bound moved by more than ε of the incumbent since patience last restarted."""
    if bound is None or settled is None or incumbent is None:
        return False
    return abs(bound - settled) > epsilon * abs(incumbent.objective)


def within(solver: SolverOptions, deadline: float | None) -> SolverOptions:
    """The solver options with the time limit cut to what is left before `deadline` (at least 0.5 s, so a
    solve at the limit still returns its incumbent and bound)."""
    if deadline is None:
        return solver
    left = max(deadline - time.perf_counter(), 0.5)
    return replace(solver, time_limit_s=min(solver.time_limit_s, left))


def _remaining(space: PlanSpace, solver: SolverOptions, deadline: float | None, *, refine: bool = True):
    """The bound master's optimum over the unsimulated count vectors, in simulation units, and its solution
    (None, None when no unsimulated vector is feasible). With `refine`, the templates of the optimum get fine
    bounds until the optimum uses refined templates only (or the deadline)."""
    while True:
        res = solve_master_highspy(space.bound, within(solver, deadline))
        if not res.has_solution:
            return space.remaining_bound(res), None  # None only where it proved no vector is left
        coarse = [t for t in res.solution.counts if space.bounds[t].precision is not FINE]
        if not refine or not coarse or (deadline is not None and time.perf_counter() >= deadline):
            return space.remaining_bound(res), res.solution
        for t in coarse:
            refine_template(space, t)


def refine_template(space: PlanSpace, tid: str) -> None:
    """Recompute one template's bounds on fine cells and rebuild the bound master's coefficients."""
    prof = space.profile_of(tid)
    need_energy = space.bounds[tid].energy is not None
    with_precision(space.bounds[tid], prof.mixes(), prof.deadlines.tpot_s, FINE, energy=need_energy)
    space.refresh(tid)


def core_templates(scenario: Scenario, priced: list[PricedTemplate]) -> set[str]:
    """The templates of the core space (`pricing.is_core`)."""
    own = scenario_settings(scenario)
    return {p.template.id for p in priced if is_core(p, own)}


def _core_proposal(space: PlanSpace, priced: list[PricedTemplate], solver, incumbent, spec, epsilon) -> list:
    """The predictive master's best plan over the core space: in the first round, so that the larger space's
    extra dimensions (whose predictions may be optimistic) never keep the search from the plan a search of the
    core space would simulate first. It is one more candidate, not a bound."""
    ids = core_templates(space.scenario, priced)
    if not ids or len(ids) == len(priced):
        return []
    res = solve_master_highspy(_improving(space.predict_within(ids), space, incumbent, spec, epsilon), solver)
    return [space.plan_of(res.solution.counts)] if res.has_solution else []


def _proposals(space: PlanSpace, solver, options: SearchOptions, incumbent, spec, deadline) -> list:
    """Up to top_k plans to simulate next: the predictive master's best (the plans most likely to be good,
    so a good incumbent appears early) and the bound master's best among those that could beat the incumbent
    by more than ε (the plans that must be simulated to close the gap; their templates get fine bounds first,
    so a plan only a coarse bound allows is not simulated). min_energy, whose bound is weak, takes half of
    each; min_latency, which has none, takes only predictions."""
    k = options.top_k
    if spec.bound == "none":
        from_predict = k
    elif space.objective == "min_energy":
        from_predict = max(1, k - k // 2)
    else:
        from_predict = 1 if k > 1 else 0
    plans, seen = [], set()

    def add(counts) -> bool:
        key = tuple(sorted(counts.items()))
        if key in seen:
            return False
        seen.add(key)
        plans.append(space.plan_of(counts))
        return True

    problem = _improving(space.predict, space, incumbent, spec, options.epsilon)
    while len(plans) < from_predict:
        res = solve_master_highspy(problem, solver)
        if not res.has_solution:
            break
        add(res.solution.counts)
        problem = exclude(problem, space, res.solution.counts)
    if spec.bound == "none":
        return plans
    for counts in bound_candidates(space, solver, incumbent, spec, options.epsilon, k, deadline):
        if len(plans) >= k:
            break
        add(counts)  # in bound order, skipping the predicted plans (as many as k picks cover them)
    return plans


def _improving(problem, space: PlanSpace, incumbent, spec, epsilon: float):
    """`problem` limited to plans better than the incumbent by more than ε, where a plan's value is known from
    its counts (VALUE_OF_COUNTS: min_cost's $/h): a plan that costs no less cannot improve on the incumbent
    whatever its simulation says, so simulating it is wasted. Unchanged for the other objectives, whose
    predictions are estimates."""
    if incumbent is None or space.objective not in VALUE_OF_COUNTS:
        return problem
    limit = space.from_sim_units(beyond(incumbent.objective, epsilon, spec))
    return problem.with_(
        objective_bounds=problem.objective_bounds + (ObjectiveBound(problem.objective, limit),)
    )


def bound_candidates(
    space: PlanSpace, solver, incumbent, spec, epsilon: float, k: int, deadline: float | None
) -> list[dict[str, int]]:
    """The bound master's best `k` unsimulated count vectors among those whose proven bound beats the
    incumbent by more than ε (relative), best bound first; their templates get fine bounds first, so a vector
    only a coarse bound allows is not returned. Empty when no unsimulated vector could beat the incumbent by
    that much: then the incumbent is within ε of every plan not simulated."""
    extra = ()
    if incumbent is not None:
        limit = space.from_sim_units(beyond(incumbent.objective, epsilon, spec))
        extra = (ObjectiveBound(space.bound.objective, limit),)
    out: list[dict[str, int]] = []
    while len(out) < k and (deadline is None or time.perf_counter() < deadline):
        problem = space.bound.with_(objective_bounds=space.bound.objective_bounds + extra)
        for counts in out:
            problem = exclude(problem, space, counts)
        res = solve_master_highspy(problem, solver)
        if not res.has_solution:
            break
        counts = res.solution.counts
        coarse = [t for t in counts if space.bounds[t].precision is not FINE]
        if coarse:
            for t in coarse:
                refine_template(space, t)
            continue  # re-solve with the finer bounds
        out.append(counts)
    return out


def exclude(problem, space: PlanSpace, counts: dict[str, int]):
    """The master problem without this count vector (a no-good cut over every template of the space)."""
    return problem.with_(no_good=problem.no_good + ({t: counts.get(t, 0) for t in space.priced},))


def beyond(value: float, epsilon: float, spec) -> float:
    """The value a plan must beat to improve on `value` by more than ε (relative)."""
    return value * (1 + epsilon) if spec.sense == "max" else value / (1 + epsilon)


def _learn(space: PlanSpace, plan, cand: Candidate) -> None:
    counts = space.counts_of(plan)
    if not counts:
        return
    res = space.predicted_solution(counts)
    slo_missed = any(not v.goal.startswith("budget.") for v in cand.violations)
    space.learn(counts, space.predicted_value(res), cand.objective, slo_missed, res.rates)


def _explain(space: PlanSpace, solver) -> str:
    """Why the bound master has no solution at all, in words (its elastic re-solve), or "" if it cannot say."""
    try:
        rows = explain_master_infeasibility(space.bound, solver)
    except Exception as exc:  # the explanation is a courtesy; never let it hide the real answer
        log.info("could not explain the infeasible master: %s", exc)
        return ""
    return "the bound master: " + "; ".join(r.message for r in rows[:3])


def _check_idle_floor(scenario: Scenario) -> None:
    """A watts budget below the idle power of the whole cluster cannot be met by any plan: the simulator
    charges idle power to every GPU of the cluster, used or not."""
    b = scenario.spec.goals.budget
    if b.watts is None:
        return
    floor = sum(scenario.gpus[g].idle_w * n for g, n in scenario.cluster.gpus_by_type().items())
    if b.watts < floor:
        counts = ", ".join(
            f"{n} × {g} at {scenario.gpus[g].idle_w:g} W" for g, n in scenario.cluster.gpus_by_type().items()
        )
        raise NoPlanError(
            f"budget watts={b.watts:g} W is below the cluster's idle floor of {floor:,.0f} W ({counts}): every "
            "GPU of the cluster draws idle power whether a plan uses it or not"
        )


def _why_no_template(scenario: Scenario) -> str:
    """Why no replica structure of the model fits the cluster, with the numbers."""
    model = scenario.model
    spec = scenario.spec
    frac = engine_setting(spec.engine, "gpu_memory_fraction")
    parts = []
    for g in scenario.cluster.node_groups:
        gpu = scenario.gpus[g.gpu]
        size = g.domain_gpus
        whole = Stage(layers=(0, model.num_layers), gpu=g.gpu, tp=size)
        need = stage_weight_bytes(model, whole, spec.dtype, first=True, last=True) / 2**30
        have = gpu.memory_bytes * frac * 0.8 / 2**30
        parts.append(
            f"{g.gpu}: the whole model on one NVLink domain of {size} GPUs needs {need:,.1f} GiB of weights per "
            f"GPU ({spec.dtype.weights}), at most {have:,.1f} GiB per GPU is usable for weights, so a replica "
            f"needs at least {math.ceil(need / have)} pipeline stages of {size} GPUs"
        )
    return (
        f"no replica structure of {model.name} fits the cluster's GPUs with the engine's memory limits "
        f"(pipelines of up to the fewest stages that fit, stages inside one NVLink domain): "
        + "; ".join(parts)
    )


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4g}"
