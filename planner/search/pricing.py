"""Template pricing: enumerate the replica templates of the plan space and price each with the cost model
(docs/design.md §5.2).

`price_space(scenario, profile, options)` returns a `PricedSpace`: the `PricedTemplate`s — the template, its
`ReplicaCost` (the very object the simulator would build for one replica: the bounds evaluate it, `bounds.py`)
and its *predicted* coefficients per workload class, from the analytic first pass of `formulations.templates`
(colocated: largest decode batch meeting TPOT and KV, prefill share, M/M/1 TTFT; prefill-only: prompt throughput
within TTFT; decode-only: largest batch within TPOT), energy above idle and a latency score — and the `Census`
of what was generated, pruned and priced. Predictions order the candidates; they are never used as bounds.

Dimensions (`SpaceOptions`, all on by default): layouts (`formulations.templates.enumerate_layouts`), roles
(colocated, and prefill / decode for disaggregated serving), engine knobs the scenario leaves to the engine's
default and the dtypes it allows (`settings.py`). What is kept is decided by rules stated on the analytic model:

* **knobs, token budget and chunked prefill** (per layout, dtype and role that reads them — colocated and
  prefill): a (budget, chunking) pair is dropped when another pair predicts at least its capacity and at most
  its TTFT (the whole-workload estimate), both within KNOB_TIE (5 %: one layout's knob variants priced a few
  per cent apart are one candidate, each extra one being another plan of the same cost to simulate); ties go to
  the scenario's own value, then to the one nearest it. Chunked prefill off with a budget below the longest
  prompt cannot run every request and is dropped.
* **max_num_seqs** (colocated and decode), with B* the analytic model's TPOT- and KV-limited decode batch
  (the cap lifted to the grid's top): below the default, where TPOT limits B*, the scenario's value and the
  largest grid value at or below B* are kept — a cap below that value only loses capacity, a cap between it and
  the default behaves like the default whenever the plan keeps its load within capacity (where the KV cache
  limits B*, the model sees nothing a lower cap gains, and only the default is kept); above the default (colocated only), the largest
  grid value ≤ B* replaces the scenario's value when it predicts more than TIE more capacity — the default cap
  is then what limits the replica, and the raised one admits at least as much while its full batch meets TPOT
  (the replaced templates stay in `baseline_templates` for the heuristic baselines). Decode templates keep the
  default: each value they add is spread over every prefill template.
* a knob a role does not read (a prefill replica's max_num_seqs, a decode replica's token budget and chunking)
  takes every value the other role keeps, so that prefill and decode templates share settings to pair in one
  plan;
* **layouts**: among templates of one role and settings with the same GPUs per type and NVLink-domain need, one
  is dropped when another predicts at least its capacity and at most its energy and latency for every class
  (ties kept). A colocated template is also dropped when k ≥ 2 copies of a smaller colocated one of the same
  settings — k times fewer GPUs of each type, no larger domain need, so the copies fit wherever it fits —
  predict together at least its capacity, each at most its energy per request and idle latency (and, for
  min_latency, its latency growth under load), at no more idle power and price (prefill and decode templates
  are left out of this rule: their KV links depend on their partners).

The scenario's own settings are kept unless a rule above finds them dominated (a token budget pair, or a cap
the raised max_num_seqs replaces).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from formulations.templates import (
    CapacityEstimate,
    EngineSettings,
    Template,
    TemplateCoefficients,
    analytic_capacity,
    analytic_decode_capacity,
    analytic_prefill_capacity,
    enumerate_layouts,
    layout_kinds,
    needed_pipeline_depths,
)
from planner.search.settings import candidate_settings, engine_with, scenario_settings, with_features
from planner.search.workload import WorkloadProfile, WorkloadStats
from simulator.costmodel import build_replica_cost, with_engine
from simulator.costmodel.clock import clock_levels_mhz
from simulator.costmodel.interface import BatchShape
from simulator.scenario import Scenario, engine_setting

ROLES = ("colocated", "prefill", "decode")
TIE = 0.01  # relative difference under which two predictions are a tie (dominance rules)
KNOB_TIE = 0.05  # the same for knob variants of one layout (token budget, chunking)


@dataclass(frozen=True, slots=True)
class SpaceOptions:
    """Which dimensions the plan space has (docs/design.md §5.2). `disaggregation`: prefill and decode
    templates; `knobs`: engine knobs the scenario leaves to the engine's default; `layouts`: per-cell splits,
    stages over up to `max_stage_domains` NVLink domains and pipelines of `extra_depths` stages. Dtypes are
    searched whenever the scenario lists several."""

    disaggregation: bool = True
    knobs: bool = True
    layouts: bool = True
    max_pp: int = 4
    extra_depths: tuple[int, ...] = (6, 8)
    max_stage_domains: int = 4

    @staticmethod
    def basic() -> SpaceOptions:
        """Colocated templates with the scenario's knobs, plain layouts of up to four stages."""
        return SpaceOptions(disaggregation=False, knobs=False, layouts=False)


