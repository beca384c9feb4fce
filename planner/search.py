"""The solve–simulate loop behind `apex plan` (docs/design.md §5).

```
templates ← formulations.templates.enumerate_structures (pruned by divisibility and memory), each priced by the
            cost model and formulations.templates.analytic_capacity (capacity within the SLOs, energy, $/h)
loop:
  candidates ← master MILP (best + next-best via no-good cuts)            # formulations.master, highspy
  results    ← simulate each new candidate (cached by plan label, in parallel processes)
  every simulated count vector gets a no-good cut (it is never proposed again);
  a candidate that misses an SLO gets capacity cuts: each of its templates serves less than the rate routed to it;
  a single-template candidate sets its template's objective coefficient (energy per request, latency) to
  what the simulation implies, less a 1 % margin; templates not simulated yet get their analytic value times
  the smallest learned/analytic ratio (the analytic model's systematic error, at its most optimistic);
  capacities are only ever lowered (cuts), never raised above their analytic value
  stop when the best simulated objective is within ε of the bound, when no new candidate appears, or at the
  time limit
```

The bound: the master's dual bound over the count vectors not yet simulated (the surrogate is optimistic, so it
bounds what they could achieve), converted to the simulation's units, combined with the incumbent (every
simulated vector is already accounted for). For max objectives it is scaled by the largest simulated/predicted
ratio among plans that served every request within the SLOs (finite workloads drain after the last arrival,
which the rate-based surrogate does not see) and capped by what the workload allows (nothing finishes before
it arrives). The bound is as valid as the surrogate is optimistic: a stopping rule, not a proof.

Results: `PlanSearchResult` (`to_json()` gives docs/design.md §6's plan-search keys). Objective and feasibility of a
simulated plan come from `planner.objective`; the baselines from `planner.baselines`.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from planner import objective as obj
from planner.objective import Violation
from simulator.errors import InputError
from simulator.plan import Plan
from simulator.scenario import Scenario, engine_setting

log = logging.getLogger("apex.plan")

CLASS_ID = "all"  # the workload is one class (its mean lengths); the master supports more


# ---- scored plans and the simulation runner ----------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One simulated plan, scored against the goals."""

    plan: Plan
    label: str
    metrics: dict
    objective: float
    violations: tuple[Violation, ...]
    num_gpus: int
    error: str | None = None  # the simulation refused the plan (e.g. it does not fit in memory)

    @property
    def feasible(self) -> bool:
        return not self.violations and self.error is None

    @property
    def usd_per_hour(self) -> float:
        return float(self.metrics.get("cost", {}).get("usd_per_hour", math.inf))

    def rank_key(self, objective: str):
        """Feasible plans by objective; infeasible ones by how far they miss their goals (closest first)."""
        if self.feasible:
            e2e = float(self.metrics.get("e2e_s", {}).get("p99", math.inf))
            return obj.rank_key(
                objective, self.objective, True, self.usd_per_hour, self.num_gpus, e2e, self.label
            )
        miss = sum(min(v.excess, 1e6) for v in self.violations) if self.error is None else math.inf
        return (True, miss, self.usd_per_hour, self.num_gpus, math.inf, self.label)

    @property
    def name(self) -> str:
        """A short label for people: the GPU type once per replica group instead of on every stage."""
        return short_label(self.plan)

    def to_json(self) -> dict:
        value = self.objective if math.isfinite(self.objective) else None
        return {
            "plan": self.name,
            "label": self.label,
            "objective": value,
            "metrics": self.metrics,
            "plan_spec": self.plan.model_dump(mode="json", exclude_none=True),
            "feasible": self.feasible,
            "violations": [v.describe() for v in self.violations] + ([self.error] if self.error else []),
        }


def short_label(plan: Plan) -> str:
    """`Plan.label()` with the GPU type written once per replica group: `2x[tp4|tp4]@h100-sxm`."""
    parts = []
    for g in plan.replicas:
        text = Plan(replicas=[g]).label()
        gpus = {st.gpu for st in g.stages}
        if len(gpus) == 1 and None not in gpus:
            (gpu,) = gpus
            text = text.replace(f" @{gpu}", "") + f"@{gpu}"
        parts.append(text)
    return " + ".join(parts)


