"""Plots and the summary table of a study's rows (matplotlib Agg; used by `apex study` and `apex report`).

`write_plots(stored, rows, out)` draws, for each varied axis, one PNG with the key metrics against it (one line
per value of the other axes; categorical axes as grouped bars), and `pareto.png` when the study names two
`pareto` metrics. `redraw(out)` does it again from out/study.yaml and out/results.csv. `summary_table(...)` is
the rich table printed at the end.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from planner.studies import is_number, read_rows
from simulator import metric_catalog as catalog

# (metric, label with units, higher is better) of the plots and the summary table, from the metric catalog
KEY_METRICS: tuple[tuple[str, str, bool], ...] = tuple(
    (m.path, m.title, m.higher_is_better)
    for m in map(
        catalog.metric,
        (
            "throughput.output_tokens_per_s",
            "ttft_s.p99",
            "tpot_s.p99",
            "cost.usd_per_million_output_tokens",
            "energy.joules_per_output_token",
            "slo.goodput_rps",
        ),
    )
)
_AXIS_UNITS = {
    "workload.arrival.rate": "requests/s",
    "workload.requests": "requests",
    "cluster.nodes": "nodes",
    "cluster.gpus_per_node": "GPUs",
    "engine.max_num_seqs": "sequences",
    "engine.max_num_batched_tokens": "tokens",
    "engine.gpu_memory_fraction": "fraction",
    "goals.budget.usd_per_hour": "$/h",
    "goals.budget.watts": "W",
    "goals.budget.joules_per_token": "J/token",
}


def metric_label(metric: str) -> str:
    entry = catalog.BY_PATH.get(metric)
    return entry.title if entry is not None else metric


def higher_is_better(metric: str) -> bool:
    entry = catalog.BY_PATH.get(metric)
    return entry is not None and entry.higher_is_better


def axis_label(axis: str) -> str:
    """A varied field with its unit, e.g. 'workload.arrival.rate (requests/s)'."""
    unit = _AXIS_UNITS.get(axis)
    if unit is None:
        parts = axis.split(".")
        if any(p.endswith("_s") for p in parts):
            unit = "s"
        elif parts[-1].endswith("_tokens"):
            unit = "tokens"
    return f"{axis} ({unit})" if unit else axis


def _dimensions(stored: dict) -> list[tuple[str, list[str]]]:
    """Each vary axis is a dimension; the zip group moves together, so it is one (named by its first axis)."""
    dims = [(axis, [axis]) for axis in stored.get("vary", {})]
    zipped = list(stored.get("zip", {}))
    if zipped:
        dims.append((zipped[0], zipped))
    return dims


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def write_plots(stored: dict, rows: list[dict], out: str | Path) -> list[Path]:
    """Draw the study's PNGs into `out`; returns their paths (none when no point succeeded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return []
    name = stored.get("name") or "study"
    written = []
    dims = _dimensions(stored)
    for dim_name, dim_axes in dims:
        others = [d for d in dims if d[0] != dim_name]
        fig, axes = plt.subplots(2, 3, figsize=(16, 9), squeeze=False)
        handles: dict[str, object] = {}
        colors = {key: f"C{i % 10}" for i, key in enumerate(_ordered(_series_key(r, others) for r in ok))}
        for ax, (metric, label, _) in zip(axes.flat, KEY_METRICS, strict=False):
            _draw_metric(ax, ok, dim_axes, others, metric, handles, colors)
            ax.set_ylabel(label)
            ax.set_xlabel(_dim_label(dim_axes))
            ax.set_title(label, fontsize=11)
            ax.grid(True, alpha=0.3)
        legend_title = " / ".join(d[0] for d in others) if others else None
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="lower center",
            ncol=min(len(handles), 6),
            title=legend_title,
            frameon=False,
        )
        fig.suptitle(f"{name}: key metrics vs {dim_name}", fontsize=14)
        fig.tight_layout(rect=(0, 0.08, 1, 0.96))
        path = out / f"metrics-vs-{_slug(dim_name)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    pareto = stored.get("pareto")
    if pareto:
        path = plot_pareto(name, ok, pareto, [a for d in dims for a in d[1]], out / "pareto.png")
        if path:
            written.append(path)
    return written


def _dim_label(dim_axes: list[str]) -> str:
    label = axis_label(dim_axes[0])
    if len(dim_axes) > 1:
        label += f"\n(zipped with {', '.join(dim_axes[1:])})"
    return label


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def _series_key(row: dict, others) -> str:
    return ", ".join(_text(row[d[1][0]]) for d in others) if others else "all points"


