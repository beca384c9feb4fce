"""Scenario files (docs/design.md §7): model + cluster + workload + engine + dtypes + optional plan + goals.

`load_scenario(path_or_dict)` validates everything at the border and returns a `Scenario` whose
catalog references are resolved (`scenario.model`, `scenario.cluster`, `scenario.gpus`, `scenario.plan`).
Every mistake raises InputError naming the file, the field, the bad value and what was expected. Types are
strict (`requests: true` or `"50"` is an error, not a coercion), numbers must be finite, and every number has a
documented range whose bounds are named when a value falls outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator import catalog
from simulator.dtypes import DType
from simulator.errors import InputError, pydantic_error_to_input_error
from simulator.hardware import GPU, Cluster, NodeGroup
from simulator.model import Model
from simulator.plan import Plan, parse_plan
from simulator.yamlio import read_yaml


class _Strict(BaseModel):
    # strict: no coercion of "50" or true to 50; allow_inf_nan=False: .inf / .nan are refused
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# Ranges: generous for any real deployment, tight enough that an absurd value is caught before it runs.
MAX_TOKENS = 10_000_000  # longest request accepted (the longest published context windows are 10M tokens)
MAX_REQUESTS = 10_000_000  # requests in one workload
MIN_RATE, MAX_RATE = 1e-4, 1e6  # requests per second (one per ~3 hours .. a million per second)
MAX_SECONDS = 1e6  # latency targets
MAX_NODES, MAX_GPUS_PER_NODE, MAX_CLUSTER_GPUS = 100_000, 1024, 1_000_000
Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)]


class DTypes(_Strict):
    """Numeric formats of the weights, the KV cache and the activations.

    `weights` and `kv_cache` may each be a list of allowed formats (`weights: [bf16, fp8]`): `apex plan` then
    searches them (`weights_allowed`, `kv_cache_allowed`), and everything that needs one format (simulate,
    estimate) uses the first."""

    weights: DType = "bf16"
    kv_cache: DType = "bf16"
    activations: Literal["bf16", "fp16", "fp8"] = "bf16"
    # set from a list under weights / kv_cache; left out of dumps (a dumped scenario names one format each)
    weights_allowed: tuple[DType, ...] | None = Field(None, exclude=True)
    kv_cache_allowed: tuple[DType, ...] | None = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _allowed_lists(cls, data):
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key in ("weights_allowed", "kv_cache_allowed"):
            if key in data:
                raise InputError(
                    f"{key} is set by the planner; list the allowed formats under "
                    f"{key.removesuffix('_allowed')} instead (e.g. weights: [bf16, fp8])",
                    field=f"dtype.{key}",
                )
        names = get_args(DType)
        for key in ("weights", "kv_cache"):
            value = data.get(key)
            if not isinstance(value, list):
                continue
            if not value:
                raise InputError(
                    f"an empty list; expected one format or a list of allowed ones from {', '.join(names)}",
                    field=f"dtype.{key}",
                )
            for i, item in enumerate(value):
                if not isinstance(item, str) or item not in names:
                    raise InputError(
                        f"{item!r} is not a numeric format; expected one of {', '.join(names)}",
                        field=f"dtype.{key}[{i}]",
                    )
            if len(set(value)) != len(value):
                raise InputError(f"{value} lists a format twice", field=f"dtype.{key}")
            out[key] = value[0]
            out[f"{key}_allowed"] = tuple(value)
        return out

    @property
    def weight_choices(self) -> tuple[str, ...]:
        """The weight formats `apex plan` may choose from (the one format when no list was given)."""
        return self.weights_allowed or (self.weights,)

    @property
    def kv_cache_choices(self) -> tuple[str, ...]:
        return self.kv_cache_allowed or (self.kv_cache,)


EngineKind = Literal["vllm-v0", "vllm-v1", "sglang", "trtllm", "orca", "static"]


# Default per-position acceptance of a draft token (given the ones before it were accepted), per method:
# * draft — a small model of the same family: Leviathan et al., "Fast Inference from Transformers via Speculative
#   Decoding" (ICML 2023), Table 3: α = 0.62–0.82 for T5-small/base/large drafting for T5-XXL; 0.7, mid-range.
# * eagle — Li et al., "EAGLE: Speculative Sampling Requires Rethinking Feature Uncertainty" (ICML 2024): draft
#   acceptance ≈ 0.8 on MT-bench (its feature-level head, vs ≈ 0.6 for Medusa / Lookahead).
# * mtp — DeepSeek-V3 Technical Report (arXiv 2412.19437) §5.4.3: one MTP module, the second token is accepted
#   85–90% of the time across topics; 0.85, the low end.
SPECULATIVE_ACCEPTANCE = {"draft": 0.7, "eagle": 0.8, "mtp": 0.85}


class Speculative(_Strict):
    """Speculative decoding (engine/speculative.py): each decode step drafts `num_tokens` tokens, the target
    verifies them in one pass, and the request advances by the accepted ones plus one."""

    method: Literal["draft", "eagle", "mtp"] = Field(
        description="draft: a separate small model; eagle: an EAGLE head on the target's features; mtp: the "
        "model's multi-token-prediction module (DeepSeek-V3)"
    )
    num_tokens: int = Field(
        gt=0, le=16, description="draft tokens verified per step (vLLM num_speculative_tokens)"
    )
    acceptance: Annotated[float, Field(ge=0, le=1)] | list[Annotated[float, Field(ge=0, le=1)]] | None = (
        Field(
            None,
            description="per position, the probability a draft token is accepted when the ones before it were (one "
            "number: every position); default per method from public figures (SPECULATIVE_ACCEPTANCE)",
        )
    )
    draft_cost: float | None = Field(
        None,
        ge=0,
        le=10,
        description="one draft step's price as a fraction of the target's decode step at the same batch; "
        "default for eagle / mtp one layer's share of the target (1 / layers), required for draft",
    )
    enabled: bool | Literal["auto"] = Field(
        True,
        description="false: stated but off; auto: `apex plan` chooses, per plan, between this speculative "
        "decoding and none (a template dimension; docs/design.md §5.2) — `apex simulate` runs it on",
    )
    draft_model: str | None = Field(
        None,
        min_length=1,
        description="the checkpoint that drafts: the draft model (method draft) or the EAGLE head (method eagle), "
        "a HuggingFace repository or local path; `apex emit` writes it into the engine's speculative config and "
        "needs it for those methods. mtp drafts with the target's own MTP module and takes none",
    )

    @model_validator(mode="after")
    def _check(self):
        if isinstance(self.acceptance, list) and len(self.acceptance) != self.num_tokens:
            raise ValueError(
                f"acceptance lists {len(self.acceptance)} positions; expected num_tokens = {self.num_tokens} "
                "(or one number for every position)"
            )
        if self.method == "draft" and self.draft_cost is None:
            raise ValueError(
                "method draft needs draft_cost: the draft model's decode step as a fraction of the target's "
                "(about its share of the target's parameters for a memory-bound decode, e.g. 0.15 for a 1B "
                "draft of an 8B model)"
            )
        if self.method == "mtp" and self.draft_model is not None:
            raise ValueError(
                "method mtp drafts with the target model's own multi-token-prediction module; remove draft_model "
                "(or use method draft / eagle for a separate checkpoint)"
            )
        return self

    def acceptance_rates(self) -> list[float]:
        """Per position, the acceptance probability (the method's default where not given)."""
        if isinstance(self.acceptance, list):
            return list(self.acceptance)
        a = SPECULATIVE_ACCEPTANCE[self.method] if self.acceptance is None else self.acceptance
        return [a] * self.num_tokens

    def expected_tokens(self) -> float:
        """Tokens a step advances a request on average: 1 + Σ_i Π_{j≤i} a_j."""
        total, survive = 1.0, 1.0
        for a in self.acceptance_rates():
            survive *= a
            total += survive
        return total


class Engine(_Strict):
    """Serving-engine behaviour. Knobs keep the engines' own names; None means the engine's default."""

    kind: EngineKind = "vllm-v1"
    max_num_seqs: int | None = Field(
        None, gt=0, le=1_000_000, description="max running sequences per replica"
    )
    max_num_batched_tokens: int | None = Field(
        None, gt=0, le=MAX_TOKENS, description="token budget per iteration"
    )
    enable_chunked_prefill: bool | None = Field(None, description="split long prompts across iterations")
    block_size: int = Field(16, gt=0, le=4096, description="tokens per KV-cache block")
    gpu_memory_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="vLLM: fraction of total memory for weights+KV; TensorRT-LLM: fraction of free memory after "
        "weights for KV; SGLang: mem_fraction_static",
    )
    preemption_mode: Literal["recompute"] = Field(
        "recompute",
        description="how a preempted request gets its KV back; swap to CPU memory is not modelled",
    )
    cuda_graphs: bool = True
    router: Literal["round-robin", "least-outstanding", "power-of-two"] = "least-outstanding"
    prefix_caching: bool | Literal["auto"] | None = Field(
        None,
        description="keep full KV blocks by content and reuse them for requests that start with the same tokens "
        "(vLLM --enable-prefix-caching, SGLang's radix cache, TensorRT-LLM enable_block_reuse); None: the "
        "engine's own default; auto: `apex plan` chooses on or off per plan (a template dimension), other "
        "commands run the engine's default",
    )

    speculative: Speculative | None = Field(
        None, description="speculative decoding: {method: draft|eagle|mtp, num_tokens: k, acceptance: ...}"
    )

    @property
    def speculation(self) -> Speculative | None:
        """The speculative decoding the engine runs: the stated one unless it is switched off (`enabled: false`;
        `auto` runs it)."""
        spec = self.speculative
        return None if spec is None or spec.enabled is False else spec

    @model_validator(mode="after")
    def _check(self):
        if self.speculative is not None and self.kind in ("orca", "static"):
            raise ValueError(
                f"speculative: {self.kind} is not modelled with speculative decoding; use vllm-v1, vllm-v0, "
                "sglang or trtllm"
            )
        if self.prefix_caching and self.kind in NO_PREFIX_CACHE:
            raise ValueError(
                f"prefix_caching: {self.kind} has no paged KV cache to share blocks from; use vllm-v1, "
                "vllm-v0, sglang or trtllm, or leave it off"
            )
        return self


