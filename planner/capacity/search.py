"""`capacity_of(scenario)`: the highest arrival rate a plan sustains within its SLOs (docs/design.md §5.6).

A rate is *sustained* on a seed when the simulation's steady-state verdict holds (`simulator.engine.steady`:
completions keep up with arrivals in the window and every SLO holds at its statistic on the window's
requests). The search, per seed, on that seed's requests at every rate (common random numbers, `load.py`):

1. bracket: no rate above the proven upper bound is sustained (`bracket.py`); the first probe is the
   analytic prediction (half the bound without one), later seeds start at the first seed's answer;
2. expand: halve until a rate is sustained, or step up (the geometric mean with the bound) until one is not
   or the bound is reached;
3. bisect geometrically until the lowest failing rate is within `tolerance` (relative) of the highest
   sustained one.

Each verdict's run is lengthened (doubling, up to `max_growth` times its first length) until its steady window
holds `window_share` of that length, so a run whose warm-up and drain take most of it never decides. The answer is the lowest of the seeds' rates, confirmed by
simulating every seed there (if a seed fails there — a verdict is not strictly monotone in the rate — the rate
steps down by the tolerance and is confirmed again); the seeds' spread is reported as the noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planner.capacity.bracket import Bracket, bracket
from planner.capacity.load import RateLoad, load_model, rate_load
from planner.capacity.result import CapacityResult, Probe, SeedCapacity
from planner.errors import NoPlanError
from planner.search.labels import shorthand
from simulator.admission import ReplicaLimit, enforce, screen
from simulator.errors import InputError
from simulator.scenario import Scenario
from simulator.simulate import replica_specs, simulate_workload

STATS = ("mean", "p50", "p90", "p99")
# Runs of 5,000 requests put the seeds' rates within ±2% of each other on the llama-3.1-70b / 8×H100 case
# (bench/bench_capacity.py; 2,000-request runs: ±6%): the default length of a verdict's run.
DEFAULT_REQUESTS = 5000
CONFIRM_STEPS = 4  # steps of the tolerance the answer may go down to be sustained on every seed
GROWING = 1.6  # a run twice as long holding this many times as many requests in the system: the queue grows
NAMES = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E"}


@dataclass(frozen=True)
class CapacityOptions:
    """`seeds`: how many workload seeds (the scenario's seed, then the next ones); `tolerance`: relative width
    the bisection stops at; `requests`: a verdict's run length (default the scenario's `workload.requests`, at
    least DEFAULT_REQUESTS); a run is lengthened (doubling, up to `max_growth` times) while its steady window
    holds fewer than `window_share` of that; `time_limit_s`: the whole search (the answer then has the bracket
    reached so far)."""

    seeds: int = 3
    tolerance: float = 0.01
    requests: int | None = None
    window_share: float = 0.8
    max_growth: int = 8
    time_limit_s: float = 600.0


class _Verdicts:
    """Simulated verdicts, cached by (seed, rate, length); counts the simulations."""

    def __init__(
        self, scenario: Scenario, specs, loads: dict[int, RateLoad], options: CapacityOptions, first: int
    ):
        self.scenario = scenario
        self.specs = specs
        self.loads = loads
        self.options = options
        self.first = first
        self.cache: dict[tuple[int, float], Probe] = {}
        self.simulations = 0
        self.longest = 0
        self.progress: Callable[[int, int], None] | None = None

    def __call__(self, seed: int, rate: float) -> Probe:
        key = (seed, rate)
        if key in self.cache:
            return self.cache[key]
        load = self.loads[seed]
        n = min(self.first, load.size)
        limit = min(self.first * self.options.max_growth, load.size)
        occupancy = None
        while True:
            summary = simulate_workload(self.scenario, load.at(rate, n), self.specs, seed=seed).summary
            self.simulations += 1
            self.longest = max(self.longest, n)
            if self.progress is not None:
                self.progress(self.simulations, 0)
            steady = summary.steady
            if steady.window.requests >= self.options.window_share * self.first or n >= limit:
                break
            if steady.window.start_s is None and occupancy and steady.window.occupancy > GROWING * occupancy:
                break  # the number in the system grew with the run's length: a queue that grows, not a warm-up
            occupancy = steady.window.occupancy
            n = min(2 * n, limit)
        why = _why(steady, summary, self.scenario, n)
        probe = Probe(seed, rate, n, steady.sustained, why, summary.to_json())
        self.cache[key] = probe
        return probe


def _why(steady, summary, scenario: Scenario, n: int) -> str:
    """What keeps a verdict from being sustained, in words ("" when it is)."""
    if steady.window.start_s is None:
        return (
            f"no steady state within {n:,} requests (~{steady.window.occupancy:,.0f} in the system): the queue "
            "grows or the run is too short"
        )
    parts = []
    if not steady.keeps_up:
        ratio = steady.throughput.requests_per_s / steady.window.arrival_rps
        parts.append(f"completions fall behind arrivals ({ratio:.0%} of them in the window)")
    slo = scenario.spec.goals.slo
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        target = getattr(slo, metric)
        if target is None:
            continue
        dist = getattr(steady, metric)
        for stat in STATS:
            limit = getattr(target, stat)
            value = getattr(dist, stat)
            if limit is not None and (value is None or value > limit):
                shown = "-" if value is None else f"{value:.4g} s"
                parts.append(f"{NAMES[metric]} {stat} {shown} > {limit:g} s")
    return "; ".join(parts)


def _search_seed(
    verdict: _Verdicts, seed: int, start: float, step: float, bound: float, tol: float, deadline: float
):
    """Expand from `start` by factors of `step` to a bracket, then bisect (module docstring). Returns (highest
    sustained probe or None, lowest failing probe or None, hit the bound, simulations)."""
    before = verdict.simulations
    lo: Probe | None = None
    hi: Probe | None = None
    rate = min(start, bound)
    floor = bound * 1e-3
    at_bound = False
    while time.perf_counter() < deadline:
        p = verdict(seed, rate)
        if p.sustained:
            lo = p if lo is None or p.rate_rps > lo.rate_rps else lo
        else:
            hi = p if hi is None or p.rate_rps < hi.rate_rps else hi
        if lo is not None and hi is not None:
            if hi.rate_rps / lo.rate_rps - 1 <= tol:
                break
            rate = math.sqrt(lo.rate_rps * hi.rate_rps)
        elif lo is None:
            rate = hi.rate_rps / step
            if rate < floor:
                break
        else:
            if lo.rate_rps >= bound / (1 + tol):
                at_bound = True
                break
            rate = min(lo.rate_rps * step, math.sqrt(lo.rate_rps * bound), bound)
            if rate <= lo.rate_rps * (1 + tol / 2):
                rate = bound
    return lo, hi, at_bound, verdict.simulations - before


def _mean_stat(probes: list[Probe], metric: str) -> dict:
    out = {}
    for stat in STATS:
        values = [p.steady[metric][stat] for p in probes if p.steady[metric][stat] is not None]
        out[stat] = float(np.mean(values)) if len(values) == len(probes) and values else None
    return out


def _prepare(scenario: Scenario, options: CapacityOptions):
    """Checks, replica costs, the seeds' loads (admission-screened), the bracket and the verdict cache."""
    if scenario.plan is None:
        raise InputError(
            "apex capacity measures a plan: add `plan:` to the scenario (e.g. tp=4,dp=2) or pass --plan",
            file=scenario.file,
            field="plan",
        )
    slo = scenario.spec.goals.slo
    if all(getattr(slo, m) is None for m in ("ttft_s", "tpot_s", "e2e_s")):
        raise InputError(
            "apex capacity finds the highest rate within the SLOs, and the scenario states none: add "
            "goals.slo (e.g. ttft_s: {p99: 2.0}) or pass --slo ttft_s.p99=2,tpot_s.p99=0.05",
            file=scenario.file,
            field="goals.slo",
        )
    model = load_model(scenario)
    first = options.requests or max(scenario.spec.workload.requests or 0, DEFAULT_REQUESTS)
    specs = replica_specs(scenario)
    seeds = [scenario.spec.workload.seed + k for k in range(options.seeds)]
    loads = {s: rate_load(scenario, model, s, first * options.max_growth) for s in seeds}
    limits = [ReplicaLimit(s.role, s.cost.kv_capacity_tokens) for s in specs]
    for s in seeds:  # requests that can never run: one warning (or an error when none can), as simulate does
        load = loads[s]
        admission = screen(
            load.input_tokens, load.output_tokens, scenario.model, scenario.spec.engine, limits
        )
        enforce(admission, file=scenario.file, plan_label=scenario.plan.label())
    pooled_in = np.concatenate([loads[s].input_tokens for s in seeds])
    pooled_out = np.concatenate([loads[s].output_tokens for s in seeds])
    br: Bracket = bracket(scenario, specs, pooled_in, pooled_out)
    if br.floor_misses:
        raise NoPlanError(
            f"the plan {shorthand(scenario.plan)} meets the SLOs at no arrival rate: "
            + "; ".join(br.floor_misses)
        )
    return model, specs, seeds, br, _Verdicts(scenario, specs, loads, options, first)


