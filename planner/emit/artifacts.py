"""What an emitter produces (files, the commands in them, YAML documents to check) and the shared rules every
engine applies to a replica before expressing it (`Unexpressible` when it cannot)."""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.emit.commands import Command, render
from planner.emit.layout import Layout, ReplicaLayout
from simulator.plan import Stage


class Unexpressible(Exception):
    """The plan uses something the engine's documented options cannot say; the message names the limitation."""

    def __init__(self, engine: str, reason: str):
        self.engine = engine
        self.reason = reason
        super().__init__(f"{engine}: {reason}")


@dataclass(frozen=True)
class EmittedFile:
    path: str  # relative to the output directory
    text: str
    executable: bool = False


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file an engine reads, to be checked against the `schema` section of `tool`'s flag table."""

    tool: str
    schema: str
    path: str
    data: dict


@dataclass
class EngineOutput:
    """Everything one emitter writes for a plan."""

    engine: str
    version: str
    files: list[EmittedFile] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    documents: list[YamlDocument] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entry: str | None = None  # the router / proxy URL clients should use, when the engine provides one
    servers: dict[str, Command] = field(default_factory=dict)  # replica id → its server command (single-node)
    configs: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # replica id → (file name, text) it reads


def script(title: list[str], body: list[str]) -> str:
    """A bash script: comment header, strict mode, hosts.env, then the body."""
    lines = ["#!/usr/bin/env bash", *(f"# {t}" if t else "#" for t in title)]
    lines += [
        "# Written by `apex emit`; every flag below is checked against the documented-flag table named above.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        ". ../hosts.env",
        "",
    ]
    return "\n".join(lines) + "\n" + "".join(body)


def add_script(out: EngineOutput, path: str, title: list[str], commands: list[tuple[Command, str, str]]):
    """Write a script running `commands` ((command, prefix, suffix) each) and record the commands."""
    body = []
    for cmd, prefix, suffix in commands:
        body.append(render(cmd, prefix=prefix, suffix=suffix))
        out.commands.append(cmd)
    out.files.append(EmittedFile(path, script(title, body), executable=True))


def split_of(stage: Stage) -> tuple[int, int, int, int]:
    return (stage.attention.tp, stage.attention.dp, stage.ffn.tp, stage.ffn.ep)


def uniform_split(engine: str, replica: ReplicaLayout) -> Stage:
    """The replica's first stage, after checking every stage splits its GPUs the same way (one tp/ep per engine)."""
    first = replica.stages[0]
    for k, s in enumerate(replica.stages[1:], start=1):
        if split_of(s) != split_of(first):
            raise Unexpressible(
                engine,
                f"replica group g{replica.group} splits its pipeline stages differently (stage 0: attention "
                f"tp{first.attention.tp} dp{first.attention.dp}, ffn tp{first.ffn.tp} ep{first.ffn.ep}; stage {k}: "
                f"attention tp{s.attention.tp} dp{s.attention.dp}, ffn tp{s.ffn.tp} ep{s.ffn.ep}); the engine "
                "takes one parallel layout for every pipeline stage",
            )
    return first


def layer_counts(replica: ReplicaLayout) -> list[int]:
    return [s.num_layers for s in replica.stages]


def is_even_split(replica: ReplicaLayout) -> bool:
    counts = layer_counts(replica)
    return len(set(counts)) == 1


def gpu_types(layout: Layout, replica: ReplicaLayout) -> list[str]:
    default = next(iter(layout.scenario.gpus))
    return sorted({s.gpu or default for s in replica.stages})


def mixed_gpu_warning(engine: str, layout: Layout, replica: ReplicaLayout) -> str | None:
    types = gpu_types(layout, replica)
    if len(types) < 2:
        return None
    return (
        f"{engine}: replica {replica.rid} runs its pipeline on several GPU types ({', '.join(types)}); the engine "
        "documents no per-stage GPU setting, so one launch covers all stages and memory fractions apply to every GPU"
    )


def quantized_checkpoint_warning(engine: str, weights: str) -> str:
    return (
        f"{engine}: the plan assumes {weights} weights; point the model argument at a checkpoint already quantized "
        f"to {weights} (the engine reads the method from the checkpoint's config) — APEX does not choose it"
    )


TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}


def dtype_options(
    engine: str, dtypes, kv_fp8_value: str, kv_choices: str, engine_version: str, warnings: list[str]
) -> list[tuple[str, str | None]]:
    """`--dtype`, `--quantization` and `--kv-cache-dtype` for vLLM-style servers (vLLM and SGLang share these
    flags): fp8 weights are quantized online, other non-16-bit weights need a pre-quantized checkpoint (a
    warning), and a KV cache that is neither the model dtype nor fp8 cannot be expressed."""
    opts: list[tuple[str, str | None]] = []
    if dtypes.activations in TORCH_DTYPE:
        opts.append(("--dtype", TORCH_DTYPE[dtypes.activations]))
    if dtypes.weights == "fp8":
        opts.append(("--quantization", "fp8"))
    elif dtypes.weights not in ("bf16", "fp16"):
        warnings.append(quantized_checkpoint_warning(engine, dtypes.weights))
    if dtypes.kv_cache == "fp8":
        opts.append(("--kv-cache-dtype", kv_fp8_value))
    elif dtypes.kv_cache != dtypes.activations:
        raise Unexpressible(
            engine,
            f"the plan keeps the KV cache in {dtypes.kv_cache}; {engine_version} stores it in the model dtype or "
            f"fp8 (--kv-cache-dtype: {kv_choices})",
        )
    return opts
