"""How a simulated plan is scored against the goals: one objective function, one feasibility function.

Both read a simulation result's JSON (docs/design.md §6 keys) and the scenario's `Goals`:

* `objective_value(metrics, goals)` — the number the objective optimizes, read from the metric the objective
  table names (`formulations.objectives`: min_cost $/h, max_goodput requests/s meeting every SLO, min_energy
  J per output token, min_latency p99 E2E in s, max_throughput output tokens/s);
* `violations(metrics, goals, num_gpus)` — every SLO (at its percentile) and budget the plan breaks, with the
  measured value, the target and how far off it is, and requests the plan rejected (too long for its KV
  cache), and a disaggregated plan whose KV-cache stream its links cannot carry (`kv_transfer`,
  planner.search.disaggregation). For max_goodput the SLOs are already inside the objective (goodput counts only the requests that
  meet every SLO), so budgets decide feasibility there — unless no request meets the SLOs at all: a plan with
  goodput 0 misses the goals, and its violations name the SLOs it misses and by how much.

`rank_key` orders scored plans (feasible first, then the objective, then $/h, GPUs, label) so the exhaustive
baseline and the loop break ties the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from formulations.objectives import OBJECTIVES, ObjectiveSpec, objective_spec

if (
    TYPE_CHECKING
):  # annotations only: importing the scenario's pydantic classes costs `apex --help` its start-up
    from simulator.scenario import Goals

SENSE: dict[str, str] = {name: o.sense for name, o in OBJECTIVES.items()}
UNIT: dict[str, str] = {name: o.unit for name, o in OBJECTIVES.items()}


def spec(name: str) -> ObjectiveSpec:
    """The objective table's entry (formulations.objectives)."""
    return objective_spec(name)


_SLO_NAMES = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E"}
_STATS = ("mean", "p50", "p90", "p99")


@dataclass(frozen=True, slots=True)
class Violation:
    """One goal a simulated plan misses: `value` was measured, `target` is the limit (both in `unit`)."""

    goal: str  # e.g. "ttft_s.p99" or "budget.usd_per_hour"
    value: float
    target: float
    unit: str

    @property
    def excess(self) -> float:
        """How far over the limit, relative to it (0.4 = 40 % over); for a capacity short of its target rate,
        how far under it."""
        if self.goal == "capacity.rate_rps":
            return (self.target - self.value) / self.target if self.target > 0 else math.inf
        return (self.value - self.target) / self.target if self.target > 0 else math.inf

    def describe(self) -> str:
        """E.g. "TTFT p99 2.8 s > 2.0 s target (+40%)"."""
        if self.goal == "requests.rejected":
            return f"{self.value:.0f} requests rejected (they never fit a replica's KV cache)"
        if self.goal == "slo.goodput_rps":
            return "no request meets every SLO (goodput 0 req/s)"
        if self.goal == "capacity.rate_rps":
            return (
                f"sustains {self.value:.3g} req/s within the SLOs < {self.target:.3g} req/s target "
                f"(−{100 * self.excess:.0f}%)"
            )
        if self.goal == "capacity.confirmed":
            return "its capacity did not hold on every seed"
        if self.goal == "kv_transfer.backlog_bytes":
            return (
                f"the KV-cache stream falls {self.value / 1e9:.3g} GB behind its links "
                f"(allowed {self.target / 1e9:.3g} GB: one largest prompt per replica)"
            )
        if self.goal.startswith("budget."):
            name = f"budget {self.goal.removeprefix('budget.')}"
        else:
            metric, stat = self.goal.split(".")
            name = f"{_SLO_NAMES.get(metric, metric)} {stat}"
        return (
            f"{name} {self.value:.3g} {self.unit} > {self.target:.3g} {self.unit} target "
            f"(+{100 * self.excess:.0f}%)"
        )


def _get(metrics: dict, *path: str) -> float | None:
    node = metrics
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def objective_value(metrics: dict, goals: Goals) -> float:
    """The objective of one simulated plan in the simulation's units (see the module docstring)."""
    o = spec(goals.objective)
    value = _get(metrics, *o.metric)
    if value is None or math.isnan(value):
        return o.worst
    return value


