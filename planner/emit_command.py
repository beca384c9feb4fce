"""`apex emit PLAN.yaml --engine ENGINE --out DIR`: launch files, Kubernetes manifests and benchmark scripts for
the plan of a scenario file (register with `app.command("emit")(emit_command)`).

PLAN.yaml is any scenario with a `plan:` — typically the plan.yaml that `apex plan --report DIR` writes. The plan
is placed on the cluster's GPUs with the same CP-SAT placement `apex plan` uses. Bad input or a plan the chosen
engine cannot express exits 2 with the reason; DIR must be new, empty or an earlier emit.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from planner.emit import ENGINES
from planner.errors import InputError
from planner.render import console


def emit_command(
    plan_file: Annotated[
        str, typer.Argument(metavar="PLAN.yaml", help="scenario with a plan (e.g. plan.yaml)")
    ],
    out: Annotated[str, typer.Option("--out", help="directory to write (new, empty, or an earlier emit)")],
    engine: Annotated[
        str, typer.Option(help=f"{', '.join(ENGINES)}, a comma-separated list, or all")
    ] = "all",
    model_id: Annotated[
        str | None,
        typer.Option(
            "--model-id", help="checkpoint to serve (default: the catalog model's HuggingFace repo)"
        ),
    ] = None,
):
    """Write ready-to-run launch files for vLLM / SGLang / TensorRT-LLM / Dynamo, Kubernetes manifests and
    benchmark scripts for the plan in PLAN.yaml."""
    # imported here, not at the top, so that `apex --help` does not load the emitters and the solvers
    from planner.emit.emitter import emit_plan, parse_engines
    from planner.emit.writer import check_out_dir
    from planner.placement_step import place_plan
    from simulator.scenario import load_scenario

    engines = parse_engines(engine)
    check_out_dir(out, flag="--out")
    scenario = load_scenario(plan_file)
    if scenario.plan is None:
        raise InputError(
            "the file has no plan: field (write one, or use the plan.yaml of `apex plan --report`)",
            file=plan_file,
            field="plan",
        )
    placement, why = place_plan(scenario, scenario.plan)
    if placement is None:
        raise InputError(
            f"the plan cannot be placed on the cluster's nodes: {why}", file=plan_file, field="plan"
        )
    result = emit_plan(scenario, scenario.plan, placement, engines=engines, out_dir=out, model_id=model_id)
    print_emit_summary(result)


def print_emit_summary(result) -> None:
    """One line per engine (files written or why it was skipped), then the warnings."""
    t = Table(title=f"Emitted into {escape(str(result.directory))}", title_justify="left")
    for col in ("engine", "version", "files", "entry point / reason"):
        t.add_column(col)
    for name, out in result.engines.items():
        t.add_row(name, out.version, str(len(out.files)), escape(out.entry or "per-replica endpoints"))
    for name, reason in result.skipped.items():
        t.add_row(name, "-", "0", escape(f"not emitted: {reason}"))
    console.print(t)
    for w in result.warnings:
        console.print(f"warning: {escape(w)}", highlight=False)
    console.print(f"README: {escape(str(result.directory / 'README.md'))}", highlight=False)
