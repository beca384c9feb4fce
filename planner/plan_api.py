"""`plan(scenario, ...)`: search for the best plan of a scenario under its goals (or overridden ones).

Overrides use the scenario's own field names: `objective="min_cost"`, `slo={"ttft_s": {"p99": 2.0}}` or the
CLI text `"ttft_s.p99=2.0,tpot_s.p99=0.1"`, `budget={"usd_per_hour": 120}` or `"usd_per_hour=120"`. They are
merged into `goals` and validated like the file itself (a bad value is an InputError naming the flag).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace as dc_replace
from pathlib import Path

from pydantic import ValidationError

from formulations.objectives import objective_spec
from planner.baselines import exhaustive as run_exhaustive
from planner.capacity.planning import check_capacity_goals, plan_on_capacity
from planner.errors import NoPlanError
from planner.placement_step import place_best
from planner.search import PlanSearchResult, SearchOptions, run_search
from simulator.admission import refuse_impossible_workload
from simulator.errors import InputError, pydantic_error_to_input_error
from simulator.scenario import Goals, Scenario, load_scenario


def parse_assignments(text: str, flag: str, *, dotted: bool) -> dict:
    """`a.b=1,c.d=2` → {"a": {"b": 1.0}, "c": {"d": 2.0}} (values are numbers)."""
    out: dict = {}
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not key or (dotted and len(parts) != 2) or (not dotted and len(parts) != 1):
            shape = (
                "metric.stat=seconds, e.g. 'ttft_s.p99=2.0,tpot_s.p99=0.1'"
                if dotted
                else "name=value, e.g. 'usd_per_hour=120'"
            )
            raise InputError(
                f"bad value {text!r}: expected comma-separated {shape}, got {item!r}", field=flag
            )
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"bad value {text!r}: {key} must be a number, got {raw!r}", field=flag) from None
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def with_goals(
    scenario: Scenario,
    *,
    objective: str | None = None,
    slo: dict | str | None = None,
    budget: dict | str | None = None,
    rate: float | None = None,
) -> Scenario:
    """The scenario with its goals overridden (validated; errors name --objective, --slo, --budget or --rate)."""
    goals = scenario.spec.goals.model_dump(exclude_none=True)
    flags = []
    if objective is not None:
        goals["objective"] = objective
        flags.append("--objective")
    if rate is not None:
        goals["rate"] = float(rate)
        flags.append("--rate")
    if slo is not None:
        extra = parse_assignments(slo, "--slo", dotted=True) if isinstance(slo, str) else slo
        goals["slo"] = _merge(goals.get("slo", {}), extra)
        flags.append("--slo")
    if budget is not None:
        extra = parse_assignments(budget, "--budget", dotted=False) if isinstance(budget, str) else budget
        if "num_gpus" in extra:
            extra["num_gpus"] = int(extra["num_gpus"])
        goals["budget"] = _merge(goals.get("budget", {}), extra)
        flags.append("--budget")
    if not flags:
        return scenario
    try:
        new_goals = Goals.model_validate(goals)
    except ValidationError as exc:
        err = pydantic_error_to_input_error(exc, file=None, prefix="goals")
        raise InputError(f"{err.field}: {err.detail}", field=" / ".join(flags)) from None
    spec = scenario.spec.model_copy(update={"goals": new_goals})
    return dc_replace(scenario, spec=spec)


def plan(
    scenario: str | Path | dict | Scenario,
    *,
    objective: str | None = None,
    slo: dict | str | None = None,
    budget: dict | str | None = None,
    rate: float | None = None,
    top_k: int = 3,
    time_limit_s: float = 300.0,
    exhaustive: bool = False,
    workers: int | None = None,
    epsilon: float = 0.02,
    progress: Callable[[int, int], None] | None = None,
    simulate_fn: Callable | None = None,
    max_templates: int | None = None,
) -> PlanSearchResult:
    """Find the plan that serves the scenario's workload best under its goals (docs/design.md §5).

    Raises NoPlanError (exit 1) when no plan meets the goals, saying which goal the closest plan misses and
    by how much; InputError (exit 2) for bad arguments. `time_limit_s` covers the whole call: templates,
    bounds, simulations (baselines and --exhaustive included) and placement. `max_templates`: plans mix at
    most this many replica templates (default two, or the number of GPU types); --exhaustive searches the
    same space.
    """
    started, started_monotonic = time.perf_counter(), time.monotonic()
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, got {top_k}", field="--top-k")
    if not time_limit_s > 0 or time_limit_s == float("inf"):  # NaN and infinity too
        raise InputError(f"the time limit must be positive seconds, got {time_limit_s}", field="--time-limit")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}", field="--workers")
    if not 0 <= epsilon < 1:
        raise InputError(f"epsilon must be in [0, 1), got {epsilon}", field="epsilon")
    sc = load_scenario(scenario)
    arrival = sc.spec.workload.arrival
    if arrival is not None and arrival.process == "closed":
        raise InputError(
            "apex plan needs open-loop arrivals (its bounds are stated on arrival times, and a closed loop's "
            "depend on the plan): give process poisson, gamma, constant or burst with a rate, or simulate the "
            "closed loop with `apex simulate`",
            file=sc.file,
            field="workload.arrival.process",
        )
    refuse_impossible_workload(sc)  # exit 2 now, not exit 1 after simulating every candidate for nothing
    sc = with_goals(sc, objective=objective, slo=slo, budget=budget, rate=rate)
    check_capacity_goals(sc)
    if objective_spec(sc.spec.goals.objective).planned_on_capacity(sc.spec.goals.rate):
        if exhaustive:
            raise InputError(
                "--exhaustive simulates plans at the workload's rate; a capacity objective measures capacities "
                "(apex capacity) of the plans its master proposes instead",
                field="--exhaustive",
            )
        result = plan_on_capacity(sc, time_limit_s=time_limit_s, progress=progress)
        result.placement_notes = place_best(result)
        if result.placement is None:
            raise NoPlanError(
                "no plan that meets the goals can be placed on the cluster's nodes: "
                + "; ".join(result.placement_notes)
            )
        return result
    options = SearchOptions(
        top_k=top_k,
        time_limit_s=time_limit_s,
        epsilon=epsilon,
        workers=workers if workers is not None else min(2, os.cpu_count() or 1),
        started_at=started,
        max_templates=max_templates,
    )
    if exhaustive:
        result = run_exhaustive(sc, options, progress=progress, simulate_fn=simulate_fn)
    else:
        result = run_search(sc, options, progress=progress, simulate_fn=simulate_fn)
    # the time limit covers the whole command: placement gets what the search left (at least a moment)
    ends = started_monotonic + time_limit_s
    result.placement_notes = place_best(result, deadline=max(ends, time.monotonic() + 1.0))
    if result.placement is None:
        raise NoPlanError(
            "no plan that meets the goals can be placed on the cluster's nodes: "
            + "; ".join(result.placement_notes)
        )
    return result
