"""The SM clock `apex plan` picked and what it costs in latency (docs/design.md §5.2).

When the plan space has a clock dimension (`pricing.searches_clocks`), the best plan's replica groups each carry
the clock their template was priced at. Its *twin* is the same plan at the default clock (every group's
`sm_clock_mhz` removed, the same engine settings); `clock_choice` compares the two simulations — the twin from
the candidate pool when the search simulated it, else simulated here — and reports the energy saved and the
latency paid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from planner.search.labels import Proposal, plan_key
from planner.search.pool import Candidate, Simulations
from planner.search.pricing import searches_clocks
from simulator.plan import Plan
from simulator.scenario import Scenario

# (JSON name, metric path) of the latencies whose change is reported
LATENCY_METRICS = (
    ("ttft_p99", ("ttft_s", "p99")),
    ("tpot_mean", ("tpot_s", "mean")),
    ("tpot_p99", ("tpot_s", "p99")),
    ("e2e_p99", ("e2e_s", "p99")),
)


def default_clock_twin(plan: Plan) -> Plan:
    """The same plan with every replica group at the default clock."""
    return Plan(replicas=[g.model_copy(update={"sm_clock_mhz": None}) for g in plan.replicas])


@dataclass(frozen=True)
class ClockChoice:
    """The clock of each replica group of the best plan (None: the default boost clock) and, against the same
    plan at the default clock, the relative change of J/token and of each latency (best / twin - 1)."""

    clocks_mhz: tuple[int | None, ...]
    default_plan: str
    default_feasible: bool | None  # None: the twin could not be simulated (time limit)
    energy_change: float | None
    latency_change: dict[str, float | None]
    latency_s: dict[str, tuple[float | None, float | None]]  # metric -> (best, twin) seconds

    def to_json(self) -> dict:
        return {
            "sm_clock_mhz": list(self.clocks_mhz),
            "default_clock_plan": self.default_plan,
            "default_clock_feasible": self.default_feasible,
            "joules_per_output_token_change": self.energy_change,
            "latency_change": dict(self.latency_change),
            "latency_s": {k: {"picked": a, "default_clock": b} for k, (a, b) in self.latency_s.items()},
        }

    def describe(self) -> str:
        """One line for people: the clock picked and its cost."""
        clocks = sorted({"boost" if c is None else f"{c} MHz" for c in self.clocks_mhz})
        text = f"SM clock picked: {', '.join(clocks)}"
        if all(c is None for c in self.clocks_mhz) or self.default_feasible is None:
            return text
        parts = [f"{_pct(self.energy_change)} J/token"]
        parts += [f"{_pct(self.latency_change[k])} {k.replace('_', ' ')}" for k, _ in LATENCY_METRICS]
        return f"{text}; vs the same plan at the boost clock: " + ", ".join(parts)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _metric(c: Candidate | None, path: tuple[str, ...]) -> float | None:
    value = c.metrics if c is not None else None
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _change(a: float | None, b: float | None) -> float | None:
    return a / b - 1.0 if a is not None and b else None


def clock_choice(
    scenario: Scenario,
    best: Candidate,
    pool: dict[str, Candidate],
    *,
    simulate_fn: Callable | None = None,
    makespan_floor: Callable | None = None,
    deadline: float | None = None,
) -> tuple[ClockChoice, int]:
    """The ClockChoice of `best` and the number of simulations it ran (0 or 1: the twin, when not in `pool`)."""
    twin_plan = default_clock_twin(best.plan)
    key = plan_key(twin_plan)
    twin = next((c for c in pool.values() if plan_key(c.plan) == key and c.settings == best.settings), None)
    ran = 0
    if twin is None and any(g.sm_clock_mhz is not None for g in best.plan.replicas):
        proposal = Proposal(twin_plan, best.settings) if best.settings is not None else twin_plan
        with Simulations(scenario, workers=1, simulate_fn=simulate_fn, makespan_floor=makespan_floor) as sims:
            (twin,) = sims.run([proposal], deadline=deadline, source="clock")
            ran = sims.count
    elif twin is None:
        twin = best
    energy = ("energy", "joules_per_output_token")
    latency_s = {k: (_metric(best, p), _metric(twin, p)) for k, p in LATENCY_METRICS}
    choice = ClockChoice(
        clocks_mhz=tuple(g.sm_clock_mhz for g in best.plan.replicas),
        default_plan=twin.name if twin is not None else twin_plan.label(),
        default_feasible=twin.feasible if twin is not None else None,
        energy_change=_change(_metric(best, energy), _metric(twin, energy)),
        latency_change={k: _change(a, b) for k, (a, b) in latency_s.items()},
        latency_s=latency_s,
    )
    return choice, ran


def attach_clock_choice(result, pool, *, simulate_fn, makespan_floor, deadline):
    """With `sm_clock_mhz: auto`: `result.clock` (the clock the best plan runs at and its cost against the same
    plan at the boost clock), counting the twin's simulation in `result.search.simulations`. Returns `result`."""
    if searches_clocks(result.scenario):
        result.clock, ran = clock_choice(
            result.scenario,
            result.best,
            pool,
            simulate_fn=simulate_fn,
            makespan_floor=makespan_floor,
            deadline=deadline,
        )
        result.search.simulations += ran
    return result