# Engines without paged, shareable KV blocks (Orca reserves one contiguous region per request; static batching
# holds its batch's cache until the batch ends).
NO_PREFIX_CACHE = frozenset({"orca", "static"})


# Defaults of each engine (from their docs / argument defaults; see simulator/engine for the sources).
# prefix_caching: vLLM V1 enables it by default (EngineArgs leaves enable_prefix_caching None and
# `_set_default_args` turns it on for V1; design doc "Automatic Prefix Caching"), vLLM V0 did not
# (`enable_prefix_caching: bool = False`); SGLang runs its radix cache unless --disable-radix-cache
# (server_args.py, disable_radix_cache = False); TensorRT-LLM's KvCacheConfig.enable_block_reuse defaults to True
# (tensorrt_llm/llmapi/llm_args.py).
ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "vllm-v0": {
        "prefix_caching": False,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "enable_chunked_prefill": False,
        "gpu_memory_fraction": 0.9,
    },
    "vllm-v1": {
        "prefix_caching": True,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "enable_chunked_prefill": True,
        "gpu_memory_fraction": 0.9,
    },
    "sglang": {
        "prefix_caching": True,
        "max_num_seqs": 1024,
        "max_num_batched_tokens": 8192,
        "enable_chunked_prefill": True,
        "gpu_memory_fraction": 0.88,
    },
    "trtllm": {
        "prefix_caching": True,
        "max_num_seqs": 2048,
        "max_num_batched_tokens": 8192,
        "enable_chunked_prefill": False,
        "gpu_memory_fraction": 0.9,
    },
    "orca": {
        "prefix_caching": False,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "enable_chunked_prefill": False,
        "gpu_memory_fraction": 0.9,
    },
    "static": {
        "prefix_caching": False,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "enable_chunked_prefill": False,
        "gpu_memory_fraction": 0.9,
    },
}


