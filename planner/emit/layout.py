"""Where each replica of a placed plan runs, engine-independently: nodes, GPUs, ports, engine knobs.

`deployment_layout(scenario, plan, placement)` turns the plan and its CP-SAT placement (replica id → stage →
[(node group, node, GPU index)]) into `Layout`: one `ReplicaLayout` per replica, with the nodes it spans in
pipeline order and the GPU indices it uses on each. Every engine emitter reads this one description, so the
vLLM, SGLang and TensorRT-LLM launches of a plan put the same replica on the same GPUs and ports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.errors import InputError
from simulator.plan import Plan, Stage
from simulator.scenario import Scenario, engine_setting

ROUTER_PORT = 8000  # the single entry point (router / P/D proxy / Dynamo frontend)
FIRST_REPLICA_PORT = 8001  # replica k of the plan listens on FIRST_REPLICA_PORT + k on its head node


def host_var(node_group: str, node: int) -> str:
    """The hosts.env variable holding a node's address, e.g. APEX_HOST_h100_sxm_0."""
    return f"APEX_HOST_{re.sub(r'[^A-Za-z0-9]', '_', node_group)}_{node}"


@dataclass(frozen=True)
class NodeSlot:
    """The GPUs one replica uses on one node (indices in pipeline order)."""

    node_group: str
    node: int
    gpus: tuple[int, ...]

    @property
    def host(self) -> str:
        return "${" + host_var(self.node_group, self.node) + "}"

    @property
    def label(self) -> str:
        return f"{self.node_group}/node{self.node}"


@dataclass(frozen=True)
class ReplicaLayout:
    """One replica: its group, role, stages, the nodes it spans and the port of its server."""

    group: int
    index: int
    role: str
    stages: tuple[Stage, ...]
    nodes: tuple[NodeSlot, ...]
    stage_nodes: tuple[tuple[int, ...], ...]  # per stage: indices into `nodes`
    port: int

    @property
    def rid(self) -> str:
        return f"g{self.group}r{self.index}"

    @property
    def name(self) -> str:
        return f"g{self.group}-{self.role}-r{self.index}"

    @property
    def num_gpus(self) -> int:
        return sum(s.num_gpus for s in self.stages)

    @property
    def head(self) -> NodeSlot:
        return self.nodes[0]

    @property
    def url(self) -> str:
        return f"http://{self.head.host}:{self.port}"


@dataclass(frozen=True)
class Knobs:
    """The engine settings the plan was simulated with (the scenario's engine, its kind's defaults filled in)."""

    kind: str
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool
    gpu_memory_fraction: float
    block_size: int
    cuda_graphs: bool
    prefix_caching: bool = False
    speculation: Speculation | None = None


@dataclass(frozen=True)
class Speculation:
    """The speculative decoding the plan was simulated with, as the engines configure it: the method, the draft
    tokens per step and the checkpoint that drafts (None for mtp, which uses the target's own module)."""

    method: str  # draft | eagle | mtp (simulator.scenario.Speculative)
    num_tokens: int
    draft_model: str | None

    @property
    def eagle3(self) -> bool:
        """Whether the EAGLE head is an EAGLE-3 checkpoint, by the rule vLLM 0.11 itself applies to the name
        (vllm/config/speculative.py:320-322: "eagle3" in the lower-cased model name)."""
        return self.method == "eagle" and "eagle3" in (self.draft_model or "").lower()


# Methods whose drafts come from a separate checkpoint the engines must be told (vLLM `model`, SGLang
# --speculative-draft-model-path, TensorRT-LLM speculative_model_dir).
NEEDS_DRAFT_MODEL = ("draft", "eagle")


@dataclass(frozen=True)
class Layout:
    """Everything an engine emitter needs: the scenario, the plan, the replicas and the served model."""

    scenario: Scenario
    plan: Plan
    replicas: tuple[ReplicaLayout, ...]
    model_id: str
    knobs: Knobs
    max_model_len: int

    @property
    def disaggregated(self) -> bool:
        return any(r.role != "colocated" for r in self.replicas)

    @property
    def router_host(self) -> str:
        return self.replicas[0].head.host

    @property
    def router_url(self) -> str:
        return f"http://{self.router_host}:{ROUTER_PORT}"

    def groups(self) -> list[list[ReplicaLayout]]:
        out: dict[int, list[ReplicaLayout]] = {}
        for r in self.replicas:
            out.setdefault(r.group, []).append(r)
        return [out[g] for g in sorted(out)]

    def node_slots(self) -> list[NodeSlot]:
        """Every node the plan uses, once, in first-use order."""
        seen: dict[tuple[str, int], NodeSlot] = {}
        for r in self.replicas:
            for n in r.nodes:
                seen.setdefault((n.node_group, n.node), n)
        return list(seen.values())


