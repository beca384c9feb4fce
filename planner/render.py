"""Terminal rendering with rich: catalog tables, one entry's numbers, check reports."""

from __future__ import annotations

import json
import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planner.lazy import lazy_module

catalog = lazy_module("simulator.catalog")  # pydantic catalog classes: loaded by the tables that list it
metric_catalog = lazy_module("simulator.metric_catalog")  # (and numpy): loaded by the simulation table

# Piped output (files, CI logs) gets a wide fixed width so that tables are not squeezed to 80 columns.
console = Console(width=None if Console().is_terminal else 160)


def _num(value, digits: int = 3) -> str:
    """A number for a table: thousands separators, 3 significant digits below 100, no exponents below 1e15."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}" if abs(value) < 1e15 else f"{value:.3e}"
    return f"{value:.{digits}g}"


def finite_or_none(data):
    """`data` with every NaN or infinite float replaced by None (JSON null), recursively."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_none(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(v) for v in data]
    return data


def json_line(data) -> str:
    """One line of strict JSON: a metric without a value (no completed request) is null, never NaN."""
    return json.dumps(finite_or_none(data), allow_nan=False, default=str)


def params_label(n: float) -> str:
    return f"{n / 1e12:.2f}T" if n >= 1e12 else f"{n / 1e9:.1f}B"


def models_table() -> Table:
    table = Table(title="Models (configs/models)")
    for col in (
        "name",
        "params",
        "active",
        "layers",
        "hidden",
        "heads/kv",
        "attention",
        "MoE",
        "KV bytes/token (bf16)",
    ):
        table.add_column(col, justify="right" if col not in ("name", "attention", "MoE") else "left")
    for name in catalog.list_names("model"):
        m = catalog.get_model(name)
        moe = f"{m.moe.num_experts}e top{m.moe.top_k}" if m.moe else "-"
        table.add_row(
            name,
            params_label(m.num_params),
            params_label(m.num_active_params),
            str(m.num_layers),
            str(m.hidden_size),
            f"{m.num_heads}/{m.num_kv_heads}",
            m.attention,
            moe,
            f"{m.kv_bytes_per_token('bf16'):,.0f}",
        )
    return table


def gpus_table() -> Table:
    table = Table(title="GPUs (configs/hardware) — dense peaks")
    for col in (
        "name",
        "bf16 TF/s",
        "fp8 TF/s",
        "fp4 TF/s",
        "memory GiB",
        "HBM TB/s",
        "link GB/s",
        "TDP W",
        "$/GPU-h",
    ):
        table.add_column(col, justify="left" if col == "name" else "right")
    for name in catalog.list_names("gpu"):
        g = catalog.get_gpu(name)
        p = g.peak_tflops
        table.add_row(
            name,
            _num(p.bf16),
            _num(p.fp8),
            _num(p.fp4),
            _num(g.memory_gib),
            _num(g.memory_bandwidth_tbps),
            _num(g.scale_up_bandwidth_gbps),
            _num(g.tdp_w),
            f"{g.price_usd_per_hour:.2f}",
        )
    return table


def clusters_table() -> Table:
    table = Table(title="Cluster presets (configs/clusters)")
    for col in ("name", "GPUs", "node groups", "description"):
        table.add_column(col, justify="right" if col == "GPUs" else "left")
    for name in catalog.list_names("cluster"):
        c = catalog.get_cluster(name)
        groups = ", ".join(f"{g.nodes}x{g.gpus_per_node} {g.gpu}" for g in c.node_groups)
        table.add_row(name, str(c.num_gpus), groups, c.description)
    return table


def entry_table(kind: str, name: str) -> Table:
    """Every number of one catalog entry, derived ones included."""
    entry = catalog.get(kind, name)
    table = Table(title=f"{kind} {entry.name}", show_header=True)
    table.add_column("field")
    table.add_column("value", justify="right", max_width=70, overflow="fold")
    table.add_column("source / note", overflow="fold")
    sources = getattr(entry, "sources", {}) or {}

    def walk(prefix: str, data: dict):
        for key, value in data.items():
            if key in ("sources",):
                continue
            label = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{label}.", value)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        walk(f"{label}[{i}].", item)
                    else:
                        table.add_row(f"{label}[{i}]", _num(item), "")
            else:
                table.add_row(label, _num(value), sources.get(key, sources.get(label, "")))

    walk("", entry.model_dump(exclude_none=True))
    if kind == "model":
        table.add_section()
        for key, value in entry.summary().items():
            table.add_row(key, _num(value), "derived")
    if kind == "cluster":
        table.add_section()
        table.add_row("total GPUs", str(entry.num_gpus), "derived")
    return table


