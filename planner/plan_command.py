"""`apex plan SCENARIO.yaml`: search for the best plan and show the evidence (register with
`app.command("plan")(plan_command)`).

parse → `planner.plan_api.plan` → render (or `--json`, one line) → optional `--report DIR`. Bad option values
raise InputError naming the flag (exit 2); no plan meeting the goals raises NoPlanError (exit 1).
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from planner import objective as obj
from planner.emit import ENGINES
from planner.emit_command import print_emit_summary
from planner.errors import InputError
from planner.outputs import check_report_dir
from planner.progress import DelayedProgress
from planner.render import console, json_line, prefix_cache_cell

OBJECTIVES = tuple(obj.SENSE)  # the objective table's names (not simulator.scenario's Literal: start-up time)


def plan_command(
    scenario: Annotated[str, typer.Argument(help="scenario YAML file")],
    objective: Annotated[str | None, typer.Option(help=f"one of: {', '.join(OBJECTIVES)}")] = None,
    slo: Annotated[
        str | None, typer.Option(help="SLO overrides, e.g. 'ttft_s.p99=2.0,tpot_s.p99=0.1'")
    ] = None,
    budget: Annotated[str | None, typer.Option(help="budget overrides, e.g. 'usd_per_hour=120'")] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="req/s the plan must sustain within the SLOs (goals.rate; min_gpus / min_cost)"),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="candidates the solver proposes per round")] = 3,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds for the whole search")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="the plan-search result as one JSON line")] = False,
    exhaustive: Annotated[bool, typer.Option(help="simulate every valid homogeneous plan instead")] = False,
    report: Annotated[str | None, typer.Option(help="write plan.yaml, candidates.csv and plots here")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log each round of the search")] = False,
    workers: Annotated[
        int | None, typer.Option(help="simulations run in parallel (default min(2, CPUs))")
    ] = None,
    emit: Annotated[
        str | None,
        typer.Option(help="write launch files and benchmark scripts of the best plan here (see `apex emit`)"),
    ] = None,
):
    """Search for the parallel plan that best meets the scenario's goals; show it, the runners-up and baselines."""
    from planner.emit.emitter import emit_plan, preflight  # here for `apex --help`'s start-up time
    from planner.plan_api import plan

    check_flags(objective=objective, top_k=top_k, time_limit=time_limit, workers=workers)
    if report:
        check_report_dir(report)  # before the search: a report that cannot be written stops nothing late
    if emit:
        preflight(scenario, emit, flag="--emit")  # before the search: refuse a directory holding user files
    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
        logging.getLogger("apex.plan").setLevel(logging.INFO)
    with DelayedProgress(f"planning {scenario}", enabled=not as_json or sys.stderr.isatty()) as progress:
        result = plan(
            scenario,
            objective=objective,
            slo=slo,
            budget=budget,
            rate=rate,
            top_k=top_k,
            time_limit_s=time_limit,
            exhaustive=exhaustive,
            workers=workers,
            progress=progress,
        )
    if report:
        from planner.report import write_report

        written = write_report(result, report)
        if not as_json:
            console.print(f"report: {', '.join(str(p) for p in written)}")
    emitted = None
    if emit:
        emitted = emit_plan(
            result.best.scenario_in(result.scenario),
            result.best.plan,
            result.placement,
            engines=ENGINES,
            out_dir=emit,
            flag="--emit",
        )
    if as_json:
        print(json_line(result.to_json()), flush=True)
        return
    for table in plan_tables(result):
        console.print(table)
    if result.clock is not None:
        console.print(result.clock.describe(), highlight=False)
    if result.placement is not None:
        console.print(f"placement of the best plan: {result.placement.summary()}", highlight=False)
    for note in result.placement_notes:
        console.print(f"note: {escape(note)}", highlight=False)
    if emitted is not None:
        print_emit_summary(emitted)


MAX_TIME_LIMIT_S = 7 * 24 * 3600.0
MAX_WORKERS = 1024
MAX_TOP_K = 100


def check_flags(*, objective: str | None, top_k: int, time_limit: float, workers: int | None) -> None:
    """Refuse option values outside their range (NaN and infinity included), naming the flag."""
    if objective is not None and objective not in OBJECTIVES:
        raise InputError(
            f"unknown objective {objective!r}; expected one of: {', '.join(OBJECTIVES)}", field="--objective"
        )
    if not 1 <= top_k <= MAX_TOP_K:
        raise InputError(f"expected 1 to {MAX_TOP_K} candidates per round, got {top_k}", field="--top-k")
    if not (math.isfinite(time_limit) and 0 < time_limit <= MAX_TIME_LIMIT_S):
        raise InputError(
            f"expected seconds in (0, {MAX_TIME_LIMIT_S:.0f}] (at most a week), got {time_limit}",
            field="--time-limit",
        )
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"expected 1 to {MAX_WORKERS} worker processes, got {workers}", field="--workers")


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def _metric(m: dict, *path: str) -> float | None:
    for key in path:
        if not isinstance(m, dict) or key not in m:
            return None
        m = m[key]
    return m if isinstance(m, (int, float)) else None


