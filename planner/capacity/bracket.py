"""The analytic bracket of a plan's capacity (docs/design.md §5.6): a proven upper bound and a prediction.

* Upper bound. The planner's per-template bounds (`planner.search.bounds`) give, for a replica's bottleneck
  stage, rates α, β, γ such that any schedule that processes P prefill tokens, D decode tokens and X tokens of
  decode context keeps that stage busy at least α·P + β·D + γ·X seconds (no TPOT multiplier: the bound must
  hold whatever latency the requests see). A stage is busy at most one second per second, so in steady state
  a colocated replica completes at most 1 / (α·P̄ + β·D̄ + γ·X̄) requests/s (P̄, D̄, X̄: the workload's means); a
  prefill replica at most 1 / (α·P̄) and a decode replica 1 / (β·D̄ + γ·X̄). The plan's bound is the colocated
  replicas' sum plus the smaller of its prefill and decode sums. No rate above it can be sustained.
* Floors. The same bounds give, per request, the least TTFT (its prefill alone on an empty replica), TPOT (one
  decode step at its prompt's context) and E2E any schedule can give it (`TemplateBound.prefill_floor`,
  `decode_floor`; the lowest over the plan's replica groups). When a stated statistic of those floors over the
  workload is already over its SLO, no arrival rate can meet it.
* Prefix caching and speculative decoding. When the engine caches prefixes and the workload says its requests
  share content (`workload.prefix`, or a trace), a cache may serve all but the last prompt token, so the bounds
  count one prefill token per request; with `engine.speculative` a decode step may advance a request by several
  tokens in a prefill-like pass, so the decode work and the decode-step floor count 0. Both keep the bracket a
  bound (a looser one) under features the decode- and prefill-step bounds do not model.
* Prediction. The analytic first pass the planner prices templates with
  (`formulations.templates.analytic_capacity`: the largest decode batch meeting TPOT and KV, the prefill share,
  an M/M/1 TTFT check), summed over colocated replicas. It only places the first simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from formulations.templates import analytic_capacity
from planner.search.bounds import COARSE, bound_template
from planner.search.loop import limits_of
from planner.search.pricing import step_time_fn
from simulator.engine.cluster import ReplicaSpec
from simulator.scenario import Scenario, engine_setting

STATS = ("mean", "p50", "p90", "p99")


@dataclass(frozen=True, slots=True)
class Bracket:
    """`upper_rps`: proven, no rate above it is sustained; `predicted_rps`: the analytic model's estimate
    (None when it has none, e.g. a disaggregated plan); `floor_misses`: the SLOs that the requests' latency
    floors already miss, in words (no rate can meet them)."""

    upper_rps: float
    predicted_rps: float | None
    floor_misses: tuple[str, ...] = ()


def _loosest(percentiles) -> float:
    """The loosest stated statistic of one SLO (the analytic model predicts means); inf when none."""
    if percentiles is None:
        return math.inf
    values = [getattr(percentiles, k) for k in STATS if getattr(percentiles, k) is not None]
    return max(values) if values else math.inf


def bracket(
    scenario: Scenario, specs: list[ReplicaSpec], input_tokens: np.ndarray, output_tokens: np.ndarray
) -> Bracket:
    """The bracket for the plan priced as `specs`, on requests of these lengths (see the module docstring)."""
    inp = np.asarray(input_tokens, dtype=float)
    out = np.asarray(output_tokens, dtype=float)
    decode = out - 1
    engine = scenario.spec.engine
    workload = scenario.spec.workload
    shared = engine_setting(engine, "prefix_caching") and (
        workload.prefix is not None or workload.trace is not None
    )
    work_in = np.ones_like(inp) if shared else inp  # the prefill tokens no cache can serve, at least
    speculative = engine.speculation is not None
    prefill_mean = float(inp.mean())
    decode_mean = 0.0 if speculative else float(decode.mean())
    context_mean = 0.0 if speculative else float((decode * inp + decode * (decode - 1) / 2).mean())
    mixes = [(float(work_in.sum()), 0.0 if speculative else float(decode.sum()))]
    shortest = int(inp.min())
    longest = int((inp + out).max())
    colocated = prefill = decoding = 0.0
    predicted: float | None = 0.0
    slo = scenario.spec.goals.slo
    floors = {"ttft_s": np.inf, "tpot_s": np.inf, "e2e_s": np.inf}
    for spec in specs:
        cost = spec.cost
        limits = limits_of(scenario, int(cost.kv_capacity_tokens), shortest)
        tb = bound_template(
            cost.stages, limits, mixes, None, energy=False, precision=COARSE, max_context=longest
        )
        ttft_floor = tb.prefill_floor(work_in.astype(np.int64))
        step_floor = np.zeros(len(inp)) if speculative else tb.decode_floor(inp.astype(np.int64))
        floors["ttft_s"] = np.minimum(floors["ttft_s"], ttft_floor)
        floors["tpot_s"] = np.minimum(floors["tpot_s"], step_floor)
        floors["e2e_s"] = np.minimum(floors["e2e_s"], ttft_floor + decode * step_floor)
        rates = tb.time[0]
        per_prefill = rates.alpha * float(work_in.mean())
        per_decode = rates.beta * decode_mean + tb.gamma * context_mean
        if spec.role == "prefill":
            prefill += spec.count / per_prefill if per_prefill > 0 else math.inf
        elif spec.role == "decode":
            decoding += spec.count / per_decode if per_decode > 0 else math.inf
        else:
            work = per_prefill + per_decode
            colocated += spec.count / work if work > 0 else math.inf
        if spec.role == "colocated" and predicted is not None:
            estimate = analytic_capacity(
                step_time_fn(cost, engine_setting(engine, "max_num_batched_tokens")),
                cost.kv_capacity_tokens,
                prefill_mean,
                float(out.mean()),
                _loosest(slo.ttft_s),
                _loosest(slo.tpot_s),
                engine_setting(engine, "max_num_seqs"),
            )
            predicted += spec.count * estimate.requests_per_s
        else:
            predicted = None
    upper = colocated + min(prefill, decoding)
    if predicted is not None and not predicted > 0:
        predicted = None
    floors["tpot_s"] = floors["tpot_s"][out > 1]
    return Bracket(upper, min(predicted, upper) if predicted is not None else None, _misses(floors, slo))


def _misses(floors: dict[str, np.ndarray], slo) -> tuple[str, ...]:
    """The stated SLO statistics the latency floors already exceed, in words."""
    names = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E"}
    out = []
    for metric, values in floors.items():
        target = getattr(slo, metric)
        if target is None or len(values) == 0:
            continue
        for stat in STATS:
            limit = getattr(target, stat)
            if limit is None:
                continue
            value = float(values.mean()) if stat == "mean" else float(np.percentile(values, float(stat[1:])))
            if value > limit:
                out.append(
                    f"{names[metric]} {stat} is at least {value:.3g} s on an empty replica > {limit:g} s"
                )
    return tuple(out)
