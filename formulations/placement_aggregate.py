"""Exact placement over aggregates (CP-SAT): replicas of one template are interchangeable and so are domains
with the same free GPUs, so the model counts instead of naming them; its size does not grow with the cluster.

A replica's cross-domain boundaries are (its number of *runs*) − 1, a run being consecutive stages of one GPU
type in one domain (a stage larger than a domain is a run of its own, on whole free nodes). So placing means:
cut every replica into runs and pack the runs into domains.

* Cuts, per template t: `w[t, i, j]` = replicas having the run of stages [i, j) — a path flow from stage 0 to
  the last stage, n_t units (`u[t, k, g]` for a whole-node stage k in group g).
* Packing, per domain class (group, free GPUs, fully free nodes): `z[class, pattern]` = domains filled with
  a maximal pattern (a multiset of run sizes and whole nodes that fits); Σ_pattern z = domains in the class.
* Supply ≥ demand per (GPU type, run size), and whole nodes per group.
* Minimise Σ w + Σ u − Σ n_t = cross-domain boundaries, with the constructive bound as a valid cut.

Any placement maps to such a cut and packing (runs in a domain form a pattern, extendable to a maximal one),
and any cut and packing expands to a placement with at most that many boundaries, so the optimum is exact.
The model is skipped (None) when the patterns would exceed `pattern_limit` (large domains with many small
run sizes).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from formulations.cpsat_util import CpSatRun, solve_cpsat
from formulations.placement_layout import INSIDE, WHOLE, Layout, Site, Template
from formulations.result import SolverOptions

PATTERN_LIMIT = 20_000  # packing patterns over all domain classes
COUNT_LIMIT = 20_000  # domain × run-size variables of the per-domain packing


@dataclass(frozen=True, slots=True)
class _Arc:
    """A run [start, stop) of template `template`: INSIDE a domain (size GPUs of gpu_type) or WHOLE nodes of
    group `group`."""

    template: int
    start: int
    stop: int
    kind: str
    gpu_type: str
    size: int
    group: int = -1  # WHOLE only
    nodes: int = 0  # WHOLE only


@dataclass(frozen=True, slots=True)
class _Pattern:
    sizes: tuple[tuple[int, int], ...]  # (run size, count)
    whole: int


def _arcs(layout: Layout, templates: Sequence[Template]) -> list[_Arc]:
    arcs = []
    for ti, t in enumerate(templates):
        k = len(t.stages)
        for i in range(k):
            gpu_type, cap, size = t.stages[i].gpu_type, layout.max_inside_free(t.stages[i].gpu_type), 0
            for j in range(i + 1, k + 1):
                s = t.stages[j - 1]
                if s.gpu_type != gpu_type or size + s.num_gpus > cap:
                    break
                size += s.num_gpus
                arcs.append(_Arc(ti, i, j, INSIDE, gpu_type, size))
            s = t.stages[i]
            for gi in layout.groups_of_type(s.gpu_type):
                if layout.stage_kind(gi, s.num_gpus) == WHOLE:
                    nodes = s.num_gpus // layout.groups[gi].gpus_per_node
                    arcs.append(_Arc(ti, i, i + 1, WHOLE, s.gpu_type, s.num_gpus, gi, nodes))
    return arcs


def _patterns(capacity: int, sizes: Sequence[int], whole_max: int, node_gpus: int, limit: int):
    """Maximal patterns of a domain with `capacity` free GPUs and `whole_max` fully free nodes, or None past
    `limit`."""
    sizes = sorted(set(sizes), reverse=True)
    smallest = sizes[-1] if sizes else None
    out: list[_Pattern] = []

    def fill(i: int, room: int, counts: list[tuple[int, int]], whole: int) -> bool:
        if i == len(sizes):
            maximal = (smallest is None or room < smallest) and not (whole < whole_max and room >= node_gpus)
            if maximal:
                out.append(_Pattern(tuple(counts), whole))
            return len(out) <= limit
        most = room // sizes[i]
        # The smallest size fills what is left: fewer of it would leave room for one more (not maximal).
        for n in range(most, most - 1 if i == len(sizes) - 1 else -1, -1):
            if not fill(i + 1, room - n * sizes[i], counts + [(sizes[i], n)] if n else counts, whole):
                return False
        return True

    for whole in range(whole_max, -1, -1):
        if not fill(0, capacity - whole * node_gpus, [], whole):
            return None
    return out


@dataclass(frozen=True)
class AggregateOutcome:
    run: CpSatRun
    sites: list[list[Site]] | None  # None without an incumbent
    packing: str  # "patterns" or "counts"


def solve_aggregate(
    layout: Layout,
    templates: Sequence[Template],
    num_replicas: int,
    options: SolverOptions,
    *,
    lower_bound: int = 0,
    hint: Sequence[Sequence[Site]] | None = None,
    pattern_limit: int = PATTERN_LIMIT,
    count_limit: int = COUNT_LIMIT,
    deadline: float | None = None,
) -> AggregateOutcome | None:
    """Solve the aggregate model (packing by patterns, or by per-domain counts when the patterns exceed
    `pattern_limit`); None when both would be too big. `hint` (sites of a known placement, e.g. the
    constructive one) warm-starts CP-SAT."""
    from ortools.sat.python import cp_model  # lazy: ortools is slow to import

    arcs = _arcs(layout, templates)
    sizes_by_type: dict[str, set[int]] = defaultdict(set)
    whole_groups = set()
    for a in arcs:
        if a.kind == INSIDE:
            sizes_by_type[a.gpu_type].add(a.size)
        else:
            whole_groups.add(a.group)
    known = _known(layout, templates, arcs, hint) if hint is not None else None
    classes: dict[tuple[int, int, int], list[int]] = defaultdict(list)  # (group, free, whole free) -> domains
    for d in layout.domains:
        classes[d.group, d.free, d.whole_free if d.group in whole_groups else 0].append(d.id)
    fits = {
        key: sorted(s for s in sizes_by_type.get(layout.groups[key[0]].gpu_type, ()) if s <= key[1])
        for key in classes
    }
    patterns: dict[tuple[int, int, int], list[_Pattern]] | None = {}
    total = 0
    for key in classes:
        gi, free, whole = key
        found = _patterns(free, fits[key], whole, layout.groups[gi].gpus_per_node, pattern_limit - total)
        if found is None:
            patterns = None
            break
        patterns[key] = found
        total += len(found)
    if patterns is None and sum(len(fits[key]) * len(doms) for key, doms in classes.items()) > count_limit:
        return None

    m = cp_model.CpModel()
    flow = [m.new_int_var(0, len(templates[a.template].replicas), f"w{n}") for n, a in enumerate(arcs)]
    into, out = defaultdict(list), defaultdict(list)  # (template, stage position) -> arcs ending / starting
    demand: dict[tuple[str, int], list] = defaultdict(list)  # (gpu type, run size) -> arcs
    whole_demand: dict[int, list] = defaultdict(list)  # group -> node-weighted arcs
    for n, a in enumerate(arcs):
        into[a.template, a.stop].append(flow[n])
        out[a.template, a.start].append(flow[n])
        if a.kind == INSIDE:
            demand[a.gpu_type, a.size].append(flow[n])
        else:
            whole_demand[a.group].append(a.nodes * flow[n])
    for ti, t in enumerate(templates):
        m.add(sum(out[ti, 0]) == len(t.replicas))
        m.add(sum(into[ti, len(t.stages)]) == len(t.replicas))
        for p in range(1, len(t.stages)):
            m.add(sum(into[ti, p]) == sum(out[ti, p]))
    # supply[(gpu type, size)] / whole_supply[group]: linear expressions of the packing variables.
    supply: dict[tuple[str, int], list] = defaultdict(list)
    whole_supply: dict[int, list] = defaultdict(list)
    if patterns is not None:
        use = _pattern_packing(m, layout, classes, patterns, supply, whole_supply, known)
    else:
        use = _count_packing(m, layout, classes, fits, supply, whole_supply, known)
    for key, arcs_of_size in demand.items():
        m.add(sum(supply[key]) >= sum(arcs_of_size))
    for gi, arcs_of_group in whole_demand.items():
        m.add(sum(whole_supply[gi]) >= sum(arcs_of_group))
    boundaries = sum(flow) - num_replicas
    m.add(boundaries >= lower_bound)
    m.minimize(boundaries)
    if known is not None:
        for n, v in enumerate(flow):
            m.add_hint(v, known.arc_counts.get(n, 0))
    run = solve_cpsat(m, options, deadline=deadline)
    packing = "patterns" if patterns is not None else "counts"
    if not run.has_incumbent:
        return AggregateOutcome(run, None, packing)
    value = [run.solver.value(v) for v in flow]
    contents = use(run.solver)
    return AggregateOutcome(run, _expand(layout, templates, num_replicas, arcs, value, contents), packing)


@dataclass(frozen=True)
class _Known:
    """A given placement in the model's terms: replicas per arc, and each domain's content."""

    arc_counts: dict[int, int]
    contents: dict[int, _Pattern]  # domain -> its run sizes and whole nodes


def _known(layout: Layout, templates: Sequence[Template], arcs: Sequence[_Arc], sites) -> _Known:
    index = {(a.template, a.start, a.stop, a.kind, a.group): n for n, a in enumerate(arcs)}
    arc_counts: dict[int, int] = defaultdict(int)
    sizes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    wholes: dict[int, int] = defaultdict(int)
    for ti, t in enumerate(templates):
        for ri in t.replicas:
            row, k = sites[ri], 0
            while k < len(row):
                if row[k].kind == WHOLE:
                    group = layout.domains[row[k].domains[0]].group
                    arc_counts[index[ti, k, k + 1, WHOLE, group]] += 1
                    for d in row[k].domains:
                        wholes[d] += 1
                    k += 1
                    continue
                stop, d = k + 1, row[k].domains[0]
                while stop < len(row) and row[stop].kind == INSIDE and row[stop].domains[0] == d:
                    stop += 1
                arc_counts[index[ti, k, stop, INSIDE, -1]] += 1
                sizes[d][sum(s.num_gpus for s in t.stages[k:stop])] += 1
                k = stop
    contents = {
        d.id: _Pattern(tuple(sorted(sizes[d.id].items(), reverse=True)), wholes[d.id]) for d in layout.domains
    }
    return _Known(dict(arc_counts), contents)


def _pattern_packing(m, layout, classes, patterns, supply, whole_supply, known):
    """z[class, pattern] domains of a class use a pattern; the known placement's contents join the patterns."""
    used: dict[tuple[int, int, int], Counter] = {}
    if known is not None:
        for key, doms in classes.items():
            used[key] = Counter(known.contents[d] for d in doms)
            patterns[key] += [pat for pat in used[key] if pat not in set(patterns[key])]
    use = {}
    for key, pats in patterns.items():
        gi = key[0]
        gpu_type = layout.groups[gi].gpu_type
        for pi, pat in enumerate(pats):
            z = use[key, pi] = m.new_int_var(0, len(classes[key]), f"z{key}_{pi}")
            for size, count in pat.sizes:
                supply[gpu_type, size].append(count * z)
            if pat.whole:
                whole_supply[gi].append(pat.whole * z)
            if known is not None:
                m.add_hint(z, used[key][pat])
        m.add(sum(use[key, pi] for pi in range(len(pats))) == len(classes[key]))

    def contents(solver) -> dict[int, _Pattern]:
        out = {}
        for key, doms in classes.items():
            it = iter(doms)
            for pi, pat in enumerate(patterns[key]):
                for _ in range(solver.value(use[key, pi])):
                    out[next(it)] = pat
        return out

    return contents


