"""Baselines the loop is measured against, all through the same simulation path and candidate pool.

* `heuristic_plans(scenario, templates)` — the rules of thumb operators use (`planner.search.heuristics`).
* `exhaustive(scenario)` — simulate every plan of the space the loop searches (`planner.search.space`: count
  vectors over the same templates, with at most as many templates per plan, within the same inventory,
  NVLink-domain and budget rows), plus the heuristic plans, in one pool. When the space holds more plans than
  `SearchOptions.exhaustive_limit`, or the time limit stops it, it says so: the plans it did not simulate keep
  their proven bound (the bound master over them), so its reported bound and gap stay true.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from formulations.master import (
    SpaceTooLarge,
    count_vector_fits,
    enumerate_count_vectors,
    solve_master_highspy,
)
from formulations.objectives import objective_spec
from formulations.result import SolverOptions
from planner.search import (
    PlanSearchResult,
    SearchOptions,
    SearchStats,
    Simulations,
    best_first,
    no_plan_error,
    prepare,
)
from planner.search.clock_choice import attach_clock_choice
from planner.search.heuristics import HEURISTICS, heuristic_plans, homogeneous_plans
from planner.search.loop import deadline_of, space_note
from simulator.scenario import Scenario

__all__ = ["HEURISTICS", "exhaustive", "heuristic_plans", "homogeneous_plans"]


def exhaustive(
    scenario: Scenario,
    options: SearchOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    simulate_fn: Callable | None = None,
) -> PlanSearchResult:
    """Simulate every plan of the search space; the best one wins (NoPlanError when none meets the goals)."""
    options = options or SearchOptions()
    t0 = options.started_at or time.perf_counter()
    deadline = deadline_of(t0, options)
    prep = prepare(scenario, options, deadline)
    space = prep.space
    objective = scenario.spec.goals.objective
    spec = objective_spec(objective)
    try:
        vectors = enumerate_count_vectors(space.bound, options.exhaustive_limit)
        note = f"the whole space: {len(vectors)} plans ({space_note(space)})"
        whole = True
    except SpaceTooLarge:
        vectors = [
            {t.id: n}
            for t in space.bound.templates
            for n in range(1, space.bound.max_count(t) + 1)
            if count_vector_fits(space.bound, {t.id: n})
        ]
        note = (
            f"a subset: the {len(vectors)} single-template plans of a space of more than "
            f"{options.exhaustive_limit} plans ({space_note(space)}); the rest keep their proven bound"
        )
        whole = False
    plans = [space.plan_of(v) for v in vectors]
    heuristics = heuristic_plans(scenario, prep.baseline_templates)
    with Simulations(
        scenario,
        workers=options.workers,
        simulate_fn=simulate_fn,
        progress=progress,
        makespan_floor=space.makespan_floor,
    ) as sims:
        sims.expect(len(plans) + len(heuristics))
        base = sims.run(list(heuristics.values()), deadline=deadline, source="baseline")
        results = sims.run(plans, deadline=deadline, source="exhaustive")
        timed_out = sims.timed_out
        count = sims.count
    baselines = {n: c for n, c in zip(heuristics, base, strict=True) if c is not None}
    pool = {c.key: c for c in list(baselines.values()) + [c for c in results if c is not None]}
    candidates = best_first(pool.values(), objective)
    if not candidates:
        raise no_plan_error(scenario, None, "no plan could be simulated before the time limit")
    best = candidates[0]
    if not best.feasible:
        raise no_plan_error(scenario, best)
    for v, c in zip(vectors, results, strict=True):
        if c is not None:
            space.exclude(v)
    simulated_all = whole and not timed_out
    bound, gap = best.objective, 0.0
    if spec.bound == "none":
        bound, gap = None, None
    elif not simulated_all:
        solver = SolverOptions(time_limit_s=options.solver_time_limit_s, mip_rel_gap=1e-6, threads=1, seed=0)
        res = solve_master_highspy(space.bound, solver)
        if res.has_solution:
            rest = space.to_sim_units(res.bound if res.bound is not None else res.objective)
            if rest is not None and spec.better(rest, best.objective):
                bound = rest
                shortfall = abs(rest - best.objective)
                gap = shortfall / max(abs(best.objective), 1e-12)
    stopped = "every plan simulated" if simulated_all else ("time limit" if timed_out else "subset simulated")
    stats = SearchStats(
        "exhaustive",
        1,
        count,
        bound,
        gap,
        time.perf_counter() - t0,
        stopped,
        templates=len(prep.priced),
        bound_kind=spec.bound,
        bound_note=spec.bound_note,
        space_plans=len(vectors) if whole else None,
        space_note=note,
        phases_s=prep.phases_s,
        census=prep.census.to_json() if prep.census is not None else {},
    )
    result = PlanSearchResult(objective, best, candidates, baselines, stats, scenario)
    return attach_clock_choice(
        result, pool, simulate_fn=simulate_fn, makespan_floor=space.makespan_floor, deadline=deadline
    )