def model_id_of(scenario: Scenario, override: str | None) -> str:
    """The HuggingFace repository (or local path) to serve: --model-id, else the catalog entry's HF source."""
    if override:
        return override
    match = re.match(r"https://huggingface\.co/([^/\s]+/[^/\s]+)", scenario.model.source or "")
    if match:
        return match.group(1)
    raise InputError(
        f"cannot tell which checkpoint serves model {scenario.model.name!r} (its source is not a HuggingFace "
        "URL); pass --model-id with a HuggingFace repository or a local path",
        field="--model-id",
    )


def speculation_of(scenario: Scenario) -> Speculation | None:
    """The scenario's speculative decoding for the launch files (None when off). InputError naming
    `engine.speculative.draft_model` when the method drafts from a separate checkpoint and none is given: the
    engines cannot start without it, and APEX writes no placeholder for the user to fill."""
    spec = scenario.spec.engine.speculation
    if spec is None:
        return None
    if spec.method in NEEDS_DRAFT_MODEL and not spec.draft_model:
        what = "draft model" if spec.method == "draft" else "EAGLE head"
        raise InputError(
            f"speculative method {spec.method} drafts with a separate checkpoint the launch files must name; "
            f"give the {what} as a HuggingFace repository or local path (e.g. draft_model: "
            f"{'meta-llama/Llama-3.2-1B-Instruct' if spec.method == 'draft' else 'yuhuili/EAGLE3-LLaMA3.1-Instruct-8B'})",
            file=scenario.file,
            field="engine.speculative.draft_model",
        )
    return Speculation(spec.method, spec.num_tokens, spec.draft_model)


def knobs_of(scenario: Scenario) -> Knobs:
    engine = scenario.spec.engine
    return Knobs(
        kind=engine.kind,
        max_num_seqs=int(engine_setting(engine, "max_num_seqs")),
        max_num_batched_tokens=int(engine_setting(engine, "max_num_batched_tokens")),
        enable_chunked_prefill=bool(engine_setting(engine, "enable_chunked_prefill")),
        gpu_memory_fraction=float(engine_setting(engine, "gpu_memory_fraction")),
        block_size=engine.block_size,
        cuda_graphs=engine.cuda_graphs,
        prefix_caching=bool(engine_setting(engine, "prefix_caching")),
        speculation=speculation_of(scenario),
    )


def _replica_nodes(stage_gpus: list[list[tuple[str, int, int]]]) -> tuple[tuple[NodeSlot, ...], tuple]:
    order: dict[tuple[str, int], list[int]] = {}
    stage_nodes = []
    for gpus in stage_gpus:
        idx = []
        for group, node, gpu in gpus:
            key = (group, node)
            if key not in order:
                order[key] = []
            order[key].append(gpu)
            pos = list(order).index(key)
            if pos not in idx:
                idx.append(pos)
        stage_nodes.append(tuple(idx))
    nodes = tuple(NodeSlot(g, n, tuple(gpus)) for (g, n), gpus in order.items())
    return nodes, tuple(stage_nodes)


def deployment_layout(
    scenario: Scenario, plan: Plan, placement, *, model_id: str, max_model_len: int
) -> Layout:
    """The layout of `plan` placed by `placement` (a planner.placement_step.PlanPlacement)."""
    replicas = []
    k = 0
    for gi, group in enumerate(plan.replicas):
        for r in range(group.count):
            rid = f"g{gi}r{r}"
            if rid not in placement.gpus:
                raise InputError(f"the placement has no replica {rid}", field="placement")
            nodes, stage_nodes = _replica_nodes(placement.gpus[rid])
            replicas.append(
                ReplicaLayout(
                    group=gi,
                    index=r,
                    role=group.role,
                    stages=tuple(group.stages),
                    nodes=nodes,
                    stage_nodes=stage_nodes,
                    port=FIRST_REPLICA_PORT + k,
                )
            )
            k += 1
    return Layout(
        scenario=scenario,
        plan=plan,
        replicas=tuple(replicas),
        model_id=model_id,
        knobs=knobs_of(scenario),
        max_model_len=max_model_len,
    )