def check_table(report) -> Table:
    """The `apex check` report: the scenario in one line, then per-stage memory."""
    sc = report.scenario
    m = sc.model
    title = (
        f"{sc.name}: {m.name} ({params_label(m.num_params)} params) on {sc.cluster.num_gpus} GPUs "
        f"[{', '.join(f'{n}×{g}' for g, n in sc.cluster.gpus_by_type().items())}] — "
        + ("scenario is valid" if report.fits else "the plan does NOT fit")
    )
    table = Table(title=title, title_justify="left")
    if sc.plan is None:
        table.add_column("note")
        table.add_row("no plan given: add 'plan:' or --plan to see per-GPU memory")
        return table
    for col in (
        "replicas",
        "stage",
        "layers",
        "GPUs",
        "parallelism",
        "weights GiB/GPU",
        "GPU GiB",
        "KV tokens",
        "fits",
    ):
        table.add_column(col, justify="right" if col not in ("parallelism", "fits") else "left")
    for r in report.rows:
        count = sc.plan.replicas[r.replica_group].count
        table.add_row(
            f"#{r.replica_group} ×{count}",
            str(r.stage),
            f"[{r.layers[0]}, {r.layers[1]})",
            f"{r.num_gpus}×{r.gpu}",
            r.parallelism,
            f"{r.weights_gib:.1f}",
            f"{r.capacity_gib:.0f}",
            f"{r.kv_cache_tokens:,}",
            "[green]yes[/]" if r.fits else "[red]NO[/]",
        )
    table.caption = f"plan {escape(sc.plan.label())}: " + (
        "weights fit on every GPU" if report.fits else "weights do NOT fit on some GPUs"
    )
    return table


def _summary_rows() -> list[tuple[str, object]]:
    """(label, cell) rows of the simulation table; a row showing one metric takes the metric catalog's name."""

    def one(path: str, fmt: str):
        entry = metric_catalog.metric(path)
        return entry.title, lambda r: format(entry.value(r), fmt)

    return [
        ("plan", lambda r: escape(r["plan"] if isinstance(r["plan"], str) else str(r["plan"]))),
        one("requests.completed", ",.0f"),
        one("requests.rejected", ",.0f"),
        one("requests.preempted", ",.0f"),
        one("makespan_s", ".1f"),
        one("throughput.output_tokens_per_s", ",.0f"),
        one("throughput.total_tokens_per_s", ",.0f"),
        one("throughput.requests_per_s", ".2f"),
        ("TTFT mean / p50 / p99 (s)", lambda r: _stats(r["ttft_s"])),
        ("TPOT mean / p50 / p99 (ms)", lambda r: _stats(r["tpot_s"], 1e3)),
        ("ITL p50 / p99 (ms)", lambda r: f"{r['itl_s']['p50'] * 1e3:.1f} / {r['itl_s']['p99'] * 1e3:.1f}"),
        ("E2E mean / p50 / p99 (s)", lambda r: _stats(r["e2e_s"])),
        one("slo.attainment", ".1%"),
        one("slo.goodput_rps", ".2f"),
        one("energy.joules_per_output_token", ".3g"),
        one("cost.usd_per_hour", ",.2f"),
        one("cost.usd_per_million_output_tokens", ",.2f"),
        one("memory.weights_gib_per_gpu", ".1f"),
        one("memory.kv_cache_tokens", ",.0f"),
        ("prefix cache: hit rate; saved prefill tokens; evicted blocks", lambda r: prefix_cache_cell(r)),
        ("steady window (s; requests)", lambda r: _window(r["steady"]["window"])),
        one("steady.throughput.output_tokens_per_s", ",.0f"),
        (
            "steady throughput / arrivals (req/s)",
            lambda r: (
                f"{r['steady']['throughput']['requests_per_s']:.2f} / {r['steady']['window']['arrival_rps']:.2f}"
            ),
        ),
        ("steady TTFT mean / p50 / p99 (s)", lambda r: _stats(r["steady"]["ttft_s"])),
        ("steady TPOT mean / p50 / p99 (ms)", lambda r: _stats(r["steady"]["tpot_s"], 1e3)),
        ("steady E2E mean / p50 / p99 (s)", lambda r: _stats(r["steady"]["e2e_s"])),
        one("steady.slo.attainment", ".1%"),
        one("steady.slo.goodput_rps", ".2f"),
        ("steady SLOs met, keeps up", lambda r: _verdict(r["steady"])),
    ]


def prefix_cache_cell(r: dict) -> str:
    """The prefix-cache figures of a simulation JSON in one cell ("off" when the engine did not cache)."""
    cache = r.get("prefix_cache")
    if not cache or not cache["enabled"]:
        return "off"
    rate = "-" if cache["hit_rate"] is None else f"{cache['hit_rate']:.1%}"
    return f"{rate}; {cache['saved_prefill_tokens']:,}; {cache['evicted_blocks']:,}"