@dataclass
class PricedTemplate:
    template: Template
    analytic: TemplateCoefficients  # predicted, per class (the analytic model)
    estimate: CapacityEstimate  # for the whole workload
    cost: object = None  # simulator.costmodel.ReplicaCostModel of one replica
    kinds: tuple[str, ...] = ()  # census kinds (role, layout kinds, settings kinds)

    @property
    def bound_group(self) -> tuple:
        """Templates that share one bound computation: the same layout and dtypes (knobs only change what an
        iteration may hold and the KV cache; the stages price every shape alike) and role."""
        s = self.template.settings
        return (self.template.layout_id, s.weights_dtype, s.kv_cache_dtype, self.template.role)


@dataclass
class Census:
    """How many templates of each kind were generated, pruned and priced, and why pruned (JSON
    `search.space.templates` / `pruned_by`)."""

    generated: dict[str, int] = field(default_factory=dict)
    pruned: dict[str, int] = field(default_factory=dict)
    priced: dict[str, int] = field(default_factory=dict)
    pruned_by: dict[str, int] = field(default_factory=dict)
    settings: dict[str, int] = field(default_factory=dict)
    searched: dict[str, list] = field(default_factory=dict)  # dimension -> values searched

    def count(self, table: dict[str, int], kinds: Iterable[str], n: int = 1) -> None:
        for k in ("all", *kinds):
            table[k] = table.get(k, 0) + n

    def prune(self, kinds: Iterable[str], rule: str, n: int = 1) -> None:
        self.count(self.generated, kinds, n)
        self.count(self.pruned, kinds, n)
        self.pruned_by[rule] = self.pruned_by.get(rule, 0) + n

    def to_json(self) -> dict:
        kinds = sorted(self.generated, key=lambda k: (k != "all", k))
        return {
            "templates": {
                k: {
                    "generated": self.generated.get(k, 0),
                    "pruned": self.pruned.get(k, 0),
                    "priced": self.priced.get(k, 0),
                }
                for k in kinds
            },
            "pruned_by": dict(self.pruned_by),
            "settings": dict(self.settings),
            "searched": {k: list(v) for k, v in self.searched.items()},
        }


@dataclass
class PricedSpace:
    templates: list[PricedTemplate]
    census: Census
    baseline_templates: list[Template] = field(
        default_factory=list
    )  # colocated, scenario's settings, unpruned


def _target(percentiles) -> float:
    """The loosest stated statistic of an SLO (the analytic model predicts means)."""
    if percentiles is None:
        return math.inf
    values = [
        v for v in (percentiles.mean, percentiles.p50, percentiles.p90, percentiles.p99) if v is not None
    ]
    return max(values) if values else math.inf


def layout_options(scenario: Scenario, options: SpaceOptions, partition_backend: str) -> dict:
    """The keyword arguments of `enumerate_layouts` for the scenario and the space's options."""
    return dict(
        max_pp=options.max_pp,
        extra_depths=options.extra_depths if options.layouts else (),
        allow_mixed_gpus=len(scenario.cluster.gpus_by_type()) > 1,
        memory_fraction=engine_setting(scenario.spec.engine, "gpu_memory_fraction"),
        per_cell=options.layouts,
        max_stage_domains=options.max_stage_domains if options.layouts else 1,
        partition_backend=partition_backend,
    )


def template_structures(scenario: Scenario, *, partition_backend: str = "dp", solver_time_s: float = 5.0):
    """The colocated templates of the scenario's own settings over plain layouts of up to four stages (the
    space `planner.capacity.planning` plans on)."""
    own = scenario_settings(scenario)
    layouts = enumerate_layouts(
        scenario.model,
        scenario.cluster,
        scenario.gpus,
        weights_dtype=own.weights_dtype,
        partition_time_s=solver_time_s,
        **layout_options(scenario, SpaceOptions.basic(), partition_backend),
    )
    return [Template(stages, own, "colocated") for stages in layouts]


def price_templates(
    scenario: Scenario,
    stats: WorkloadStats | None = None,
    *,
    profile: WorkloadProfile | None = None,
    deadline: float | None = None,
    partition_backend: str = "dp",
    options: SpaceOptions | None = None,
) -> list[PricedTemplate]:
    """The priced templates of the plan space (`price_space`)."""
    profile = profile or WorkloadProfile.of(scenario)
    return price_space(
        scenario, profile, options or SpaceOptions(), deadline=deadline, partition_backend=partition_backend
    ).templates


