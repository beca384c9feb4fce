"""The cluster as placement sees it: scale-up domains of free GPUs, the replica templates, and turning a
domain-level assignment into concrete GPUs.

A *domain* is the set of GPUs one stage may span over the scale-up fabric: one node, or `domain_gpus /
gpus_per_node` consecutive nodes of a group with a larger NVLink domain (GB200 NVL72: 18 trays of 4). Every
placement method (aggregate, direct, constructive) decides only which domain each stage goes to (a *site*);
`realize` then picks nodes and GPU indices inside each domain, and `count_boundaries` measures the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from formulations.placement_types import GpuSlot, PlacementNodeGroup, PlacementReplica, PlacementStage

INSIDE = "inside"  # the stage sits inside one domain
WHOLE = "whole"  # the stage is larger than a domain and takes whole, fully free nodes


@dataclass(frozen=True, slots=True)
class Domain:
    """One scale-up domain: `nodes` of group `group` (an index), with `free` usable GPUs of which
    `whole_free` nodes are entirely free."""

    id: int
    group: int
    nodes: tuple[int, ...]
    free: int
    whole_free: int


@dataclass(frozen=True, slots=True)
class Template:
    """Replicas with identical stage tuples (interchangeable for placement): indices into the replica list."""

    stages: tuple[PlacementStage, ...]
    replicas: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Site:
    """Where one stage goes: `domains` = (the domain,) for an inside stage; for a whole-node stage one domain id
    per node it takes (repeated when it takes several nodes of one domain)."""

    kind: str
    domains: tuple[int, ...]


def templates_of(replicas: Sequence[PlacementReplica]) -> list[Template]:
    """Group replicas by their stage tuple, in first-seen order."""
    seen: dict[tuple[PlacementStage, ...], list[int]] = {}
    for i, r in enumerate(replicas):
        seen.setdefault(r.stages, []).append(i)
    return [Template(stages, tuple(idx)) for stages, idx in seen.items()]


class Layout:
    """Free GPUs of a cluster, per node and per domain."""

    def __init__(self, groups: Sequence[PlacementNodeGroup], unavailable: frozenset[GpuSlot]):
        self.groups = tuple(groups)
        self.free: dict[tuple[int, int], tuple[int, ...]] = {}  # (group index, node) -> free GPU indices
        self.domains: list[Domain] = []
        for gi, g in enumerate(self.groups):
            per = g.nodes_per_domain
            for n in range(g.nodes):
                self.free[gi, n] = tuple(
                    i for i in range(g.gpus_per_node) if (g.name, n, i) not in unavailable
                )
            for start in range(0, g.nodes, per):
                nodes = tuple(range(start, min(start + per, g.nodes)))
                free = sum(len(self.free[gi, n]) for n in nodes)
                whole = sum(len(self.free[gi, n]) == g.gpus_per_node for n in nodes)
                self.domains.append(Domain(len(self.domains), gi, nodes, free, whole))

    def groups_of_type(self, gpu_type: str) -> list[int]:
        return [gi for gi, g in enumerate(self.groups) if g.gpu_type == gpu_type]

    def stage_kind(self, gi: int, num_gpus: int) -> str | None:
        """How a stage of `num_gpus` GPUs may sit in group `gi`: INSIDE one domain, on WHOLE nodes, or None."""
        g = self.groups[gi]
        if num_gpus <= g.domain_size:
            return INSIDE
        if num_gpus % g.gpus_per_node == 0 and num_gpus // g.gpus_per_node <= g.nodes:
            return WHOLE
        return None

    def max_inside_free(self, gpu_type: str) -> int:
        """The most free GPUs of any domain of this GPU type (0 when there is none)."""
        return max((d.free for d in self.domains if self.groups[d.group].gpu_type == gpu_type), default=0)


def min_segments(stages: Sequence[PlacementStage], layout: Layout) -> int:
    """Fewest runs of consecutive stages that could each share one domain (runs of one GPU type whose GPUs fit
    the freest domain of that type; a stage larger than every domain is a run of its own). Greedy
    longest-run-first is optimal for this, so Σ (min_segments − 1) bounds cross-domain boundaries from below."""
    runs, used, gpu_type = 0, 0, None
    for s in stages:
        cap = layout.max_inside_free(s.gpu_type)
        if s.num_gpus > cap:  # a whole-node stage: alone
            runs, used, gpu_type = runs + 1, 0, None
            continue
        if s.gpu_type == gpu_type and used + s.num_gpus <= cap:
            used += s.num_gpus
        else:
            runs, used, gpu_type = runs + 1, s.num_gpus, s.gpu_type
    return runs


def boundary_lower_bound(templates: Sequence[Template], layout: Layout) -> int:
    """Σ over replicas of (min_segments − 1): a valid lower bound on cross-domain boundaries."""
    return sum(len(t.replicas) * (min_segments(t.stages, layout) - 1) for t in templates)


def realize(
    layout: Layout, replicas: Sequence[PlacementReplica], sites: Sequence[Sequence[Site]]
) -> list[list[list[GpuSlot]]]:
    """Concrete GPUs for a domain-level assignment: replica index -> stage -> [(group name, node, GPU)].

    Inside each domain, whole-node stages take fully free nodes first (lowest index); then runs of consecutive
    stages of one replica go, largest first, to the node with the fewest free GPUs that holds the whole run,
    else stage by stage to the tightest node that holds the stage, else (only possible in a multi-node NVLink
    domain) over the nodes with the most free GPUs. GPU indices are taken lowest free first. The caller's
    assignment must respect every domain's free GPUs and fully free nodes.
    """
    free = {key: list(v) for key, v in layout.free.items()}
    out: list[list[list[GpuSlot]]] = [[[] for _ in r.stages] for r in replicas]
    runs: dict[int, list[list[tuple[int, int]]]] = {}  # domain -> runs of (replica, stage)
    whole_requests: dict[int, list[tuple[int, int]]] = {}  # domain -> (replica, stage), one per node
    for ri, stage_sites in enumerate(sites):
        prev_domain = None
        for k, site in enumerate(stage_sites):
            if site.kind == WHOLE:
                for d in site.domains:
                    whole_requests.setdefault(d, []).append((ri, k))
                prev_domain = None
                continue
            d = site.domains[0]
            if d == prev_domain:
                runs[d][-1].append((ri, k))
            else:
                runs.setdefault(d, []).append([(ri, k)])
            prev_domain = d

    def take(gi: int, node: int, count: int) -> list[GpuSlot]:
        idx, free[gi, node] = free[gi, node][:count], free[gi, node][count:]
        return [(layout.groups[gi].name, node, i) for i in idx]

    for dom in layout.domains:
        gi, per_node = dom.group, layout.groups[dom.group].gpus_per_node
        whole_nodes = [n for n in dom.nodes if len(free[gi, n]) == per_node]
        requests = whole_requests.get(dom.id, [])
        if len(requests) > len(whole_nodes):
            raise ValueError(f"domain {dom.id}: {len(requests)} whole nodes asked, {len(whole_nodes)} free")
        for (ri, k), node in zip(requests, whole_nodes, strict=False):
            out[ri][k] += take(gi, node, per_node)
        sized = [(sum(replicas[ri].stages[k].num_gpus for ri, k in run), run) for run in runs.get(dom.id, ())]
        for run_gpus, run in sorted(sized, key=lambda item: -item[0]):
            node = _tightest(free, gi, dom.nodes, run_gpus)
            for ri, k in run:
                n_gpus = replicas[ri].stages[k].num_gpus
                target = node if node is not None else _tightest(free, gi, dom.nodes, n_gpus)
                if target is not None:
                    out[ri][k] += take(gi, target, n_gpus)
                    continue
                need = n_gpus
                for n in sorted(dom.nodes, key=lambda n: -len(free[gi, n])):
                    got = take(gi, n, need)
                    out[ri][k] += got
                    need -= len(got)
                    if need == 0:
                        break
                if need:
                    raise ValueError(f"domain {dom.id}: stages exceed its free GPUs")
    return out


def _tightest(free, gi: int, nodes: Sequence[int], count: int) -> int | None:
    best = None
    for n in nodes:
        have = len(free[gi, n])
        if have >= count and (best is None or have < len(free[gi, best])):
            best = n
    return best


def count_boundaries(layout: Layout, gpus: Sequence[Sequence[Sequence[GpuSlot]]]) -> tuple[int, int]:
    """(cross-node, cross-domain) pipeline boundaries: a boundary stays inside a node (a domain) only when both
    neighbouring stages lie entirely on that one node (domain)."""
    group_index = {g.name: gi for gi, g in enumerate(layout.groups)}
    cross_node = cross_domain = 0
    for stages in gpus:
        nodes = [{(g, n) for g, n, _ in slots} for slots in stages]
        domains = [
            {(g, n // layout.groups[group_index[g]].nodes_per_domain) for g, n, _ in slots}
            for slots in stages
        ]
        for k in range(len(stages) - 1):
            cross_node += not (len(nodes[k]) == 1 and nodes[k] == nodes[k + 1])
            cross_domain += not (len(domains[k]) == 1 and domains[k] == domains[k + 1])
    return cross_node, cross_domain