def _window(w: dict) -> str:
    if w["start_s"] is None and not w["occupancy"]:
        return "none (no span of arrivals: a burst)"
    if w["start_s"] is None:
        return f"none (run too short to settle: ~{w['occupancy']:.0f} in the system)"
    return f"{w['start_s']:.1f}–{w['end_s']:.1f}; {w['requests']:,}"


def _verdict(steady: dict) -> str:
    if steady["keeps_up"] is None:
        return "-"
    met = "-" if steady["slo"]["met"] is None else ("yes" if steady["slo"]["met"] else "no")
    return f"{met}, {'yes' if steady['keeps_up'] else 'no'}"


def _stats(d: dict, scale: float = 1.0) -> str:
    if d.get("mean") is None:
        return "-"
    return f"{d['mean'] * scale:.3g} / {d['p50'] * scale:.3g} / {d['p99'] * scale:.3g}"


def simulation_table(names: list[str], results: list[dict]) -> Table:
    """Side-by-side summary of simulation results (the JSON of docs/design.md §6), one column per scenario."""
    table = Table(title="Simulation", title_justify="left")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    results = [finite_or_none(r) for r in results]  # a metric without a value shows as "-"
    for label, get in _summary_rows():
        cells = []
        for r in results:
            try:
                cells.append(get(r))
            except (KeyError, TypeError):
                cells.append("-")
        table.add_row(label, *cells)
    return table


def estimate_tables(report) -> list[Table]:
    """One table per stage: operators as rows, the prefill and each decode batch as columns (ms and bound)."""
    tables = []
    for st in report.stages:
        title = (
            f"replica group {st.replica_group}, stage {st.stage}: {st.description} — weights "
            f"{st.weights_gib:.1f} GiB/GPU, KV cache {st.kv_cache_tokens:,} tokens"
            + ("" if st.fits else " — [red]weights do NOT fit[/]")
        )
        table = Table(title=title, title_justify="left")
        table.add_column("operator")
        for phase in st.phases:
            table.add_column(f"{phase.label}\nms (bound)", justify="right")
        names = list(dict.fromkeys(op.name for phase in st.phases for op in phase.ops))
        for name in names:
            cells = []
            for phase in st.phases:
                op = next((o for o in phase.ops if o.name == name), None)
                if op is None:
                    cells.append("-")
                else:
                    fixed = op.time_s if op.bound == "overhead" and not op.fixed_s else op.fixed_s
                    share = f", {fixed / op.time_s:.0%} fixed" if op.time_s > 0 and fixed > 0 else ""
                    cells.append(f"{op.time_s * 1e3:.3f} ({op.bound[0]}{share})")
            table.add_row(name, *cells)
        table.add_section()
        table.add_row("[bold]total[/]", *[f"[bold]{p.time_s * 1e3:.2f}[/]" for p in st.phases])
        table.add_row("MFU", *[f"{p.mfu:.1%}" for p in st.phases])
        table.add_row("MBU (busiest GPU)", *[f"{p.mbu:.1%}" for p in st.phases])
        table.add_row("fixed-cost share", *[f"{p.fixed_share:.0%}" for p in st.phases])
        table.add_row("energy (J, stage)", *[f"{p.energy_j:.3g}" for p in st.phases])
        table.caption = (
            "bound: c = compute, m = memory, n = network, o = fixed overhead; 'fixed' = launch floors, collective "
            "latency and engine host time, the part that does not shrink with a smaller batch"
        )
        tables.append(table)
    return tables


def calibration_table(result) -> Table:
    """Every calibration point: measured, predicted with defaults, predicted after fitting, error, split."""
    table = Table(title=f"Calibration of {result.gpu} ({result.method})", title_justify="left")
    for col in ("id", "metric", "point", "split", "measured", "default model", "fitted model", "error"):
        table.add_column(
            col,
            justify="right" if col in ("measured", "default model", "fitted model", "error") else "left",
            overflow="fold",
        )
    for r in result.rows:
        table.add_row(
            r.id,
            r.metric,
            r.description,
            r.split,
            f"{r.measured:.4g}",
            f"{r.predicted_before:.4g}",
            f"{r.predicted:.4g}",
            f"{(r.predicted / r.measured - 1):+.1%}",
        )
    s = result.summary()
    table.caption = (
        f"median |error|: all {s['mdape_all']:.1%} (defaults {s['mdape_before_all']:.1%}); "
        f"fitted points {s['mdape_fit']:.1%}; held-out points {s['mdape_held_out']:.1%}. "
        f"{len(result.skipped)} points need the simulator (see bench/bench_e2e_accuracy.py)."
    )
    return table


def calibration_params_table(result) -> Table:
    table = Table(title="Fitted coefficients", title_justify="left")
    for col in ("coefficient", "default", "fitted"):
        table.add_column(col, justify="left" if col == "coefficient" else "right")
    for name, value in result.params.items():
        table.add_row(name, f"{result.defaults.get(name, float('nan')):.4g}", f"{value:.4g}")
    return table
