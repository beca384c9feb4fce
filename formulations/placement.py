"""Placement: map chosen replicas onto concrete (node group, node, GPU index), at any cluster size.

Rules: a stage of s GPUs sits inside one scale-up domain when s ≤ the domain's GPUs (a domain is one node, or
the nodes sharing a larger NVLink domain such as GB200 NVL72's 18 trays of 4); a larger stage takes s /
gpus_per_node whole, fully free nodes of one group (s must then be a multiple of gpus_per_node). A node's GPU
type must be the stage's; unavailable GPUs are never used. Objective: fewest pipeline boundaries between
different domains (equal to cross-node boundaries when every domain is one node); inside a multi-node domain a
replica's consecutive stages share a node where they fit.

How (`solve_placement`): simple necessary conditions first, so an infeasible placement names its reason (e.g.
"a stage of 8 h100-sxm GPUs needs a node with 8 free GPUs; the most free on any h100-sxm node is 6 ..."); then
the constructive placement and a lower bound (stop if they meet); then, within the time left, the exact
aggregate model (placement_aggregate: size independent of the replica and node counts) or, when its patterns
would be too many, the direct model (placement_direct). The answer is the best placement found, with its
method, a proven lower bound and whether it is optimal; running out of time never loses a placement the
constructive step found.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace

from formulations.placement_aggregate import COUNT_LIMIT, PATTERN_LIMIT, solve_aggregate
from formulations.placement_construct import construct_sites
from formulations.placement_direct import DIRECT_LIMIT, direct_size, solve_direct
from formulations.placement_layout import (
    INSIDE,
    WHOLE,
    Layout,
    boundary_lower_bound,
    count_boundaries,
    realize,
    templates_of,
)
from formulations.placement_types import (
    AGGREGATE,
    CONSTRUCTIVE,
    DIRECT,
    GpuSlot,
    Placement,
    PlacementNodeGroup,
    PlacementReplica,
    PlacementStage,
)
from formulations.result import SolutionStatus, SolveResult, SolverOptions, Termination, relative_gap

__all__ = [
    "AGGREGATE",
    "CONSTRUCTIVE",
    "DIRECT",
    "GpuSlot",
    "Placement",
    "PlacementNodeGroup",
    "PlacementReplica",
    "PlacementStage",
    "check_placement",
    "explain_placement_infeasibility",
    "node_groups_from_cluster",
    "solve_placement",
]

MIN_SOLVE_S = 0.1  # the exact model is not started with less time than this left (unless nothing else placed)


def node_groups_from_cluster(cluster) -> tuple[PlacementNodeGroup, ...]:
    """Plain placement data from a `simulator.hardware.Cluster` (its NVLink domain size included)."""
    return tuple(
        PlacementNodeGroup(g.name, g.gpu, g.nodes, g.gpus_per_node, g.domain_gpus)
        for g in cluster.node_groups
    )


def explain_placement_infeasibility(
    replicas: Sequence[PlacementReplica],
    groups: Sequence[PlacementNodeGroup],
    unavailable: frozenset[GpuSlot] = frozenset(),
) -> tuple[str, ...]:
    """Necessary conditions, each violated one as a sentence (empty when all hold)."""
    return _explain(Layout(groups, unavailable), replicas)


def _explain(layout: Layout, replicas: Sequence[PlacementReplica]) -> tuple[str, ...]:
    first: dict[str, tuple[str, int]] = {}  # reason -> (first replica id, stage), in first-seen order
    count: dict[str, int] = {}  # reason -> stages it applies to
    need_by_type: dict[str, int] = {}
    for t in templates_of(replicas):
        for k, s in enumerate(t.stages):
            need_by_type[s.gpu_type] = need_by_type.get(s.gpu_type, 0) + s.num_gpus * len(t.replicas)
            why = _stage_reason(layout, s)
            if why:
                first.setdefault(why, (replicas[t.replicas[0]].id, k))
                count[why] = count.get(why, 0) + len(t.replicas)
    reasons = []
    for why, (rid, k) in first.items():
        more = f" (and {count[why] - 1} more stage(s) like it)" if count[why] > 1 else ""
        reasons.append(f"replica {rid} stage {k}{why}{more}")
    for gpu_type, need in need_by_type.items():
        have = sum(d.free for d in layout.domains if layout.groups[d.group].gpu_type == gpu_type)
        if need > have:
            reasons.append(f"the replicas need {need} {gpu_type} GPUs but only {have} are available")
    return tuple(reasons)


def _stage_reason(layout: Layout, s: PlacementStage) -> str:
    """Why no group can hold this stage on its own ("" when one can)."""
    gis = layout.groups_of_type(s.gpu_type)
    if not gis:
        return f" needs {s.gpu_type} GPUs but no node group has them"
    inside = [gi for gi in gis if layout.stage_kind(gi, s.num_gpus) == INSIDE]
    whole = [gi for gi in gis if layout.stage_kind(gi, s.num_gpus) == WHOLE]
    most_free = max((d.free for d in layout.domains if d.group in inside), default=-1)
    whole_free = {gi: sum(d.whole_free for d in layout.domains if d.group == gi) for gi in whole}
    if most_free >= s.num_gpus or any(
        whole_free[gi] >= s.num_gpus // layout.groups[gi].gpus_per_node for gi in whole
    ):
        return ""
    if inside:
        multi = any(layout.groups[gi].nodes_per_domain > 1 for gi in inside)
        where = "NVLink domain" if multi else "node"
        return (
            f": a stage of {s.num_gpus} {s.gpu_type} GPUs needs a {where} with {s.num_gpus} free GPUs; the most "
            f"free on any {s.gpu_type} {where} is {most_free} after excluding unavailable GPUs"
        )
    if whole:
        gi = max(whole, key=lambda gi: whole_free[gi])
        return (
            f": a stage of {s.num_gpus} {s.gpu_type} GPUs needs "
            f"{s.num_gpus // layout.groups[gi].gpus_per_node} fully free nodes; only {whole_free[gi]} are"
        )
    g = layout.groups[gis[0]]
    unit = "an NVLink domain" if g.nodes_per_domain > 1 else "a node"
    return (
        f": {s.num_gpus} GPUs exceed {unit} of {g.domain_size} and are not a whole number of nodes "
        f"of {g.gpus_per_node} (or more nodes than the group has)"
    )


def solve_placement(
    replicas: Sequence[PlacementReplica],
    groups: Sequence[PlacementNodeGroup],
    options: SolverOptions,
    *,
    unavailable: frozenset[GpuSlot] = frozenset(),
    deadline: float | None = None,
    method: str | None = None,
) -> SolveResult[Placement]:
    """Place every replica; the whole call takes at most `options.time_limit_s` and ends by `deadline` (a
    `time.monotonic()` instant), whichever is first. CP-SAT runs with `options.threads` workers and seed.

    `objective` is the number of cross-domain boundaries, `bound` a proven lower bound; termination OPTIMAL when
    they meet, TIME_LIMIT when the exact model ran out of time (the best placement found is returned),
    FEASIBLE when no exact model was small enough. `method` forces one method (AGGREGATE, DIRECT or
    CONSTRUCTIVE) with no fallback, for tests and benchmarks.
    """
    t0 = time.monotonic()
    result = _solve(replicas, groups, options, unavailable, deadline, method, t0)
    return replace(result, wall_s=time.monotonic() - t0)  # the whole call, whichever answer is returned


def _solve(
    replicas: Sequence[PlacementReplica],
    groups: Sequence[PlacementNodeGroup],
    options: SolverOptions,
    unavailable: frozenset[GpuSlot],
    deadline: float | None,
    method: str | None,
    t0: float,
) -> SolveResult[Placement]:
    budget = options.time_limit_s if deadline is None else min(options.time_limit_s, deadline - t0)
    layout = Layout(groups, unavailable)
    reasons = _explain(layout, replicas)
    if reasons:
        return SolveResult.infeasible(time.monotonic() - t0, *reasons, log="necessary conditions failed")
    templates = templates_of(replicas)
    lower = boundary_lower_bound(templates, layout)

    def finish(sites, chosen, termination, bound, log, note="") -> SolveResult[Placement]:
        gpus = realize(layout, replicas, sites)
        cross_node, cross_domain = count_boundaries(layout, gpus)
        bound = max(lower, bound)
        optimal = cross_domain == bound
        placement = Placement(
            {r.id: gpus[i] for i, r in enumerate(replicas)},
            cross_node,
            cross_domain,
            chosen,
            optimal,
            bound,
            note,
        )
        if optimal:
            termination = Termination.OPTIMAL
        status = SolutionStatus.OPTIMAL if optimal else SolutionStatus.FEASIBLE
        wall = time.monotonic() - t0
        gap = relative_gap(cross_domain, bound)
        return SolveResult(termination, status, float(cross_domain), float(bound), gap, wall, log, placement)

    def no_solution(termination, why: str, log: str) -> SolveResult[Placement]:
        return SolveResult(
            termination,
            SolutionStatus.NO_SOLUTION,
            None,
            None,
            None,
            time.monotonic() - t0,
            log,
            None,
            (why,),
        )

    constructive = (
        construct_sites(layout, templates, len(replicas)) if method in (None, CONSTRUCTIVE) else None
    )
    if method == CONSTRUCTIVE:
        if constructive is None:
            return no_solution(
                Termination.UNKNOWN, "the constructive packing found no placement", "constructive"
            )
        return finish(constructive, CONSTRUCTIVE, Termination.FEASIBLE, lower, "constructive")
    if constructive is not None:
        incumbent = finish(constructive, CONSTRUCTIVE, Termination.FEASIBLE, lower, "constructive")
        if incumbent.is_optimal:
            return incumbent
    else:
        incumbent = None
    left = budget - (time.monotonic() - t0)
    if incumbent is not None and left < MIN_SOLVE_S:
        return _with_note(
            replace(incumbent, termination=Termination.TIME_LIMIT),
            f"no time left for the exact model ({max(left, 0):.2f} s of {max(budget, 0):.2f} s)",
        )
    solve_options = SolverOptions(
        time_limit_s=max(left, MIN_SOLVE_S), mip_rel_gap=0.0, threads=options.threads, seed=options.seed
    )
    end = t0 + budget if incumbent is not None else time.monotonic() + max(left, MIN_SOLVE_S)
    outcome, chosen, size = None, None, 0
    if method in (None, AGGREGATE):
        outcome = solve_aggregate(
            layout,
            templates,
            len(replicas),
            solve_options,
            lower_bound=lower,
            hint=constructive,
            deadline=end,
        )
        chosen = AGGREGATE
    if outcome is None and method in (None, DIRECT):
        size = direct_size(layout, replicas)
        if method == DIRECT or size <= DIRECT_LIMIT:
            outcome = solve_direct(
                layout, replicas, templates, solve_options, lower_bound=lower, hint=constructive, deadline=end
            )
            chosen = DIRECT
    if outcome is None:
        why = (
            f"the exact models are too big (over {PATTERN_LIMIT} packing patterns, over {COUNT_LIMIT} "
            f"domain × size counts and {size} stage × domain choices); constructive placement"
        )
        if incumbent is None:
            return no_solution(Termination.UNKNOWN, why + " found none", "exact models skipped")
        return _with_note(incumbent, why)
    run = outcome.run
    if outcome.sites is None:
        if run.termination == Termination.INFEASIBLE:
            if incumbent is not None:
                raise RuntimeError(f"{chosen} placement model is infeasible although a placement exists")
            return no_solution(
                Termination.INFEASIBLE,
                "no packing of the stages into the free GPUs of the domains exists (bin packing is infeasible "
                "although every stage fits some node and the totals suffice)",
                run.log,
            )
        why = f"CP-SAT ({chosen}) found no placement in {run.wall_s:.2f} s ({run.termination})"
        if incumbent is None:
            return no_solution(run.termination, why + " and the constructive packing found none", run.log)
        return _with_note(replace(incumbent, termination=run.termination), why + "; constructive placement")
    bound = math.ceil(run.bound - 1e-6) if run.bound is not None else lower
    exact = finish(outcome.sites, chosen, run.termination, bound, run.log)
    if incumbent is not None and incumbent.objective < exact.objective:
        return _with_note(
            finish(constructive, CONSTRUCTIVE, run.termination, bound, run.log),
            f"CP-SAT ({chosen}) stopped after {run.wall_s:.2f} s ({run.termination}) with a worse placement; "
            "constructive placement",
        )
    if not exact.is_optimal:
        return _with_note(
            exact,
            f"CP-SAT ({chosen}) stopped after {run.wall_s:.2f} s ({run.termination}) before proving optimality",
        )
    return exact


def _with_note(result: SolveResult[Placement], note: str) -> SolveResult[Placement]:
    return replace(result, solution=replace(result.solution, note=note))


def check_placement(
    replicas: Sequence[PlacementReplica],
    groups: Sequence[PlacementNodeGroup],
    placement: Placement,
    unavailable: frozenset[GpuSlot] = frozenset(),
) -> list[str]:
    """Every rule a placement must satisfy, each violation as a sentence (empty when it is valid)."""
    layout = Layout(groups, unavailable)
    by_name = {g.name: (gi, g) for gi, g in enumerate(layout.groups)}
    errors = []
    seen: set[GpuSlot] = set()
    ordered = []
    for r in replicas:
        stages = placement.gpus.get(r.id)
        if stages is None or len(stages) != len(r.stages):
            errors.append(f"replica {r.id}: {len(stages or [])} stages placed, {len(r.stages)} expected")
            continue
        ordered.append(stages)
        for k, (s, slots) in enumerate(zip(r.stages, stages, strict=True)):
            where = f"replica {r.id} stage {k}"
            if len(slots) != s.num_gpus or len(set(slots)) != len(slots):
                errors.append(f"{where}: {len(set(slots))} distinct GPUs for a stage of {s.num_gpus}")
            for slot in slots:
                g_name, node, gpu = slot
                if (
                    g_name not in by_name
                    or not (0 <= node < by_name[g_name][1].nodes)
                    or not (0 <= gpu < by_name[g_name][1].gpus_per_node)
                ):
                    errors.append(f"{where}: {slot} is not a GPU of the cluster")
                    continue
                if by_name[g_name][1].gpu_type != s.gpu_type:
                    errors.append(f"{where}: {slot} is not a {s.gpu_type}")
                if slot in unavailable:
                    errors.append(f"{where}: {slot} is unavailable")
                if slot in seen:
                    errors.append(f"{where}: {slot} is used twice")
                seen.add(slot)
            names = {g for g, _, _ in slots}
            if len(names) > 1 or not names or next(iter(names)) not in by_name:
                errors.append(f"{where}: spans node groups {sorted(names)}")
                continue
            gi, g = by_name[next(iter(names))]
            if layout.stage_kind(gi, s.num_gpus) == INSIDE:
                if len({n // g.nodes_per_domain for _, n, _ in slots}) != 1:
                    errors.append(f"{where}: a stage of {s.num_gpus} GPUs spans several scale-up domains")
            else:
                per_node: dict[int, int] = {}
                for _, n, _ in slots:
                    per_node[n] = per_node.get(n, 0) + 1
                if any(c != g.gpus_per_node for c in per_node.values()):
                    errors.append(f"{where}: a stage larger than a domain must take whole nodes")
    if not errors:
        counts = count_boundaries(layout, ordered)
        if counts != (placement.cross_node_boundaries, placement.cross_domain_boundaries):
            errors.append(
                f"reported boundaries {placement.cross_node_boundaries}/{placement.cross_domain_boundaries} "
                f"(node/domain) but the GPUs give {counts[0]}/{counts[1]}"
            )
        if placement.lower_bound > placement.cross_domain_boundaries:
            errors.append(f"lower bound {placement.lower_bound} exceeds the placement's count")
    return errors