class _Pricer:
    """Prices (layout, settings, role) triples for one scenario, caching replica costs per layout and settings."""

    def __init__(self, scenario: Scenario, profile: WorkloadProfile):
        self.scenario = scenario
        self.profile = profile
        spec = scenario.spec
        self.ttft = _target(spec.goals.slo.ttft_s)
        self.tpot = _target(spec.goals.slo.tpot_s)
        self.means = _class_means(profile)
        self.longest_prompt = int(profile.input_tokens.max()) if profile.num_requests else 0
        self._costs: dict = {}
        self._layouts: dict = {}  # (stages, dtypes, clock) -> the first replica cost built for them
        self._estimates: dict = {}  # (stages, settings, clock, role, mean in, mean out) -> CapacityEstimate

    def cost(self, stages, settings: EngineSettings, clock: int | None = None):
        key = (stages, settings, clock)
        hit = self._costs.get(key)
        if hit is None:
            sc = self.scenario
            engine = engine_with(sc.spec.engine, settings)
            dtype = sc.spec.dtype.model_copy(
                update={"weights": settings.weights_dtype, "kv_cache": settings.kv_cache_dtype}
            )
            group = Template(stages, settings, sm_clock_mhz=clock).replica_group(1)
            layout = (stages, settings.weights_dtype, settings.kv_cache_dtype, clock)
            priced = self._layouts.get(layout)
            if priced is None:  # the layout's first settings: priced in full
                hit = self._layouts[layout] = build_replica_cost(
                    sc.model, group, sc.gpus, sc.cluster, dtype, engine, calibration=sc.spec.calibration
                )
            else:  # other knobs move the memory plan only
                hit = with_engine(priced, sc.model, group, sc.cluster, dtype, engine)
            self._costs[key] = hit
        return hit

    def usable(self, cost, settings: EngineSettings) -> str | None:
        """Why a replica cannot run the workload at all (None when it can)."""
        if not cost.fits or cost.kv_capacity_tokens < self.scenario.spec.engine.block_size:
            return "memory"
        if not settings.enable_chunked_prefill and self.longest_prompt > settings.max_num_batched_tokens:
            return "prompt over the token budget without chunked prefill"
        return None

    def estimate(self, stages, settings: EngineSettings, role: str, kinds) -> PricedTemplate:
        """The template with its whole-workload capacity estimate only (no per-class coefficients): what the
        knob dominance rule compares."""
        st = self.profile.stats
        est = self._estimate(stages, settings, None, role, st.mean_input, st.mean_output)
        return PricedTemplate(Template(stages, settings, role), None, est, self.cost(stages, settings), kinds)

    def price(
        self, stages, settings: EngineSettings, role: str, kinds, clock: int | None = None
    ) -> PricedTemplate:
        cost = self.cost(stages, settings, clock)
        st = self.profile.stats
        step = step_time_fn(cost, settings.max_num_batched_tokens)
        est_all = self._estimate(stages, settings, clock, role, st.mean_input, st.mean_output)
        demand = st.demand_rps
        replicas = max(1, math.ceil(demand / est_all.requests_per_s)) if est_all.requests_per_s > 0 else 1
        caps, energy, latency = {}, {}, {}
        for cid, (mean_in, mean_out) in self.means.items():
            est = self._estimate(stages, settings, clock, role, mean_in, mean_out)
            if est.requests_per_s > 0:
                caps[cid] = est.requests_per_s
            # latency on an idle replica: the prompt's prefill, then decoding alone
            if role == "prefill":
                energy[cid], latency[cid] = _prefill_energy(cost.stages, mean_in), est.prefill_time_s
                continue
            batch = _operating_batch(step, est, demand / replicas, mean_in, mean_out)
            e = _energy(cost.stages, mean_in, mean_out, batch)
            lat = _decode_latency(mean_in, mean_out, 1, step)
            if role == "decode":
                e -= _prefill_energy(cost.stages, mean_in)
            else:
                lat += est.prefill_time_s
            energy[cid], latency[cid] = e, lat
        # latency growth from an idle replica to one at capacity: prompts queue up to the TTFT the capacity
        # estimate allows, and decode batches grow to its batch (each step slower)
        ttft_growth = max(_ttft(est_all) - est_all.prefill_time_s, 0.0)
        full = max(est_all.decode_batch, 1)
        decode_growth = _decode_latency(st.mean_input, st.mean_output, full, step) - _decode_latency(
            st.mean_input, st.mean_output, 1, step
        )
        growth = {"prefill": ttft_growth, "decode": decode_growth}.get(role, ttft_growth + decode_growth)
        coeffs = TemplateCoefficients(
            capacity_rps=caps,
            energy_per_request_j=energy,
            idle_w=cost.idle_watts,
            usd_per_hour=cost.usd_per_hour,
            latency_score=latency,
            latency_growth_s=max(growth, 0.0),
        )
        return PricedTemplate(
            Template(stages, settings, role, sm_clock_mhz=clock), coeffs, est_all, cost, kinds
        )

    def _estimate(self, stages, settings, clock, role, mean_in, mean_out) -> CapacityEstimate:
        """The analytic capacity of one replica in `role` for requests of these mean sizes (remembered: the
        knob rules and the per-class coefficients ask for the same ones)."""
        key = (stages, settings, clock, role, mean_in, mean_out)
        hit = self._estimates.get(key)
        if hit is None:
            cost = self.cost(stages, settings, clock)
            step = step_time_fn(cost, settings.max_num_batched_tokens)
            seqs = _decode_cap(self.scenario, settings)
            kv = cost.kv_capacity_tokens
            if role == "prefill":
                hit = analytic_prefill_capacity(step, mean_in, self.ttft, settings.max_num_batched_tokens)
            elif role == "decode":
                hit = analytic_decode_capacity(step, kv, mean_in, mean_out, self.tpot, seqs)
            else:
                hit = analytic_capacity(step, kv, mean_in, mean_out, self.ttft, self.tpot, seqs)
            self._estimates[key] = hit
        return hit


