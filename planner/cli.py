"""The `apex` command line: parse → planner.api → render → exit code.

Exit codes: 0 success, 1 no plan meets the goals, 2 bad input (the message names the file, the field,
the bad value and what was expected; no traceback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from planner import api, render
from planner.errors import InputError, NoPlanError
from planner.plan_command import plan_command
from planner.progress import DelayedProgress
from planner.study_command import report_command, study_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="APEX: plan and simulate parallel execution of LLM inference on GPU clusters.",
)
err = Console(stderr=True)

KINDS = ("model", "gpu", "cluster", "fabric")


@app.command()
def models():
    """List the models of the catalog."""
    render.console.print(render.models_table())


@app.command()
def gpus():
    """List the GPU types of the catalog."""
    render.console.print(render.gpus_table())


@app.command()
def clusters():
    """List the cluster presets of the catalog."""
    render.console.print(render.clusters_table())


@app.command()
def show(
    kind: Annotated[str, typer.Argument(help="model, gpu, cluster or fabric")],
    name: Annotated[str, typer.Argument(help="catalog name, e.g. llama-3.1-70b")],
):
    """Print every number of one catalog entry, derived ones included."""
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}", field="KIND")
    render.console.print(render.entry_table(kind, name))


@app.command()
def check(
    scenarios: Annotated[list[str], typer.Argument(help="scenario YAML files")],
    plan: Annotated[str | None, typer.Option(help="plan override, e.g. 'tp=4,pp=2'")] = None,
):
    """Validate scenario files and report, per GPU of the plan, whether the weights fit."""
    for path in scenarios:
        report = api.check(path, plan=plan)
        render.console.print(render.check_table(report))


@app.command()
def simulate(
    scenarios: Annotated[list[str], typer.Argument(help="scenario YAML files")],
    plan: Annotated[str | None, typer.Option(help="plan override, e.g. 'tp=4,pp=2' (all scenarios)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per scenario per line")] = False,
    requests_out: Annotated[
        str | None, typer.Option(help="write per-request records (.csv or .parquet); one scenario only")
    ] = None,
):
    """Replay each scenario's workload on its plan and report latency, throughput, energy and cost."""
    if requests_out and len(scenarios) > 1:
        raise InputError("--requests-out takes one scenario at a time", field="--requests-out")
    if requests_out and Path(requests_out).exists():
        raise InputError(
            f"{requests_out} exists; choose another path or delete it first (nothing is overwritten)",
            field="--requests-out",
        )
    names, results = [], []
    for path in scenarios:
        with DelayedProgress(f"simulating {path}", enabled=not as_json or sys.stderr.isatty()) as progress:
            result = api.simulate(path, plan=plan, progress=progress)
        if requests_out:
            result.write_requests(requests_out)
        data = result.to_json()
        if as_json:
            print(json.dumps(data), flush=True)
        names.append(path)
        results.append(data)
    if not as_json:
        render.console.print(render.simulation_table(names, results))


@app.command()
def estimate(
    scenario: Annotated[str, typer.Argument(help="scenario YAML file")],
    plan: Annotated[str | None, typer.Option(help="plan override, e.g. 'tp=4,pp=2'")] = None,
):
    """Price one prefill of the mean input and decode steps at a few batch sizes, operator by operator."""
    report = api.estimate(scenario, plan=plan)
    for table in render.estimate_tables(report):
        render.console.print(table)


@app.command()
def calibrate(
    measurements: Annotated[
        str, typer.Argument(help="measured points (format of data/reference/calibration.yaml)")
    ],
    gpu: Annotated[str, typer.Option(help="GPU catalog name whose coefficients are fitted")] = "h100-sxm",
    report: Annotated[
        bool, typer.Option("--report", help="print every point: measured, predicted, error")
    ] = False,
    out: Annotated[
        str | None, typer.Option(help="write the calibration file that scenarios can name")
    ] = None,
):
    """Fit the cost model's coefficients of one GPU to measured kernel or step times; report held-out errors."""
    if out:
        target = Path(out)
        if target.exists():
            raise InputError(
                f"{out} exists; choose another path or delete it first (nothing is overwritten)",
                field="--out",
            )
        if not target.parent.is_dir():
            raise InputError(f"the folder {target.parent} does not exist; create it first", field="--out")
    result = api.calibrate(measurements, gpu=gpu)
    from simulator.costmodel import write_calibration
    from simulator.costmodel.kernel_fit import KernelFit

    if isinstance(result, KernelFit):
        render.console.print(render.calibration_params_table(result))
        render.console.print(_kernel_fit_table(result))
    else:
        render.console.print(render.calibration_params_table(result))
        table = render.calibration_table(result)
        render.console.print(table if report else table.caption)
    if out:
        write_calibration(result, out)
        render.console.print(f"wrote {out}")


def _kernel_fit_table(fit):
    """Median absolute error per op kind on the fitted GPU and on each GPU left out of the fit."""
    from rich.table import Table

    table = Table(title=f"Kernel fit on {fit.gpu}: median absolute error per op kind", title_justify="left")
    kinds = sorted({k for e in fit.errors.values() for k in e})
    table.add_column("GPU")
    table.add_column("role")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for gpu, errors in fit.errors.items():
        role = "fitted" if gpu == fit.gpu else "held out"
        cells = [f"{errors[k]:.1%} ({fit.counts[gpu][k]})" if k in errors else "-" for k in kinds]
        table.add_row(gpu, role, *cells)
    table.caption = fit.method
    return table


app.command("plan")(plan_command)
app.command("study")(study_command)
app.command("report")(report_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        # standalone mode: typer reports usage errors itself (exit 2) and raises SystemExit with the code
        app(args=argv, prog_name="apex")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except InputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except NoPlanError as exc:
        err.print(
            f"[bold red]no plan meets the goals:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


def entry_point() -> None:
    """Console-script wrapper: exits with main()'s code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
