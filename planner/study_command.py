"""`apex study STUDY.yaml` and `apex report DIR` (registered with `app.command("study")(study_command)` and
`app.command("report")(report_command)`).

parse → `planner.study_api.study` (rows stream to DIR/results.csv) → plots → summary table. Bad input raises
InputError naming the file and field (exit 2) before any point runs; failing points are rows, not exits.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from planner.errors import Terminated
from planner.progress import DelayedProgress
from planner.render import console


def study_command(
    study: Annotated[str, typer.Argument(help="study YAML file (docs/design.md §8)")],
    workers: Annotated[int, typer.Option(help="points run in parallel on local processes")] = 1,
    ray: Annotated[
        str | None, typer.Option(help="run points on a Ray cluster at this address ('local' starts one here)")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="directory for results.csv/.parquet, the plots and the resume journal")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="continue an interrupted study in --out, skipping finished points"),
    ] = False,
):
    """Run a what-if study: every point of the grid is simulated (or planned); table, CSV/Parquet and plots."""
    from planner.studies import count_finished, load_study
    from planner.study_api import study as run
    from planner.study_report import summary_table, write_plots

    loaded = load_study(study)
    rows = []
    try:
        with DelayedProgress(f"study {loaded.name}", enabled=sys.stderr.isatty()) as progress:
            for row in run(loaded, workers=workers, ray=ray, out=out, resume=resume, progress=progress):
                rows.append(row)
    except (KeyboardInterrupt, Terminated) as exc:
        # the workers are stopped and every finished row is in the journal: say how to go on, in one line
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
        kept = (
            f"; {count_finished(out)} of {len(loaded.points)} points are in {out}/results.csv: run the same "
            "command with --resume to finish"
            if out
            else f" after {len(rows)} of {len(loaded.points)} points (pass --out DIR to keep finished points)"
        )
        raise type(exc)(what + kept) from None
    rows.sort(key=lambda r: r["point"])
    stored = loaded.resolved()
    console.print(summary_table(stored, rows))
    if out:
        written = write_plots(stored, rows, out)
        files = ["results.csv", "results.parquet", *(p.name for p in written)]
        console.print(f"wrote {out}/: {', '.join(files)}")
    else:
        console.print("(pass --out DIR to keep the results and draw the plots)")


def report_command(
    directory: Annotated[str, typer.Argument(metavar="DIR", help="a study's --out directory")],
):
    """Re-draw a study's plots and table from its stored results (DIR/study.yaml and DIR/results.csv)."""
    from planner.study_report import redraw, summary_table

    stored, rows, written = redraw(directory)
    console.print(summary_table(stored, rows))
    console.print(f"drew {', '.join(str(p) for p in written) or 'no plots (no point succeeded)'}")
