"""The rules of thumb operators use, as plans of the template space (the heuristic baselines):

* "tp-in-node": tp = GPUs per node, dp = nodes (per GPU type);
* "smallest-tp": the smallest tp whose replica fits in memory, dp filling the cluster;
* "max-tp": the largest valid tp in an NVLink domain, dp filling the cluster.

When no single-stage replica fits (a model larger than a node), a rule uses the fewest pipeline stages that fit.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.search.settings import scenario_settings
from simulator.plan import Plan
from simulator.scenario import Scenario

HEURISTICS = ("tp-in-node", "smallest-tp", "max-tp")


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
    """The rule-of-thumb plans (see the module docstring) from the colocated templates with the scenario's own
    engine settings; a rule with no valid plan is left out."""
    own = scenario_settings(scenario)
    templates = [t for t in templates if t.role == "colocated" and t.settings == own]
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