def _decode_cap(scenario: Scenario, settings: EngineSettings) -> int:
    """The most decodes one iteration may hold: max_num_seqs, and the token budget where decode tokens count
    against it (every engine but vLLM v0 and SGLang, which run all sequences in a decode-only step)."""
    if scenario.spec.engine.kind in ("vllm-v0", "sglang"):
        return settings.max_num_seqs
    return min(settings.max_num_seqs, settings.max_num_batched_tokens)


def price_space(
    scenario: Scenario,
    profile: WorkloadProfile,
    options: SpaceOptions,
    *,
    deadline: float | None = None,
    partition_backend: str = "highs",
) -> PricedSpace:
    """Enumerate the templates of the plan space, prune them by the rules of the module docstring and price
    the rest. Stops pricing at `deadline` (the templates not reached are counted as pruned by the time limit)."""
    census = Census()
    choices = candidate_settings(scenario, knobs=options.knobs)
    own = scenario_settings(scenario)
    census.searched = {k: list(v) for k, v in choices.searched().items()}
    pricer = _Pricer(scenario, profile)
    inventory = scenario.cluster.gpus_by_type()
    roles = ROLES if options.disaggregation and scenario.cluster.num_gpus >= 2 else ("colocated",)
    domain: dict[str, int] = {}
    for g in scenario.cluster.node_groups:
        domain[g.gpu] = max(domain.get(g.gpu, 0), g.domain_gpus)
    budgets = choices.max_num_batched_tokens
    chunkings = choices.enable_chunked_prefill
    seqs_grid = choices.max_num_seqs
    out: list[PricedTemplate] = []
    replaced_core: list[
        PricedTemplate
    ] = []  # own-settings templates out of the space, kept for the baselines
    out_of_time = False
    for weights, kv in choices.dtypes():
        layouts = enumerate_layouts(
            scenario.model,
            scenario.cluster,
            scenario.gpus,
            weights_dtype=weights,
            **layout_options(scenario, options, partition_backend),
        )
        needed = needed_pipeline_depths(
            scenario.model,
            scenario.cluster,
            scenario.gpus,
            max_pp=options.max_pp,
            weights_dtype=weights,
            memory_fraction=engine_setting(scenario.spec.engine, "gpu_memory_fraction"),
        )
        base = EngineSettings(
            own.max_num_seqs, own.max_num_batched_tokens, own.enable_chunked_prefill, weights, kv
        )
        dtype_kinds = (f"dtype {weights}/{kv}",) if len(choices.dtypes()) > 1 else ()
        per_setting = len(seqs_grid) * len(budgets) * len(chunkings)
        kept: dict[tuple, list[PricedTemplate]] = {}  # (layout, role) -> priced templates
        for stages in layouts:
            kinds = layout_kinds(stages, scenario.model, domain) + dtype_kinds
            if len(stages) not in needed:  # deeper than four stages and than the model needs
                kinds += (EXTRA_DEPTH,)
            if out_of_time or (deadline is not None and time.perf_counter() > deadline):
                out_of_time = True
                for role in roles:
                    census.prune((role, *kinds), "time limit", per_setting)
                continue
            if any(n > inventory.get(g, 0) for g, n in Template(stages, base).gpus_by_type.items()):
                for role in roles:
                    census.prune((role, *kinds), "larger than the cluster", per_setting)
                continue
            for role in roles:
                kept[(stages, role)], dropped = _knob_candidates(
                    pricer, census, stages, role, base, budgets, chunkings, seqs_grid, (role, *kinds), own
                )
                replaced_core += dropped
        # knobs a role does not read take every value the other role keeps (so that pairs share settings)
        if "prefill" in roles:
            seqs_decode = sorted(
                {p.template.max_num_seqs for (_, r), ps in kept.items() if r == "decode" for p in ps}
            )
            tc_prefill = sorted(
                {
                    (p.template.max_num_batched_tokens, p.template.settings.enable_chunked_prefill)
                    for (_, r), ps in kept.items()
                    if r == "prefill"
                    for p in ps
                }
            )
            for (stages, role), ps in kept.items():
                if role == "prefill":
                    kept[(stages, role)] = _spread(pricer, ps, role, seqs=seqs_decode)
                elif role == "decode":
                    kept[(stages, role)] = _spread(pricer, ps, role, token_chunks=tc_prefill)
        for ps in kept.values():
            out.extend(ps)
    out = with_features(out, choices)
    replaced_core = with_features(replaced_core, choices)
    baseline = [p.template for p in out + replaced_core if is_core(p, own)]
    out = _prune_layouts(out, census, loaded_latency=scenario.spec.goals.objective == "min_latency")
    if searches_clocks(scenario):
        out += [c for p in out for c in _clocked(pricer, p, scenario)]
    for p in out:
        census.count(census.priced, p.kinds)
        census.count(census.generated, p.kinds)
    census.settings = {
        "searched": _product_size(choices),
        "priced": len({p.template.settings for p in out}),
    }
    return PricedSpace(out, census, baseline)


