"""Constructive placement: fast, always tried first, and the fallback when an exact model is too big or out of
time.

Each replica is cut into the fewest runs of consecutive stages that fit the freest domain of their GPU type
(`min_segments`); stages larger than a domain take whole free nodes first; then the runs are packed best-fit
decreasing into domains (the tightest domain that holds the run, lowest index on ties). A run that fits no
domain is split at the longest prefix that fits the freest domain (each split costs one boundary). Should that
get stuck (a stage fits no domain's remainder), it packs single stages best-fit decreasing instead (more
boundaries, more packings found). Its quality is stated against `boundary_lower_bound`; when the two meet the
placement is optimal.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from formulations.placement_layout import INSIDE, WHOLE, Layout, Site, Template
from formulations.placement_types import PlacementStage


def construct_sites(
    layout: Layout, templates: Sequence[Template], num_replicas: int
) -> list[list[Site]] | None:
    """A domain per stage of every replica (indexed like the replica list), or None when the greedy packing
    fails both ways (the exact models may still find one)."""
    return _pack(layout, templates, num_replicas, runs=True) or _pack(
        layout, templates, num_replicas, runs=False
    )


def _pack(layout: Layout, templates: Sequence[Template], num_replicas: int, *, runs: bool):
    free = [d.free for d in layout.domains]
    whole_free = [d.whole_free for d in layout.domains]
    sites: list[list[Site | None]] = [[] for _ in range(num_replicas)]
    items: list[tuple[int, int, int, int, str]] = []  # (-size, replica, start, stop, gpu type)
    wholes: list[tuple[int, int, PlacementStage]] = []
    for t in templates:
        cuts = _greedy_runs(t.stages, layout)
        if cuts is None:
            return None
        if not runs:
            cuts = [(k, k + 1, kind) for start, stop, kind in cuts for k in range(start, stop)]
        for ri in t.replicas:
            sites[ri] = [None] * len(t.stages)
            for start, stop, kind in cuts:
                if kind == WHOLE:
                    wholes.append((ri, start, t.stages[start]))
                else:
                    size = sum(s.num_gpus for s in t.stages[start:stop])
                    items.append((-size, ri, start, stop, t.stages[start].gpu_type))
    for ri, k, stage in sorted(wholes, key=lambda w: -w[2].num_gpus):
        taken = _take_whole_nodes(layout, free, whole_free, stage)
        if taken is None:
            return None
        sites[ri][k] = Site(WHOLE, taken)
    # Best-fit decreasing: per GPU type, heaps of domain ids keyed by remaining free GPUs.
    buckets: dict[str, dict[int, list[int]]] = {}
    for d in layout.domains:
        gpu_type = layout.groups[d.group].gpu_type
        heapq.heappush(buckets.setdefault(gpu_type, {}).setdefault(free[d.id], []), d.id)
    stages_of = {ri: None for ri in range(num_replicas)}
    for t in templates:
        for ri in t.replicas:
            stages_of[ri] = t.stages
    for _, ri, start, stop, gpu_type in sorted(items):
        stages = stages_of[ri]
        by_free = buckets.get(gpu_type, {})
        while start < stop:
            size = sum(s.num_gpus for s in stages[start:stop])
            fits = [c for c in by_free if c >= size and by_free[c]]
            if fits:
                end = stop
                cap = min(fits)
            else:  # split: the longest prefix that fits the freest domain
                cap = max((c for c in by_free if by_free[c]), default=0)
                end, used = start, 0
                while end < stop and used + stages[end].num_gpus <= cap:
                    used += stages[end].num_gpus
                    end += 1
                if end == start:
                    return None
                size = used
            d = heapq.heappop(by_free[cap])
            heapq.heappush(by_free.setdefault(cap - size, []), d)
            free[d] -= size
            for k in range(start, end):
                sites[ri][k] = Site(INSIDE, (d,))
            start = end
    return sites  # type: ignore[return-value]


def _greedy_runs(stages: Sequence[PlacementStage], layout: Layout) -> list[tuple[int, int, str]] | None:
    """The cuts of `min_segments`: (start, stop, INSIDE) runs and (k, k + 1, WHOLE) stages."""
    cuts: list[tuple[int, int, str]] = []
    used, gpu_type = 0, None
    for k, s in enumerate(stages):
        cap = layout.max_inside_free(s.gpu_type)
        if s.num_gpus > cap:
            if not any(
                layout.stage_kind(gi, s.num_gpus) == WHOLE for gi in layout.groups_of_type(s.gpu_type)
            ):
                return None
            cuts.append((k, k + 1, WHOLE))
            gpu_type = None
        elif s.gpu_type == gpu_type and used + s.num_gpus <= cap:
            start, _, _ = cuts[-1]
            cuts[-1] = (start, k + 1, INSIDE)
            used += s.num_gpus
        else:
            cuts.append((k, k + 1, INSIDE))
            used, gpu_type = s.num_gpus, s.gpu_type
    return cuts


def _take_whole_nodes(layout: Layout, free: list[int], whole_free: list[int], stage: PlacementStage):
    """Fully free nodes for a stage larger than a domain, from one group, fewest domains first."""
    for gi in layout.groups_of_type(stage.gpu_type):
        if layout.stage_kind(gi, stage.num_gpus) != WHOLE:
            continue
        per_node = layout.groups[gi].gpus_per_node
        need = stage.num_gpus // per_node
        doms = sorted(
            (d for d in layout.domains if d.group == gi and whole_free[d.id]), key=lambda d: -whole_free[d.id]
        )
        if sum(whole_free[d.id] for d in doms) < need:
            continue
        taken: list[int] = []
        for d in doms:
            while whole_free[d.id] and len(taken) < need:
                whole_free[d.id] -= 1
                free[d.id] -= per_node
                taken.append(d.id)
        return tuple(taken)
    return None
