"""The throughput–interactivity view of `apex plan --report`: output tokens/s per GPU against tokens/s per user
(1 / mean TPOT), the way serving teams pick an operating point (AIConfigurator's Pareto chart).

Points, all steady-state figures (docs/design.md §3.2):

* every simulated plan (candidates and baselines) at the scenario's own load (a capacity objective's plans: at
  their capacity);
* for the best few plans that meet the goals, a sweep of closed-loop load — 1, 4, 16, … clients per replica up
  to the engine's max_num_seqs, on the scenario's request lengths — which traces each plan's curve from one
  user at a time (most tokens/s per user) to full batches (most tokens/s per GPU).

A point *meets the SLOs* when its steady-state verdict holds (it keeps up and every SLO holds at its statistic).
The front is the set of points meeting the SLOs that no other such point beats on both axes. Written as
`throughput_interactivity.csv` (one row per point, `pareto` marking the front) and
`throughput_interactivity.png`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from simulator.scenario import Scenario, engine_setting, load_scenario
from simulator.simulate import simulate

SWEEP_PLANS = 3
CLIENTS_PER_REPLICA = (1, 4, 16, 64, 256, 1024)
MIN_SWEEP_REQUESTS = 300  # a closed-loop point's run: at least this many, and 8 per client
REQUESTS_PER_CLIENT = 8


@dataclass(frozen=True, slots=True)
class Point:
    source: str  # "candidate", "baseline:NAME" or "sweep"
    plan: str
    num_gpus: int
    load: str  # "poisson 6 req/s" or "closed 64 clients"
    tokens_per_s_per_gpu: float | None
    tokens_per_s_per_user: float | None
    ttft_p99_s: float | None
    tpot_mean_s: float | None
    meets_slos: bool

    @property
    def defined(self) -> bool:
        return self.tokens_per_s_per_gpu is not None and self.tokens_per_s_per_user is not None


def _point(source: str, name: str, num_gpus: int, load: str, metrics: dict) -> Point:
    steady = metrics.get("steady") or {}
    thr = (steady.get("throughput") or {}).get("output_tokens_per_s")
    tpot = (steady.get("tpot_s") or {}).get("mean")
    ttft = (steady.get("ttft_s") or {}).get("p99")
    met = bool(steady.get("keeps_up")) and bool((steady.get("slo") or {}).get("met"))
    return Point(
        source,
        name,
        num_gpus,
        load,
        thr / num_gpus if thr is not None and num_gpus else None,
        1.0 / tpot if tpot else None,
        ttft,
        tpot,
        met,
    )


def _scenario_load(scenario: Scenario) -> str:
    arrival = scenario.spec.workload.arrival
    if scenario.spec.workload.trace is not None:
        return "the trace's arrivals"
    if arrival is None or arrival.process == "burst":
        return "burst"
    if arrival.process == "closed":
        return f"closed {arrival.concurrency} clients"
    return f"{arrival.process} {arrival.rate:g} req/s"


def _load_of(candidate, scenario_load: str) -> str:
    """The load a candidate's metrics were measured at: the scenario's, or its capacity (capacity objectives)."""
    rate = (candidate.metrics.get("capacity") or {}).get("rate_rps")
    return f"at its capacity, {rate:.4g} req/s" if rate else scenario_load


def _closed_loop(scenario: Scenario, plan, clients: int) -> Scenario:
    """The scenario at `clients` closed-loop clients on `plan` (its lengths; enough requests to settle)."""
    data = scenario.spec.model_dump(mode="json", exclude_none=True)
    workload = data["workload"]
    workload["arrival"] = {"process": "closed", "concurrency": clients}
    workload["requests"] = max(MIN_SWEEP_REQUESTS, REQUESTS_PER_CLIENT * clients)
    data["plan"] = plan.model_dump(mode="json", exclude_none=True)
    if scenario.file and isinstance(workload.get("trace"), str) and not Path(workload["trace"]).is_absolute():
        workload["trace"] = str((Path(scenario.file).parent / workload["trace"]).resolve())
    return load_scenario(data)


def points(result) -> list[Point]:
    """Every plan at the scenario's load, and the closed-loop sweeps of the best few plans meeting the goals."""
    sc = result.scenario
    load = _scenario_load(sc)
    out = [_point("candidate", c.name, c.num_gpus, _load_of(c, load), c.metrics) for c in result.candidates]
    out += [
        _point(f"baseline:{n}", c.name, c.num_gpus, _load_of(c, load), c.metrics)
        for n, c in result.baselines.items()
    ]
    for c in [c for c in result.candidates if c.feasible][:SWEEP_PLANS]:
        own = c.scenario_in(sc)  # the plan with the engine knobs and dtypes it was simulated with
        max_seqs = engine_setting(own.spec.engine, "max_num_seqs")
        replicas = sum(g.count for g in c.plan.replicas if g.role in ("colocated", "prefill"))
        for per_replica in CLIENTS_PER_REPLICA:
            if per_replica > max_seqs:
                break
            clients = per_replica * replicas
            metrics = simulate(_closed_loop(own, c.plan, clients)).to_json()
            out.append(_point("sweep", c.name, c.num_gpus, f"closed {clients} clients", metrics))
    return out