def searches_clocks(scenario: Scenario) -> bool:
    """Whether the plan space has a clock dimension: the scenario asks for it (`sm_clock_mhz: auto`; it
    multiplies the templates by the number of clocks, so it is not on by default; docs/design.md §5.2)."""
    return scenario.spec.sm_clock_mhz == "auto"


def _clocked(pricer: _Pricer, p: PricedTemplate, scenario: Scenario) -> list[PricedTemplate]:
    """`p`'s template at each lower clock the planner tries (`costmodel.clock.clock_levels_mhz` of its GPU
    type), priced on its own; none for a template whose stages mix GPU types (one MHz value would be a
    different fraction of each type's boost clock)."""
    t = p.template
    types = list(t.gpus_by_type)
    if len(types) != 1:
        return []
    levels = [mhz for mhz in clock_levels_mhz(scenario.gpus[types[0]]) if mhz is not None]
    return [
        pricer.price(t.stages, t.settings, t.role, (*p.kinds, "locked clock"), clock=mhz) for mhz in levels
    ]


# Layout kinds beyond those of the core space (plain tp, attention dp with experts, uneven splits, mixed GPUs,
# pipelines of up to four stages or of the fewest stages that fit and one more, where a model needs more than
# four — the layouts the planner searched before the extended dimensions).
EXTRA_DEPTH = (
    "extra depth"  # a pipeline deeper than four stages and than the model needs (SpaceOptions.extra_depths)
)
EXTENDED_LAYOUTS = frozenset({"partial ep", "cross-node", EXTRA_DEPTH})


def is_core(p: PricedTemplate, own: EngineSettings) -> bool:
    """Whether a template is of the core space: colocated, the scenario's own settings, no extended layout
    (what the heuristic baselines choose from, and the search's first-round proposal covers)."""
    t = p.template
    return t.role == "colocated" and t.settings == own and not EXTENDED_LAYOUTS & set(p.kinds)


def _product_size(choices) -> int:
    n = 1
    for name in EngineSettings.SCENARIO_PATHS:
        n *= len(getattr(choices, name))
    return n


def _settings_kinds(settings: EngineSettings, own: EngineSettings) -> tuple[str, ...]:
    knobs = ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill")
    changed = [k for k in knobs if getattr(settings, k) != getattr(own, k)]
    return ("engine knobs",) if changed else ()


