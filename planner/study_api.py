"""`study(spec)`: the Python face of `apex study` (re-exported as `planner.api.study`).

    from planner import api
    for row in api.study("configs/examples/study-gpu-cost.yaml", workers=2):
        print(row["cluster.gpu"], row["cost.usd_per_million_output_tokens"])

A spec is a study YAML path, a dict in the same shape, or a loaded `Study`. Rows are dicts: `point`, the varied
fields by their dotted names, `status` (ok | no_plan | error), `plan` (and `objective` for run: plan), the
metrics of `planner.studies.METRICS` flattened (`ttft_s.p99`, ...), and `error`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from planner.studies import StudyLike, run_study


def study(
    spec: StudyLike,
    *,
    workers: int = 1,
    ray: str | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict]:
    """Run every point of a study and yield its row as it finishes (see `planner.studies.run_study`).

    The study and every point's scenario are validated before any point runs (InputError otherwise). With
    `out`, rows are journaled to out/results.csv as they finish and out/results.parquet is written at the end;
    `resume=True` continues an interrupted study there. Plots are drawn by `planner.study_report`.
    """
    return run_study(spec, workers=workers, ray=ray, out=out, resume=resume, progress=progress)