def _draw_metric(ax, rows, dim_axes, others, metric, handles, colors) -> None:
    """One line (or bar group) per combination of the other dimensions' values."""
    x_axis = dim_axes[0]
    x_values = _ordered(r[x_axis] for r in rows)
    numeric = all(is_number(v) for v in x_values)
    series: dict[str, dict] = {}
    for row in rows:
        key = _series_key(row, others)
        value = row.get(metric)
        if is_number(value):
            series.setdefault(key, {})[_text(row[x_axis]) if not numeric else row[x_axis]] = value
    keys = list(series)
    if numeric:
        for key in keys:
            xs = sorted(series[key])
            (line,) = ax.plot(xs, [series[key][x] for x in xs], marker="o", label=key, color=colors[key])
            handles.setdefault(key, line)
        if len(x_values) > 1 and min(x_values) > 0 and max(x_values) / min(x_values) >= 20:
            ax.set_xscale("log")
    else:
        labels = [_text(v) for v in x_values]
        width = 0.8 / max(len(keys), 1)
        for i, key in enumerate(keys):
            xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(labels))]
            ys = [series[key].get(label, math.nan) for label in labels]
            bars = ax.bar(xs, ys, width=width, label=key, color=colors[key])
            handles.setdefault(key, bars)
        ax.set_xticks(range(len(labels)), labels, rotation=20 if max(map(len, labels)) > 8 else 0)


def _ordered(values) -> list:
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def pareto_front(points: list[tuple[float, float]], higher: tuple[bool, bool]) -> list[int]:
    """Indices of the non-dominated points (each coordinate minimised, or maximised where `higher` says)."""
    sign = [(-1 if h else 1) for h in higher]
    keyed = [(p[0] * sign[0], p[1] * sign[1]) for p in points]
    front = []
    for i, (a, b) in enumerate(keyed):
        dominated = any((c <= a and d <= b) and (c < a or d < b) for j, (c, d) in enumerate(keyed) if j != i)
        if not dominated:
            front.append(i)
    return front


def plot_pareto(name: str, rows: list[dict], metrics: list[str], axes: list[str], path: Path) -> Path | None:
    """Scatter of every ok point on two metrics with the non-dominated ones highlighted and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mx, my = metrics
    usable = [r for r in rows if is_number(r.get(mx)) and is_number(r.get(my))]
    if not usable:
        return None
    pts = [(r[mx], r[my]) for r in usable]
    front = pareto_front(pts, (higher_is_better(mx), higher_is_better(my)))
    fig, ax = plt.subplots(figsize=(9, 6.5))
    ax.scatter(*zip(*pts, strict=True), color="0.6", s=30, label="all points")
    fp = sorted(((pts[i], usable[i]) for i in front), key=lambda t: t[0])
    ax.plot(
        [p[0] for p, _ in fp], [p[1] for p, _ in fp], "o-", color="C3", markersize=8, label="Pareto front"
    )
    for (x, y), row in fp:
        text = ", ".join(f"{a.split('.')[-1]}={_text(row[a])}" for a in axes if a in row)
        if row.get("plan"):
            text += f"\n{row['plan']}"
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel(
        metric_label(mx) + (" (higher is better)" if higher_is_better(mx) else " (lower is better)")
    )
    ax.set_ylabel(
        metric_label(my) + (" (higher is better)" if higher_is_better(my) else " (lower is better)")
    )
    ax.margins(0.15)
    ax.set_title(f"{name}: Pareto front of {metric_label(mx)} vs {metric_label(my)}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def redraw(out: str | Path) -> tuple[dict, list[dict], list[Path]]:
    """Re-draw a study's plots from its stored table; returns (the stored study, its rows, the PNGs)."""
    stored, rows = read_rows(out)
    return stored, rows, write_plots(stored, rows, out)


def _num(value, digits: int = 3) -> str:
    if not is_number(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def summary_table(stored: dict, rows: list[dict]) -> Table:
    """One line per point: its varied values, status, plan and the key metrics."""
    axes = [*stored.get("vary", {}), *stored.get("zip", {})]
    is_plan = stored.get("run") == "plan"
    ok = sum(r.get("status") == "ok" for r in rows)
    table = Table(
        title=f"study {escape(str(stored.get('name') or ''))}: {len(rows)} points, {ok} ok",
        title_justify="left",
    )
    table.add_column("#", justify="right")
    for axis in axes:
        table.add_column(escape(axis))
    table.add_column("status")
    table.add_column("plan")
    if is_plan:
        table.add_column("objective", justify="right")
    short = ("tok/s", "TTFT p99 s", "TPOT p99 s", "$/M tok", "J/tok", "goodput rps")
    for label in short:
        table.add_column(label, justify="right")
    table.add_column("error", overflow="fold", max_width=50)
    for row in rows:
        status = row.get("status") or "-"
        color = {"ok": "green", "no_plan": "yellow"}.get(status, "red")
        cells = [str(row.get("point")), *(escape(_text(row.get(a))) for a in axes)]
        cells += [f"[{color}]{status}[/]", escape(str(row.get("plan") or "-"))]
        if is_plan:
            cells.append(_num(row.get("objective")))
        cells += [_num(row.get(m)) for m, _, _ in KEY_METRICS]
        cells.append(escape((row.get("error") or "")[:200]))
        table.add_row(*cells)
    return table
