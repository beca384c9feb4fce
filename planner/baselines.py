"""Baselines the loop is measured against, all through the same simulation path and candidate pool.

* `heuristic_plans(scenario, templates)` — the rules of thumb operators use (`planner.search.heuristics`).
* `exhaustive(scenario)` — simulate every plan of the space the loop searches (`planner.search.space`: count
  vectors over the same templates, with at most as many templates per plan, within the same inventory,
  NVLink-domain and budget rows), plus the heuristic plans, in one pool. When the space holds more plans than
  `SearchOptions.exhaustive_limit` and the objective has a proven bound, it simulates the plans in order of
  their proven bound (the bound master's best unsimulated vector, fine bounds) until no unsimulated plan's
  bound beats the best simulated plan: every plan it skips provably cannot beat that plan (at best it ties),
  so the optimum is the same as simulating them all. Without a proven bound (min_latency) it simulates the
  single-template subset. Either way, and when the time limit stops it, it says so, and the plans it did not
  simulate keep their proven bound (the bound master over them), so its reported bound and gap stay true.
"""

from __future__ import annotations

import math
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
from planner.search.loop import bound_candidates, deadline_of, space_note, within
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
    solver = SolverOptions(time_limit_s=options.solver_time_limit_s, mip_rel_gap=1e-6, threads=1, seed=0)
    by_bound = False
    try:
        vectors = enumerate_count_vectors(space.bound, options.exhaustive_limit)
        size = len(vectors)
        note = f"the whole space: {size} plans ({space_note(space)})"
        whole = True
    except SpaceTooLarge:
        size = _space_size(space)
        if spec.bound != "none" and size is not None:
            vectors, whole, by_bound = [], True, True  # simulated in bound order below
            note = (
                f"the whole space: {size} plans ({space_note(space)}), more than the {options.exhaustive_limit} "
                "simulated whole: simulated in order of their proven bound until none left could beat the best "
                "(the plans not simulated can at best tie it)"
            )
        else:
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
    heuristics = heuristic_plans(scenario, prep.baseline_templates)
    with Simulations(
        scenario,
        workers=options.workers,
        simulate_fn=simulate_fn,
        progress=progress,
        makespan_floor=space.makespan_floor,
    ) as sims:
        sims.expect(len(vectors) + len(heuristics))
        base = sims.run(list(heuristics.values()), deadline=deadline, source="baseline")
        baselines = {n: c for n, c in zip(heuristics, base, strict=True) if c is not None}
        for h, c in zip(heuristics.values(), base, strict=True):
            counts = space.counts_of(h)
            if c is not None and counts:
                space.exclude(counts)
        if by_bound:
            results = _in_bound_order(space, sims, solver, spec, list(baselines.values()), deadline)
        else:
            plans = [space.plan_of(v) for v in vectors]
            out = sims.run(plans, deadline=deadline, source="exhaustive")
            for v, c in zip(vectors, out, strict=True):
                if c is not None:
                    space.exclude(v)
            results = [c for c in out if c is not None]
        timed_out = sims.timed_out
        count = sims.count
    pool = {c.key: c for c in list(baselines.values()) + results}
    candidates = best_first(pool.values(), objective)
    if not candidates:
        raise no_plan_error(scenario, None, "no plan could be simulated before the time limit")
    best = candidates[0]
    if not best.feasible:
        raise no_plan_error(scenario, best)
    simulated_all = whole and not timed_out
    bound, gap = best.objective, 0.0
    if spec.bound == "none":
        bound, gap = None, None
    elif not simulated_all:
        rest = space.remaining_bound(solve_master_highspy(space.bound, solver))
        if rest is not None and not math.isfinite(rest):  # the solve ran out of time: no bound is proven
            bound, gap = None, None
        elif rest is not None and spec.better(rest, best.objective):
            bound = rest
            shortfall = abs(rest - best.objective)
            gap = shortfall / max(abs(best.objective), 1e-12)
    if timed_out:
        stopped = "time limit"
    elif not simulated_all:
        stopped = "subset simulated"
    else:
        stopped = BY_BOUND if by_bound else "every plan simulated"
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
        space_plans=size if whole else None,
        space_note=note,
        phases_s=prep.phases_s,
        census=prep.census.to_json() if prep.census is not None else {},
    )
    result = PlanSearchResult(objective, best, candidates, baselines, stats, scenario)
    return attach_clock_choice(
        result, pool, simulate_fn=simulate_fn, makespan_floor=space.makespan_floor, deadline=deadline
    )


BY_BOUND = "every plan simulated or ruled out by its bound"
SPACE_COUNT_LIMIT = 1_000_000  # plans counted (not simulated) to state the size of a large space


def _space_size(space) -> int | None:
    """How many plans the space holds (None above SPACE_COUNT_LIMIT)."""
    try:
        return len(enumerate_count_vectors(space.bound, SPACE_COUNT_LIMIT))
    except SpaceTooLarge:
        return None


def _in_bound_order(space, sims, solver, spec, pool: list, deadline: float) -> list:
    """Simulate the space's plans best proven bound first, as many at a time as there are workers, until no
    unsimulated plan's bound beats the best simulated plan (ties are not simulated: they cannot beat it)."""
    results: list = []
    while time.perf_counter() < deadline and not sims.timed_out:
        feasible = [c for c in pool + results if c.feasible]
        incumbent = best_first(feasible, spec.name)[0] if feasible else None
        batch = bound_candidates(
            space, within(solver, deadline), incumbent, spec, 1e-9, sims.workers, deadline
        )
        if not batch:
            break
        out = sims.run([space.plan_of(v) for v in batch], deadline=deadline, source="exhaustive")
        for v, c in zip(batch, out, strict=True):
            space.exclude(v)  # simulated or not, it is not proposed again (a timed-out run stops the walk)
            if c is not None:
                results.append(c)
    return results