def _knob_candidates(pricer, census, stages, role, base, budgets, chunkings, seqs_grid, kinds, own):
    """The templates of one layout and role the knob rules keep (module docstring), priced."""
    kept: list[PricedTemplate] = []
    reads_budget = role != "decode"
    reads_seqs = role != "prefill"
    pairs = [(b, c) for b in budgets for c in chunkings] if reads_budget else [(budgets[0], chunkings[0])]
    priced: list[PricedTemplate] = []
    default_seqs = seqs_grid[0]
    for budget, chunked in pairs:
        settings = EngineSettings(default_seqs, budget, chunked, base.weights_dtype, base.kv_cache_dtype)
        cost = pricer.cost(stages, settings)
        why = pricer.usable(cost, settings)
        extra = len(seqs_grid) if reads_seqs else 1
        if why:
            census.prune(kinds + _settings_kinds(settings, own), why, extra)
            continue
        # the dominance rule reads the whole-workload estimate only: the survivors are priced in full below
        priced.append(pricer.estimate(stages, settings, role, kinds + _settings_kinds(settings, own)))
    survivors = _pareto_budgets(priced, own) if reads_budget else priced
    kept_ids = {id(p) for p in survivors}
    for p in priced:
        if id(p) not in kept_ids:
            census.prune(
                p.kinds, "knob dominance (token budget, chunked prefill)", len(seqs_grid) if reads_seqs else 1
            )
    survivors = [pricer.price(stages, p.template.settings, role, p.kinds) for p in survivors]
    replaced: list[PricedTemplate] = []  # the default's templates a raised max_num_seqs replaced
    for p in survivors:
        if not reads_seqs:
            kept.append(p)
            continue
        # colocated templates only may raise the cap: a decode template's values are spread over every prefill
        # template to pair, so each value it adds multiplies the prefill templates
        widest = max(seqs_grid) if role == "colocated" else default_seqs
        batch = _open_batch(pricer, stages, role, p, widest)
        below = [v for v in seqs_grid if v <= min(batch, widest)] if batch > 0 else []
        cap = max(below) if below else default_seqs
        if cap < default_seqs and _kv_limited(pricer, p, batch):
            cap = default_seqs  # the KV cache, not TPOT, limits B*: the model sees nothing a lower cap gains
        variant = _with_seqs(pricer, stages, role, p, cap, own) if cap != default_seqs else None
        if variant is None:
            kept.append(p)
        elif cap < default_seqs:
            kept += [p, variant]
        elif variant.estimate.requests_per_s > p.estimate.requests_per_s * (1 + TIE):
            kept.append(variant)
            replaced.append(p)
        else:
            kept.append(p)
        n_kept = 2 if variant is not None and cap < default_seqs else 1
        census.prune(p.kinds, "knob dominance (max_num_seqs)", len(seqs_grid) - n_kept)
    return kept, replaced


