"""Concrete StageCost / ReplicaCost: `build_replica_cost(model, group, gpus, cluster, dtypes, engine)`.

Fast path: `iteration_time` caches the static ops (GEMMs, elementwise, collectives: functions of num_tokens and
num_seqs only) in a dict keyed by (num_tokens, num_seqs), then adds the attention terms computed from the
BatchShape aggregates and the per-layer / per-iteration fixed costs. `breakdown` returns the same sum op by op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simulator.costmodel import comm, host
from simulator.costmodel.build import StageOps, build_stage_ops
from simulator.costmodel.calibration import Calibration, apply_calibration, load_calibration
from simulator.costmodel.energy import gpu_energy, usd_per_hour
from simulator.costmodel.interface import BatchShape, OpCost
from simulator.costmodel.memory import StageMemory, stage_memory
from simulator.costmodel.ops import Load, price_attention, price_op
from simulator.dtypes import bytes_per_element, compute_dtype
from simulator.errors import InputError
from simulator.hardware import GPU, Cluster, Fabric, NodeGroup
from simulator.model import Model
from simulator.plan import ReplicaGroup, Stage
from simulator.scenario import DTypes, Engine


@dataclass
class StageCostModel:
    """Prices iterations of one stage on its GPUs (implements interface.StageCost)."""

    gpu: GPU
    ops: StageOps
    num_gpus: int
    first: bool
    last: bool
    cuda_graphs: bool
    memory: StageMemory
    compute_dtype: str
    useful_flops_per_token: float  # 2 x active weights of the stage (all GPUs)
    attn_flops_per_pair: float  # model attention FLOPs per query-key pair over the stage's layers
    lm_flops_per_seq: float
    engine_kind: str = "vllm-v1"
    _cache: dict = field(default_factory=dict, repr=False)
    _last_attention: tuple = field(default=(None, None), repr=False)  # (shape, its attention OpCosts)

    # ---- static part (cached by num_tokens, num_seqs) -------------------------------------------------------
    def _static(self, num_tokens: int, num_seqs: int) -> tuple[float, float, float, Load]:
        key = (num_tokens, num_seqs)
        hit = self._cache.get(key)
        if hit is None:
            load = Load.of(num_tokens, num_seqs, self.ops.split)
            costs = [price_op(op, load, self.gpu) for op in self.ops.static]
            hit = (
                sum(c.time_s for c in costs),
                sum(c.flops for c in costs),
                sum(c.bytes for c in costs if c.bound != "network"),
                load,
            )
            self._cache[key] = hit
        return hit

    def _attention(self, shape: BatchShape, load: Load) -> list[OpCost]:
        """Attention costs of `shape`; the simulator asks for time, energy and FLOPs of the same shape in a
        row, so the last answer is kept."""
        last_shape, costs = self._last_attention
        if last_shape is not shape:
            costs = price_attention(self.ops.prefill, self.ops.decode, shape, load.dp_fraction, self.gpu)
            self._last_attention = (shape, costs)
        return costs

    def _overhead(self, shape: BatchShape) -> float:
        eff = self.gpu.efficiency
        per_layer = (
            eff.layer_overhead_graph_s
            if (self.cuda_graphs and not shape.num_prefill_tokens)
            else eff.layer_overhead_eager_s
        )
        engine = host.iteration_seconds(self.engine_kind, shape.num_seqs) if self.first else 0.0
        return self.ops.num_layers * per_layer + engine

    def iteration_time(self, shape: BatchShape) -> float:
        if shape.num_tokens == 0:
            return 0.0
        t, _, _, load = self._static(shape.num_tokens, shape.num_seqs)
        for c in self._attention(shape, load):
            t += c.time_s
        return t + self._overhead(shape)

    def breakdown(self, shape: BatchShape) -> list[OpCost]:
        if shape.num_tokens == 0:
            return []
        load = Load.of(shape.num_tokens, shape.num_seqs, self.ops.split)
        out = [price_op(op, load, self.gpu) for op in self.ops.static]
        out += price_attention(self.ops.prefill, self.ops.decode, shape, load.dp_fraction, self.gpu)
        out.append(OpCost("fixed_overhead", self._overhead(shape), 0.0, 0.0, "overhead"))
        return out

    def gpu_work(self, shape: BatchShape) -> tuple[float, float]:
        """(FLOPs, HBM bytes) of the busiest GPU in this iteration."""
        if shape.num_tokens == 0:
            return 0.0, 0.0
        _, f, b, load = self._static(shape.num_tokens, shape.num_seqs)
        for c in self._attention(shape, load):
            f += c.flops
            b += c.bytes
        return f, b

    def energy(self, shape: BatchShape, time_s: float) -> float:
        f, b = self.gpu_work(shape)
        return self.num_gpus * gpu_energy(self.gpu, time_s, f, b, self.compute_dtype)

    def flops(self, shape: BatchShape) -> float:
        pairs = shape.prefill_attention_pairs + shape.decode_context_tokens
        lm = self.lm_flops_per_seq * shape.num_seqs if self.last else 0.0
        return self.useful_flops_per_token * shape.num_tokens + self.attn_flops_per_pair * pairs + lm


@dataclass
class ReplicaCostModel:
    """One replica of a group (implements interface.ReplicaCost)."""

    stages: list[StageCostModel]
    kv_capacity_tokens: int
    weights_bytes_per_gpu: float
    num_gpus: int
    usd_per_hour: float
    idle_watts: float
    fits: bool
    over_bytes: float
    kv_bytes_per_token: float  # whole replica, all layers
    link: Fabric  # between the stages of this replica
    link_eff: GPU
    hidden_bytes_per_token: float
    intra: Fabric | None = None  # scale-up fabric of its node group
    inter: Fabric | None = None  # inter-node fabric of its node group
    domain_gpus: int = 8

    def send_time(self, stage_index: int, num_tokens: int) -> float:
        if stage_index >= len(self.stages) - 1 or num_tokens <= 0:
            return 0.0
        return comm.send_seconds(
            self.link, self.link_eff.efficiency, num_tokens * self.hidden_bytes_per_token
        )

    def kv_transfer_time(self, num_tokens: int, to: ReplicaCostModel) -> float:
        """KV of num_tokens over the replicas' link, every GPU of the smaller side sending its shard in parallel."""
        if num_tokens <= 0:
            return 0.0
        # Same scale-up domain only when both replicas fit in one together; otherwise the inter-node fabric.
        together = self.num_gpus + to.num_gpus <= self.domain_gpus
        link = (self.intra if together else self.inter) or self.link
        streams = min(self.num_gpus, to.num_gpus)
        return comm.send_seconds(
            link, self.link_eff.efficiency, num_tokens * self.kv_bytes_per_token, streams
        )


