"""`apex capacity SCENARIO.yaml`: the highest arrival rate a plan sustains within the SLOs, and the tokens/s per
GPU and per user it gives (register with `app.command("capacity")(capacity_command)`).

parse → `planner.api.capacity` → a table (or `--json`, one line). Bad option values raise InputError naming the
flag (exit 2); a plan that meets the SLOs at no rate raises NoPlanError (exit 1).
"""

from __future__ import annotations

import math
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from planner.errors import InputError
from planner.progress import DelayedProgress
from planner.render import console, json_line

MAX_SEEDS = 100
MIN_TOLERANCE, MAX_TOLERANCE = 1e-3, 0.5
MIN_REQUESTS, MAX_REQUESTS = 100, 1_000_000
MAX_TIME_LIMIT_S = 7 * 24 * 3600.0


def check_capacity_flags(*, seeds: int, tolerance: float, requests: int | None, time_limit: float) -> None:
    """Refuse option values outside their range (NaN and infinity included), naming the flag."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise InputError(f"expected 1 to {MAX_SEEDS} seeds, got {seeds}", field="--seeds")
    if not (math.isfinite(tolerance) and MIN_TOLERANCE <= tolerance <= MAX_TOLERANCE):
        raise InputError(
            f"expected a relative tolerance from {MIN_TOLERANCE:g} to {MAX_TOLERANCE:g} (0.01 = 1%), got "
            f"{tolerance}",
            field="--tolerance",
        )
    if requests is not None and not MIN_REQUESTS <= requests <= MAX_REQUESTS:
        raise InputError(
            f"expected {MIN_REQUESTS:,} to {MAX_REQUESTS:,} requests per run, got {requests:,}",
            field="--requests",
        )
    if not (math.isfinite(time_limit) and 0 < time_limit <= MAX_TIME_LIMIT_S):
        raise InputError(
            f"expected seconds in (0, {MAX_TIME_LIMIT_S:.0f}] (at most a week), got {time_limit}",
            field="--time-limit",
        )


def capacity_command(
    scenario: Annotated[str, typer.Argument(help="scenario YAML file (its plan, SLOs and workload lengths)")],
    plan: Annotated[str | None, typer.Option(help="plan override, e.g. 'tp=4,dp=2'")] = None,
    slo: Annotated[
        str | None, typer.Option(help="SLO overrides, e.g. 'ttft_s.p99=2.0,tpot_s.p99=0.05'")
    ] = None,
    seeds: Annotated[
        int, typer.Option(help="workload seeds; the answer is the rate every seed sustains")
    ] = 3,
    tolerance: Annotated[
        float, typer.Option(help="relative width the bisection stops at (0.01 = 1%)")
    ] = 0.01,
    requests: Annotated[
        int | None,
        typer.Option(
            help="requests in a verdict's first run (default: the scenario's; lengthened as needed)"
        ),
    ] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds for the whole search")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="the result as one JSON line")] = False,
):
    """Find the highest arrival rate the plan sustains with every SLO met at its statistic, in steady state."""
    from planner.api import capacity

    check_capacity_flags(seeds=seeds, tolerance=tolerance, requests=requests, time_limit=time_limit)
    with DelayedProgress(f"capacity of {scenario}", enabled=not as_json or sys.stderr.isatty()) as progress:
        result = capacity(
            scenario,
            plan=plan,
            slo=slo,
            seeds=seeds,
            tolerance=tolerance,
            requests=requests,
            time_limit_s=time_limit,
            progress=lambda done, _total: progress(done, done + 1),
        )
    if as_json:
        print(json_line(result.to_json()), flush=True)
        return
    console.print(capacity_table(result))


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def _ms(d: dict, stat: str) -> str:
    return "-" if d.get(stat) is None else f"{d[stat] * 1e3:.1f}"


def capacity_table(result) -> Table:
    """The capacity, what it gives per GPU and per user, the latencies there, the seeds and the bracket."""
    table = Table(
        title=f"Capacity of {escape(result.plan_name)} ({result.num_gpus} GPUs)",
        title_justify="left",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("capacity (req/s)", _num(result.rate_rps)),
        ("req/s per GPU", _num(result.requests_per_s_per_gpu)),
        ("output tok/s", _num(result.output_tokens_per_s)),
        ("output tok/s per GPU", _num(result.output_tokens_per_s_per_gpu)),
        ("output tok/s per user (1 / TPOT mean)", _num(result.output_tokens_per_s_per_user)),
        ("TTFT mean / p99 at capacity (ms)", f"{_ms(result.ttft_s, 'mean')} / {_ms(result.ttft_s, 'p99')}"),
        ("TPOT mean / p99 at capacity (ms)", f"{_ms(result.tpot_s, 'mean')} / {_ms(result.tpot_s, 'p99')}"),
        ("limited by (just above capacity)", escape(result.limited_by)),
        ("seeds (req/s each)", ", ".join(f"{s.seed}: {_num(s.rate_rps)}" for s in result.seeds)),
        ("seed spread (max − min) / median", f"{result.seed_spread:.1%}"),
        ("tolerance (stated / reached)", f"{result.tolerance:.1%} / {result.achieved_tolerance:.1%}"),
        ("confirmed on every seed", "yes" if result.confirmed else "no"),
        ("analytic prediction (req/s)", _num(result.predicted_rps)),
        ("proven upper bound (req/s)", _num(result.upper_bound_rps)),
        ("arrivals", escape(result.arrival)),
        ("simulations / longest run", f"{result.simulations} / {result.requests_per_run:,} requests"),
        ("wall time", f"{result.wall_s:.1f} s ({escape(result.stopped)})"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    table.caption = (
        "steady state: the window from the L-th completion to L arrivals before the last (L = median number in "
        "the system); sustained = completions keep up with arrivals and every SLO holds there"
    )
    return table
