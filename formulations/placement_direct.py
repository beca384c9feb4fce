"""Exact placement with one variable per stage and domain (CP-SAT): the straightforward model, used when the
aggregate model's patterns would be too many (few large domains with many small run sizes, e.g. one NVL72
rack of small stages) and as the reference the aggregate model is tested against.

`on[r, k, d]` = stage k of replica r sits inside domain d; `node[r, k, n]` = it takes fully free node n (a
stage larger than a domain); `pick[r, k, g]` chooses the group when several of its GPU type could hold it.
Σ stages' GPUs on a domain ≤ its free GPUs; a fully free node serves one whole-node stage; `same[r, k]` ⇒
stages k and k + 1 share a domain. Minimise boundaries − Σ same (cross-domain boundaries). Symmetry between
replicas of one template is broken by ordering their first stage's domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from formulations.cpsat_util import CpSatRun, solve_cpsat
from formulations.placement_layout import INSIDE, WHOLE, Layout, Site, Template
from formulations.placement_types import PlacementReplica
from formulations.result import SolverOptions

DIRECT_LIMIT = 20_000  # stage × domain literals


@dataclass(frozen=True)
class DirectOutcome:
    run: CpSatRun
    sites: list[list[Site]] | None  # None without an incumbent


def direct_size(layout: Layout, replicas: Sequence[PlacementReplica]) -> int:
    """Number of stage × candidate-domain (or node) literals the direct model would have."""
    total = 0
    for r in replicas:
        for s in r.stages:
            for gi in layout.groups_of_type(s.gpu_type):
                kind = layout.stage_kind(gi, s.num_gpus)
                if kind == INSIDE:
                    total += sum(d.group == gi and d.free >= s.num_gpus for d in layout.domains)
                elif kind == WHOLE:
                    total += layout.groups[gi].nodes
    return total


def solve_direct(
    layout: Layout,
    replicas: Sequence[PlacementReplica],
    templates: Sequence[Template],
    options: SolverOptions,
    *,
    lower_bound: int = 0,
    hint: Sequence[Sequence[Site]] | None = None,
    deadline: float | None = None,
) -> DirectOutcome:
    from ortools.sat.python import cp_model  # lazy: ortools is slow to import

    m = cp_model.CpModel()
    on: dict[tuple[int, int, int], object] = {}  # (replica, stage, domain)
    node: dict[tuple[int, int, int, int], object] = {}  # (replica, stage, group, node)
    load: dict[int, list] = {d.id: [] for d in layout.domains}
    node_users: dict[tuple[int, int], list] = {}
    whole_nodes = {
        (d.group, n)
        for d in layout.domains
        for n in d.nodes
        if len(layout.free[d.group, n]) == layout.groups[d.group].gpus_per_node
    }
    for ri, r in enumerate(replicas):
        for k, s in enumerate(r.stages):
            picks = []
            for gi in layout.groups_of_type(s.gpu_type):
                kind = layout.stage_kind(gi, s.num_gpus)
                if kind is None:
                    continue
                pick = m.new_bool_var(f"pick_{ri}_{k}_{gi}")
                picks.append(pick)
                if kind == INSIDE:
                    lits = []
                    for d in layout.domains:
                        if d.group == gi and d.free >= s.num_gpus:
                            lit = on[ri, k, d.id] = m.new_bool_var(f"on_{ri}_{k}_{d.id}")
                            load[d.id].append(s.num_gpus * lit)
                            lits.append(lit)
                    m.add(sum(lits) == pick)
                else:
                    per_node = layout.groups[gi].gpus_per_node
                    lits = []
                    for d in layout.domains:
                        for n in d.nodes:
                            if d.group == gi and (gi, n) in whole_nodes:
                                lit = node[ri, k, gi, n] = m.new_bool_var(f"node_{ri}_{k}_{gi}_{n}")
                                load[d.id].append(per_node * lit)
                                node_users.setdefault((gi, n), []).append(lit)
                                lits.append(lit)
                    m.add(sum(lits) == (s.num_gpus // per_node) * pick)
            m.add(sum(picks) == 1)
    for d in layout.domains:
        if load[d.id]:
            m.add(sum(load[d.id]) <= d.free)
    for users in node_users.values():
        m.add_at_most_one(users)
    same = []
    for ri, r in enumerate(replicas):
        for k in range(len(r.stages) - 1):
            shared = [d for d in range(len(layout.domains)) if (ri, k, d) in on and (ri, k + 1, d) in on]
            if not shared:
                continue
            lit = m.new_bool_var(f"same_{ri}_{k}")
            both = []
            for d in shared:
                x = m.new_bool_var(f"both_{ri}_{k}_{d}")
                m.add_implication(x, on[ri, k, d])
                m.add_implication(x, on[ri, k + 1, d])
                both.append(x)
            m.add(lit <= sum(both))
            same.append(lit)
    # Replicas of one template are interchangeable: order them by their first stage's domain (and the hint
    # likewise, so it stays consistent with the ordering).
    hint = [list(row) for row in hint] if hint is not None else None
    for t in templates:
        s0 = t.stages[0]
        if any(layout.stage_kind(gi, s0.num_gpus) == WHOLE for gi in layout.groups_of_type(s0.gpu_type)):
            continue
        index = [
            sum(d * lit for (rj, k, d), lit in _first_stage_lits(on, ri, len(layout.domains)))
            for ri in t.replicas
        ]
        for a, b in zip(index, index[1:], strict=False):
            m.add(a <= b)
        if hint is not None:
            rows = sorted((hint[ri] for ri in t.replicas), key=lambda row: row[0].domains)
            for ri, row in zip(t.replicas, rows, strict=True):
                hint[ri] = row
    boundaries = sum(len(r.stages) - 1 for r in replicas) - sum(same)
    if same:
        m.add(boundaries >= lower_bound)
    m.minimize(boundaries)
    if hint is not None:
        for (ri, k, d), lit in on.items():
            m.add_hint(lit, hint[ri][k].kind == INSIDE and hint[ri][k].domains == (d,))
    run = solve_cpsat(m, options, deadline=deadline)
    if not run.has_incumbent:
        return DirectOutcome(run, None)
    taken: dict[tuple[int, int], list[int]] = {}
    domain_of = {(d.group, n): d.id for d in layout.domains for n in d.nodes}
    for (ri, k, gi, n), lit in node.items():
        if run.solver.value(lit):
            taken.setdefault((ri, k), []).append(domain_of[gi, n])
    inside = {(ri, k): d for (ri, k, d), lit in on.items() if run.solver.value(lit)}
    sites = [
        [
            Site(INSIDE, (inside[ri, k],)) if (ri, k) in inside else Site(WHOLE, tuple(sorted(taken[ri, k])))
            for k in range(len(r.stages))
        ]
        for ri, r in enumerate(replicas)
    ]
    return DirectOutcome(run, sites)


def _first_stage_lits(on, ri: int, num_domains: int):
    return [((ri, 0, d), on[ri, 0, d]) for d in range(num_domains) if (ri, 0, d) in on]
