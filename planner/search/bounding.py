"""The proven bounds of every template of the space (docs/design.md §5.3), one computation per sharing group.

* `limits_for(settings, engine, kv_tokens, shortest_prompt)` — what one iteration of a replica can hold under
  its settings (token budget, max_num_seqs, chunked prefill), its KV cache and the engine's block size;
* `bound_space(scenario, priced, profile, deadline)` — per template a `bounds.TemplateBound`: templates of one
  layout, dtypes and role (`PricedTemplate.bound_group`: they differ only in engine knobs, and their stages price
  every shape alike) share one coarse computation on the union of their limits and then keep their own limits
  (`TemplateBound.for_limits`); the loop refines each template on its own limits when the master uses it.
  Past the deadline a template keeps the trivial (still valid) bound.
"""

from __future__ import annotations

import logging
import time

from formulations.templates import EngineSettings
from planner.search.bounds import COARSE, IterationLimits, StageProbe, bound_template, trivial_bound
from planner.search.pricing import PricedTemplate
from planner.search.workload import WorkloadProfile
from simulator.scenario import Engine, Scenario

log = logging.getLogger("apex.plan")


def limits_for(
    settings: EngineSettings, engine: Engine, kv_tokens: int, shortest_prompt: int
) -> IterationLimits:
    """What one iteration of a replica with `kv_tokens` of KV cache can hold with `settings` on `engine`'s
    kind, for a workload whose shortest prompt is `shortest_prompt`."""
    block = 1 if engine.kind == "orca" else engine.block_size
    kv = int(kv_tokens)
    per_request_blocks = -(-(int(shortest_prompt) + 1) // block)
    max_decodes = max(1, min(settings.max_num_seqs, (kv // block) // max(per_request_blocks, 1)))
    return IterationLimits(
        max_tokens=settings.max_num_batched_tokens,
        max_seqs=settings.max_num_seqs,
        max_decodes=max_decodes,
        min_context=int(shortest_prompt),
        kv_tokens=kv,
        block_size=block,
        chunked_prefill=settings.enable_chunked_prefill,
    )


def template_limits(scenario: Scenario, priced: PricedTemplate, profile: WorkloadProfile) -> IterationLimits:
    shortest = int(profile.input_tokens.min()) if profile.num_requests else 1
    return limits_for(
        priced.template.settings, scenario.spec.engine, int(priced.cost.kv_capacity_tokens), shortest
    )


def bound_space(
    scenario: Scenario,
    priced: list[PricedTemplate],
    profile: WorkloadProfile,
    deadline: float | None,
    *,
    energy: bool,
) -> tuple[dict, int]:
    """Per template id its TemplateBound, and how many kept the trivial bound (the deadline came first)."""
    groups: dict[tuple, list[PricedTemplate]] = {}
    for p in priced:
        groups.setdefault(p.bound_group, []).append(p)
    mixes = profile.mixes()
    max_context = int((profile.input_tokens + profile.output_tokens).max()) if profile.num_requests else 1
    bounds, unbounded = {}, 0
    for members in groups.values():
        limits = [template_limits(scenario, p, profile) for p in members]
        role = members[0].template.role
        if deadline is not None and time.perf_counter() >= deadline:
            for p, lim in zip(members, limits, strict=True):
                bounds[p.template.id] = trivial_bound(p.cost.stages, lim, mixes, energy=energy, role=role)
            unbounded += len(members)
            continue
        union = IterationLimits.union(limits)
        shared = bound_template(
            members[0].cost.stages,
            union,
            mixes,
            profile.deadlines.tpot_s,
            energy=energy,
            precision=COARSE,
            max_context=max_context,
            role=role,
            probes=[StageProbe(s) for s in members[0].cost.stages],
        )
        for p, lim in zip(members, limits, strict=True):
            bounds[p.template.id] = shared if lim == union else shared.for_limits(lim)
    if unbounded:
        log.info("%d templates keep the trivial bound: the time limit came first", unbounded)
    return bounds, unbounded
