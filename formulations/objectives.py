"""The one objective table: each objective's sense, units, the simulation metric it reads, the master's
expression for it and how (whether) the planner proves a bound on it (docs/design.md §5.3).

`planner.objective` scores simulated plans from `metric`; `formulations.master` builds `master_expression`;
`planner.search` converts the master's value (`solver_unit`) into the simulation's (`unit`) and states the bound
kind. Nothing else spells objective names out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Sense = Literal["min", "max"]


@dataclass(frozen=True, slots=True)
class ObjectiveSpec:
    """One objective.

    `metric`: path of the number in the simulation JSON (docs/design.md §6) that scores a simulated plan, in
    `unit`. `master_expression`: what the master MILP optimises, in `solver_unit`. `bound`: "exact" (the master
    value is the simulated value), "proven" (a lower bound for min / upper bound for max that the simulator
    cannot beat, docs/design.md §5.3) or "none" (no bound can be proven; no gap is reported).
    `on_capacity`: plans are judged by their capacity (`apex capacity`, docs/design.md §5.7), not by a run at the
    workload's rate; `rate_target`: whether `goals.rate` (req/s the plan must sustain) is refused, optional (with
    it the objective is planned on capacity) or required. Capacity metrics are read from the `capacity` block a
    capacity-planned candidate's metrics carry.
    """

    name: str
    sense: Sense
    unit: str
    metric: tuple[str, ...]
    solver_unit: str
    master_expression: str
    bound: Literal["exact", "proven", "none"]
    bound_note: str = ""
    on_capacity: bool = False
    rate_target: Literal["refused", "optional", "required"] = "refused"

    def planned_on_capacity(self, rate: float | None) -> bool:
        """True when plans are judged by their capacity: always for capacity objectives, else with a rate."""
        return self.on_capacity or rate is not None

    def better(self, a: float, b: float) -> bool:
        """True when value `a` is strictly better than `b`."""
        return a > b if self.sense == "max" else a < b

    @property
    def worst(self) -> float:
        return -float("inf") if self.sense == "max" else float("inf")


OBJECTIVES: dict[str, ObjectiveSpec] = {
    spec.name: spec
    for spec in (
        ObjectiveSpec(
            "max_goodput",
            "max",
            "req/s",
            ("slo", "goodput_rps"),
            "req/s",
            "Σ rate (requests/s that meet every SLO)",
            "proven",
            "requests that can meet every SLO within the work the replicas can do, over the shortest makespan",
        ),
        ObjectiveSpec(
            "max_throughput",
            "max",
            "tok/s",
            ("throughput", "output_tokens_per_s"),
            "work/s",
            "throughput (the largest multiple of the workload's mix the replicas' work rate allows)",
            "proven",
            "output tokens over the shortest makespan the replicas' work rate and the arrivals allow",
        ),
        ObjectiveSpec(
            "min_cost",
            "min",
            "$/h",
            ("cost", "usd_per_hour"),
            "$/h",
            "Σ count · usd_per_hour (with goals.rate: subject to Σ count · capacity ≥ rate)",
            "proven",
            "exact $/h over every plan whose replicas could do the SLO-bound work in time",
            rate_target="optional",
        ),
        ObjectiveSpec(
            "min_energy",
            "min",
            "J/tok",
            ("energy", "joules_per_output_token"),
            "kW",
            "Σ rate · energy per unit of work / 1000 (dynamic power; the idle floor is added outside)",
            "proven",
            "idle power of the cluster over the shortest makespan plus the least dynamic energy of the work",
        ),
        ObjectiveSpec(
            "min_latency",
            "min",
            "s",
            ("e2e_s", "p99"),
            "s",
            "Σ rate · predicted latency / demand (a prediction, not a bound)",
            "none",
            "a percentile of latency under queueing has no bound the cost model can prove",
        ),
        ObjectiveSpec(
            "max_rate_per_gpu",
            "max",
            "req/s/GPU",
            ("capacity", "requests_per_s_per_gpu"),
            "req/s/GPU",
            "Σ count · capacity − q · Σ count · GPUs, q raised to the best ratio (Dinkelbach), then the most "
            "capacity at that ratio",
            "none",
            "capacities come from simulating one replica of each template; a plan's is their sum, verified by "
            "`apex capacity` on the chosen plan",
            on_capacity=True,
        ),
        ObjectiveSpec(
            "min_gpus",
            "min",
            "GPUs",
            ("capacity", "num_gpus"),
            "GPUs",
            "Σ count · GPUs subject to Σ count · capacity ≥ goals.rate",
            "none",
            "capacities come from simulating one replica of each template; a plan's is their sum, verified by "
            "`apex capacity` on the chosen plan",
            on_capacity=True,
            rate_target="required",
        ),
    )
}

OBJECTIVE_NAMES = tuple(OBJECTIVES)


def objective_spec(name: str) -> ObjectiveSpec:
    """The table entry of `name` (ValueError naming the choices when unknown)."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; expected one of {sorted(OBJECTIVES)}") from None