_WORKER_SCENARIO: Scenario | None = None
_WORKER_SIMULATE: Callable | None = None


def _init_worker(scenario: Scenario, simulate_fn: Callable | None) -> None:
    global _WORKER_SCENARIO, _WORKER_SIMULATE
    _WORKER_SCENARIO, _WORKER_SIMULATE = scenario, simulate_fn


def _default_simulate(scenario: Scenario) -> dict:
    from simulator.simulate import simulate

    return simulate(scenario).to_json()


def _simulate_plan(plan_json: dict) -> tuple[dict | None, str | None]:
    """Worker: simulate the worker's scenario with `plan_json`; (metrics, None) or (None, why it was refused)."""
    scenario = _WORKER_SCENARIO.with_plan(plan_json)
    try:
        return (_WORKER_SIMULATE or _default_simulate)(scenario), None
    except InputError as exc:
        return None, str(exc)
    except (
        Exception
    ) as exc:  # a simulator failure on one plan is reported on that plan, not fatal to the search
        log.warning("simulating %s failed: %r", scenario.plan.label(), exc)
        return None, f"simulation failed: {exc!r}"


class Simulations:
    """Simulates plans of one scenario, caching results by plan label; several at once in worker processes.

    `simulate_fn(scenario) -> metrics dict` replaces the simulator (tests); it must be picklable for workers > 1.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        workers: int = 1,
        simulate_fn: Callable | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.scenario = scenario
        self.workers = max(1, workers)
        self.simulate_fn = simulate_fn
        self.progress = progress
        self.cache: dict[str, Candidate] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._done = 0
        self._expected = 0

    def __enter__(self) -> Simulations:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def expect(self, total: int) -> None:
        """Tell the progress bar how many simulations to expect in all (it grows as the search goes)."""
        self._expected = max(self._expected, total)

    def run(self, plans: Iterable[Plan]) -> list[Candidate]:
        """Scored candidates for `plans`, in the same order (simulating only those not cached)."""
        plans = list(plans)
        todo: dict[str, Plan] = {}
        for p in plans:
            label = p.label()
            if label not in self.cache and label not in todo:
                todo[label] = p
        self.expect(self._done + len(todo))
        if todo:
            jobs = [p.model_dump(mode="json", exclude_none=True) for p in todo.values()]
            if self.workers > 1 and len(jobs) > 1:
                if self._pool is None:
                    ctx = multiprocessing.get_context("fork")
                    self._pool = ProcessPoolExecutor(
                        self.workers,
                        mp_context=ctx,
                        initializer=_init_worker,
                        initargs=(self.scenario, self.simulate_fn),
                    )
                outputs = self._pool.map(_simulate_plan, jobs)
            else:
                _init_worker(self.scenario, self.simulate_fn)
                outputs = map(_simulate_plan, jobs)
            for (label, plan), (metrics, error) in zip(todo.items(), outputs, strict=True):
                self.cache[label] = score(self.scenario, plan, metrics, error)
                self._done += 1
                if self.progress:
                    self.progress(self._done, max(self._expected, self._done))
        return [self.cache[p.label()] for p in plans]

    @property
    def count(self) -> int:
        return len(self.cache)


def score(scenario: Scenario, plan: Plan, metrics: dict | None, error: str | None = None) -> Candidate:
    """Score one simulation result against the scenario's goals."""
    goals = scenario.spec.goals
    num_gpus = plan.num_gpus
    if metrics is None:
        worst = -math.inf if obj.SENSE[goals.objective] == "max" else math.inf
        return Candidate(plan, plan.label(), {}, worst, (), num_gpus, error or "simulation failed")
    return Candidate(
        plan,
        plan.label(),
        metrics,
        obj.objective_value(metrics, goals),
        tuple(obj.violations(metrics, goals, num_gpus)),
        num_gpus,
    )


def best_first(candidates: Iterable[Candidate], objective: str) -> list[Candidate]:
    return sorted(candidates, key=lambda c: c.rank_key(objective))


