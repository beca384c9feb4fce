"""Simulated candidates and the process pool that simulates them.

* `Candidate` — one simulated plan scored against the goals (`planner.objective`), ranked by `rank_key`.
* `Simulations` — simulates plans of one scenario, caching by everything that changes the result
  (`labels.plan_key` plus the scenario's engine and dtypes), in worker processes when `workers` > 1, a large
  homogeneous plan through a few of its replicas (`sampling.py`). It counts
  every simulation it runs (`count`), honours a deadline (work not started by then is not started; work still
  running is abandoned), and on any exception — Ctrl-C, SIGTERM turned into an exception by the CLI, an error —
  terminates its workers at once before the exception propagates.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

from formulations.templates import EngineSettings
from planner import objective as obj
from planner.objective import Violation
from planner.search.labels import Proposal, plan_key, short_label
from planner.search.sampling import sampled, scale_metrics
from planner.search.settings import apply_settings, scenario_settings
from simulator.errors import InputError
from simulator.plan import Plan
from simulator.scenario import Scenario

log = logging.getLogger("apex.plan")


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
    source: str = "search"  # "search", "baseline:<name>" or "exhaustive": who proposed it
    settings: EngineSettings | None = None  # the engine knobs and dtypes it was simulated with
    settings_note: str = ""  # how they differ from the scenario's ("" when they do not)

    @property
    def feasible(self) -> bool:
        return not self.violations and self.error is None

    @property
    def usd_per_hour(self) -> float:
        return float(self.metrics.get("cost", {}).get("usd_per_hour", math.inf))

    @property
    def key(self) -> str:
        """The simulation cache key: the plan's groups and its settings (labels.Proposal)."""
        return plan_key(self.plan) + ("|" + self.settings.key if self.settings is not None else "")

    @property
    def proposal(self) -> Proposal | Plan:
        return Proposal(self.plan, self.settings) if self.settings is not None else self.plan

    def scenario_in(self, scenario: Scenario) -> Scenario:
        """`scenario` with this plan and the engine knobs and dtypes it was simulated with (what a report
        re-simulates and an emitter launches)."""
        return apply_settings(scenario, self.settings).with_plan(self.plan)

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
        """A short label for people: the GPU type once per replica group instead of on every stage, and the
        settings where they differ from the scenario's (`{seqs64}`)."""
        label = short_label(self.plan)
        return f"{label} {{{self.settings_note}}}" if self.settings_note else label

    def to_json(self) -> dict:
        value = self.objective if math.isfinite(self.objective) else None
        out = {
            "plan": self.name,
            "label": self.label,
            "objective": value,
            "metrics": self.metrics,
            "plan_spec": self.plan.model_dump(mode="json", exclude_none=True),
            "feasible": self.feasible,
            "violations": [v.describe() for v in self.violations] + ([self.error] if self.error else []),
            "source": self.source,
        }
        if self.settings is not None:
            out["settings"] = self.settings.to_json()
        return out


def score(
    scenario: Scenario,
    plan: Plan | Proposal,
    metrics: dict | None,
    error: str | None = None,
) -> Candidate:
    """Score one simulation result against the scenario's goals (a bare Plan has the scenario's settings)."""
    own = scenario_settings(scenario)
    settings = plan.settings if isinstance(plan, Proposal) else own
    plan = plan.plan if isinstance(plan, Proposal) else plan
    note = settings.differences(own)
    goals = scenario.spec.goals
    num_gpus = plan.num_gpus
    if metrics is None:
        worst = obj.spec(goals.objective).worst
        return Candidate(
            plan,
            plan.label(),
            {},
            worst,
            (),
            num_gpus,
            error or "simulation failed",
            "search",
            settings,
            note,
        )
    return Candidate(
        plan,
        plan.label(),
        metrics,
        obj.objective_value(metrics, goals),
        tuple(obj.violations(metrics, goals, num_gpus)),
        num_gpus,
        settings=settings,
        settings_note=note,
    )