def plan_tables(result, max_rows: int = 8) -> list[Table]:
    """Best plan and runners-up with their simulated metrics; baselines with the gain; the search figures."""
    unit = obj.UNIT[result.objective]
    t = Table(title=f"Plans by {result.objective} ({unit})", title_justify="left")
    for col in (
        "#",
        "plan",
        f"objective ({unit})",
        "GPUs",
        "$/h",
        "TTFT p99 s",
        "TPOT p99 ms",
        "E2E p99 s",
        "out tok/s",
        "J/tok",
        "goodput rps",
        "meets goals",
    ):
        t.add_column(col, justify="left" if col in ("plan", "meets goals") else "right")
    for i, c in enumerate(result.candidates[:max_rows]):
        m = c.metrics
        tpot = _metric(m, "tpot_s", "p99")
        t.add_row(
            str(i + 1),
            escape(c.name),
            _fmt(c.objective),
            str(c.num_gpus),
            _fmt(_metric(m, "cost", "usd_per_hour")),
            _fmt(_metric(m, "ttft_s", "p99")),
            _fmt(tpot * 1000 if tpot is not None else None),
            _fmt(_metric(m, "e2e_s", "p99")),
            _fmt(_metric(m, "throughput", "output_tokens_per_s")),
            _fmt(_metric(m, "energy", "joules_per_output_token")),
            _fmt(_metric(m, "slo", "goodput_rps")),
            "yes"
            if c.feasible
            else escape("no: " + "; ".join(v.describe() for v in c.violations) + (c.error or "")),
        )
    best_cache = (result.best.metrics or {}).get("prefix_cache")
    # silent when nothing hit (a workload without shared prefixes would print 0.0%; 0; 0)
    if best_cache and best_cache["enabled"] and best_cache.get("saved_prefill_tokens"):
        t.caption = "prefix cache of the best plan (hit rate; saved prefill tokens; evicted blocks): " + (
            prefix_cache_cell(result.best.metrics)
        )
    tables = [t]
    if result.baselines:
        b = Table(title="Against the heuristic baselines", title_justify="left")
        for col in ("baseline", "plan", f"objective ({unit})", "meets goals", "gain of the best plan"):
            b.add_column(col, justify="right" if col.startswith(("objective", "gain")) else "left")
        gains = result.gains()
        for name, c in result.baselines.items():
            g = gains[name]
            if not c.feasible:
                why = "; ".join(v.describe() for v in c.violations) or (c.error or "")
                gain = f"baseline misses the goals ({why})"
            elif c.label == result.best.label or abs(g) < 1e-9:
                gain = "tie (same objective)" if c.label != result.best.label else "tie (same plan)"
            else:
                gain = f"{100 * g:+.1f}%"
            b.add_row(name, escape(c.name), _fmt(c.objective), "yes" if c.feasible else "no", escape(gain))
        tables.append(b)
    s = result.search
    summary = Table(title="Search", title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("solver", s.solver)
    summary.add_row("templates", str(s.templates))
    summary.add_row("rounds", str(s.rounds))
    summary.add_row("simulations (all, baselines included)", str(s.simulations))
    if s.bound_kind == "none":
        summary.add_row("bound", escape(f"none proven: {s.bound_note}"))
    else:
        summary.add_row(f"bound ({unit}, {s.bound_kind})", _fmt(s.bound, 4))
        summary.add_row("gap", "-" if s.gap is None or not math.isfinite(s.gap) else f"{100 * s.gap:.2f}%")
    if s.space_note:
        summary.add_row("space searched", escape(s.space_note))
    summary.add_row("stopped", s.stopped)
    summary.add_row("wall time", f"{s.wall_s:.1f} s")
    tables.append(summary)
    kinds = s.census.get("templates", {})
    if kinds:
        space = Table(title="Plan space (templates)", title_justify="left")
        for name in ("kind", "generated", "pruned", "priced"):
            space.add_column(name, justify="left" if name == "kind" else "right")
        for kind, n in kinds.items():
            space.add_row(escape(kind), str(n["generated"]), str(n["pruned"]), str(n["priced"]))
        searched = s.census.get("searched", {})
        if searched:
            space.caption = escape("settings searched: " + "; ".join(f"{k} {v}" for k, v in searched.items()))
        tables.append(space)
    return tables