def violations(metrics: dict, goals: Goals, num_gpus: int | None = None) -> list[Violation]:
    """Every SLO at its percentile and every budget the simulated plan breaks (empty = it meets the goals)."""
    out: list[Violation] = []
    goodput = _get(metrics, "slo", "goodput_rps")
    # max_goodput leaves the SLOs to the goodput itself, unless not one request meets them: then the plan
    # serves nothing and the SLOs it misses are what to report
    if goals.objective != "max_goodput" or not goodput:
        for metric in ("ttft_s", "tpot_s", "e2e_s"):
            target = getattr(goals.slo, metric)
            if target is None:
                continue
            for stat in _STATS:
                limit = getattr(target, stat)
                value = _get(metrics, metric, stat)
                if limit is not None and value is not None and value > limit:
                    out.append(Violation(f"{metric}.{stat}", value, limit, "s"))
    if goals.objective == "max_goodput" and not goodput and not out:
        out.append(Violation("slo.goodput_rps", 0.0, 0.0, "req/s"))
    rejected = _get(metrics, "requests", "rejected")
    if rejected:
        out.append(Violation("requests.rejected", rejected, 0.0, "requests"))
    kv = metrics.get("kv_transfer")
    if isinstance(kv, dict) and kv.get("keeps_up") is False:  # disaggregated: the links cannot carry the KV
        worst = max(
            (kv[side] for side in ("prefill", "decode") if isinstance(kv.get(side), dict)),
            key=lambda x: x["backlog_bytes"] - x["allowed_backlog_bytes"],
        )
        out.append(
            Violation(
                "kv_transfer.backlog_bytes", worst["backlog_bytes"], worst["allowed_backlog_bytes"], "B"
            )
        )
    b = goals.budget
    makespan = _get(metrics, "makespan_s")
    joules = _get(metrics, "energy", "joules")
    watts = joules / makespan if joules is not None and makespan else None
    measured = {
        "usd_per_hour": (_get(metrics, "cost", "usd_per_hour"), "$/h"),
        "watts": (watts, "W"),
        "num_gpus": (float(num_gpus) if num_gpus is not None else None, "GPUs"),
        "joules_per_token": (_get(metrics, "energy", "joules_per_output_token"), "J/tok"),
    }
    for name, (value, unit) in measured.items():
        limit = getattr(b, name)
        if limit is not None and value is not None and value > limit * (1 + 1e-9):
            out.append(Violation(f"budget.{name}", value, float(limit), unit))
    return out


def better(a: float, b: float, objective: str) -> bool:
    """True when objective value `a` is strictly better than `b`."""
    return spec(objective).better(a, b)


def relative_gap(incumbent: float, bound: float, objective: str) -> float:
    """How far the incumbent may be from the optimum, relative to the incumbent (0 when it meets the bound)."""
    if not (math.isfinite(incumbent) and math.isfinite(bound)):
        return math.inf
    shortfall = bound - incumbent if SENSE[objective] == "max" else incumbent - bound
    return max(shortfall, 0.0) / max(abs(incumbent), 1e-12)


def gain(chosen: float, other: float, objective: str) -> float:
    """Relative improvement of `chosen` over `other` (0.25 = 25 % better); inf when `other` is infeasible."""
    if not math.isfinite(other):
        return math.inf
    if not math.isfinite(chosen):
        return -math.inf
    diff = chosen - other if SENSE[objective] == "max" else other - chosen
    return diff / max(abs(other), 1e-12)


def rank_key(
    objective: str,
    value: float,
    feasible: bool,
    usd_per_hour: float,
    num_gpus: int,
    e2e_p99_s: float,
    label: str,
):
    """Sort key: feasible plans first, then the objective, then cheaper, fewer GPUs, lower p99 E2E, the label."""
    signed = -value if SENSE[objective] == "max" else value
    if math.isnan(signed):
        signed = math.inf
    usd = usd_per_hour if math.isfinite(usd_per_hour) else math.inf
    return (not feasible, signed, usd, num_gpus, e2e_p99_s, label)