def _kv_limited(pricer, p: PricedTemplate, batch: int) -> bool:
    """Whether the KV cache is what limits the analytic batch `batch` (it holds no more requests of the
    workload's mean size)."""
    st = pricer.profile.stats
    per_request = st.mean_input + st.mean_output / 2.0
    return per_request > 0 and batch >= int(p.cost.kv_capacity_tokens // per_request)


def _with_seqs(pricer, stages, role, p: PricedTemplate, seqs: int, own) -> PricedTemplate | None:
    """`p` with max_num_seqs `seqs`, priced (None when it cannot run the workload)."""
    s = p.template.settings
    settings = EngineSettings(
        seqs, s.max_num_batched_tokens, s.enable_chunked_prefill, s.weights_dtype, s.kv_cache_dtype
    )
    if pricer.usable(pricer.cost(stages, settings), settings):
        return None
    kinds = tuple(k for k in p.kinds if k != "engine knobs") + _settings_kinds(settings, own)
    return pricer.price(stages, settings, role, kinds)


def _open_batch(pricer, stages, role, p: PricedTemplate, widest: int) -> int:
    """The analytic model's TPOT- and KV-limited decode batch B* of `p`'s layout and settings with max_num_seqs
    at the grid's widest value: `p`'s own batch unless its max_num_seqs was what limited it."""
    capped = p.estimate.decode_batch >= _decode_cap(pricer.scenario, p.template.settings)
    if not capped or widest <= p.template.max_num_seqs:
        return p.estimate.decode_batch
    s = p.template.settings
    wide = EngineSettings(
        widest, s.max_num_batched_tokens, s.enable_chunked_prefill, s.weights_dtype, s.kv_cache_dtype
    )
    if pricer.usable(pricer.cost(stages, wide), wide):
        return p.estimate.decode_batch
    return pricer.estimate(stages, wide, role, p.kinds).estimate.decode_batch


def _pareto_budgets(priced: list[PricedTemplate], own: EngineSettings) -> list[PricedTemplate]:
    """(token budget, chunking) pairs not dominated on (capacity ↑, TTFT ↓) within TIE; ties resolved to the
    scenario's value, then to the value nearest it."""

    def figures(p):
        est = p.estimate
        ttft = est.ttft_s if math.isfinite(est.ttft_s) else est.prefill_time_s
        return est.requests_per_s, ttft if math.isfinite(ttft) else math.inf

    def preference(p):
        s = p.template.settings
        return (
            s.enable_chunked_prefill != own.enable_chunked_prefill,
            abs(math.log2(s.max_num_batched_tokens / own.max_num_batched_tokens)),
            s.max_num_batched_tokens,
        )

    ordered = sorted(priced, key=preference)
    kept: list[PricedTemplate] = []
    for p in ordered:
        cap, ttft = figures(p)
        dominated = False
        for q in ordered:
            if q is p:
                continue
            qc, qt = figures(q)
            no_worse = qc >= cap * (1 - KNOB_TIE) and qt <= ttft * (1 + KNOB_TIE)
            better = qc > cap * (1 + KNOB_TIE) or qt < ttft * (1 - KNOB_TIE)
            if no_worse and (better or (q in kept)):
                dominated = True
                break
        if not dominated:
            kept.append(p)
    return kept


def _spread(
    pricer, priced: list[PricedTemplate], role: str, *, seqs=(), token_chunks=()
) -> list[PricedTemplate]:
    """Copies of a role's templates for every value of a knob it does not read (priced again: the knob may
    still change the KV cache a little)."""
    out = list(priced)
    seen = {p.template.settings for p in priced}
    for p in priced:
        s = p.template.settings
        variants = []
        if role == "prefill":
            variants = [
                EngineSettings(
                    v, s.max_num_batched_tokens, s.enable_chunked_prefill, s.weights_dtype, s.kv_cache_dtype
                )
                for v in seqs
            ]
        else:
            variants = [
                EngineSettings(s.max_num_seqs, b, c, s.weights_dtype, s.kv_cache_dtype)
                for b, c in token_chunks
            ]
        for st in variants:
            if st in seen:
                continue
            seen.add(st)
            cost = pricer.cost(p.template.stages, st)
            if pricer.usable(cost, st):
                continue
            kinds = tuple(k for k in p.kinds if k != "engine knobs")
            own = scenario_settings(pricer.scenario)
            out.append(pricer.price(p.template.stages, st, role, kinds + _settings_kinds(st, own)))
    return out


def _prune_layouts(
    priced: list[PricedTemplate], census: Census, *, loaded_latency: bool
) -> list[PricedTemplate]:
    """Drop a template when another of the same role, settings, GPUs per type and domain need predicts at
    least its capacity and at most its energy and latency for every class (ties kept); then drop a colocated
    template when k ≥ 2 copies of a smaller one (k times fewer GPUs of each type, no larger domain need) do
    the same at no more idle power and price (`_copies_dominate`; `loaded_latency`: the objective reads
    latency growth under load too, min_latency)."""
    groups: dict[tuple, list[PricedTemplate]] = {}
    for p in priced:
        t = p.template
        key = (t.role, t.settings, tuple(sorted(t.gpus_by_type.items())), tuple(sorted(_need(p).items())))
        groups.setdefault(key, []).append(p)
    out = []
    for members in groups.values():
        for p in members:
            if any(q is not p and _dominates(q, p) for q in members):
                census.prune(p.kinds, "layout dominance")
            else:
                out.append(p)
    by_settings: dict[EngineSettings, list[PricedTemplate]] = {}
    for p in out:
        if p.template.role == "colocated":
            by_settings.setdefault(p.template.settings, []).append(p)
    dropped = set()
    for members in by_settings.values():
        for p in members:
            if any(_copies_dominate(q, p, loaded_latency) for q in members if q is not p):
                census.prune(p.kinds, "layout dominance (copies of a smaller replica)")
                dropped.add(id(p))
    return [p for p in out if id(p) not in dropped]


def _copies(q: PricedTemplate, p: PricedTemplate) -> int:
    """k when p has exactly k ≥ 2 times q's GPUs of every type, else 0."""
    a, b = q.template.gpus_by_type, p.template.gpus_by_type
    if set(a) != set(b) or any(b[g] % a[g] for g in a):
        return 0
    ks = {b[g] // a[g] for g in a}
    return ks.pop() if len(ks) == 1 and min(ks) >= 2 else 0


def _copies_dominate(q: PricedTemplate, p: PricedTemplate, loaded_latency: bool) -> bool:
    """Whether k copies of colocated template q stand in for colocated template p in every plan: the same
    GPUs in all (k times q's of each type), each copy needing no larger NVLink domain, k times q's predicted
    capacity at least p's for every class, energy per request and idle latency no higher (and, with
    `loaded_latency`, the latency growth to full load: only min_latency reads it), idle power and price no
    higher, and better by TIE somewhere. (Only colocated: a prefill or decode replica's KV link
    depends on its partner, which copies would change.)"""
    k = _copies(q, p)
    if not k or any(n > _need(p).get(g, 0) for g, n in _need(q).items()):
        return False
    a, b = q.analytic, p.analytic
    if k * a.idle_w > b.idle_w * (1 + 1e-9) or k * a.usd_per_hour > b.usd_per_hour * (1 + 1e-9):
        return False
    if loaded_latency and a.latency_growth_s > b.latency_growth_s * (1 + 1e-9) + 1e-12:
        return False
    return _dominates(q, p, k)


def _need(p: PricedTemplate) -> dict[str, int]:
    return {s.gpu: max(s.num_gpus, 1) for s in p.template.stages}


def _dominates(q: PricedTemplate, p: PricedTemplate, copies: int = 1) -> bool:
    """Whether `copies` replicas of q predict at least p's capacity and at most its energy per request and
    latency for every class, better by TIE in one of them."""
    a, b = q.analytic, p.analytic
    classes = set(a.capacity_rps) | set(b.capacity_rps)
    no_worse, better = True, False
    for c in classes:
        qa, pa = copies * a.capacity_rps.get(c, 0.0), b.capacity_rps.get(c, 0.0)
        if qa < pa * (1 - 1e-9):
            return False
        better |= qa > pa * (1 + TIE)
        for mine, theirs in ((a.energy_j(c), b.energy_j(c)), (a.latency(c), b.latency(c))):
            if mine > theirs * (1 + 1e-9):
                no_worse = False
            better |= mine < theirs * (1 - TIE)
    return no_worse and better


def _class_means(profile: WorkloadProfile) -> dict[str, tuple[float, float]]:
    out = {}
    for k, cid in enumerate(profile.class_ids):
        m = profile.members(k)
        if m.any():
            out[cid] = (float(profile.input_tokens[m].mean()), float(profile.output_tokens[m].mean()))
    return out


def _shape(prefill: int, decode: int, context: int) -> BatchShape:
    if prefill:
        return BatchShape.from_requests([prefill], [0])
    return BatchShape(num_decode=decode, decode_context_tokens=context)


def step_time_fn(cost, max_tokens: int):
    """(prefill tokens, decodes, decode context) -> seconds: one iteration of a replica priced on its stages, the
    analytic model's step (also used by planner.capacity's prediction)."""
    stages = cost.stages
    pp = len(stages)

    def step_time(prefill: int, decode: int, context: int) -> float:
        if prefill:  # one request's prefill runs through every stage in turn
            shape = _shape(min(prefill, max_tokens), 0, 0)
            chunks = math.ceil(prefill / max_tokens)
            return chunks * sum(s.iteration_time(shape) for s in stages) + sum(
                cost.send_time(i, prefill) for i in range(pp - 1)
            )
        # pp micro-batches in flight: a request's next token comes after pp rounds of the slowest stage
        micro = max(1, math.ceil(decode / pp))
        shape = _shape(0, micro, int(context * micro / max(decode, 1)))
        times = [s.iteration_time(shape) for s in stages]  # each stage priced once
        return max(pp * max(times), sum(times))

    return step_time


def _operating_batch(step, est: CapacityEstimate, rate: float, mean_in: float, mean_out: float) -> int:
    """The decode batch a replica runs at `rate` requests/s (Little's law: requests decoding ≈ rate × decode
    time, with the step time at that batch), capped by the capacity estimate's batch."""
    cap = max(est.decode_batch, 1)
    batch = 1.0
    per_request = mean_in + mean_out / 2
    for _ in range(20):
        t = step(0, max(int(batch), 1), int(max(int(batch), 1) * per_request))
        new = min(cap, max(1.0, rate * mean_out * t))
        if abs(new - batch) < 0.5:
            batch = new
            break
        batch = new
    return max(int(round(batch)), 1)


def _prefill_energy(stages, mean_in: float) -> float:
    """Predicted energy one prefill of `mean_in` tokens adds above idle (J)."""
    shape = _shape(max(int(round(mean_in)), 1), 0, 0)
    e = 0.0
    for s in stages:
        t = s.iteration_time(shape)
        e += max(s.energy(shape, t) - s.energy(_shape(0, 0, 0), t), 0.0)
    return e


def _energy(stages, mean_in: float, mean_out: float, batch: int) -> float:
    """Predicted energy a request adds above idle (J): its prefill, then decoding in batches of `batch`."""
    pp = len(stages)
    e = _prefill_energy(stages, mean_in)
    micro = max(1, math.ceil(batch / pp))
    ctx = int(micro * (mean_in + mean_out / 2))
    decode_shape = _shape(0, micro, ctx)
    per_token = 0.0
    for s in stages:
        t = s.iteration_time(decode_shape)
        per_token += max(s.energy(decode_shape, t) - s.energy(_shape(0, 0, 0), t), 0.0) / micro
    return e + mean_out * per_token


def _ttft(est: CapacityEstimate) -> float:
    """The TTFT a replica at its capacity sees (the prefill time where the estimate has no queueing figure)."""
    return est.ttft_s if math.isfinite(est.ttft_s) else est.prefill_time_s


def _decode_latency(mean_in: float, mean_out: float, batch: int, step) -> float:
    """Predicted time a request spends decoding (s), in batches of `batch`."""
    return mean_out * step(0, batch, int(batch * (mean_in + mean_out / 2)))
