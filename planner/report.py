"""`apex plan --report DIR`: the evidence behind a plan search, as files.

* `plan.yaml` — the scenario with `plan:` set to the best plan (and the goals the search used), loadable by
  `apex simulate`;
* `candidates.csv` — one row per simulated plan (loop candidates, then baselines): label, objective, key metrics;
* `pareto.png` — the objective against p99 E2E latency, energy per token and $/h over every simulated plan,
  with the non-dominated ones joined;
* `latency_cdf.png` — TTFT and TPOT CDFs of the best few plans, from their per-request records (the plans are
  simulated again in-process, which is deterministic);
* `throughput_interactivity.csv` / `.png` — output tokens/s per GPU against tokens/s per user over every plan
  and closed-loop load sweeps of the best few (`planner.report_interactivity`);
* `apex-report.json` — what the report holds, so that a later `--report` into the same directory may replace it
  (and only it: a directory holding anything else is refused).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import yaml

from planner import objective as obj
from planner.outputs import check_report_dir, earlier_report_files, mark_report
from planner.report_interactivity import write_interactivity
from simulator import metric_catalog as catalog

CDF_PLANS = 3


def _get(m: dict, *path):
    for key in path:
        if not isinstance(m, dict) or key not in m:
            return None
        m = m[key]
    return m


def _path(metric: str) -> tuple[str, ...]:
    """The key path of a metric of the catalog (KeyError for one it does not know)."""
    return tuple(catalog.metric(metric).path.split("."))


# (column, key path): the column names are candidates.csv's format, the metrics the catalog's
CSV_COLUMNS = [
    ("ttft_p99_s", _path("ttft_s.p99")),
    ("tpot_p99_s", _path("tpot_s.p99")),
    ("e2e_p99_s", _path("e2e_s.p99")),
    ("output_tokens_per_s", _path("throughput.output_tokens_per_s")),
    ("goodput_rps", _path("slo.goodput_rps")),
    ("slo_attainment", _path("slo.attainment")),
    ("joules_per_output_token", _path("energy.joules_per_output_token")),
    ("usd_per_hour", _path("cost.usd_per_hour")),
    ("usd_per_million_output_tokens", _path("cost.usd_per_million_output_tokens")),
    ("prefix_cache_hit_rate", _path("prefix_cache.hit_rate")),
]


def _axis(metric: str) -> tuple[str, tuple[str, ...], str]:
    """(label, key path, sense) of a Pareto-plot axis from the metric catalog."""
    entry = catalog.metric(metric)
    return entry.title, _path(metric), "max" if entry.higher_is_better else "min"


def write_report(result, directory: str | Path) -> list[Path]:
    """Write plan.yaml, candidates.csv and the plots into `directory`; returns the paths written.

    `directory` is checked first (`planner.outputs.check_report_dir`: new, empty, or an earlier report, whose
    files are replaced); `apex plan` checks it before the search, so nothing runs for a report it cannot write.
    """
    out = check_report_dir(directory)
    out.mkdir(exist_ok=True)
    for name in earlier_report_files(out) or ():
        (out / name).unlink(missing_ok=True)
    written = [
        write_plan_yaml(result, out / "plan.yaml"),
        write_candidates_csv(result, out / "candidates.csv"),
    ]
    written.append(plot_pareto(result, out / "pareto.png"))
    cdf = plot_latency_cdfs(result, out / "latency_cdf.png")
    if cdf is not None:
        written.append(cdf)
    written += write_interactivity(
        result, out / "throughput_interactivity.csv", out / "throughput_interactivity.png"
    )
    mark_report(out, written)
    return written


def write_plan_yaml(result, path: Path) -> Path:
    sc = result.scenario
    data = result.best.scenario_in(sc).spec.model_dump(mode="json", exclude_none=True)
    data["plan"] = result.best.plan.model_dump(mode="json", exclude_none=True)
    if sc.file and isinstance(data.get("workload", {}).get("trace"), str):
        trace = Path(data["workload"]["trace"])
        if not trace.is_absolute():
            data["workload"]["trace"] = str((Path(sc.file).parent / trace).resolve())
    header = (
        f"# Best plan found by `apex plan` ({result.objective} = {result.best.objective:.6g} "
        f"{obj.UNIT[result.objective]}): {result.best.name}\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path


def _rows(result):
    for c in result.candidates:
        yield "candidate", c
    for name, c in result.baselines.items():
        yield f"baseline:{name}", c


def _csv_value(value):
    """A metric for the CSV: empty when it has no value (NaN, e.g. no completed request)."""
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def write_candidates_csv(result, path: Path) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "source",
                "plan",
                "objective",
                "meets_goals",
                "num_gpus",
                *[n for n, _ in CSV_COLUMNS],
                "violations",
            ]
        )
        for source, c in _rows(result):
            w.writerow(
                [
                    source,
                    c.name,
                    c.objective if math.isfinite(c.objective) else "",
                    c.feasible,
                    c.num_gpus,
                    *[_csv_value(_get(c.metrics, *p)) for _, p in CSV_COLUMNS],
                    "; ".join(v.describe() for v in c.violations) or (c.error or ""),
                ]
            )
    return path


def _front(points, sense_x: str, sense_y: str):
    """Non-dominated (x, y) points, sorted by x."""

    def better_eq(a, b, sense):
        return a >= b if sense == "max" else a <= b

    front = []
    for p in points:
        dominated = any(
            better_eq(q[0], p[0], sense_x) and better_eq(q[1], p[1], sense_y) and q[:2] != p[:2]
            for q in points
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: (p[0], p[1]))


def plot_pareto(result, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = obj.UNIT[result.objective]
    sense = obj.SENSE[result.objective]
    axes_spec = [_axis("e2e_s.p99"), _axis("energy.joules_per_output_token"), _axis("cost.usd_per_hour")]
    own = {
        "min_latency": ("e2e_s", "p99"),
        "min_energy": ("energy", "joules_per_output_token"),
        "min_cost": ("cost", "usd_per_hour"),
    }.get(result.objective)
    axes_spec = [a for a in axes_spec if a[1] != own] or axes_spec
    if len(axes_spec) < 3:  # plotting the objective against itself says nothing: show throughput instead
        axes_spec.append(_axis("throughput.output_tokens_per_s"))
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    rows = list(_rows(result))
    for ax, (xlabel, xpath, xsense) in zip(axes, axes_spec, strict=True):
        pts = []
        for source, c in rows:
            x = _get(c.metrics, *xpath)
            if x is None or not math.isfinite(c.objective):
                continue
            pts.append((float(x), c.objective, c, source))
        feas = [p for p in pts if p[2].feasible and p[3] == "candidate"]
        infeas = [p for p in pts if not p[2].feasible]
        base = [p for p in pts if p[3].startswith("baseline") and p[2].feasible]
        if feas:
            ax.scatter(
                [p[0] for p in feas],
                [p[1] for p in feas],
                c="tab:blue",
                s=36,
                label="candidates (meet goals)",
            )
        if infeas:
            ax.scatter(
                [p[0] for p in infeas],
                [p[1] for p in infeas],
                c="tab:gray",
                marker="x",
                s=36,
                label="miss an SLO or budget",
            )
        if base:
            ax.scatter(
                [p[0] for p in base],
                [p[1] for p in base],
                facecolors="none",
                edgecolors="tab:orange",
                s=110,
                linewidths=1.5,
                label="heuristic baselines",
            )
        front = _front([p for p in pts if p[2].feasible], xsense, sense)
        if len(front) > 1:
            ax.plot(
                [p[0] for p in front], [p[1] for p in front], "-", c="tab:green", lw=1.5, label="Pareto front"
            )
        bx = _get(result.best.metrics, *xpath)
        if bx is not None:
            ax.scatter(
                [bx],
                [result.best.objective],
                marker="*",
                c="tab:red",
                s=260,
                zorder=5,
                label=f"best: {result.best.name}",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{result.objective} ({unit})")
        ax.grid(alpha=0.3)
        ax.set_title(f"{result.objective} vs {xlabel.split(' (')[0]}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, frameon=False)
    fig.suptitle(f"{result.scenario.name}: simulated plans ({len(rows)}), best = {result.best.name}")
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency_cdfs(result, path: Path) -> Path | None:
    """TTFT and TPOT CDFs of the best few feasible plans (None when no per-request records are available)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from simulator.simulate import simulate

    plans = [c for c in result.candidates if c.feasible][:CDF_PLANS] or [result.best]
    series = []
    for c in plans:
        res = simulate(c.scenario_in(result.scenario))
        if not hasattr(res, "request_columns"):
            return None
        cols = res.request_columns()
        series.append((c.name, np.asarray(cols["ttft_s"], float), np.asarray(cols["tpot_s"], float)))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    slo = result.scenario.spec.goals.slo
    for ax, idx, name, target in ((axes[0], 1, "TTFT", slo.ttft_s), (axes[1], 2, "TPOT", slo.tpot_s)):
        scale, unit = (1.0, "s") if name == "TTFT" else (1000.0, "ms")
        for s in series:
            v = np.sort(s[idx][np.isfinite(s[idx])]) * scale
            if len(v):
                ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=s[0])
        if target is not None and target.p99 is not None:
            ax.axvline(
                target.p99 * scale,
                color="tab:red",
                ls="--",
                label=f"p99 target {target.p99 * scale:g} {unit}",
            )
            ax.axhline(0.99, color="gray", ls=":", lw=1)
        ax.set_xlabel(f"{name} ({unit})")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{name} CDF")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{result.scenario.name}: latency of the best {len(series)} plans")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