def engine_setting(engine: Engine, knob: str):
    """The engine's value of `knob`, falling back to its kind's default."""
    value = getattr(engine, knob)
    return ENGINE_DEFAULTS[engine.kind][knob] if value is None or value == "auto" else value


class LengthDist(_Strict):
    """A token-count distribution."""

    dist: Literal["fixed", "uniform", "normal", "lognormal", "empirical"]
    value: int | None = Field(None, gt=0, le=MAX_TOKENS, description="fixed: the length")
    mean: float | None = Field(None, gt=0, le=MAX_TOKENS)
    std: float | None = Field(None, ge=0, le=MAX_TOKENS)
    min: int = Field(1, gt=0, le=MAX_TOKENS, description="lengths are clipped to [min, max]")
    max: int | None = Field(None, gt=0, le=MAX_TOKENS, description=f"default {MAX_TOKENS:,}")
    low: int | None = Field(None, gt=0, le=MAX_TOKENS, description="uniform: inclusive lower bound")
    high: int | None = Field(None, gt=0, le=MAX_TOKENS, description="uniform: inclusive upper bound")
    values: list[Tokens] | None = Field(None, min_length=1, description="empirical: lengths (bin centers)")
    weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, description="empirical: relative frequency of each value"
    )

    @model_validator(mode="after")
    def _check(self):
        needs = {
            "fixed": ("value",),
            "uniform": ("low", "high"),
            "normal": ("mean", "std"),
            "lognormal": ("mean", "std"),
            "empirical": ("values",),
        }[self.dist]
        missing = [k for k in needs if getattr(self, k) is None]
        if missing:
            raise ValueError(f"dist '{self.dist}' needs {', '.join(needs)} (missing: {', '.join(missing)})")
        if self.dist == "uniform" and self.low > self.high:
            raise ValueError(f"uniform needs low <= high, got low={self.low}, high={self.high}")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        if self.dist == "empirical" and self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"empirical weights must be as many as the values ({len(self.weights)} weights, "
                    f"{len(self.values)} values)"
                )
            if not sum(self.weights) > 0:
                raise ValueError("empirical weights must not all be zero")
        return self


