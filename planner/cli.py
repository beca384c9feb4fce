"""The `apex` command line: parse → planner.api → render → exit code.

Exit codes: 0 success, 1 no plan meets the goals, 2 bad input (the message names the file, the field,
the bad value and what was expected; no traceback), 130 interrupted (Ctrl-C / SIGINT), 143 terminated (SIGTERM).
Input that runs but not entirely as written (e.g. requests that can never be served) prints one `warning:` line
on stderr per problem. Output paths are checked before any work starts (`planner.outputs`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from planner.calibrate_command import serving_calibration
from planner.capacity_command import capacity_command
from planner.emit_command import emit_command
from planner.errors import InputError, NoPlanError, Terminated
from planner.ingest_command import ingest_command
from planner.lazy import lazy_module
from planner.outputs import check_new_file
from planner.plan_command import plan_command
from planner.progress import DelayedProgress
from planner.study_command import report_command, study_command
from planner.trace_options import trace_recorder
from simulator.errors import InputWarning

api = lazy_module("planner.api")  # loaded by the first command that uses it, not for `apex --help`
render = lazy_module("planner.render")

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
    """Validate scenario files and report, per GPU of the plan, whether the weights fit (exit 2 if not)."""
    for path in scenarios:
        report = api.check(path, plan=plan)
        render.console.print(render.check_table(report))
        misfit = next((r for r in report.rows if not r.fits), None)
        if misfit is not None:
            raise _does_not_fit(report, misfit, plan_flag=plan is not None)


def _does_not_fit(report, row, *, plan_flag: bool) -> InputError:
    """The error of `apex check` for a stage whose weights leave no room for the KV cache."""
    engine = report.scenario.spec.engine
    if engine.kind == "trtllm":
        rule = f"all {row.capacity_gib:.0f} GiB (trtllm's memory fraction applies to what is left for the KV cache)"
    else:
        fraction = row.usable_gib / row.capacity_gib
        rule = f"gpu_memory_fraction {fraction:g} of {row.capacity_gib:.0f} GiB under {engine.kind}"
    return InputError(
        f"the weights do not fit: stage {row.stage} of replica group {row.replica_group} (layers "
        f"[{row.layers[0]}, {row.layers[1]}), {row.parallelism}) needs {row.needed_gib:.1f} GiB per GPU for weights "
        f"({row.weights_gib:.1f} GiB), workspace and runtime reserve before any KV cache, but a {row.gpu} offers "
        f"{row.usable_gib:.1f} GiB ({rule}); use more GPUs per stage (tp, pp), a larger GPU or smaller dtypes",
        file=report.scenario.file,
        field=f"{'--plan' if plan_flag else 'plan'}.replicas[{row.replica_group}].stages[{row.stage}]",
    )


@app.command()
def simulate(
    scenarios: Annotated[list[str], typer.Argument(help="scenario YAML files")],
    plan: Annotated[str | None, typer.Option(help="plan override, e.g. 'tp=4,pp=2' (all scenarios)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per scenario per line")] = False,
    requests_out: Annotated[
        str | None, typer.Option(help="write per-request records (.csv or .parquet); one scenario only")
    ] = None,
    trace_out: Annotated[
        str | None,
        typer.Option(help="write a Chrome / Perfetto trace of the timeline (.json, for ui.perfetto.dev)"),
    ] = None,
    trace_window: Annotated[
        str | None,
        typer.Option(
            help="with --trace-out: the span to trace, START:END in simulated seconds (e.g. 60:120)"
        ),
    ] = None,
    trace_max_events: Annotated[
        int | None,
        typer.Option(
            help="with --trace-out: most trace events; the trace stops where this is reached (200000)"
        ),
    ] = None,
):
    """Replay each scenario's workload on its plan and report latency, throughput, energy and cost."""
    if requests_out and len(scenarios) > 1:
        raise InputError("--requests-out takes one scenario at a time", field="--requests-out")
    if requests_out:  # before the simulation, so that a bad path does not cost a run
        check_new_file(requests_out, "--requests-out", suffixes=(".csv", ".parquet"))
    trace_path, trace = trace_recorder(trace_out, trace_window, trace_max_events, len(scenarios))
    names, results = [], []
    for path in scenarios:
        with DelayedProgress(f"simulating {path}", enabled=not as_json or sys.stderr.isatty()) as progress:
            result = api.simulate(path, plan=plan, progress=progress, trace=trace)
        if requests_out:
            result.write_requests(requests_out)
        if trace is not None:
            summary = api.write_trace(trace_path, trace)
            err.print(
                f"trace: wrote {escape(str(trace_path))}: {escape(summary.message())}",
                highlight=False,
                soft_wrap=True,
            )
        data = result.to_json()
        if as_json:
            print(render.json_line(data), flush=True)
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
        list[str],
        typer.Argument(
            help="measured points (format of data/reference/calibration.yaml or kernels.yaml); with --scenario, "
            "benchmark result files (vllm bench serve, SGLang bench_serving, GenAI-Perf, AIPerf)"
        ),
    ],
    gpu: Annotated[
        str | None, typer.Option(help="GPU catalog name whose coefficients are fitted (default h100-sxm)")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="print every point: measured, predicted, error")
    ] = False,
    out: Annotated[
        str | None, typer.Option(help="write the calibration file that scenarios can name")
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="the scenario the benchmark ran (model, cluster, plan, engine, workload seed)"),
    ] = None,
    plan: Annotated[
        str | None, typer.Option(help="with --scenario: the plan benchmarked, e.g. tp=4 for one replica")
    ] = None,
    fit: Annotated[
        str | None,
        typer.Option(
            help="with --scenario: parameters to fit, comma-separated, of per_iteration_s, per_sequence_s, "
            "frontend_s, compute_scale, memory_scale (default per_iteration_s,frontend_s,compute_scale)"
        ),
    ] = None,
    hold_out: Annotated[
        str | None,
        typer.Option(help="with --scenario: runs left out, by load: alternate (default), highest or none"),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="with --scenario: auto, vllm, sglang, genai-perf, aiperf")
    ] = None,
):
    """Fit the cost model's coefficients to measured kernel or step times, or (with --scenario) the engine's host
    and frontend costs and GPU efficiency to benchmark runs; report errors on what the fit left out."""
    serving = {"--plan": plan, "--fit": fit, "--hold-out": hold_out, "--format": fmt}
    if scenario is None:
        given = next((flag for flag, value in serving.items() if value is not None), None)
        if given:
            raise InputError(f"{given} needs --scenario (benchmark result files)", field=given)
        if len(measurements) > 1:
            raise InputError(
                "takes one kernel/step file; several files are benchmark results, which need --scenario",
                field="MEASUREMENTS",
            )
    elif gpu is not None:
        raise InputError("with --scenario the GPU is the plan's; leave out --gpu", field="--gpu")
    if out:
        target = Path(out)
        if target.exists():
            raise InputError(
                f"{out} exists; choose another path or delete it first (nothing is overwritten)",
                field="--out",
            )
        if not target.parent.is_dir():
            raise InputError(f"the folder {target.parent} does not exist; create it first", field="--out")
    if scenario is not None:
        serving_calibration(
            measurements,
            scenario,
            plan=plan,
            fit=fit,
            hold_out=hold_out or "alternate",
            fmt=fmt or "auto",
            report=report,
            out=out,
        )
        return
    result = api.calibrate(measurements[0], gpu=gpu or "h100-sxm")
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
app.command("emit")(emit_command)
app.command("ingest")(ingest_command)
app.command("capacity")(capacity_command)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Input warnings as one `warning:` line (no source location); others as Python prints them."""
    if issubclass(category, InputWarning):
        err.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _raise_terminated(signum, frame) -> None:
    raise Terminated("terminated (SIGTERM)")


@contextlib.contextmanager
def _cli_boundary():
    """While a command runs: SIGTERM raises Terminated (so `finally` blocks run and workers are stopped) and
    input warnings print as `warning:` lines. Restored afterwards (main() is also called in-process by tests)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    with warnings.catch_warnings():
        warnings.simplefilter("default", InputWarning)
        warnings.showwarning = _show_warning
        try:
            yield
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` in the chain that led to `exc` (its causes and contexts)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        with _cli_boundary():
            # standalone mode: typer reports usage errors itself (exit 2) and raises SystemExit with the code
            app(args=argv, prog_name="apex")
    except SystemExit as exc:
        interrupt = _cause(exc, KeyboardInterrupt)
        if interrupt is not None:  # typer turns Ctrl-C into exit 130 without a word
            err.print(escape(str(interrupt) or "interrupted (Ctrl-C)"), highlight=False, soft_wrap=True)
            return 130
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except InputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except NoPlanError as exc:
        err.print(
            f"[bold red]no plan meets the goals:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return 1
    except KeyboardInterrupt as exc:
        err.print(escape(str(exc) or "interrupted (Ctrl-C)"), highlight=False, soft_wrap=True)
        return 130
    except Terminated as exc:
        err.print(escape(str(exc) or "terminated (SIGTERM)"), highlight=False, soft_wrap=True)
        return 143
    return 0


def entry_point() -> None:
    """Console-script wrapper: exits with main()'s code."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
