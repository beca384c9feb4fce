"""What `apex capacity` returns: `CapacityResult` (the rate, what it gives per GPU and per user, the seeds' rates,
the bracket and the search figures) and its JSON (docs/design.md §6)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.plan import Plan


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class Probe:
    """One simulated verdict: `seed` at `rate_rps` with `requests` requests; `sustained` is the steady-state
    verdict (keeps up and meets every SLO in the window); `why` names what failed (empty when sustained)."""

    seed: int
    rate_rps: float
    requests: int
    sustained: bool
    why: str
    metrics: dict  # the simulation's JSON (docs/design.md §6)

    @property
    def steady(self) -> dict:
        return self.metrics["steady"]


@dataclass(frozen=True, slots=True)
class SeedCapacity:
    """One seed's bisection: the highest rate that sustained and the lowest that did not (None: only the
    proven bound is above it), with what failed there."""

    seed: int
    rate_rps: float
    failed_rps: float | None
    limited_by: str
    simulations: int

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "rate_rps": self.rate_rps,
            "failed_rps": _finite(self.failed_rps),
            "limited_by": self.limited_by,
            "simulations": self.simulations,
        }


@dataclass(frozen=True)
class CapacityResult:
    """The plan's capacity under the scenario's SLOs (docs/design.md §5.6).

    `rate_rps` is the highest arrival rate that every seed sustains (each seed bisected to `tolerance`, then
    confirmed at that rate); throughput, latency and the per-GPU / per-user figures are the steady-state values
    at that rate, averaged over the seeds. `output_tokens_per_s_per_user` is 1 / steady mean TPOT (the token
    rate one user sees while its answer streams)."""

    plan: Plan
    plan_name: str
    num_gpus: int
    rate_rps: float
    at_capacity: dict  # the simulation JSON of the first seed at rate_rps
    output_tokens_per_s: float | None
    output_tokens_per_s_per_user: float | None
    ttft_s: dict  # steady mean, p50, p90, p99 at rate_rps (mean over seeds)
    tpot_s: dict
    tolerance: float
    achieved_tolerance: float  # the widest seed bracket (hi / lo − 1) when the search stopped
    seeds: tuple[SeedCapacity, ...]
    confirmed: bool  # every seed sustained at rate_rps
    upper_bound_rps: float
    predicted_rps: float | None
    arrival: str  # the arrival process the rate drives, with a note
    requests_per_run: int  # the longest run any verdict needed
    simulations: int
    wall_s: float
    stopped: str

    @property
    def requests_per_s_per_gpu(self) -> float:
        return self.rate_rps / self.num_gpus if self.num_gpus else 0.0

    @property
    def output_tokens_per_s_per_gpu(self) -> float | None:
        if self.output_tokens_per_s is None or not self.num_gpus:
            return None
        return self.output_tokens_per_s / self.num_gpus

    @property
    def seed_spread(self) -> float:
        """(max − min) / median of the seeds' rates: the seed noise of the answer."""
        rates = sorted(s.rate_rps for s in self.seeds)
        median = (
            rates[len(rates) // 2]
            if len(rates) % 2
            else 0.5 * (rates[len(rates) // 2 - 1] + rates[len(rates) // 2])
        )
        return (rates[-1] - rates[0]) / median if median > 0 else 0.0

    @property
    def limited_by(self) -> str:
        """What failed just above the capacity on the seed that set it."""
        lowest = min(self.seeds, key=lambda s: s.rate_rps)
        return lowest.limited_by

    def to_json(self) -> dict:
        return {
            "capacity": {
                "rate_rps": self.rate_rps,
                "num_gpus": self.num_gpus,
                "output_tokens_per_s": _finite(self.output_tokens_per_s),
                "output_tokens_per_s_per_gpu": _finite(self.output_tokens_per_s_per_gpu),
                "output_tokens_per_s_per_user": _finite(self.output_tokens_per_s_per_user),
                "requests_per_s_per_gpu": self.requests_per_s_per_gpu,
                "ttft_s": self.ttft_s,
                "tpot_s": self.tpot_s,
                "tolerance": self.tolerance,
                "achieved_tolerance": self.achieved_tolerance,
                "limited_by": self.limited_by,
                "confirmed": self.confirmed,
                "seeds": [s.to_json() for s in self.seeds],
                "seed_spread": self.seed_spread,
                "bounds": {
                    "upper_rps": _finite(self.upper_bound_rps),
                    "predicted_rps": _finite(self.predicted_rps),
                },
            },
            "plan": {
                "name": self.plan_name,
                "label": self.plan.label(),
                "num_gpus": self.num_gpus,
                "spec": self.plan.model_dump(mode="json", exclude_none=True),
            },
            "search": {
                "arrival": self.arrival,
                "requests_per_run": self.requests_per_run,
                "simulations": self.simulations,
                "wall_s": self.wall_s,
                "stopped": self.stopped,
            },
        }
