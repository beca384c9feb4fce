"""Baselines the loop is measured against, all through the same simulation path (`search.Simulations`).

* `exhaustive(scenario)` — simulate every valid homogeneous plan, as APEX's original enumerator does: each
  replica structure of `formulations.templates.enumerate_structures` (tp, pp, ep and attention dp as powers of
  two inside an NVLink domain, pruned by divisibility and memory) times every replica count (dp) the cluster
  holds. On small spaces it is the reference that shows the loop finds the optimum.
* `heuristic_plans(scenario, templates)` — the rules of thumb operators use:
  - "tp-in-node": tp = GPUs per node, dp = nodes (per GPU type);
  - "smallest-tp": the smallest tp whose replica fits in memory, dp filling the cluster;
  - "max-tp": the largest valid tp in an NVLink domain, dp filling the cluster.
  When no single-stage replica fits (a model larger than a node), the rule uses the fewest pipeline stages
  that fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from planner.search import (
    PlanSearchResult,
    SearchOptions,
    SearchStats,
    Simulations,
    best_first,
    price_templates,
    workload_stats,
)
from simulator.plan import Plan
from simulator.scenario import Scenario

HEURISTICS = ("tp-in-node", "smallest-tp", "max-tp")


def _fits_inventory(scenario: Scenario, template, count: int) -> bool:
    inventory = scenario.cluster.gpus_by_type()
    return all(n * count <= inventory.get(g, 0) for g, n in template.gpus_by_type.items())


def _max_count(scenario: Scenario, template) -> int:
    inventory = scenario.cluster.gpus_by_type()
    return min(inventory.get(g, 0) // n for g, n in template.gpus_by_type.items() if n > 0)


def homogeneous_plans(scenario: Scenario, templates) -> list[Plan]:
    """Every plan made of one template (any replica count the inventory allows)."""
    plans = []
    for t in templates:
        for count in range(1, _max_count(scenario, t) + 1):
            plans.append(Plan(replicas=[t.replica_group(count)]))
    return plans


def _single_type(t) -> str | None:
    types = {s.gpu for s in t.stages}
    return next(iter(types)) if len(types) == 1 else None


def _plain(t) -> bool:
    """tp over every cell (no attention dp, no experts split apart from tp)."""
    return all(s.attention.dp == 1 and s.ffn.ep == 1 for s in t.stages)


def heuristic_plans(scenario: Scenario, templates) -> dict[str, Plan]:
    """The rule-of-thumb plans (see the module docstring); a rule with no valid plan is left out."""
    out: dict[str, Plan] = {}
    node = {}
    domain = {}
    nodes = {}
    for g in scenario.cluster.node_groups:
        node[g.gpu] = g.gpus_per_node
        domain[g.gpu] = max(domain.get(g.gpu, 0), g.domain_gpus)
        nodes[g.gpu] = nodes.get(g.gpu, 0) + g.nodes
    inventory = scenario.cluster.gpus_by_type()

    def choose(gpu: str, rank) -> object | None:
        pool = [t for t in templates if _single_type(t) == gpu and _plain(t)] or [
            t for t in templates if _single_type(t) == gpu
        ]
        if not pool:
            return None
        fewest = min(len(t.stages) for t in pool)
        return min((t for t in pool if len(t.stages) == fewest), key=rank, default=None)

    rules: dict[str, Callable] = {
        # tp as close as possible to the node size (a node per replica), one replica per node
        "tp-in-node": lambda gpu: lambda t: (abs(t.stages[0].num_gpus - node[gpu]), -t.stages[0].num_gpus),
        "smallest-tp": lambda gpu: lambda t: t.stages[0].num_gpus,
        "max-tp": lambda gpu: lambda t: -t.stages[0].num_gpus,
    }
    for name, rule in rules.items():
        groups = []
        for gpu in inventory:
            t = choose(gpu, rule(gpu))
            if t is None:
                continue
            if name == "tp-in-node" and t.num_gpus <= node[gpu]:
                count = nodes[gpu] * (node[gpu] // t.num_gpus) if t.num_gpus < node[gpu] else nodes[gpu]
                count = min(count, inventory[gpu] // t.num_gpus)
            else:
                count = inventory[gpu] // t.num_gpus
            if count > 0:
                groups.append(t.replica_group(count))
        if groups:
            out[name] = Plan(replicas=groups)
    return out


def exhaustive(
    scenario: Scenario,
    options: SearchOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    simulate_fn: Callable | None = None,
) -> PlanSearchResult:
    """Simulate every valid homogeneous plan; the best one wins (NoPlanError when none meets the goals)."""
    from planner.search import _no_plan

    options = options or SearchOptions()
    t0 = time.perf_counter()
    objective = scenario.spec.goals.objective
    stats = workload_stats(scenario)
    templates = [p.template for p in price_templates(scenario, stats)]
    plans = homogeneous_plans(scenario, templates)
    heuristics = heuristic_plans(scenario, templates)
    with Simulations(scenario, workers=options.workers, simulate_fn=simulate_fn, progress=progress) as sims:
        sims.expect(len(plans))
        candidates = best_first(sims.run(plans), objective)
        baselines = dict(zip(heuristics, sims.run(heuristics.values()), strict=True))
    if not candidates:
        raise _no_plan(scenario, None, "no replica structure of the model fits the cluster's GPUs")
    best = candidates[0]
    if not best.feasible:
        raise _no_plan(scenario, best)
    stats_ = SearchStats(
        "exhaustive", 1, len(plans), best.objective, 0.0, time.perf_counter() - t0, "every plan simulated"
    )
    return PlanSearchResult(objective, best, candidates, baselines, stats_, scenario)
