"""`apex calibrate RESULTS... --scenario S`: fit the serving parameters to benchmark runs and print the fit.

Tables: the parameters (before = the scenario's own model, after = fitted), the runs (how each was replayed and
whether it was fitted or held out), the median absolute error before / after on fitted and held-out runs, and
with --report every row. `--out` writes the calibration file (simulator/costmodel/calibration.py format with the
`engine` and `host` keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from planner.errors import InputError
from planner.lazy import lazy_module
from planner.render import console

if TYPE_CHECKING:
    from planner.calibration import ServingFit

# loaded when a calibration runs, not for `apex --help` (start-up time)
api = lazy_module("planner.api")
calibration = lazy_module("planner.calibration")


def parse_fit(text: str | None) -> tuple[str, ...]:
    """The --fit list: comma-separated names of planner.calibration.params.NAMES."""
    if text is None:
        return calibration.DEFAULT_FIT
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in calibration.NAMES]
    if not names or unknown:
        raise InputError(
            f"expected parameter names separated by commas, from: {', '.join(calibration.NAMES)}; got {text!r}",
            field="--fit",
        )
    return names


def serving_calibration(
    results: list[str],
    scenario: str,
    *,
    plan: str | None,
    fit: str | None,
    hold_out: str,
    fmt: str,
    report: bool,
    out: str | None,
) -> None:
    """Fit, print the tables, and write `out` when given (its path was checked by the caller)."""
    result = api.calibrate_serving(
        results, scenario, plan=plan, fit=parse_fit(fit), hold_out=hold_out, fmt=fmt
    )
    console.print(params_table(result))
    console.print(runs_table(result))
    console.print(errors_table(result))
    if report:
        console.print(rows_table(result))
    if out:
        from simulator.costmodel import write_calibration

        write_calibration(result.to_calibration(), out)
        console.print(f"wrote {escape(out)}")


def params_table(fit: ServingFit) -> Table:
    t = Table(title=f"Serving calibration of {fit.engine} on {fit.gpu}", title_justify="left")
    for col in ("parameter", "before", "fitted", "bounds"):
        t.add_column(col, justify="left" if col == "parameter" else "right")
    for p in fit.prior.params(calibration.NAMES):
        fitted = p.name in fit.fitted
        t.add_row(
            p.name,
            p.show(fit.defaults[p.name]),
            p.show(fit.params[p.name]) if fitted else "(not fitted)",
            f"[{p.show(p.lower)}, {p.show(p.upper)}]" if fitted else "",
        )
    t.caption = fit.status
    return t


def runs_table(fit: ServingFit) -> Table:
    t = Table(title="Runs replayed", title_justify="left")
    for col in ("run", "split", "tool", "file", "requests", "achieved req/s", "arrivals", "lengths"):
        t.add_column(
            col, justify="right" if col in ("requests", "achieved req/s") else "left", overflow="fold"
        )
    for run, fitted in zip(fit.runs, fit.fit_runs, strict=True):
        left = f" (+{run.left_out} without a token)" if run.left_out else ""
        t.add_row(
            run.label,
            "fit" if fitted else "held out",
            run.tool,
            escape(Path(run.source).name),
            f"{len(run.requests)}{left}",
            f"{run.achieved_rate:.2f}",
            run.arrivals,
            run.lengths,
        )
    t.caption = f"split by run, ordered by achieved request rate: --hold-out {fit.hold_out}"
    return t


def errors_table(fit: ServingFit) -> Table:
    t = Table(
        title="Median absolute error of the rows (means of the fastest 50 % and 90 % of TTFT and TPOT)",
        title_justify="left",
    )
    for col in ("runs", "rows", "TTFT before → after", "TPOT before → after", "all before → after"):
        t.add_column(col, justify="left" if col == "runs" else "right")
    for split, name in (("fit", "fitted"), ("held-out", "held out")):
        n = sum(r.split == split for r in fit.rows)
        if not n:
            t.add_row(name, "0", "-", "-", "-")
            continue
        cells = [
            f"{fit.mdape(split, m, before=True):.1%} → {fit.mdape(split, m):.1%}"
            for m in ("ttft", "tpot", None)
        ]
        t.add_row(name, str(n), *cells)
    return t


def rows_table(fit: ServingFit) -> Table:
    t = Table(title="Every row (ms)", title_justify="left")
    for col in ("row", "split", "measured", "before", "fitted", "error before", "error after"):
        t.add_column(col, justify="left" if col in ("row", "split") else "right")
    for r in fit.rows:
        t.add_row(
            r.id,
            r.split,
            f"{1e3 * r.measured:.2f}",
            f"{1e3 * r.predicted_before:.2f}",
            f"{1e3 * r.predicted:.2f}",
            f"{r.predicted_before / r.measured - 1:+.1%}",
            f"{r.predicted / r.measured - 1:+.1%}",
        )
    return t