# ---- the result ----------------------------------------------------------------------------------------------


@dataclass
class SearchStats:
    solver: str
    rounds: int
    simulations: int
    bound: float | None
    gap: float | None
    wall_s: float
    stopped: str = ""  # why the loop stopped

    def to_json(self) -> dict:
        def finite(x):
            return x if x is not None and math.isfinite(x) else None

        return {
            "solver": self.solver,
            "rounds": self.rounds,
            "simulations": self.simulations,
            "bound": finite(self.bound),
            "gap": finite(self.gap),
            "wall_s": self.wall_s,
            "stopped": self.stopped,
        }


@dataclass
class PlanSearchResult:
    """What `apex plan` found: the best plan, every simulated candidate (best first), the baselines."""

    objective: str
    best: Candidate
    candidates: list[Candidate]
    baselines: dict[str, Candidate]
    search: SearchStats
    scenario: Scenario = field(repr=False)
    placement: object | None = None  # planner.placement_step.PlanPlacement of the best plan, once placed
    placement_notes: list[str] = field(default_factory=list)

    def gains(self) -> dict[str, float]:
        """Relative gain of the best plan over each baseline (inf when the baseline misses the goals)."""
        out = {}
        for name, b in self.baselines.items():
            out[name] = (
                obj.gain(self.best.objective, b.objective if b.feasible else math.nan, self.objective)
                if b.feasible
                else math.inf
            )
        return out

    def to_json(self) -> dict:
        best = self.best.to_json()
        if self.placement is not None:
            best["placement"] = self.placement.to_json()
        return {
            "best": best,
            "candidates": [c.to_json() for c in self.candidates],
            "baselines": {name: c.to_json() for name, c in self.baselines.items()},
            "search": self.search.to_json(),
            "objective": {
                "name": self.objective,
                "sense": obj.SENSE[self.objective],
                "unit": obj.UNIT[self.objective],
            },
        }


# ---- templates and their coefficients ---------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadStats:
    """What the surrogate needs to know about the requests."""

    num_requests: int
    mean_input: float
    mean_output: float
    demand_rps: float
    last_arrival_s: float
    total_output_tokens: float


def workload_stats(scenario: Scenario) -> WorkloadStats:
    from simulator.workload import generate

    spec = scenario.spec.workload
    reqs = generate(spec, file=scenario.file)
    n = len(reqs)
    span = float(reqs.arrival_s[-1] - reqs.arrival_s[0]) if n > 1 else 0.0
    arrival = spec.arrival
    if arrival is not None and arrival.rate is not None and arrival.process != "burst":
        demand = arrival.rate
    elif span > 0:
        demand = (n - 1) / span
    else:
        demand = n / 60.0  # all at once: ask the surrogate for the capacity to clear them in about a minute
    return WorkloadStats(
        n,
        float(np.mean(reqs.input_tokens)),
        float(np.mean(reqs.output_tokens)),
        demand,
        float(reqs.arrival_s[-1]) if n else 0.0,
        float(np.sum(reqs.output_tokens)),
    )


def _target(percentiles) -> float:
    """The tightest stated statistic of an SLO (the analytic model predicts means; using the tightest target
    keeps it on the optimistic side)."""
    if percentiles is None:
        return math.inf
    values = [
        v for v in (percentiles.mean, percentiles.p50, percentiles.p90, percentiles.p99) if v is not None
    ]
    return max(values) if values else math.inf


@dataclass
class PricedTemplate:
    template: object  # formulations.templates.Template
    analytic: object  # formulations.templates.TemplateCoefficients (as first computed)
    estimate: object  # formulations.templates.CapacityEstimate


