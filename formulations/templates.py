"""Replica templates: the columns of the master MILP.

* `EngineSettings` — what a replica runs with besides its layout: the engine knobs (max running sequences,
  token budget, chunked prefill) and the dtypes (weights, KV cache), as typed fields every part of the search
  reads (enumeration, pricing, bounds, the simulation cache key, the exhaustive baseline). A new dimension is
  a new field plus the scenario path it sets (`EngineSettings.SCENARIO_PATHS`).
* `Template` — one replica structure (stages with layer ranges, GPU type and per-cell tp/dp/ep), its settings
  and role (colocated, prefill or decode) plus, once computed, its `TemplateCoefficients`.
* `enumerate_layouts(model, cluster, gpus, ...)` — the stage tuples worth considering, pruned by divisibility
  (heads, KV heads, FFN sizes, experts), by NVLink domain size and by a weights-fit memory check: plain tp,
  per-cell splits (attention tp × dp with another FFN split, partial expert parallelism), stages spanning
  several NVLink domains (expert or tensor parallelism over the scale-out fabric), pipelines deeper than four,
  uneven splits and mixed GPU types from the layer-partition model. `enumerate_structures` crosses them with
  settings and roles; `layout_kinds` names what is special about one.
* `TemplateCoefficients` — capacity per workload class, energy, idle power, price, latency score: plain data
  the master reads. The planner computes them from the cost model; `analytic_capacity` is the documented
  analytic first pass, driven by any `step_time_fn`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from formulations.layer_partition import (
    LayerGroup,
    LayerPartitionProblem,
    StageSlot,
    evaluate_split,
    partition_dp,
    solve_layer_partition,
)
from formulations.result import SolverOptions
from simulator.costmodel.memory import edge_weight_bytes, layer_weight_bytes, stage_weight_bytes
from simulator.dtypes import bytes_per_element
from simulator.hardware import GPU, Cluster
from simulator.model import Model
from simulator.plan import AttentionSplit, FFNSplit, ReplicaGroup, Stage, even_layer_split, stage_label
from simulator.scenario import DTypes

Role = Literal["colocated", "prefill", "decode"]


@dataclass(frozen=True, slots=True)
class TemplateCoefficients:
    """What one replica of a template costs and serves (per class c where a mapping is keyed by class).

    `capacity_rps[c]`: requests/s of class c one replica sustains within the SLOs (absent or 0: cannot serve c);
    `energy_per_request_j[c]`: energy a request of class c adds above idle (J);
    `idle_w`: the replica's power when idle (W); `usd_per_hour`: its price;
    `latency_score[c]`: a latency figure for class c (e.g. mean E2E seconds on an idle replica), used by
    min_latency; `latency_growth_s`: how much a request's latency grows from an idle replica to one at full
    capacity (bigger decode batches step slower), so min_latency sees that spreading load lowers latency.
    """

    capacity_rps: Mapping[str, float]
    energy_per_request_j: Mapping[str, float] = field(default_factory=dict)
    idle_w: float = 0.0
    usd_per_hour: float = 0.0
    latency_score: Mapping[str, float] = field(default_factory=dict)
    latency_growth_s: float = 0.0

    def energy_j(self, class_id: str) -> float:
        return self.energy_per_request_j.get(class_id, 0.0)

    def latency(self, class_id: str) -> float:
        return self.latency_score.get(class_id, 0.0)


@dataclass(frozen=True, slots=True, order=True)
class EngineSettings:
    """Engine knobs and dtypes one replica runs with (docs/design.md §4).

    The simulator applies one engine and one set of dtypes to every replica of a plan, so the templates of one
    plan share their settings (`key` is the master's settings group). Each field is written into the
    scenario at `SCENARIO_PATHS[field]` when a plan with these settings is simulated or emitted."""

    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool = True
    weights_dtype: str = "bf16"
    kv_cache_dtype: str = "bf16"
    # Features the planner turns on or off only where the scenario opens them (`auto`); None: as the scenario
    # says (not written, not in `key`). speculative True / False: the scenario's stated speculative decoding on
    # or off (engine.speculative.enabled).
    prefix_caching: bool | None = None
    speculative: bool | None = None

    SCENARIO_PATHS: ClassVar[dict[str, tuple[str, str]]] = {
        "max_num_seqs": ("engine", "max_num_seqs"),
        "max_num_batched_tokens": ("engine", "max_num_batched_tokens"),
        "enable_chunked_prefill": ("engine", "enable_chunked_prefill"),
        "weights_dtype": ("dtype", "weights"),
        "kv_cache_dtype": ("dtype", "kv_cache"),
        "prefix_caching": ("engine", "prefix_caching"),
        "speculative": ("engine", "speculative.enabled"),
    }
    LABELS: ClassVar[dict[str, str]] = {
        "max_num_seqs": "seqs",
        "max_num_batched_tokens": "tok",
        "enable_chunked_prefill": "chunked",
        "weights_dtype": "w",
        "kv_cache_dtype": "kv",
        "prefix_caching": "prefix-cache",
        "speculative": "spec",
    }
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"prefix_caching", "speculative"})

    def values(self) -> dict[str, object]:
        """The fields that say something (the optional features only when set)."""
        return {
            name: getattr(self, name)
            for name in self.SCENARIO_PATHS
            if name not in self.OPTIONAL or getattr(self, name) is not None
        }

    @property
    def key(self) -> str:
        """A compact, unique name: `seqs256 tok8192 chunked w:bf16 kv:bf16`."""
        return " ".join(self._part(name, value) for name, value in self.values().items())

    def _part(self, name: str, value) -> str:
        label = self.LABELS[name]
        if isinstance(value, bool):
            return label if value else f"no-{label}"
        if isinstance(value, str):
            return f"{label}:{value}"
        return f"{label}{value}"

    def differences(self, other: EngineSettings | None) -> str:
        """The fields that differ from `other`, in `key`'s words ("" when none or `other` is None)."""
        if other is None:
            return ""
        return " ".join(
            self._part(name, value) for name, value in self.values().items() if getattr(other, name) != value
        )

    def scenario_updates(self) -> dict[str, dict[str, object]]:
        """{section: {key: value}} to write into a scenario file (`engine`, `dtype`)."""
        out: dict[str, dict[str, object]] = {}
        for name, value in self.values().items():
            section, key = self.SCENARIO_PATHS[name]
            out.setdefault(section, {})[key] = value
        return out

    def to_json(self) -> dict[str, object]:
        return self.values()


@dataclass(frozen=True)
class Template:
    """One replica structure: stages (as `simulator.plan.Stage`), engine settings, role, optional
    coefficients."""

    stages: tuple[Stage, ...]
    settings: EngineSettings
    role: Role = "colocated"
    coefficients: TemplateCoefficients | None = None
    sm_clock_mhz: int | None = None  # the SM clock its GPUs are locked to; None: the scenario's / boost

    @property
    def max_num_seqs(self) -> int:
        return self.settings.max_num_seqs

    @property
    def max_num_batched_tokens(self) -> int:
        return self.settings.max_num_batched_tokens

    @property
    def layout_id(self) -> str:
        """The stages alone (shared by every setting and role of one layout)."""
        return "|".join(f"L{s.layers[0]}-{s.layers[1]} {stage_label(s)}" for s in self.stages)

    @property
    def id(self) -> str:
        clock = f" sm{self.sm_clock_mhz}" if self.sm_clock_mhz is not None else ""
        return f"{self.role}:[{self.layout_id}] {self.settings.key}{clock}"

    @property
    def gpus_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.stages:
            out[s.gpu] = out.get(s.gpu, 0) + s.num_gpus
        return out

    @property
    def num_gpus(self) -> int:
        return sum(s.num_gpus for s in self.stages)

    def domain_need_by_type(self, domain_gpus: Mapping[str, int]) -> dict[str, int]:
        """Per GPU type, the GPUs one stage needs inside one NVLink domain (capped at the domain size: a stage
        larger than a domain takes whole domains)."""
        out: dict[str, int] = {}
        for s in self.stages:
            need = min(s.num_gpus, domain_gpus.get(s.gpu, s.num_gpus))
            out[s.gpu] = max(out.get(s.gpu, 1), need)
        return out

    def replica_group(self, count: int = 1) -> ReplicaGroup:
        return ReplicaGroup(
            count=count, role=self.role, stages=list(self.stages), sm_clock_mhz=self.sm_clock_mhz
        )


# ---- memory per GPU from the model's derived numbers -------------------------------------------------------


def layer_weight_bytes_per_gpu(
    model: Model, layer: int, attention: AttentionSplit, ffn: FFNSplit, dtype: str
) -> float:
    """Weights of one layer on one GPU (the cost model's memory rule)."""
    return layer_weight_bytes(model, layer, attention, ffn, dtype)


def stage_fixed_bytes_per_gpu(model: Model, first: bool, last: bool, tp: int, dtype: str) -> float:
    """Embedding (first stage) and LM head + final norm (last stage) on one GPU (the cost model's memory rule)."""
    return edge_weight_bytes(
        model, first=first, last=last, attention_tp=tp, activations_dtype=_activation_dtype(dtype)
    )


def stage_weight_bytes_per_gpu(model: Model, stage: Stage, first: bool, last: bool, dtype: str) -> float:
    """All weights of a stage on one GPU, every tensor stored in `dtype`."""
    return stage_weight_bytes(
        model, stage, DTypes(weights=dtype, activations=_activation_dtype(dtype)), first=first, last=last
    )


def _activation_dtype(weights_dtype: str) -> str:
    return weights_dtype if weights_dtype in ("bf16", "fp16") else "bf16"


# ---- enumeration -------------------------------------------------------------------------------------------


def _powers_of_two(limit: int) -> list[int]:
    return [2**k for k in range(int(math.log2(limit)) + 1)] if limit >= 1 else []


def cell_options(
    model: Model, num_gpus: int, *, per_cell: bool = False
) -> list[tuple[AttentionSplit, FFNSplit]]:
    """Per-cell splits of `num_gpus` GPUs that divide the model cleanly.

    Always: plain tp (attention tp = FFN tp = num_gpus). MoE: experts over ep = num_gpus (FFN tp 1) with
    attention tp = num_gpus or attention data parallel (dp × tp = num_gpus). With `per_cell`, also: partial
    expert parallelism (1 < ep < num_gpus, FFN tp = num_gpus / ep: experts fewer than the GPUs, or the grouped
    GEMMs kept larger) with attention tp = num_gpus; and for models whose KV heads plain tp would replicate
    (GQA with num_gpus > KV heads) attention tp = KV heads × dp with FFN tp = num_gpus (dense) — each
    attention group then holds its sequences' KV once instead of replicated.
    """

    def attn_ok(tp: int) -> bool:
        if model.num_heads % tp:
            return False
        return model.attention == "mla" or tp <= model.num_kv_heads or tp % model.num_kv_heads == 0

    def ffn_ok(tp: int, ep: int) -> bool:
        has_dense = model.num_moe_layers() < model.num_layers
        if has_dense and model.ffn_size % tp:
            return False
        return not (model.is_moe and (model.moe.num_experts % ep or model.moe.expert_ffn_size % tp))

    out = []
    if attn_ok(num_gpus) and ffn_ok(num_gpus, 1):
        out.append((AttentionSplit(tp=num_gpus), FFNSplit(tp=num_gpus)))
    if model.is_moe and num_gpus > 1 and ffn_ok(1, num_gpus):
        for tp in _powers_of_two(num_gpus):
            if attn_ok(tp):
                out.append((AttentionSplit(tp=tp, dp=num_gpus // tp), FFNSplit(tp=1, ep=num_gpus)))
    if not per_cell or num_gpus == 1:
        return out
    if model.is_moe and attn_ok(num_gpus):
        for ep in _powers_of_two(num_gpus // 2):
            if ep > 1 and ffn_ok(num_gpus // ep, ep):
                out.append((AttentionSplit(tp=num_gpus), FFNSplit(tp=num_gpus // ep, ep=ep)))
    kv = model.num_kv_heads
    if model.attention != "mla" and num_gpus > kv and num_gpus % kv == 0 and attn_ok(kv):
        ffn = FFNSplit(tp=num_gpus)
        if ffn_ok(num_gpus, 1) and not model.is_moe:
            out.append((AttentionSplit(tp=kv, dp=num_gpus // kv), ffn))
    return out


MAX_PP = 16  # the deepest pipeline enumerated when a model needs more than `max_pp` stages to fit


def enumerate_layouts(
    model: Model,
    cluster: Cluster,
    gpus: Mapping[str, GPU],
    *,
    max_pp: int = 4,
    extra_depths: Sequence[int] = (),
    allow_mixed_gpus: bool = False,
    weights_dtype: str = "bf16",
    memory_fraction: float = 0.9,
    max_weights_share: float = 0.8,
    max_stage_gpus: int | None = None,
    max_stage_domains: int = 1,
    per_cell: bool = False,
    uneven_split_fn: Callable | None = None,
    partition_backend: str = "dp",
    partition_time_s: float = 2.0,
    balance_gain: float = 0.03,
) -> list[tuple[Stage, ...]]:
    """Stage tuples worth considering (see `enumerate_structures`), without settings or roles.

    Stage sizes are powers of two up to the GPU type's NVLink domain (or `max_stage_gpus`) and, with
    `max_stage_domains` > 1, stages of 2, 4, ... whole domains (up to that many, and no more than the node
    group has) — expert parallelism across nodes (the all-to-all then runs on the scale-out fabric) or tensor
    parallelism across nodes; every stage of a replica has the same size and cells (`cell_options`, with
    `per_cell`). Pipelines have 1..`max_pp` stages, the depths in `extra_depths` (e.g. 6, 8), and more — the
    fewest that fit and one more, up to MAX_PP — when the model needs them; replicas mixing GPU types have at
    most `max_pp` stages."""
    domain = _largest_domains(cluster)
    domains: dict[str, int] = {}
    for g in cluster.node_groups:
        if g.domain_gpus == domain[g.gpu]:
            domains[g.gpu] = domains.get(g.gpu, 0) + g.num_gpus // g.domain_gpus
    types = sorted(domain)
    share = memory_fraction * max_weights_share
    split_fn = uneven_split_fn or _partition_solver(partition_backend, partition_time_s)
    structures: list[tuple[Stage, ...]] = []
    seen = set()

    def add(stages):
        key = tuple((s.layers, s.gpu, s.attention, s.ffn) for s in stages)
        if key not in seen:
            seen.add(key)
            structures.append(stages)

    depths = needed_pipeline_depths(
        model,
        cluster,
        gpus,
        max_pp=max_pp,
        weights_dtype=weights_dtype,
        memory_fraction=memory_fraction,
        max_weights_share=max_weights_share,
        max_stage_gpus=max_stage_gpus,
    )
    depths = sorted(set(depths) | {d for d in extra_depths if d <= min(model.num_layers, MAX_PP)})
    for pp in depths:
        type_sequences = [(t,) * pp for t in types]
        if allow_mixed_gpus and 2 <= pp <= max(max_pp, 2):  # mixed types: up to max_pp stages (the split
            for a, b in itertools.permutations(types, 2):  # point times the depth would multiply the space)
                type_sequences += [(a,) * k + (b,) * (pp - k) for k in range(1, pp)]
        for seq in type_sequences:
            limit = min(domain[t] for t in seq)
            if max_stage_gpus:
                limit = min(limit, max_stage_gpus)
            sizes = _powers_of_two(limit)
            if len(set(seq)) == 1 and max_stage_domains > 1 and not max_stage_gpus:
                t = seq[0]
                k = 2
                while k <= max_stage_domains and k * pp <= domains.get(t, 0):
                    sizes.append(k * domain[t])
                    k *= 2
            for size in sizes:
                for attention, ffn in cell_options(model, size, per_cell=per_cell):
                    if size > limit and not _cross_domain_ok(model, attention, ffn, limit):
                        continue
                    for stages in _build_stages(
                        model, gpus, seq, size, attention, ffn, weights_dtype, share, split_fn, balance_gain
                    ):
                        add(stages)
    return structures


def _cross_domain_ok(model: Model, attention: AttentionSplit, ffn: FFNSplit, domain: int) -> bool:
    """A stage larger than one NVLink domain is worth it for experts spread over it (the all-to-all on the
    scale-out fabric, attention data parallel inside domains) or tensor parallelism over it (a dense model too
    large for fewer GPUs); attention tensor groups never leave a domain when experts are spread."""
    if ffn.ep > 1:
        return attention.tp <= domain and ffn.tp <= domain
    return attention.dp == 1


def enumerate_structures(
    model: Model,
    cluster: Cluster,
    gpus: Mapping[str, GPU],
    *,
    settings: Sequence[EngineSettings] | None = None,
    roles: Sequence[Role] = ("colocated",),
    weights_dtype: str = "bf16",
    **layout_options,
) -> list[Template]:
    """Replica templates worth considering (no coefficients yet): `enumerate_layouts` × `settings` (default:
    the engine defaults with `weights_dtype`) × `roles`.

    Each pipeline gets the even split (`even_layer_split`) and, when its layers differ (dense-first MoE
    layers, the LM head on the last stage, different GPU types), the split that balances the stages' reference
    time under the memory limit, from the layer-partition model (`formulations.layer_partition`, solved with
    `partition_backend` — "cpsat", "highs" or the exact "dp"; `uneven_split_fn(problem)` may replace it) — kept
    when its bottleneck is at least `balance_gain` lower than the even split's. With `allow_mixed_gpus`,
    replicas whose first k stages are one type and the rest another use that balanced split only. Kept when
    each stage's weights per GPU ≤ memory × `memory_fraction` × `max_weights_share` (the rest is left for KV
    cache and activations)."""
    if settings is None:
        settings = (EngineSettings(256, 8192, True, weights_dtype, "bf16"),)
    layouts = enumerate_layouts(model, cluster, gpus, weights_dtype=weights_dtype, **layout_options)
    return [Template(stages, st, role) for stages in layouts for st in settings for role in roles]


def layout_kinds(stages: Sequence[Stage], model: Model, domain_gpus: Mapping[str, int]) -> tuple[str, ...]:
    """What is special about a layout, in words the search's counts use: "pipeline>4", "uneven split",
    "mixed GPUs", "attention dp", "expert parallel", "partial ep", "cross-node" (a stage larger than its NVLink
    domain); "plain" when none applies."""
    kinds = []
    if len(stages) > 4:
        kinds.append("pipeline>4")
    if [tuple(s.layers) for s in stages] != even_layer_split(model.num_layers, len(stages)):
        kinds.append("uneven split")
    if len({s.gpu for s in stages}) > 1:
        kinds.append("mixed GPUs")
    s0 = stages[0]
    if s0.attention.dp > 1:
        kinds.append("attention dp")
    if s0.ffn.ep > 1:
        kinds.append("partial ep" if s0.ffn.tp > 1 else "expert parallel")
    if any(s.num_gpus > domain_gpus.get(s.gpu, s.num_gpus) for s in stages):
        kinds.append("cross-node")
    return tuple(kinds) or ("plain",)


def _largest_domains(cluster: Cluster) -> dict[str, int]:
    """The largest NVLink domain of each GPU type's node groups."""
    domain: dict[str, int] = {}
    for g in cluster.node_groups:
        domain[g.gpu] = max(domain.get(g.gpu, 0), g.domain_gpus)
    return domain


def needed_pipeline_depths(
    model: Model,
    cluster: Cluster,
    gpus: Mapping[str, GPU],
    *,
    max_pp: int = 4,
    weights_dtype: str = "bf16",
    memory_fraction: float = 0.9,
    max_weights_share: float = 0.8,
    max_stage_gpus: int | None = None,
) -> list[int]:
    """The depths `enumerate_layouts` gives without `extra_depths`: 1..max_pp, and the fewest stages that fit
    and one more when the model needs more than max_pp (what the planner searched before extra depths)."""
    domain = _largest_domains(cluster)
    share = memory_fraction * max_weights_share
    return _pipeline_depths(model, gpus, sorted(domain), domain, max_pp, max_stage_gpus, weights_dtype, share)


def _pipeline_depths(model, gpus, types, domain, max_pp, max_stage_gpus, dtype, share) -> list[int]:
    """1..max_pp, plus the fewest stages that fit the largest stage of some GPU type and one more (up to
    MAX_PP and the number of layers) when that is beyond max_pp."""
    depths = set(range(1, min(max_pp, model.num_layers) + 1))
    total = sum(
        layer_weight_bytes_per_gpu(model, i, AttentionSplit(), FFNSplit(), dtype)
        for i in range(model.num_layers)
    )
    for t in types:
        size = min(domain[t], max_stage_gpus or domain[t])
        usable = gpus[t].memory_bytes * share
        need = math.ceil(total / max(size * usable, 1.0))
        if need > max_pp:
            for pp in range(need, min(need + 2, MAX_PP + 1, model.num_layers + 1)):
                depths.add(pp)
    return sorted(depths)


def _partition_solver(backend: str, time_s: float) -> Callable:
    """problem -> SolveResult: the layer-partition model with `backend` ("cpsat", "highs" or "dp"); when a
    solver stops without a proven optimum the exact DP answers instead. Solutions are cached by problem."""
    options = SolverOptions(time_limit_s=time_s, mip_rel_gap=1e-6, threads=1, seed=0)
    cache: dict = {}

    def solve(problem):
        hit = cache.get(problem)
        if hit is None:
            if backend == "dp":
                hit = partition_dp(problem)
            else:
                hit = solve_layer_partition(problem, backend=backend, options=options)
                if not (hit.has_solution and hit.is_optimal):
                    hit = partition_dp(problem)
            cache[problem] = hit
        return hit

    return solve


def _build_stages(model, gpus, seq, size, attention, ffn, dtype, usable_share, split_fn, balance_gain):
    """The stage tuples of one pipeline (GPU types `seq`, `size` GPUs and one cell split per stage) that fit:
    the even split (homogeneous types) and the balanced split when it is enough better."""
    pp = len(seq)
    out = []
    problem = (
        partition_problem_for(model, gpus, seq, attention, ffn, dtype, usable_share, size) if pp > 1 else None
    )
    even = even_layer_split(model.num_layers, pp) if len(set(seq)) == 1 else None
    if even is not None:
        out.append(even)
    if problem is not None:
        result = split_fn(problem)
        if result.has_solution:
            balanced = list(result.solution.bounds)
            if even is None:
                out.append(balanced)
            elif balanced != even:
                even_split = evaluate_split(problem, even)
                if result.solution.bottleneck_s <= (1 - balance_gain) * even_split.bottleneck_s:
                    out.append(balanced)
    built = []
    for bounds in out:
        stages = tuple(
            Stage(layers=b, gpu=t, attention=attention, ffn=ffn) for b, t in zip(bounds, seq, strict=True)
        )
        if _fits(model, gpus, stages, ffn, dtype, usable_share):
            built.append(stages)
    return built


def _fits(model, gpus, stages, ffn, dtype, usable_share) -> bool:
    pp = len(stages)
    for i, s in enumerate(stages):
        if not any(model.is_moe_layer(k) for k in range(*s.layers)) and ffn.ep > 1:
            return False  # an expert-parallel stage without MoE layers is not a valid stage
        need = stage_weight_bytes_per_gpu(model, s, i == 0, i == pp - 1, dtype)
        if need > gpus[s.gpu].memory_bytes * usable_share:
            return False
    return True


REFERENCE_BATCH = (
    256  # tokens per iteration at which a layer's reference time is taken (a large decode batch)
)


def partition_problem_for(
    model: Model,
    gpus: Mapping[str, GPU],
    seq: Sequence[str],
    attention: AttentionSplit,
    ffn: FFNSplit,
    dtype: str,
    usable_share: float,
    size: int,
):
    """The layer-partition data for stages of `size` GPUs of types `seq`. A layer's reference time is its
    roofline at REFERENCE_BATCH tokens on one GPU of the reference type, max(GEMM FLOPs / peak, weight bytes
    / HBM bandwidth); each stage scales it by its GPU's speed; the last stage also runs the LM head (its
    weights and FLOPs the same way). Memory: weights per GPU of that layer, plus embedding / LM head."""
    ref = gpus[seq[0]]

    def roofline(flops_per_token: float, weight_bytes: float) -> float:
        return max(
            flops_per_token * REFERENCE_BATCH / (ref.peak_flops(dtype) * size),
            weight_bytes / (ref.memory_bandwidth_bytes_per_s * size),
        )

    groups: list[LayerGroup] = []
    for i in range(model.num_layers):
        mem = layer_weight_bytes_per_gpu(model, i, attention, ffn, dtype)
        t = roofline(2.0 * model.layer_active_params(i), mem * size)
        if groups and groups[-1].time_s == t and groups[-1].memory_bytes == mem:
            groups[-1] = LayerGroup(groups[-1].num_layers + 1, t, mem, groups[-1].name)
        else:
            groups.append(LayerGroup(1, t, mem, "moe" if model.is_moe_layer(i) else "dense"))
    head_params = model.vocab_size * model.hidden_size
    head_time = roofline(2.0 * head_params, head_params * bytes_per_element(dtype))
    slots = []
    for k, gpu_name in enumerate(seq):
        g = gpus[gpu_name]
        speed = max(
            ref.peak_flops(dtype) / g.peak_flops(dtype),
            ref.memory_bandwidth_bytes_per_s / g.memory_bandwidth_bytes_per_s,
        )
        last = k == len(seq) - 1
        slots.append(
            StageSlot(
                name=f"stage{k}@{gpu_name}",
                memory_capacity_bytes=g.memory_bytes * usable_share,
                fixed_memory_bytes=stage_fixed_bytes_per_gpu(model, k == 0, last, attention.tp, dtype),
                time_scale=speed,
                fixed_time_s=head_time * speed if last else 0.0,
            )
        )
    return LayerPartitionProblem(tuple(groups), tuple(slots), "bottleneck")


# ---- analytic capacity -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    requests_per_s: float
    decode_batch: int
    step_time_s: float  # decode step time at that batch
    prefill_time_s: float  # one request's prefill
    ttft_s: float  # predicted mean TTFT at requests_per_s
    limited_by: str  # "tpot", "kv", "max_num_seqs", "ttft" or "infeasible: ..."


def largest_batch(step: Callable[[int], float], upper: int, target: float) -> int:
    """The largest batch B in [1, upper] whose step time meets `target`, for a step time non-decreasing in B with
    step(1) meeting it. B is built bit by bit from the highest power of two down, so the batches it prices
    depend on `upper` only where they pass it: searches of one step function under different caps (knob
    variants of one layout) price the same batches, which the cost model has cached."""
    batch, bit = 0, 1 << (upper.bit_length() - 1)
    while bit:
        if batch + bit <= upper and step(batch + bit) <= target:
            batch += bit
        bit >>= 1
    return max(batch, 1)


def analytic_capacity(
    step_time_fn: Callable[[int, int, int], float],
    kv_capacity_tokens: float,
    mean_input: float,
    mean_output: float,
    ttft_target_s: float,
    tpot_target_s: float,
    max_num_seqs: int,
) -> CapacityEstimate:
    """Requests/s one replica sustains within the TTFT and TPOT targets (an analytic first pass).

    `step_time_fn(num_prefill_tokens, num_decode, decode_context_tokens) -> seconds` prices one iteration.

    1. Decode batch B: the largest B ≤ max_num_seqs whose step time meets the TPOT target and whose KV fits:
       step_time_fn(0, B, B·(in + out/2)) ≤ tpot and B·(in + out/2) ≤ kv_capacity_tokens (a request holds
       in + out/2 tokens on average over its life). Step time is assumed non-decreasing in B (`largest_batch`).
    2. Prefill time per request p = step_time_fn(in, 0, 0).
    3. A batch of B requests takes out decode steps plus B prefills (which stall decoding), so
       rate = B / (out · t_step(B) + B · p).
    4. TTFT check, prefill as an M/M/1 server with service time p: TTFT ≈ p / (1 − ρ), ρ = rate · p. If that
       exceeds the target, the rate is lowered to where it equals it: rate = (1 − p/ttft) / p.
    """
    per_request_tokens = mean_input + mean_output / 2.0
    prefill = step_time_fn(int(round(mean_input)), 0, 0)

    def step(b: int) -> float:
        return step_time_fn(0, b, int(round(b * per_request_tokens)))

    kv_limit = int(kv_capacity_tokens // per_request_tokens) if per_request_tokens > 0 else max_num_seqs
    upper = min(max_num_seqs, kv_limit)
    if upper < 1:
        return CapacityEstimate(0.0, 0, 0.0, prefill, math.inf, "infeasible: one request's KV does not fit")
    if step(1) > tpot_target_s:
        return CapacityEstimate(
            0.0, 0, step(1), prefill, math.inf, "infeasible: TPOT target missed at batch 1"
        )
    if prefill >= ttft_target_s:
        return CapacityEstimate(
            0.0, 0, step(1), prefill, prefill, "infeasible: one prefill exceeds the TTFT target"
        )
    batch = largest_batch(step, upper, tpot_target_s)
    limited = "tpot" if batch < upper else "kv" if kv_limit < max_num_seqs else "max_num_seqs"
    t_step = step(batch)
    rate = batch / (mean_output * t_step + batch * prefill)
    ttft_cap = (1.0 - prefill / ttft_target_s) / prefill if prefill > 0 else math.inf
    if rate > ttft_cap:
        rate, limited = ttft_cap, "ttft"
    rho = rate * prefill
    ttft = prefill / (1.0 - rho) if rho < 1 else math.inf
    return CapacityEstimate(rate, batch, t_step, prefill, ttft, limited)


def analytic_prefill_capacity(
    step_time_fn: Callable[[int, int, int], float],
    mean_input: float,
    ttft_target_s: float,
    max_batched_tokens: int,
) -> CapacityEstimate:
    """Requests/s one prefill-only replica (disaggregated serving) completes within the TTFT target.

    One prompt alone takes p = step_time_fn(in, 0, 0); full iterations of `max_batched_tokens` prompt tokens
    give the throughput limit r = (budget / t(budget)) / in; the M/M/1 queue on p caps the rate where its
    TTFT p / (1 − ρ) meets the target: rate = min(r, (1 − p/ttft) / p)."""
    tokens = max(int(round(mean_input)), 1)
    prefill = step_time_fn(tokens, 0, 0)
    if prefill >= ttft_target_s:
        return CapacityEstimate(
            0.0, 0, 0.0, prefill, prefill, "infeasible: one prefill exceeds the TTFT target"
        )
    full = max(int(max_batched_tokens), tokens)
    throughput = (full / step_time_fn(full, 0, 0)) / tokens if full > tokens else 1.0 / prefill
    ttft_cap = (1.0 - prefill / ttft_target_s) / prefill if prefill > 0 else math.inf
    rate, limited = (throughput, "prefill throughput") if throughput <= ttft_cap else (ttft_cap, "ttft")
    rho = min(rate * prefill, 0.999999)
    return CapacityEstimate(rate, 0, 0.0, prefill, prefill / (1.0 - rho), limited)


def analytic_decode_capacity(
    step_time_fn: Callable[[int, int, int], float],
    kv_capacity_tokens: float,
    mean_input: float,
    mean_output: float,
    tpot_target_s: float,
    max_num_seqs: int,
) -> CapacityEstimate:
    """Requests/s one decode-only replica (disaggregated serving) decodes within the TPOT target: the largest
    batch B meeting TPOT and KV (as `analytic_capacity`), rate = B / (out · t_step(B)) — no prefill stalls."""
    per_request_tokens = mean_input + mean_output / 2.0

    def step(b: int) -> float:
        return step_time_fn(0, b, int(round(b * per_request_tokens)))

    kv_limit = int(kv_capacity_tokens // per_request_tokens) if per_request_tokens > 0 else max_num_seqs
    upper = min(max_num_seqs, kv_limit)
    if upper < 1:
        return CapacityEstimate(0.0, 0, 0.0, 0.0, 0.0, "infeasible: one request's KV does not fit")
    if step(1) > tpot_target_s:
        return CapacityEstimate(0.0, 0, step(1), 0.0, 0.0, "infeasible: TPOT target missed at batch 1")
    lo = largest_batch(step, upper, tpot_target_s)
    limited = "tpot" if lo < upper else "kv" if kv_limit < max_num_seqs else "max_num_seqs"
    t_step = step(lo)
    return CapacityEstimate(lo / (max(mean_output, 1.0) * t_step), lo, t_step, 0.0, 0.0, limited)