def _count_packing(m, layout, classes, fits, supply, whole_supply, known):
    """x[d, size] runs of a size in domain d, y[d] whole nodes taken; Σ size·x + node GPUs·y ≤ free GPUs.
    Identical domains are ordered by their count of the largest size (symmetry breaking)."""
    x, y = {}, {}
    for key, doms in classes.items():
        gi, free, whole = key
        g = layout.groups[gi]
        for d in doms:
            for size in fits[key]:
                v = x[d, size] = m.new_int_var(0, free // size, f"x{d}_{size}")
                supply[g.gpu_type, size].append(v)
            if whole:
                v = y[d] = m.new_int_var(0, whole, f"y{d}")
                whole_supply[gi].append(v)
            load = [size * x[d, size] for size in fits[key]] + ([g.gpus_per_node * y[d]] if whole else [])
            if load:
                m.add(sum(load) <= free)
        if fits[key] and known is None:
            largest = fits[key][-1]
            for a, b in zip(doms, doms[1:], strict=False):
                m.add(x[a, largest] >= x[b, largest])
    if known is not None:
        for (d, size), v in x.items():
            m.add_hint(v, dict(known.contents[d].sizes).get(size, 0))
        for d, v in y.items():
            m.add_hint(v, known.contents[d].whole)

    def contents(solver) -> dict[int, _Pattern]:
        sizes: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for (d, size), v in sorted(x.items(), key=lambda item: (item[0][0], -item[0][1])):
            if solver.value(v):
                sizes[d].append((size, solver.value(v)))
        return {
            d.id: _Pattern(tuple(sizes[d.id]), solver.value(y[d.id]) if d.id in y else 0)
            for d in layout.domains
        }

    return contents


def _expand(layout, templates, num_replicas, arcs, value, contents) -> list[list[Site]]:
    """Name the domains: each domain's content gives slots; walk each replica's flow path and take a slot of
    each run's size (lowest domain first, so a replica's runs sit on neighbouring domains)."""
    slots: dict[tuple[str, int], list[int]] = defaultdict(list)  # (gpu type, size) -> domain per slot
    whole_slots: dict[int, list[int]] = defaultdict(list)  # group -> domain per free node
    for d, pat in sorted(contents.items()):
        gi = layout.domains[d].group
        for size, n in pat.sizes:
            slots[layout.groups[gi].gpu_type, size] += [d] * n
        whole_slots[gi] += [d] * pat.whole
    for lst in (*slots.values(), *whole_slots.values()):
        lst.reverse()  # pop() from the end = lowest domain first
    left = list(value)
    out_arcs: dict[tuple[int, int], list[int]] = defaultdict(list)
    for n, a in enumerate(arcs):
        out_arcs[a.template, a.start].append(n)
    sites: list[list[Site]] = [[] for _ in range(num_replicas)]
    for ti, t in enumerate(templates):
        for ri in t.replicas:
            p, row = 0, []
            while p < len(t.stages):
                n = next(n for n in out_arcs[ti, p] if left[n] > 0)
                left[n] -= 1
                a = arcs[n]
                if a.kind == WHOLE:
                    row.append(Site(WHOLE, tuple(whole_slots[a.group].pop() for _ in range(a.nodes))))
                else:
                    d = slots[a.gpu_type, a.size].pop()
                    row += [Site(INSIDE, (d,))] * (a.stop - a.start)
                p = a.stop
            sites[ri] = row
    return sites