def sustained_at(
    scenario: Scenario, rate: float, options: CapacityOptions | None = None
) -> tuple[bool, str, int]:
    """Whether the scenario's plan sustains `rate` on every seed (the verdict `capacity_of` bisects), what fails
    where it does not, and the simulations spent. Cheaper than a capacity when only a target rate matters."""
    options = options or CapacityOptions()
    _, _, seeds, br, verdict = _prepare(scenario, options)
    if rate > br.upper_rps:
        return False, f"{rate:.4g} req/s is above the proven upper bound {br.upper_rps:.4g} req/s", 0
    for s in seeds:
        p = verdict(s, rate)
        if not p.sustained:
            return False, p.why, verdict.simulations
    return True, "", verdict.simulations


def capacity_of(
    scenario: Scenario,
    options: CapacityOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> CapacityResult:
    """The capacity of the scenario's plan under its SLOs (module docstring). InputError when the scenario has
    no plan, no SLO or a closed-loop workload; NoPlanError when the plan sustains no rate at all."""
    options = options or CapacityOptions()
    t0 = time.perf_counter()
    deadline = t0 + options.time_limit_s
    model, specs, seeds, br, verdict = _prepare(scenario, options)
    verdict.progress = progress
    tol = options.tolerance
    per_seed: list[SeedCapacity] = []
    widths = []
    start, step = (br.predicted_rps or br.upper_rps / 2), 2.0
    stopped = f"every seed bracketed within {tol:.1%}"
    for s in seeds:
        lo, hi, at_bound, sims = _search_seed(verdict, s, start, step, br.upper_rps, tol, deadline)
        if lo is None:
            if hi is None:
                raise NoPlanError(f"the time limit ran out before the first simulation of seed {s} finished")
            raise NoPlanError(
                f"the plan {shorthand(scenario.plan)} meets the SLOs at no arrival rate down to "
                f"{hi.rate_rps:.3g} req/s: {hi.why}"
            )
        if at_bound:
            limited = f"the proven upper bound ({br.upper_rps:.4g} req/s: the bottleneck stage is busy all the time)"
            widths.append(br.upper_rps / lo.rate_rps - 1)
        elif hi is None:
            limited = "the time limit (no failing rate found yet)"
            widths.append(math.inf)
        else:
            limited = hi.why
            widths.append(hi.rate_rps / lo.rate_rps - 1)
        per_seed.append(SeedCapacity(s, lo.rate_rps, hi.rate_rps if hi else None, limited, sims))
        start, step = lo.rate_rps, 1 + 4 * tol
        if time.perf_counter() >= deadline:
            stopped = "time limit"
            break
    rate = min(c.rate_rps for c in per_seed)
    confirmed = False
    at_rate: list[Probe] = []
    steps = 0
    while steps < CONFIRM_STEPS:  # confirm on every seed; step down by the tolerance when one fails there
        at_rate = [verdict(c.seed, rate) for c in per_seed]
        if all(p.sustained for p in at_rate):
            confirmed = True
            break
        if time.perf_counter() >= deadline:
            stopped = "time limit"
            break
        rate /= 1 + tol
        steps += 1
    if confirmed and steps:
        stopped += f"; confirmed on every seed {steps} tolerance step(s) lower"
    elif not confirmed and stopped != "time limit":
        stopped += f"; not sustained on every seed even {CONFIRM_STEPS} tolerance steps lower"
    out_tps = [p.steady["throughput"]["output_tokens_per_s"] for p in at_rate]
    tpot_mean = _mean_stat(at_rate, "tpot_s")["mean"]
    return CapacityResult(
        plan=scenario.plan,
        plan_name=shorthand(scenario.plan),
        num_gpus=scenario.plan.num_gpus,
        rate_rps=rate,
        at_capacity=at_rate[0].metrics,
        output_tokens_per_s=float(np.mean(out_tps)) if all(v is not None for v in out_tps) else None,
        output_tokens_per_s_per_user=1.0 / tpot_mean if tpot_mean else None,
        ttft_s=_mean_stat(at_rate, "ttft_s"),
        tpot_s=_mean_stat(at_rate, "tpot_s"),
        tolerance=tol,
        achieved_tolerance=max(widths),
        seeds=tuple(per_seed),
        confirmed=confirmed,
        upper_bound_rps=br.upper_rps,
        predicted_rps=br.predicted_rps,
        arrival=model.process + (f" ({model.note})" if model.note else ""),
        requests_per_run=verdict.longest,
        simulations=verdict.simulations,
        wall_s=time.perf_counter() - t0,
        stopped=stopped,
    )
