"""Simulate a few replicas of a large homogeneous plan instead of all of them (docs/design.md §5.5).

Planning time must not grow with the number of identical replicas: a plan of n > `MAX_SIMULATED_REPLICAS`
replicas of one template is simulated as k = MAX_SIMULATED_REPLICAS replicas serving the same arrival process
thinned to k/n of its rate and of its requests — each simulated replica sees the load one of the n would see.
With the round-robin router the replicas of a homogeneous plan are independent (replica r gets every n-th
request), so each simulated replica is one of the plan's; with least-outstanding or power-of-two routing they
interact only through the router, which balances identical replicas, so the sample is an approximation. Rates
(throughput, goodput), request counts, $/h and energy are scaled back to n replicas (the idle power of the GPUs
the full plan leaves unused replaces the sample's), over a makespan of at least the whole workload's makespan
floor on the template (the sample may miss the longest requests); percentiles and attainment are the sample's.
The metrics say so: `sampled` {`replicas_simulated`, `replicas`, `requests_simulated`}.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dc_replace

from simulator.plan import Plan
from simulator.scenario import Scenario

MAX_SIMULATED_REPLICAS = 16


@dataclass(frozen=True, slots=True)
class Sample:
    simulated: int  # replicas simulated
    replicas: int  # replicas of the plan
    requests: int  # requests simulated

    @property
    def scale(self) -> float:
        return self.replicas / self.simulated


def sampled(scenario: Scenario, limit: int = MAX_SIMULATED_REPLICAS) -> tuple[Scenario, Sample] | None:
    """The reduced scenario and what it stands for, or None when the plan is simulated whole (a mix of
    templates, at most `limit` replicas, or a trace whose requests cannot be thinned by rate)."""
    plan = scenario.plan
    w = scenario.spec.workload
    if plan is None or len(plan.replicas) != 1 or plan.replicas[0].count <= limit:
        return None
    if w.trace is not None or w.requests is None or w.arrival is None:
        return None
    n = plan.replicas[0].count
    fraction = limit / n
    requests = max(limit, round(w.requests * fraction))
    arrival = w.arrival
    if arrival.rate is not None:
        arrival = arrival.model_copy(update={"rate": arrival.rate * requests / w.requests})
    workload = w.model_copy(update={"requests": requests, "arrival": arrival})
    group = plan.replicas[0].model_copy(update={"count": limit})
    spec = scenario.spec.model_copy(update={"workload": workload})
    small = dc_replace(scenario, spec=spec, plan=Plan(replicas=[group]))
    return small, Sample(limit, n, requests)


def idle_watts_outside(scenario: Scenario, plan: Plan) -> float:
    """Idle power of the cluster's GPUs that `plan` leaves unused (the simulator charges it over the run)."""
    default = next(iter(scenario.cluster.gpus_by_type()))
    used = plan.gpus_by_type(default)
    return sum(
        scenario.gpus[g].idle_w * max(n - used.get(g, 0), 0)
        for g, n in scenario.cluster.gpus_by_type().items()
    )


def _plan_idle_watts(scenario: Scenario, plan: Plan) -> float:
    default = next(iter(scenario.cluster.gpus_by_type()))
    return sum(scenario.gpus[g].idle_w * n for g, n in plan.gpus_by_type(default).items())


def scale_metrics(
    metrics: dict, full: Scenario, small: Scenario, sample: Sample, makespan_floor_s: float = 0.0
) -> dict:
    """The sample's metrics stated for the whole plan (see the module docstring). The whole plan runs the
    whole workload, whose longest requests the sample may not have drawn: its makespan is taken as at least
    `makespan_floor_s` (the workload's makespan floor on this plan's template, docs/design.md §5.3)."""
    m = dict(metrics)
    s = sample.scale
    measured = float(m.get("makespan_s") or 0.0)
    makespan = max(measured, makespan_floor_s)
    if makespan > measured > 0:
        stretch = measured / makespan  # rates over the longer makespan
        m["throughput"] = {k: v * stretch for k, v in m.get("throughput", {}).items()}
        if "goodput_rps" in m.get("slo", {}):
            m["slo"] = {**m["slo"], "goodput_rps": m["slo"]["goodput_rps"] * stretch}
        m["makespan_s"] = makespan
    m["throughput"] = {k: v * s for k, v in m.get("throughput", {}).items()}
    slo = dict(m.get("slo", {}))
    if "goodput_rps" in slo:
        slo["goodput_rps"] = slo["goodput_rps"] * s
    m["slo"] = slo
    m["requests"] = {k: round(v * s) for k, v in m.get("requests", {}).items()}
    cost = dict(m.get("cost", {}))
    if "usd_per_hour" in cost:
        cost["usd_per_hour"] = cost["usd_per_hour"] * s
    energy = dict(m.get("energy", {}))
    out_tokens = m["throughput"].get("output_tokens_per_s", 0.0) * makespan
    if "joules" in energy:
        busy = energy["joules"] - idle_watts_outside(small, small.plan) * measured
        plan_idle = (makespan - measured) * _plan_idle_watts(
            full, small.plan
        )  # the sample's GPUs, idling longer
        energy["joules"] = (busy + plan_idle) * s + idle_watts_outside(full, full.plan) * makespan
        energy["joules_per_output_token"] = energy["joules"] / out_tokens if out_tokens else float("nan")
    if out_tokens and "usd_per_hour" in cost:
        cost["usd_per_million_output_tokens"] = cost["usd_per_hour"] * makespan / 3600 / out_tokens * 1e6
    m["energy"], m["cost"] = energy, cost
    m["sampled"] = {
        "replicas_simulated": sample.simulated,
        "replicas": sample.replicas,
        "requests_simulated": sample.requests,
    }
    return m