def best_first(candidates: Iterable[Candidate], objective: str) -> list[Candidate]:
    return sorted(candidates, key=lambda c: c.rank_key(objective))


# ---- workers -------------------------------------------------------------------------------------------------

_WORKER_SCENARIO: Scenario | None = None
_WORKER_SIMULATE: Callable | None = None


def _init_worker(scenario: Scenario, simulate_fn: Callable | None, in_child: bool) -> None:
    global _WORKER_SCENARIO, _WORKER_SIMULATE
    _WORKER_SCENARIO, _WORKER_SIMULATE = scenario, simulate_fn
    if in_child:
        # Ctrl-C reaches the whole process group; the parent handles it and terminates the workers, so a
        # worker ignores SIGINT, and dies at once on SIGTERM (not through the CLI's handler it inherited by
        # fork, which would raise and print from inside the worker).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _default_simulate(scenario: Scenario) -> dict:
    # lazy: workers import the simulator once, on first use
    from planner.search.disaggregation import simulate_with_kv_stream

    return simulate_with_kv_stream(scenario)


def _simulate_plan(job: tuple[dict, dict, float]) -> tuple[dict | None, str | None]:
    """Worker: simulate the worker's scenario with the job's plan and settings — a large homogeneous plan
    through a few of its replicas (`sampling`, the job's makespan floor bounding the whole plan's); (metrics,
    None) or (None, why it was refused)."""
    plan_json, settings_json, floor = job
    settings = EngineSettings(**settings_json)
    scenario = apply_settings(_WORKER_SCENARIO, settings).with_plan(plan_json)
    run = _WORKER_SIMULATE or _default_simulate
    try:
        reduced = sampled(scenario)
        if reduced is None:
            return run(scenario), None
        small, sample = reduced
        return scale_metrics(run(small), scenario, small, sample, floor), None
    except InputError as exc:
        return None, str(exc)
    except (
        Exception
    ) as exc:  # a simulator failure on one plan is reported on that plan, not fatal to the search
        log.warning("simulating %s failed: %r", scenario.plan.label(), exc)
        return None, f"simulation failed: {exc!r}"