def price_templates(scenario: Scenario, stats: WorkloadStats) -> list[PricedTemplate]:
    """Enumerate replica templates and compute each one's coefficients from the cost model."""
    from formulations.templates import TemplateCoefficients, analytic_capacity, enumerate_structures
    from simulator.costmodel import build_replica_cost
    from simulator.costmodel.interface import BatchShape

    spec = scenario.spec
    engine = spec.engine
    max_seqs = engine_setting(engine, "max_num_seqs")
    max_tokens = engine_setting(engine, "max_num_batched_tokens")
    structures = enumerate_structures(
        scenario.model,
        scenario.cluster,
        scenario.gpus,
        weights_dtype=spec.dtype.weights,
        memory_fraction=engine_setting(engine, "gpu_memory_fraction"),
        engine_grid=((max_seqs, max_tokens),),
    )
    ttft_target = _target(spec.goals.slo.ttft_s)
    tpot_target = _target(spec.goals.slo.tpot_s)
    inventory = scenario.cluster.gpus_by_type()
    out = []
    for t in structures:
        if any(n > inventory.get(g, 0) for g, n in t.gpus_by_type.items()):
            continue
        cost = build_replica_cost(
            scenario.model,
            t.replica_group(1),
            scenario.gpus,
            scenario.cluster,
            spec.dtype,
            engine,
            calibration=spec.calibration,
        )
        if not cost.fits or cost.kv_capacity_tokens < engine.block_size:
            continue
        stages = cost.stages
        pp = len(stages)

        def shape_for(prefill: int, decode: int, context: int):
            if prefill:
                return BatchShape.from_requests([prefill], [0])
            return BatchShape(num_decode=decode, decode_context_tokens=context)

        def step_time(prefill: int, decode: int, context: int, stages=stages, pp=pp, cost=cost) -> float:
            if prefill:  # one request's prefill runs through every stage in turn
                shape = shape_for(min(prefill, max_tokens), 0, 0)
                chunks = math.ceil(prefill / max_tokens)
                return chunks * sum(s.iteration_time(shape) for s in stages) + sum(
                    cost.send_time(i, prefill) for i in range(pp - 1)
                )
            # pp micro-batches in flight: a request's next token comes after pp rounds of the slowest stage
            micro = max(1, math.ceil(decode / pp))
            shape = shape_for(0, micro, int(context * micro / max(decode, 1)))
            return max(
                pp * max(s.iteration_time(shape) for s in stages),
                sum(s.iteration_time(shape) for s in stages),
            )

        est = analytic_capacity(
            step_time,
            cost.kv_capacity_tokens,
            stats.mean_input,
            stats.mean_output,
            ttft_target,
            tpot_target,
            max_seqs,
        )
        energy_req, latency = _energy_and_latency(stages, est, stats, pp, shape_for)
        coeffs = TemplateCoefficients(
            capacity_rps={CLASS_ID: est.requests_per_s} if est.requests_per_s > 0 else {},
            energy_per_request_j={CLASS_ID: energy_req},
            idle_w=cost.idle_watts,
            usd_per_hour=cost.usd_per_hour,
            latency_score={CLASS_ID: latency},
        )
        out.append(PricedTemplate(t, coeffs, est))
    return out


def _energy_and_latency(stages, est, stats: WorkloadStats, pp: int, shape_for) -> tuple[float, float]:
    """Energy a request adds above idle (J) and its predicted mean E2E latency (s)."""
    prefill_shape = shape_for(int(round(stats.mean_input)), 0, 0)
    e = 0.0
    for s in stages:
        t = s.iteration_time(prefill_shape)
        e += max(s.energy(prefill_shape, t) - s.energy(shape_for(0, 0, 0), t), 0.0)
    batch = max(est.decode_batch, 1)
    micro = max(1, math.ceil(batch / pp))
    ctx = int(micro * (stats.mean_input + stats.mean_output / 2))
    decode_shape = shape_for(0, micro, ctx)
    per_token = 0.0
    for s in stages:
        t = s.iteration_time(decode_shape)
        per_token += max(s.energy(decode_shape, t) - s.energy(shape_for(0, 0, 0), t), 0.0) / micro
    energy = e + stats.mean_output * per_token
    ttft = est.ttft_s if math.isfinite(est.ttft_s) else est.prefill_time_s
    return energy, ttft + stats.mean_output * est.step_time_s