def _group_of(cluster: Cluster, gpu_name: str) -> NodeGroup:
    for g in cluster.node_groups:
        if g.gpu == gpu_name:
            return g
    return cluster.node_groups[0]


def _fabrics(cluster: Cluster, group: NodeGroup, gpu: GPU) -> tuple[Fabric, Fabric | None]:
    from simulator import catalog

    intra = catalog.get_fabric(group.intra_node or gpu.scale_up_fabric)
    inter = catalog.get_fabric(group.inter_node) if group.inter_node else None
    return intra, inter


def _active_params(model: Model, stage: Stage) -> float:
    return sum(model.layer_active_params(i) - 2 * model.hidden_size for i in range(*stage.layers))


def build_stage_cost(
    model: Model,
    stage: Stage,
    gpu: GPU,
    cluster: Cluster,
    dtypes: DTypes,
    engine: Engine,
    *,
    first: bool,
    last: bool,
) -> StageCostModel:
    group = _group_of(cluster, gpu.name)
    intra, inter = _fabrics(cluster, group, gpu)
    ops = build_stage_ops(
        model,
        stage,
        gpu,
        dtypes,
        first=first,
        last=last,
        intra=intra,
        inter=inter,
        domain_gpus=group.domain_gpus,
        block_size=engine.block_size,
    )
    mem = stage_memory(model, stage, gpu, dtypes, engine, first=first, last=last)
    attn = model.attention_flops_per_token(1) / model.num_layers * stage.num_layers
    return StageCostModel(
        gpu=gpu,
        ops=ops,
        num_gpus=stage.num_gpus,
        first=first,
        last=last,
        cuda_graphs=engine.cuda_graphs,
        memory=mem,
        compute_dtype=compute_dtype(dtypes.weights, dtypes.activations),
        useful_flops_per_token=2.0 * _active_params(model, stage),
        attn_flops_per_pair=attn,
        lm_flops_per_seq=2.0 * model.vocab_size * model.hidden_size,
        engine_kind=engine.kind,
    )


def build_replica_cost(
    model: Model,
    group: ReplicaGroup,
    gpus: dict[str, GPU],
    cluster: Cluster,
    dtypes: DTypes,
    engine: Engine,
    calibration: Calibration | str | Path | None = None,
) -> ReplicaCostModel:
    """Price one replica of `group`: its stages, memory plan, cost and transfer times."""
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration(calibration)
    if calibration is not None and calibration.gpu not in gpus:
        raise InputError(
            f"the calibration is for {calibration.gpu!r}, which the cluster does not have "
            f"(its GPUs: {', '.join(sorted(gpus))}); fit one for these GPUs with `apex calibrate --gpu`",
            field="calibration.gpu",
        )
    default = next(iter(gpus)) if len(gpus) == 1 else None
    stages = []
    n = len(group.stages)
    for i, stage in enumerate(group.stages):
        gpu = apply_calibration(gpus[stage.gpu or default], calibration)
        stages.append(
            build_stage_cost(model, stage, gpu, cluster, dtypes, engine, first=i == 0, last=i == n - 1)
        )
    first_gpu = stages[0].gpu
    node = _group_of(cluster, first_gpu.name)
    intra, inter = _fabrics(cluster, node, first_gpu)
    link = intra if group.gpus_per_replica <= node.domain_gpus or inter is None else inter
    kv_per_token = model.kv_bytes_per_token(dtypes.kv_cache)
    return ReplicaCostModel(
        stages=stages,
        kv_capacity_tokens=min(s.memory.kv_capacity_tokens for s in stages),
        weights_bytes_per_gpu=max(s.memory.weights_bytes for s in stages),
        num_gpus=group.gpus_per_replica,
        usd_per_hour=sum(usd_per_hour(s.gpu, s.num_gpus) for s in stages),
        idle_watts=sum(s.gpu.idle_w * s.num_gpus for s in stages),
        fits=all(s.memory.fits for s in stages),
        over_bytes=max(s.memory.over_bytes for s in stages),
        kv_bytes_per_token=kv_per_token,
        link=link,
        link_eff=first_gpu,
        hidden_bytes_per_token=model.hidden_size * bytes_per_element(dtypes.activations),
        intra=intra,
        inter=inter,
        domain_gpus=node.domain_gpus,
    )