MAX_CONCURRENCY = 1_000_000  # closed-loop clients (as many as requests could ever run at once)


class Arrival(_Strict):
    """When requests arrive: an open-loop process at a rate, or a closed loop of `concurrency` clients that each
    send their next request `think_time_s` after the previous one finished (as benchmark tools drive an engine
    with a fixed concurrency)."""

    process: Literal["poisson", "gamma", "constant", "burst", "closed"] = "poisson"
    rate: float | None = Field(
        None, ge=MIN_RATE, le=MAX_RATE, description="requests per second (not for burst or closed)"
    )
    cv: float = Field(
        1.0, ge=0.001, le=100, description="gamma: coefficient of variation of inter-arrival times"
    )
    concurrency: int | None = Field(
        None, gt=0, le=MAX_CONCURRENCY, description="closed: requests in flight (one per client)"
    )
    think_time_s: float = Field(
        0.0, ge=0, le=MAX_SECONDS, description="closed: pause between a request finishing and the next one"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.process == "closed":
            if self.concurrency is None:
                raise ValueError("process 'closed' needs a concurrency (requests in flight)")
            if self.rate is not None:
                raise ValueError(
                    "process 'closed' sets its own rate (each finished request is replaced); remove 'rate'"
                )
            return self
        if self.concurrency is not None or self.think_time_s != 0:
            raise ValueError(f"concurrency and think_time_s are for process 'closed', not '{self.process}'")
        if self.process != "burst" and self.rate is None:
            raise ValueError(f"process '{self.process}' needs a rate (requests per second)")
        return self


class PrefixSpec(_Strict):
    """Shared prompt prefixes and multi-turn conversations: the content prefix caching reuses (docs/design.md §3.2).

    Each conversation's first prompt starts, with probability `share`, with one of `groups` shared prefixes
    (picked uniformly; each prefix's length drawn once from `tokens`); `input_tokens` is then the new user text
    of each turn and `output_tokens` its answer. Turn k+1's prompt is turn k's prompt and answer followed by new
    user text, so the context grows. With `turns`, the arrival process draws the conversations' first turns at
    rate / (mean turns per conversation), so requests still arrive at `rate` on average, and each later turn
    arrives an exponential time of mean `turn_gap_s` after the previous turn arrived (open loop, like a trace:
    a turn that arrives before its previous answer is cached misses the part not yet cached)."""

    groups: int = Field(
        1, gt=0, le=1_000_000, description="distinct shared prefixes (system prompts, few-shot examples)"
    )
    share: float = Field(
        1.0, ge=0, le=1, description="share of conversations whose first prompt starts with a shared prefix"
    )
    tokens: LengthDist | None = Field(None, description="length of each shared prefix (one draw per prefix)")
    turns: LengthDist | None = Field(None, description="turns per conversation (default: one)")
    turn_gap_s: float = Field(
        0.0, ge=0, le=MAX_SECONDS, description="mean time from one turn's arrival to the next one's"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.share > 0 and self.tokens is None:
            raise ValueError("a shared prefix needs its length: give 'tokens' (or share: 0)")
        if self.turns is not None and self.turn_gap_s <= 0:
            raise ValueError("multi-turn conversations need turn_gap_s > 0 (the time between turns)")
        return self


class WorkloadSpec(_Strict):
    """Requests: from a generator (lengths + arrivals), a preset, or a trace file."""

    requests: int | None = Field(
        None, gt=0, le=MAX_REQUESTS, description="number of requests (a trace: at most this many)"
    )
    arrival: Arrival | None = None
    input_tokens: LengthDist | None = None
    output_tokens: LengthDist | None = None
    preset: str | None = Field(None, description="workload preset name (configs/workloads)")
    trace: str | None = Field(
        None, description="trace file: APEX JSONL, our JSONL, Mooncake JSONL, or Azure CSV"
    )
    trace_format: Literal["auto", "apex", "jsonl", "mooncake", "azure"] = "auto"
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds the workload's and the router's RNG streams")
    prefix: PrefixSpec | None = Field(
        None, description="shared prefixes and multi-turn conversations (generated workloads)"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.prefix is not None and self.trace is not None:
            raise ValueError(
                "'prefix' describes generated requests; a trace says what its requests share itself "
                "(session_id / prefix_id fields, or Mooncake hash_ids)"
            )
        closed = self.arrival is not None and self.arrival.process == "closed"
        if self.prefix is not None and self.prefix.turns is not None and closed:
            raise ValueError(
                "multi-turn conversations (prefix.turns) arrive open-loop; a closed loop would send "
                "turns before their previous answers"
            )
        if self.trace is None and self.preset is None:
            missing = [k for k in ("input_tokens", "output_tokens") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"without a trace or preset the workload needs {' and '.join(missing)}")
            if self.requests is None:
                raise ValueError("without a trace the workload needs 'requests' (how many)")
        return self


class Percentiles(_Strict):
    """A latency target at one or more statistics, in seconds."""

    mean: float | None = Field(None, gt=0, le=MAX_SECONDS)
    p50: float | None = Field(None, gt=0, le=MAX_SECONDS)
    p90: float | None = Field(None, gt=0, le=MAX_SECONDS)
    p99: float | None = Field(None, gt=0, le=MAX_SECONDS)


class SLO(_Strict):
    ttft_s: Percentiles | None = None
    tpot_s: Percentiles | None = None
    e2e_s: Percentiles | None = None


class Budget(_Strict):
    usd_per_hour: float | None = Field(None, gt=0, le=1e9)
    watts: float | None = Field(None, gt=0, le=1e10)
    num_gpus: int | None = Field(None, gt=0, le=MAX_CLUSTER_GPUS)
    joules_per_token: float | None = Field(None, gt=0, le=1e6)


Objective = Literal[
    "max_goodput", "min_cost", "min_energy", "min_latency", "max_throughput", "max_rate_per_gpu", "min_gpus"
]


class Goals(_Strict):
    objective: Objective = "max_goodput"
    slo: SLO = SLO()
    budget: Budget = Budget()
    rate: float | None = Field(
        None,
        ge=MIN_RATE,
        le=MAX_RATE,
        description="requests/s the plan must sustain within the SLOs (objective min_gpus or min_cost)",
    )


class ClusterShorthand(_Strict):
    """`{gpu: h100-sxm, nodes: 1, gpus_per_node: 8}`: one homogeneous node group."""

    gpu: str
    nodes: int = Field(1, gt=0, le=MAX_NODES)
    gpus_per_node: int = Field(8, gt=0, le=MAX_GPUS_PER_NODE)
    scale_up_domain: int | None = Field(None, gt=0, le=MAX_CLUSTER_GPUS)
    intra_node: str | None = None
    inter_node: str | None = "ib-ndr-400"


class ScenarioFile(_Strict):
    """The raw scenario as written (before catalog references are resolved)."""

    name: str | None = None
    model: str | dict
    cluster: str | dict
    dtype: DTypes = DTypes()
    engine: Engine = Engine()
    workload: WorkloadSpec
    plan: str | dict | None = None
    goals: Goals = Goals()
    calibration: str | None = Field(None, description="calibration file written by `apex calibrate`")
    sm_clock_mhz: (
        Annotated[int, Field(gt=0, le=100_000)]
        | dict[str, Annotated[int, Field(gt=0, le=100_000)]]
        | Literal["auto"]
        | None
    ) = Field(
        None,
        description="SM clock every GPU is locked to (nvidia-smi -lgc), MHz, or one per GPU type "
        "{h100-sxm: 1400}; 'auto': `apex plan` chooses a clock per replica template (docs/design.md §5.2); "
        "None: the boost clock (simulator/costmodel/clock.py)",
    )

    @field_validator("sm_clock_mhz", mode="before")
    @classmethod
    def _clock(cls, value):
        def mhz(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 100_000

        ok = value is None or value == "auto" or mhz(value)
        ok = ok or (isinstance(value, dict) and all(isinstance(k, str) and mhz(v) for k, v in value.items()))
        if not ok:
            raise ValueError(
                "expected an SM clock in MHz as an integer 1-100000 (e.g. 1380), one per GPU type "
                "({h100-sxm: 1380}) or 'auto'"
            )
        return value


@dataclass(frozen=True)
class Scenario:
    """A validated scenario with its catalog references resolved."""

    spec: ScenarioFile
    model: Model
    cluster: Cluster
    gpus: dict[str, GPU]
    plan: Plan | None
    file: str | None

    @property
    def name(self) -> str:
        if self.spec.name:
            return self.spec.name
        return Path(self.file).stem if self.file else self.model.name

    def with_plan(self, plan: Plan | str | dict) -> Scenario:
        """The same scenario with another plan (checked against model and cluster)."""
        checked = parse_plan(plan, self.model, self.cluster, file=self.file, field="plan")
        _check_group_clocks(checked, self.gpus, file=self.file, field="plan")
        return Scenario(self.spec, self.model, self.cluster, self.gpus, checked, self.file)


def _resolve_cluster(ref, *, file) -> Cluster:
    if isinstance(ref, str):
        return catalog.get_cluster(ref, file=file, field="cluster")
    if "node_groups" in ref:
        cluster = catalog.parse_entry("cluster", ref, file=file, field="cluster")
        if cluster.num_gpus > MAX_CLUSTER_GPUS:
            raise InputError(
                f"the node groups hold {cluster.num_gpus:,} GPUs; allowed: at most {MAX_CLUSTER_GPUS:,}",
                file=file,
                field="cluster.node_groups",
            )
        return cluster
    try:
        short = ClusterShorthand.model_validate(ref)
    except ValidationError as exc:
        raise pydantic_error_to_input_error(
            exc, file=file, prefix="cluster", model=ClusterShorthand
        ) from None
    catalog.get_gpu(short.gpu, file=file, field="cluster.gpu")
    group = NodeGroup(
        gpu=short.gpu,
        nodes=short.nodes,
        gpus_per_node=short.gpus_per_node,
        scale_up_domain=short.scale_up_domain,
        intra_node=short.intra_node,
        inter_node=short.inter_node,
    )
    return Cluster(name=f"{short.nodes}x{short.gpus_per_node}-{short.gpu}", node_groups=[group])


def _resolve_fabrics(cluster: Cluster, gpus: dict[str, GPU], *, file) -> None:
    for gi, group in enumerate(cluster.node_groups):
        if group.intra_node is None:
            catalog.get_fabric(
                gpus[group.gpu].scale_up_fabric, file=file, field=f"cluster.node_groups[{gi}].gpu"
            )
        for key in ("intra_node", "inter_node"):
            ref = getattr(group, key)
            if isinstance(ref, str):
                catalog.get_fabric(ref, file=file, field=f"cluster.node_groups[{gi}].{key}")


def _clocked_gpus(spec: ScenarioFile, gpus: dict[str, GPU], *, file) -> dict[str, GPU]:
    """The scenario's GPUs at its `sm_clock_mhz` (InputError naming the field for a GPU type the cluster lacks or
    a clock outside a GPU's range)."""
    setting = spec.sm_clock_mhz
    if setting is None or setting == "auto":  # auto: the plan's replica groups carry the clocks
        return gpus
    per_type = setting if isinstance(setting, dict) else dict.fromkeys(gpus, setting)
    out = dict(gpus)
    for name, mhz in per_type.items():
        field = f"sm_clock_mhz.{name}" if isinstance(setting, dict) else "sm_clock_mhz"
        if name not in gpus:
            raise InputError(
                f"{name!r} is not a GPU type of the cluster (its types: {', '.join(sorted(gpus))})",
                file=file,
                field=field,
            )
        try:
            out[name] = gpus[name].at_clock(mhz)
        except ValueError as exc:
            raise InputError(str(exc), file=file, field=field) from None
    return out


def _check_group_clocks(plan: Plan | None, gpus: dict[str, GPU], *, file, field: str) -> None:
    """Every replica group's `sm_clock_mhz` within the range of each GPU type its stages use."""
    if plan is None:
        return
    default = next(iter(gpus)) if len(gpus) == 1 else None
    for gi, group in enumerate(plan.replicas):
        if group.sm_clock_mhz is None:
            continue
        for name in {stage.gpu or default for stage in group.stages}:
            try:
                gpus[name].at_clock(group.sm_clock_mhz)
            except ValueError as exc:
                raise InputError(str(exc), file=file, field=f"{field}.replicas[{gi}].sm_clock_mhz") from None


def _resolve_calibration(ref: str, *, file: str | None) -> str:
    """The absolute path of a calibration file named relative to the scenario, checked to be one."""
    path = Path(ref)
    if file and not path.is_absolute():
        path = Path(file).parent / path
    if not path.is_file():
        raise InputError(
            f"calibration file {str(path)!r} not found; expected a file written by `apex calibrate --out`",
            file=file,
            field="calibration",
        )
    data = read_yaml(path)
    if not isinstance(data, dict) or "gpu" not in data or not isinstance(data.get("overrides"), dict):
        raise InputError(
            f"{path} is not a calibration file written by `apex calibrate` (expected keys gpu, overrides)",
            file=file,
            field="calibration",
        )
    return str(path.resolve())


def load_scenario(
    source: str | Path | dict | Scenario, *, plan_override: str | dict | None = None
) -> Scenario:
    """Read, validate and resolve a scenario from a YAML path, a dict, or pass a Scenario through."""
    if isinstance(source, Scenario):
        return source.with_plan(plan_override) if plan_override is not None else source
    file = None
    if isinstance(source, (str, Path)):
        file = str(source)
        data = read_yaml(source)
    else:
        data = source
    if not isinstance(data, dict):
        raise InputError(
            f"a scenario must be a mapping of fields (model, cluster, workload, ...), "
            f"got {type(data).__name__}",
            file=file,
        )
    if "base" in data and "model" not in data:
        raise InputError(
            "this looks like a study file (it has base:, no model:); run it with `apex study`",
            file=file,
            field="base",
        )
    try:
        spec = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise pydantic_error_to_input_error(exc, file=file, model=ScenarioFile) from None
    except InputError as exc:  # raised by a validator with its field (the dtype lists)
        raise exc.within(file=file) from None
    if isinstance(spec.model, str):
        model = catalog.get_model(spec.model, file=file, field="model")
    else:
        model = catalog.parse_entry("model", spec.model, file=file, field="model")
    cluster = _resolve_cluster(spec.cluster, file=file)
    gpus = {}
    for gi, group in enumerate(cluster.node_groups):
        gpus[group.gpu] = catalog.get_gpu(group.gpu, file=file, field=f"cluster.node_groups[{gi}].gpu")
    _resolve_fabrics(cluster, gpus, file=file)
    gpus = _clocked_gpus(spec, gpus, file=file)
    if spec.workload.preset is not None:
        catalog.check_preset(spec.workload.preset, file=file, field="workload.preset")
    if spec.calibration is not None:
        spec = spec.model_copy(update={"calibration": _resolve_calibration(spec.calibration, file=file)})
    plan_spec = plan_override if plan_override is not None else spec.plan
    plan = None
    if plan_spec is not None:
        field = "--plan" if plan_override is not None else "plan"
        plan = parse_plan(
            plan_spec, model, cluster, file=file if plan_override is None else None, field=field
        )
        _check_group_clocks(plan, gpus, file=file if plan_override is None else None, field=field)
    return Scenario(spec=spec, model=model, cluster=cluster, gpus=gpus, plan=plan, file=file)
