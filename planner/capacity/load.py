"""The scenario's workload at any arrival rate, with common random numbers (docs/design.md §5.6).

Per seed, the request lengths and the arrival pattern are drawn once (lengths as the scenario's generator,
preset or trace gives them; arrival gaps of the scenario's process at unit rate), and a rate λ divides the
arrival times by λ. So for one seed every rate sees the same requests in the same order and the same relative
gaps: the verdict of a seed changes with the rate, not with a redraw, which keeps a bisection on the rate
stable (the standard common-random-numbers device). Runs of more requests extend the same stream (numpy's
generators draw the first n values of a longer draw identically).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.errors import InputError
from simulator.scenario import Arrival, Scenario, WorkloadSpec
from simulator.workload import Requests, generate, resolve_preset

OPEN_PROCESSES = ("poisson", "gamma", "constant")


@dataclass(frozen=True)
class RateLoad:
    """One seed's requests at unit rate; `at(rate, n)` gives the first n at `rate` requests/s."""

    seed: int
    unit_arrival_s: np.ndarray  # arrival times at 1 request/s
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    @property
    def size(self) -> int:
        return len(self.unit_arrival_s)

    def at(self, rate: float, n: int) -> Requests:
        n = min(n, self.size)
        return Requests(
            self.unit_arrival_s[:n] / rate,
            self.input_tokens[:n],
            self.output_tokens[:n],
            np.arange(n).astype(str),
        )


@dataclass(frozen=True)
class LoadModel:
    """How the capacity search draws load from a scenario: the arrival process and a note on how it was chosen."""

    process: str
    cv: float
    note: str


def load_model(scenario: Scenario) -> LoadModel:
    """The scenario's open-loop process; a burst or a missing arrival becomes Poisson (with a note); a closed
    loop is refused (its rate is an outcome of the plan, not an input to vary)."""
    spec = resolve_preset(scenario.spec.workload, file=scenario.file)
    arrival = spec.arrival
    if spec.trace is not None:
        return LoadModel("trace", 1.0, "the trace's arrival pattern, its times scaled to each rate")
    if arrival is not None and arrival.process == "closed":
        raise InputError(
            "apex capacity varies an open-loop arrival rate; a closed loop sets its own rate (simulate it at "
            "several concurrencies instead), so give process poisson, gamma or constant",
            file=scenario.file,
            field="workload.arrival.process",
        )
    if arrival is None or arrival.process == "burst":
        return LoadModel("poisson", 1.0, "the scenario's arrivals are a burst: Poisson arrivals are used")
    return LoadModel(arrival.process, arrival.cv, "")


def rate_load(scenario: Scenario, model: LoadModel, seed: int, requests: int) -> RateLoad:
    """Seed `seed`'s first `requests` requests at unit rate (a trace: at most its length, its mean rate 1)."""
    spec = scenario.spec.workload
    if model.process == "trace":
        reqs = generate(spec.model_copy(update={"requests": None}), file=scenario.file)
        arrival = np.asarray(reqs.arrival_s, dtype=float)
        span = float(arrival[-1] - arrival[0]) if len(arrival) > 1 else 0.0
        unit = (arrival - arrival[0]) * ((len(arrival) - 1) / span) if span > 0 else np.zeros(len(arrival))
        n = min(requests, len(arrival))
        return RateLoad(seed, unit[:n], reqs.input_tokens[:n], reqs.output_tokens[:n])
    unit_arrival = Arrival(process=model.process, rate=1.0, cv=model.cv)
    resolved = resolve_preset(spec, file=scenario.file)
    seeded = WorkloadSpec.model_validate(
        resolved.model_dump(exclude_none=True) | {"requests": requests, "seed": seed}
    ).model_copy(update={"arrival": unit_arrival})
    reqs = generate(seeded, file=scenario.file)
    return RateLoad(seed, np.asarray(reqs.arrival_s), reqs.input_tokens, reqs.output_tokens)