class Simulations:
    """Simulates plans of one scenario, caching results by plan; several at once in worker processes.

    `simulate_fn(scenario) -> metrics dict` replaces the simulator (tests); it must be picklable for workers > 1.
    `count` is the number of simulations run (cache hits are not simulations).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        workers: int = 1,
        simulate_fn: Callable | None = None,
        progress: Callable[[int, int], None] | None = None,
        makespan_floor: Callable[[Plan], float] | None = None,
    ):
        self.scenario = scenario
        self.makespan_floor = makespan_floor  # plan -> the least makespan the whole workload can take on it
        self.workers = max(1, workers)
        self.simulate_fn = simulate_fn
        self.progress = progress
        self.cache: dict[str, Candidate] = {}
        self.order: list[str] = []  # keys in the order they were simulated
        self.timed_out = False  # a deadline stopped some simulation from running
        self._pool: ProcessPoolExecutor | None = None
        self._expected = 0
        spec = scenario.spec
        self.own_settings = scenario_settings(scenario)
        # what changes a result besides the plan and its settings (Proposal.key): the rest of the engine
        # (kind, block size, router, ...), the activation dtype and the calibration
        paths = EngineSettings.SCENARIO_PATHS
        rest = spec.engine.model_dump(
            exclude={k for n, (_, k) in paths.items() if n not in EngineSettings.OPTIONAL}
        )
        self._scenario_key = f"{rest}{spec.dtype.activations}{spec.calibration}|"

    def __enter__(self) -> Simulations:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(terminate=exc_type is not None)

    def close(self, *, terminate: bool = False) -> None:
        """Shut the worker pool down; with `terminate`, kill running simulations instead of waiting for them."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if terminate:
            _terminate(pool)
        else:
            pool.shutdown(wait=True, cancel_futures=True)

    def expect(self, total: int) -> None:
        """Tell the progress bar how many simulations to expect in all (it grows as the search goes)."""
        self._expected = max(self._expected, total)

    def proposal(self, plan: Plan | Proposal) -> Proposal:
        """A bare Plan runs with the scenario's own settings."""
        return plan if isinstance(plan, Proposal) else Proposal(plan, self.own_settings)

    def key(self, plan: Plan | Proposal) -> str:
        return self._scenario_key + self.proposal(plan).key

    def cached(self, plan: Plan | Proposal) -> Candidate | None:
        return self.cache.get(self.key(plan))

    @property
    def count(self) -> int:
        return len(self.order)

    def run(
        self, plans: Iterable[Plan | Proposal], *, deadline: float | None = None, source: str = "search"
    ) -> list:
        """Scored candidates for `plans` (bare Plans run with the scenario's settings), in the same order,
        simulating only those not cached. With a `deadline` (time.perf_counter() seconds), plans not simulated
        by then come back as None."""
        plans = [self.proposal(p) for p in plans]
        todo: dict[str, Proposal] = {}
        for p in plans:
            k = self.key(p)
            if k not in self.cache and k not in todo:
                todo[k] = p
        self.expect(self.count + len(todo))
        if todo:
            try:
                if self.workers > 1 and len(todo) > 1:
                    self._run_parallel(todo, deadline, source)
                else:
                    self._run_serial(todo, deadline, source)
            except BaseException:
                self.close(terminate=True)
                raise
        return [self.cache.get(self.key(p)) for p in plans]

    def _job(self, plan: Proposal) -> tuple[dict, dict, float]:
        floor = self.makespan_floor(plan) if self.makespan_floor is not None else 0.0
        return plan.plan.model_dump(mode="json", exclude_none=True), plan.settings.to_json(), floor

    def _record(self, k: str, plan: Proposal, result: tuple[dict | None, str | None], source: str) -> None:
        metrics, error = result
        self.cache[k] = _with_source(score(self.scenario, plan, metrics, error), source)
        self.order.append(k)
        if self.progress:
            self.progress(self.count, max(self._expected, self.count))

    def _run_serial(self, todo: dict[str, Proposal], deadline: float | None, source: str) -> None:
        _init_worker(self.scenario, self.simulate_fn, in_child=False)
        for k, plan in todo.items():
            if deadline is not None and time.perf_counter() >= deadline:
                self.timed_out = True
                return
            self._record(k, plan, _simulate_plan(self._job(plan)), source)

    def _run_parallel(self, todo: dict[str, Proposal], deadline: float | None, source: str) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker,
                initargs=(self.scenario, self.simulate_fn, True),
            )
        futures = {self._pool.submit(_simulate_plan, self._job(p)): k for k, p in todo.items()}
        results: dict[str, tuple] = {}
        timeout = None if deadline is None else max(deadline - time.perf_counter(), 0.0)
        try:
            for fut in cf.as_completed(futures, timeout=timeout):
                results[futures[fut]] = fut.result()
        except cf.TimeoutError:
            self.timed_out = True
            self.close(terminate=True)  # what is still running is abandoned: the time limit holds
        for k in todo:  # record in submission order so runs are reproducible
            if k in results:
                self._record(k, todo[k], results[k], source)


def _with_source(c: Candidate, source: str) -> Candidate:
    return replace(c, source=source)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers now (SIGTERM, then SIGKILL after a second) and release the executor."""
    processes = list(getattr(pool, "_processes", {}).values())
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=1.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=1.0)
    # join the manager thread (its workers are dead, so it ends at once): left running, it races the
    # interpreter's exit hook over its wake-up pipe and CPython 3.11 prints a traceback on stderr
    pool.shutdown(wait=True, cancel_futures=True)