# ---- the loop ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchOptions:
    """Knobs of the loop. `epsilon`: stop when the incumbent is within this relative gap of the bound."""

    top_k: int = 3
    time_limit_s: float = 300.0
    epsilon: float = 0.02
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    max_rounds: int = 50
    solver_time_limit_s: float = 30.0
    correction_margin: float = 0.01  # corrected coefficients stay this much on the optimistic side
    cut_margin: float = 0.05  # a capacity cut sets capacity this much below the rate that missed the SLO


class _Surrogate:
    """The master problem's data plus what the simulations taught it (cuts and corrections)."""

    def __init__(self, scenario: Scenario, priced: list[PricedTemplate], stats: WorkloadStats):
        from formulations.master import Budgets, DomainPool, MasterProblem, MasterTemplate, WorkloadClass

        self.scenario = scenario
        self.stats = stats
        self.priced = {p.template.id: p for p in priced}
        domain = {}
        pools = []
        for g in scenario.cluster.node_groups:
            domain[g.gpu] = max(domain.get(g.gpu, 0), g.domain_gpus)
            pools.append(DomainPool(g.gpu, g.domain_gpus, g.num_gpus // g.domain_gpus, g.name))
        b = scenario.spec.goals.budget
        self.templates = {
            p.template.id: MasterTemplate(
                p.template.id, p.template.gpus_by_type, p.analytic, p.template.domain_need_by_type(domain)
            )
            for p in priced
        }
        self.problem = MasterProblem(
            templates=tuple(self.templates.values()),
            classes=(WorkloadClass(CLASS_ID, stats.demand_rps, stats.mean_output),),
            pools=tuple(pools),
            budgets=Budgets(b.usd_per_hour, b.watts, b.num_gpus, b.joules_per_token),
            objective=scenario.spec.goals.objective,
        )
        self.learned: dict[str, dict[str, float]] = {}  # kind -> template id -> learned / analytic
        self.cluster_idle_w = sum(
            scenario.gpus[g].idle_w * n for g, n in scenario.cluster.gpus_by_type().items()
        )

    def plan_of(self, counts: dict[str, int]) -> Plan:
        groups = [self.priced[tid].template.replica_group(n) for tid, n in sorted(counts.items()) if n > 0]
        return Plan(replicas=groups)

    def solve_k(self, k: int, options) -> tuple[list, float | None]:
        """Up to k best distinct count vectors (next-best by no-good cuts) and the first solve's bound."""
        from formulations.master import solve_master_highspy

        out, problem, bound = [], self.problem, None
        for i in range(k):
            res = solve_master_highspy(problem, options)
            if not res.has_solution:
                if i == 0:
                    bound = None
                break
            if i == 0:
                bound = res.bound if res.bound is not None else res.objective
            out.append(res.solution)
            counts = {t: res.solution.counts.get(t, 0) for t in self.templates}
            problem = problem.with_(no_good=problem.no_good + (counts,))
        return out, bound

    def exclude(self, counts: dict[str, int]) -> None:
        full = {t: counts.get(t, 0) for t in self.templates}
        if full not in self.problem.no_good:
            self.problem = self.problem.with_(no_good=self.problem.no_good + (full,))

    def cut_capacity(self, template_id: str, capacity_rps: float) -> None:
        from formulations.master import CapacityCut

        t = self.templates[template_id]
        if capacity_rps < self.problem.capacity(t, CLASS_ID):
            self.problem = self.problem.with_(
                capacity_cuts=self.problem.capacity_cuts + (CapacityCut(template_id, CLASS_ID, capacity_rps),)
            )

    def calibration(self, observed: list[tuple[object, float]]) -> float:
        """The most optimistic simulated/predicted ratio of the objective over simulated plans (1 with none).

        Predictions use the current coefficients (after corrections) at the counts and rates the master chose;
        the remaining bound is scaled by this factor, so it stays a bound as long as no unsimulated plan does
        better against its prediction than the best simulated one did.
        """
        from formulations.master import evaluate

        o = self.problem.objective
        if obj.SENSE[o] == "min":
            return 1.0  # min objectives are corrected per template instead (_learn)
        ratios = []
        for solution, simulated in observed:
            predicted = self.to_sim_units(
                evaluate(self.problem, solution.counts, solution.rates)[o], solution, clip=False
            )
            if predicted and predicted > 0 and math.isfinite(simulated):
                ratios.append(simulated / predicted)
        if not ratios:
            return 1.0
        return max(ratios) if obj.SENSE[o] == "max" else min(ratios)

    def learn(self, template_id: str, kind: str, value: float) -> None:
        """Set a template's energy per request (`kind="energy"`, J above idle) or latency score
        (`kind="latency"`, s) to a value learned from a simulation. Templates not simulated yet get their
        analytic value times the smallest learned/analytic ratio so far: the analytic model's systematic
        error, taken at its most optimistic."""
        from dataclasses import replace

        key = "energy_per_request_j" if kind == "energy" else "latency_score"
        ratios = self.learned.setdefault(kind, {})
        analytic = getattr(self.priced[template_id].analytic, key).get(CLASS_ID, 0.0)
        if analytic > 0:
            ratios[template_id] = value / analytic
        factor = min(ratios.values(), default=1.0)
        for tid, t in self.templates.items():
            if tid == template_id:
                new = value
            elif tid in ratios:
                continue
            else:
                new = getattr(self.priced[tid].analytic, key).get(CLASS_ID, 0.0) * factor
            self.templates[tid] = replace(t, coefficients=replace(t.coefficients, **{key: {CLASS_ID: new}}))
        self.problem = self.problem.with_(templates=tuple(self.templates.values()))

    def to_sim_units(self, value: float | None, solution=None, *, clip: bool = True) -> float | None:
        """A master objective value (bound or prediction) in the simulation's units."""
        if value is None or not math.isfinite(value):
            return None
        o = self.problem.objective
        s = self.stats
        if o == "max_throughput":
            value *= s.mean_output
        elif o == "min_energy":
            # the simulator also counts the idle power of the GPUs the plan leaves unused
            used_idle = (
                sum(n * self.templates[t].coefficients.idle_w for t, n in solution.counts.items())
                if solution is not None
                else self.cluster_idle_w
            )
            watts = 1000.0 * value + self.cluster_idle_w - used_idle
            value = watts / max(s.demand_rps * s.mean_output, 1e-12)
        return self.clip(value) if clip else value

    def clip(self, value: float) -> float:
        """For max objectives, no plan beats the workload: nothing finishes before the last request arrives."""
        o, s = self.problem.objective, self.stats
        if o in ("max_goodput", "max_throughput") and s.last_arrival_s > 0:
            ceiling = s.num_requests / s.last_arrival_s
            if o == "max_throughput":
                ceiling = s.total_output_tokens / s.last_arrival_s
            value = min(value, ceiling)
        return value


def run_search(
    scenario: Scenario,
    options: SearchOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    simulate_fn: Callable | None = None,
    with_baselines: bool = True,
) -> PlanSearchResult:
    """Search the plan space of `scenario` for its goals (see the module docstring)."""
    from formulations.result import SolverOptions
    from planner import baselines as bl

    options = options or SearchOptions()
    t0 = time.perf_counter()
    goals = scenario.spec.goals
    objective = goals.objective
    stats = workload_stats(scenario)
    priced = price_templates(scenario, stats)
    log.info(
        "%d templates priced in %.2f s (demand %.3g req/s, mean in %.0f / out %.0f tokens)",
        len(priced),
        time.perf_counter() - t0,
        stats.demand_rps,
        stats.mean_input,
        stats.mean_output,
    )
    surrogate = _Surrogate(scenario, priced, stats)
    solver = SolverOptions(time_limit_s=options.solver_time_limit_s, mip_rel_gap=1e-6, threads=1, seed=0)
    loop_labels: list[str] = []
    solved: dict = {}  # label -> the master solution that proposed it
    solver_says = ""
    bound: float | None = None
    gap: float | None = None
    stopped = "time limit"
    rounds = 0
    with Simulations(scenario, workers=options.workers, simulate_fn=simulate_fn, progress=progress) as sims:
        while rounds < options.max_rounds:
            if time.perf_counter() - t0 > options.time_limit_s:
                stopped = "time limit"
                break
            rounds += 1
            solutions, raw_bound = surrogate.solve_k(options.top_k, solver)
            new = [s for s in solutions if surrogate.plan_of(s.counts).label() not in loop_labels]
            results = sims.run(surrogate.plan_of(s.counts) for s in new)
            cuts = 0
            for sol, cand in zip(new, results, strict=True):
                loop_labels.append(cand.label)
                solved[cand.label] = sol
                surrogate.exclude(sol.counts)
                cuts += 1 + _learn(surrogate, sol, cand, objective, options)
            feasible = [sims.cache[lb] for lb in loop_labels if sims.cache[lb].feasible]
            incumbent = best_first(feasible, objective)[0].objective if feasible else None
            # only plans that served (almost) every request within the SLOs calibrate the conversion: for the
            # others the error is capacity, which the capacity cuts already correct
            served = [c for c in feasible if float(c.metrics.get("slo", {}).get("attainment", 0.0)) >= 0.99]
            factor = surrogate.calibration([(solved[c.label], c.objective) for c in served])
            remaining = surrogate.to_sim_units(raw_bound, solutions[0] if solutions else None, clip=False)
            remaining = surrogate.clip(remaining * factor) if remaining is not None else None
            bound = _combine(incumbent, remaining, objective)
            gap = (
                obj.relative_gap(incumbent, bound, objective)
                if incumbent is not None and bound is not None
                else None
            )
            log.info(
                "round %d: %d candidates (%d new), bound %s, incumbent %s, gap %s, cuts %d",
                rounds,
                len(solutions),
                len(new),
                _fmt(bound),
                _fmt(incumbent),
                "-" if gap is None else f"{100 * gap:.2f}%",
                cuts,
            )
            if not solutions:
                stopped = "no candidate left"
                if rounds == 1:
                    solver_says = _explain(surrogate, solver)
                break
            if gap is not None and gap <= options.epsilon:
                stopped = f"within {100 * options.epsilon:g}% of the bound"
                break
            if not new:
                stopped = "no new candidate"
                break
        else:
            stopped = "round limit"
        loop_candidates = best_first((sims.cache[lb] for lb in loop_labels), objective)
        num_loop = len(loop_labels)
        heuristics = {}
        if with_baselines or not any(c.feasible for c in loop_candidates):
            plans = bl.heuristic_plans(scenario, [p.template for p in priced])
            results = sims.run(plans.values())
            heuristics = dict(zip(plans, results, strict=True))
    everything = best_first(
        {c.label: c for c in list(loop_candidates) + list(heuristics.values())}.values(), objective
    )
    if not everything:
        raise _no_plan(
            scenario, None, "no replica structure of the model fits the cluster's GPUs", solver_says
        )
    best = everything[0]
    if not best.feasible:
        raise _no_plan(scenario, best, solver_says=solver_says)
    search = SearchStats(
        "highs (master MILP) + simulator", rounds, num_loop, bound, gap, time.perf_counter() - t0, stopped
    )
    candidates = [c for c in everything if c.label in set(loop_labels)] or [best]
    if best.label not in {c.label for c in candidates}:
        candidates.insert(0, best)
    return PlanSearchResult(
        objective, best, candidates, heuristics if with_baselines else {}, search, scenario
    )


def _learn(surrogate: _Surrogate, solution, cand: Candidate, objective: str, options: SearchOptions) -> int:
    """Feed one simulation back into the surrogate; returns the number of capacity cuts added."""
    cuts = 0
    counts = {t: n for t, n in solution.counts.items() if n > 0}
    routed = {t: sum(r for (c, t2), r in solution.rates.items() if t2 == t) for t in counts}
    slo_missed = any(not v.goal.startswith("budget.") for v in cand.violations)
    attainment = float(cand.metrics.get("slo", {}).get("attainment", 1.0)) if cand.metrics else 0.0
    if slo_missed or (objective in ("max_goodput", "max_throughput") and attainment < 0.99):
        # the replicas could not serve what was routed to them within the SLOs: each serves less than that
        goodput = float(cand.metrics.get("slo", {}).get("goodput_rps", 0.0)) if cand.metrics else 0.0
        total_routed = sum(routed.values()) or 1.0
        for t, n in counts.items():
            per_replica = routed[t] / n
            observed = goodput * routed[t] / total_routed / n
            cap = (1 - options.cut_margin) * per_replica if slo_missed else max(observed, 0.5 * per_replica)
            before = len(surrogate.problem.capacity_cuts)
            surrogate.cut_capacity(t, cap)
            cuts += len(surrogate.problem.capacity_cuts) - before
    if cand.feasible and len(counts) == 1 and math.isfinite(cand.objective):
        ((t, n),) = counts.items()
        margin = options.correction_margin
        if objective == "min_energy":
            # match the template's energy per request to the simulated power of this plan (less the margin):
            # simulated W = J/token × tokens/s = n·idle + unused idle + rate·E, solved for E
            st = surrogate.stats
            watts = cand.objective * st.demand_rps * st.mean_output
            idle = surrogate.templates[t].coefficients.idle_w
            active = watts - (surrogate.cluster_idle_w - n * idle) - n * idle
            surrogate.learn(t, "energy", max(active, 0.0) / max(routed[t], 1e-12) * (1 - margin))
        elif objective == "min_latency":
            predicted = surrogate.to_sim_units(solution.metrics[objective], solution)
            if predicted and predicted > 0:
                ratio = cand.objective / predicted
                now = surrogate.templates[t].coefficients.latency(CLASS_ID)
                surrogate.learn(t, "latency", now * (ratio * (1 - margin) if ratio > 1 else ratio))
    return cuts


def _combine(incumbent: float | None, remaining: float | None, objective: str) -> float | None:
    """The bound on the optimum: the better of the incumbent and what the unsimulated vectors could reach."""
    if remaining is None:
        return incumbent
    if incumbent is None:
        return remaining
    return max(incumbent, remaining) if obj.SENSE[objective] == "max" else min(incumbent, remaining)


def _explain(surrogate: _Surrogate, solver) -> str:
    """Why the master has no solution at all, in words (its elastic re-solve), or "" if it cannot say."""
    from formulations.master import explain_master_infeasibility

    try:
        rows = explain_master_infeasibility(surrogate.problem, solver)
    except Exception as exc:  # the explanation is a courtesy; never let it hide the real answer
        log.info("could not explain the infeasible master: %s", exc)
        return ""
    return "; ".join(r.message for r in rows[:3])


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4g}"


def shorthand(plan: Plan) -> str:
    """`tp=4,pp=2,dp=2` (plus `ep=`) when the plan is that homogeneous shorthand, else its short label."""
    from simulator.plan import Stage, even_layer_split

    if len(plan.replicas) == 1 and plan.replicas[0].role == "colocated":
        g = plan.replicas[0]
        s0 = g.stages[0]
        tp, ep, pp = s0.attention.tp, s0.ffn.ep, len(g.stages)
        num_layers = g.stages[-1].layers[1]
        same = all(
            st.attention == Stage(layers=st.layers, tp=tp, ep=ep).attention
            and st.ffn == Stage(layers=st.layers, tp=tp, ep=ep).ffn
            for st in g.stages
        ) and [st.layers for st in g.stages] == even_layer_split(num_layers, pp)
        if same and len({st.gpu for st in g.stages}) == 1:
            text = f"tp={tp}" + (f",pp={pp}" if pp > 1 else "") + (f",dp={g.count}" if g.count > 1 else "")
            return text + (f",ep={ep}" if ep > 1 else "")
    return short_label(plan)


def _no_plan(scenario: Scenario, closest: Candidate | None, reason: str = "", solver_says: str = ""):
    from planner.errors import NoPlanError

    extra = f" (the solver's surrogate: {solver_says})" if solver_says else ""
    if closest is None:
        return NoPlanError(reason + extra)
    if closest.error:
        return NoPlanError(f"no simulated plan runs: {closest.error} (plan {shorthand(closest.plan)}){extra}")
    misses = "; ".join(v.describe() for v in closest.violations)
    return NoPlanError(f"{misses} on the best plan {shorthand(closest.plan)}{extra}")
