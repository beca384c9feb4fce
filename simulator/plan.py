"""The parallel execution plan (docs/design.md §2): replica groups of pipelines of stages, each with per-cell parallelism.

`parse_plan(spec, model, cluster)` accepts the shorthand `tp=4,pp=2,dp=2,ep=8` or the full form, and
`check_plan` verifies it against the model and the cluster. Layer ranges are half-open `[start, stop)`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.errors import InputError, pydantic_error_to_input_error
from simulator.hardware import Cluster
from simulator.model import Model


class _Strict(BaseModel):
    # strict: tp: "4" or true is an error, not a coercion
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class AttentionSplit(_Strict):
    """How a stage's GPUs split attention: `dp` data-parallel groups of `tp` tensor-parallel GPUs."""

    tp: int = Field(1, gt=0)
    dp: int = Field(1, gt=0)


class FFNSplit(_Strict):
    """How a stage's GPUs split the FFN / MoE: `ep` expert-parallel groups of `tp` tensor-parallel GPUs."""

    tp: int = Field(1, gt=0)
    ep: int = Field(1, gt=0)


class Stage(_Strict):
    """A contiguous layer range `[start, stop)` on `num_gpus` GPUs of one type."""

    layers: tuple[int, int] = Field(strict=False, description="[start, stop); a YAML list is accepted")
    gpu: str | None = Field(None, description="GPU catalog name; default: the cluster's only GPU type")
    tp: int | None = Field(None, gt=0, description="shorthand: attention tp = ffn tp = tp")
    ep: int | None = Field(None, gt=0, description="shorthand: experts over ep GPUs")
    attention: AttentionSplit | None = None
    ffn: FFNSplit | None = None

    @model_validator(mode="after")
    def _fill(self):
        start, stop = self.layers
        if start < 0 or stop <= start:
            raise ValueError(f"layers must be [start, stop) with 0 <= start < stop, got {list(self.layers)}")
        tp, ep = self.tp or 1, self.ep or 1
        if self.attention is None and self.ffn is None:
            gpus = max(tp, ep)
            if gpus % tp or gpus % ep:
                raise ValueError(f"tp ({tp}) and ep ({ep}) must divide one another")
            object.__setattr__(self, "attention", AttentionSplit(tp=tp, dp=gpus // tp))
            object.__setattr__(self, "ffn", FFNSplit(tp=gpus // ep, ep=ep))
        elif self.attention is None or self.ffn is None:
            gpus = (self.attention.tp * self.attention.dp) if self.attention else (self.ffn.tp * self.ffn.ep)
            if self.attention is None:
                object.__setattr__(self, "attention", AttentionSplit(tp=gpus))
            else:
                object.__setattr__(self, "ffn", FFNSplit(tp=gpus))
        if self.attention.tp * self.attention.dp != self.ffn.tp * self.ffn.ep:
            raise ValueError(
                f"attention uses {self.attention.tp * self.attention.dp} GPUs (tp x dp) but ffn uses "
                f"{self.ffn.tp * self.ffn.ep} (tp x ep); both cells must split the same GPUs"
            )
        return self

    @property
    def num_gpus(self) -> int:
        return self.attention.tp * self.attention.dp

    @property
    def num_layers(self) -> int:
        return self.layers[1] - self.layers[0]


class ReplicaGroup(_Strict):
    """`count` identical replicas, each a pipeline of `stages`."""

    count: int = Field(1, gt=0, le=1_000_000)
    role: Literal["colocated", "prefill", "decode"] = "colocated"
    stages: list[Stage] = Field(min_length=1)
    sm_clock_mhz: int | None = Field(
        None,
        gt=0,
        le=100_000,
        description="SM clock its GPUs are locked to (nvidia-smi -lgc), MHz; None: the scenario's clock "
        "(sm_clock_mhz), else the boost clock. Checked against each GPU's range when the scenario loads",
    )

    @property
    def clock_label(self) -> str:
        """` 1395MHz` when the group's clock is locked, else empty."""
        return f" {self.sm_clock_mhz}MHz" if self.sm_clock_mhz is not None else ""

    @property
    def gpus_per_replica(self) -> int:
        return sum(s.num_gpus for s in self.stages)


class Plan(_Strict):
    """A parallel execution plan: one or more replica groups."""

    replicas: list[ReplicaGroup] = Field(min_length=1)

    @property
    def num_gpus(self) -> int:
        return sum(g.count * g.gpus_per_replica for g in self.replicas)

    def gpus_by_type(self, default_gpu: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for group in self.replicas:
            for stage in group.stages:
                name = stage.gpu or default_gpu
                counts[name] = counts.get(name, 0) + group.count * stage.num_gpus
        return counts

    def label(self) -> str:
        """A compact human-readable signature, e.g. `2x[tp4|tp4]` or `1x[tp8] + 1x[tp4 ep8]`."""
        parts = []
        for g in self.replicas:
            stages = "|".join(stage_label(s) for s in g.stages)
            role = "" if g.role == "colocated" else f"{g.role}:"
            parts.append(f"{role}{g.count}x[{stages}]{g.clock_label}")
        return " + ".join(parts)


def stage_label(s: Stage) -> str:
    """A stage's parallelism in a few characters, e.g. `tp2 adp4 ep8 ftp1 @h200-sxm`."""
    text = f"tp{s.attention.tp}"
    if s.attention.dp > 1:
        text += f" adp{s.attention.dp}"
    if s.ffn.ep > 1:
        text += f" ep{s.ffn.ep}"
    if s.ffn.tp != s.attention.tp:
        text += f" ftp{s.ffn.tp}"
    if s.gpu:
        text += f" @{s.gpu}"
    return text


def even_layer_split(num_layers: int, pp: int) -> list[tuple[int, int]]:
    """Split `num_layers` into `pp` contiguous ranges whose sizes differ by at most one (earlier ones larger)."""
    base, extra = divmod(num_layers, pp)
    bounds, start = [], 0
    for i in range(pp):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


SHORTHAND_KEYS = ("tp", "pp", "dp", "ep")


def parse_shorthand(text: str, model: Model, *, file: str | None = None, field: str = "plan") -> Plan:
    """`tp=4,pp=2,dp=2,ep=8` → a homogeneous Plan (dp = replicas, pp = even stages)."""
    values = {"tp": 1, "pp": 1, "dp": 1, "ep": 1}
    given: set[str] = set()
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep or key not in values:
            raise InputError(
                f"bad plan shorthand {text!r}: expected comma-separated key=value with keys tp, pp, dp, ep "
                f"(e.g. 'tp=4,pp=2,dp=2'), got {item!r}",
                file=file,
                field=field,
            )
        if key in given:
            raise InputError(
                f"bad plan shorthand {text!r}: {key} is given twice; give each of tp, pp, dp, ep at most once",
                file=file,
                field=field,
            )
        given.add(key)
        try:
            values[key] = int(raw)
        except ValueError:
            raise InputError(
                f"bad plan shorthand {text!r}: {key} must be a positive integer, got {raw!r}",
                file=file,
                field=field,
            ) from None
        if not 0 < values[key] <= 1_000_000:
            raise InputError(
                f"bad plan shorthand {text!r}: {key} must be a positive integer (at most 1,000,000), got {raw}",
                file=file,
                field=field,
            )
    if values["pp"] > model.num_layers:
        raise InputError(
            f"pp={values['pp']} exceeds the model's {model.num_layers} layers", file=file, field=field
        )
    stages = [
        dict(layers=r, tp=values["tp"], ep=values["ep"])
        for r in even_layer_split(model.num_layers, values["pp"])
    ]
    try:
        return Plan(replicas=[ReplicaGroup(count=values["dp"], stages=[Stage(**s) for s in stages])])
    except ValidationError as exc:
        raise pydantic_error_to_input_error(exc, file=file, prefix=field) from None


def parse_plan(spec, model: Model, cluster: Cluster, *, file: str | None = None, field: str = "plan") -> Plan:
    """Parse the shorthand string or the full mapping, then check it against the model and cluster."""
    if isinstance(spec, Plan):
        plan = spec
    elif isinstance(spec, str):
        plan = parse_shorthand(spec, model, file=file, field=field)
    elif isinstance(spec, dict):
        try:
            plan = Plan.model_validate(spec)
        except ValidationError as exc:
            raise pydantic_error_to_input_error(exc, file=file, prefix=field, model=Plan) from None
    else:
        raise InputError(
            f"expected a shorthand like 'tp=4,pp=2' or a mapping with 'replicas', got {spec!r}",
            file=file,
            field=field,
        )
    check_plan(plan, model, cluster, file=file, field=field)
    return plan


def check_plan(
    plan: Plan, model: Model, cluster: Cluster, *, file: str | None = None, field: str = "plan"
) -> None:
    """Raise InputError unless the plan divides the model cleanly, fits the cluster's GPUs and can serve
    requests (arrivals need colocated or prefill replicas; prefill replicas need decode replicas)."""
    roles = {group.role for group in plan.replicas}
    if roles == {"decode"}:
        raise InputError(
            "the plan has only decode replicas: arrivals need colocated or prefill replicas "
            "(add a replica group with role: prefill or colocated)",
            file=file,
            field=f"{field}.replicas",
        )
    if "prefill" in roles and "decode" not in roles:
        raise InputError(
            "the plan has prefill replicas but no decode replicas to hand their requests to "
            "(add a replica group with role: decode)",
            file=file,
            field=f"{field}.replicas",
        )
    types = cluster.gpus_by_type()
    default_gpu = next(iter(types)) if len(types) == 1 else None
    for gi, group in enumerate(plan.replicas):
        where = f"{field}.replicas[{gi}]"
        expected_start = 0
        for si, stage in enumerate(group.stages):
            sw = f"{where}.stages[{si}]"
            start, stop = stage.layers
            if start != expected_start:
                raise InputError(
                    f"layers {list(stage.layers)} leave a gap or overlap: expected the stage to start "
                    f"at layer {expected_start} (stages must cover layers contiguously)",
                    file=file,
                    field=f"{sw}.layers",
                )
            if stop > model.num_layers:
                raise InputError(
                    f"layers {list(stage.layers)} go past the model's {model.num_layers} layers",
                    file=file,
                    field=f"{sw}.layers",
                )
            expected_start = stop
            if stage.gpu is None and default_gpu is None:
                raise InputError(
                    f"the cluster has several GPU types ({', '.join(types)}); name the stage's gpu",
                    file=file,
                    field=f"{sw}.gpu",
                )
            gpu = stage.gpu or default_gpu
            if gpu not in types:
                raise InputError(
                    f"GPU type {gpu!r} is not in the cluster (it has: {', '.join(types)})",
                    file=file,
                    field=f"{sw}.gpu",
                )
            _check_divisibility(stage, model, start, stop, file=file, field=sw)
        if expected_start != model.num_layers:
            raise InputError(
                f"stages cover layers [0, {expected_start}) but the model has {model.num_layers} layers; "
                "every layer must be covered exactly once",
                file=file,
                field=f"{where}.stages",
            )
    needed = plan.gpus_by_type(default_gpu or "")
    for gpu, count in needed.items():
        if count > types.get(gpu, 0):
            raise InputError(
                f"the plan needs {count} {gpu} GPUs but the cluster has {types.get(gpu, 0)}",
                file=file,
                field=field,
            )


def _check_divisibility(stage: Stage, model: Model, start: int, stop: int, *, file, field) -> None:
    tp = stage.attention.tp
    if model.num_heads % tp:
        raise InputError(
            f"attention tp={tp} must divide the model's {model.num_heads} attention heads",
            file=file,
            field=f"{field}.attention.tp" if stage.tp is None else f"{field}.tp",
        )
    if model.attention != "mla" and tp > model.num_kv_heads and tp % model.num_kv_heads:
        raise InputError(
            f"attention tp={tp} must divide or be a multiple of the {model.num_kv_heads} KV heads",
            file=file,
            field=f"{field}.tp",
        )
    ep, ftp = stage.ffn.ep, stage.ffn.tp
    has_moe = model.num_moe_layers(start, stop) > 0
    if ep > 1 and not has_moe:
        raise InputError(
            f"ep={ep} needs MoE layers, but {model.name} has none in layers [{start}, {stop})",
            file=file,
            field=f"{field}.ep" if stage.tp is not None or stage.ep else f"{field}.ffn.ep",
        )
    if has_moe and model.moe.num_experts % ep:
        raise InputError(
            f"ep={ep} must divide the model's {model.moe.num_experts} experts", file=file, field=f"{field}.ep"
        )
    sizes = [model.ffn_size] if model.num_moe_layers(start, stop) < stop - start else []
    if has_moe:
        sizes.append(model.moe.expert_ffn_size)
    for size in sizes:
        if size % ftp:
            raise InputError(
                f"ffn tp={ftp} must divide the FFN intermediate size {size}",
                file=file,
                field=f"{field}.ffn.tp" if stage.tp is None else f"{field}.tp",
            )