def front(pts: list[Point]) -> set[int]:
    """Indices of the points meeting the SLOs that no other such point beats on both axes."""
    ok = [i for i, p in enumerate(pts) if p.meets_slos and p.defined]
    keep = set()
    for i in ok:
        p = pts[i]
        dominated = any(
            pts[j].tokens_per_s_per_gpu >= p.tokens_per_s_per_gpu
            and pts[j].tokens_per_s_per_user >= p.tokens_per_s_per_user
            and (
                pts[j].tokens_per_s_per_gpu > p.tokens_per_s_per_gpu
                or pts[j].tokens_per_s_per_user > p.tokens_per_s_per_user
            )
            for j in ok
            if j != i
        )
        if not dominated:
            keep.add(i)
    return keep


def _cell(value):
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def write_interactivity(result, csv_path: Path, png_path: Path) -> list[Path]:
    """Write the CSV and the PNG (module docstring); returns both paths."""
    pts = points(result)
    on_front = front(pts)
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "source",
                "plan",
                "num_gpus",
                "load",
                "output_tokens_per_s_per_gpu",
                "output_tokens_per_s_per_user",
                "ttft_p99_s",
                "tpot_mean_s",
                "meets_slos",
                "pareto",
            ]
        )
        for i, p in enumerate(pts):
            w.writerow(
                [
                    p.source,
                    p.plan,
                    p.num_gpus,
                    p.load,
                    _cell(p.tokens_per_s_per_gpu),
                    _cell(p.tokens_per_s_per_user),
                    _cell(p.ttft_p99_s),
                    _cell(p.tpot_mean_s),
                    p.meets_slos,
                    i in on_front,
                ]
            )
    _plot(result, pts, on_front, png_path)
    return [csv_path, png_path]


def _plot(result, pts: list[Point], on_front: set[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 6.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sweeps: dict[str, list[Point]] = {}
    for p in pts:
        if p.source == "sweep" and p.defined:
            sweeps.setdefault(p.plan, []).append(p)
    for k, (name, curve) in enumerate(sweeps.items()):
        curve = sorted(curve, key=lambda p: p.tokens_per_s_per_user)
        color = colors[k % len(colors)]
        ax.plot(
            [p.tokens_per_s_per_user for p in curve],
            [p.tokens_per_s_per_gpu for p in curve],
            "-",
            color=color,
            lw=1.2,
            alpha=0.8,
            label=f"{name}: closed-loop sweep",
        )
        for p in curve:
            ax.scatter(
                [p.tokens_per_s_per_user],
                [p.tokens_per_s_per_gpu],
                color=color if p.meets_slos else "none",
                edgecolors=color,
                s=34,
                zorder=3,
            )
            ax.annotate(
                p.load.removeprefix("closed ").removesuffix(" clients"),
                (p.tokens_per_s_per_user, p.tokens_per_s_per_gpu),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=color,
            )
    at_load = [p for p in pts if p.source != "sweep" and p.defined]
    met = [p for p in at_load if p.meets_slos]
    missed = [p for p in at_load if not p.meets_slos]
    if met:
        ax.scatter(
            [p.tokens_per_s_per_user for p in met],
            [p.tokens_per_s_per_gpu for p in met],
            marker="D",
            c="black",
            s=30,
            zorder=4,
            label=f"simulated plans ({met[0].load}), SLOs met",
        )
    if missed:
        ax.scatter(
            [p.tokens_per_s_per_user for p in missed],
            [p.tokens_per_s_per_gpu for p in missed],
            marker="x",
            c="tab:gray",
            s=36,
            zorder=4,
            label="simulated plans, SLOs missed",
        )
    frontier = sorted((pts[i] for i in on_front), key=lambda p: p.tokens_per_s_per_user)
    if frontier:
        ax.plot(
            [p.tokens_per_s_per_user for p in frontier],
            [p.tokens_per_s_per_gpu for p in frontier],
            "--",
            c="tab:red",
            lw=2,
            zorder=2,
            label="Pareto front (points meeting the SLOs)",
        )
    ax.set_xlabel("output tokens/s per user (1 / mean TPOT, steady state)")
    ax.set_ylabel("output tokens/s per GPU (steady state)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(
        f"{result.scenario.name}: throughput vs interactivity (hollow: SLOs missed; labels: clients)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
