"""Concrete StageCost / ReplicaCost: `build_replica_cost(model, group, gpus, cluster, dtypes, engine)`.

The fused price (`StageCostModel.price`, `price_decode`): time, energy and FLOPs of one iteration in one pass,
**exact** — equal to the per-operator `breakdown` summed (tests/simulator/costmodel/test_fused_price.py), so any
bound computed from `iteration_time` is a bound on the breakdown too. It is fast because
* the static ops (GEMMs, elementwise, collectives) each read one row count of the `Load`: ops on token rows are
  cached by `num_tokens`, ops on sequence rows by `num_seqs`, and (only with attention dp > 1, where the busiest
  dp group's rows mix both) the attention-side ops by the pair. Every cache key is the exact count, so a cached
  value is the value, not an approximation; at most max_num_batched_tokens + max_num_seqs entries per stage;
* attention is linear in the batch's aggregates: decode attention time is `max(kc·ctx, km·ctx + cm)` and prefill
  attention `max(kp·pairs, kn·new + kx·ctx + cx)` (the roofline of `ops.price_attention`, whose HBM efficiency
  `max·b/(b+half)` makes memory time affine in bytes). The coefficients come from the cost model's own functions
  and are checked at build time; if the check fails the attention is priced op by op (same value, slower);
* energy is `gpu_energy`'s rule on the summed FLOPs and bytes of the busiest GPU, FLOPs linear in the aggregates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from simulator.costmodel import comm
from simulator.costmodel.build import StageOps, build_stage_ops
from simulator.costmodel.calibration import Calibration, apply_calibration, load_calibration
from simulator.costmodel.energy import energy_coefficients, gpu_energy, usd_per_hour
from simulator.costmodel.interface import BatchShape, OpCost
from simulator.costmodel.memory import StageMemory, stage_memory
from simulator.costmodel.ops import Load, MoEExperts, price_attention, price_op
from simulator.costmodel.roofline import memory_efficiency, price
from simulator.dtypes import bytes_per_element, compute_dtype
from simulator.hardware import GPU, Cluster, Fabric, NodeGroup
from simulator.model import Model
from simulator.plan import ReplicaGroup, Stage
from simulator.scenario import DTypes, Engine

# Which count of the iteration each static op's rows follow (ops.Load): tokens, sequences, or — the rows of the
# busiest attention-dp group, ceil(tokens * ceil(seqs/dp)/seqs) — both when attention dp > 1.
_TOKEN_ROWS = frozenset({"tokens", "ffn_tokens"})
_ATTN_TOKEN_ROWS = frozenset({"attn_tokens", "a2a_tokens"})
_SEQ_ROWS = frozenset({"seqs"})
_ATTN_SEQ_ROWS = frozenset({"attn_seqs"})
_AFFINE_RTOL = 1e-9  # how straight a line must be to be priced as one


def _rows_follow(op, attn_dp: int) -> str:
    """The iteration counts ("tokens", "seqs" or "both") an op's Load rows depend on."""
    if isinstance(op, MoEExperts):  # moe_tokens, moe_rows, moe_touched: functions of the tokens only
        return "tokens"
    rows = getattr(op, "rows", None)
    if rows in _TOKEN_ROWS or (attn_dp == 1 and rows in _ATTN_TOKEN_ROWS):
        return "tokens"
    if rows in _SEQ_ROWS or (attn_dp == 1 and rows in _ATTN_SEQ_ROWS):
        return "seqs"
    return "both"


def _price_ops(ops: tuple, load: Load, gpu: GPU) -> tuple[float, float, float]:
    """(seconds, FLOPs, HBM bytes) of `ops` under `load` on the busiest GPU."""
    t = f = b = 0.0
    for op in ops:
        c = price_op(op, load, gpu)
        t += c.time_s
        f += c.flops
        if c.bound != "network":
            b += c.bytes
    return t, f, b


def _affine(fn, x1: float, x2: float) -> tuple[float, float] | None:
    """(slope, intercept) of fn on [x1, x2] when fn is affine there (checked at a third point), else None."""
    y1, y2 = fn(x1), fn(x2)
    slope = (y2 - y1) / (x2 - x1)
    intercept = y1 - slope * x1
    x3 = math.sqrt(x1 * x2) * 1.37
    if not math.isclose(fn(x3), slope * x3 + intercept, rel_tol=_AFFINE_RTOL, abs_tol=1e-300):
        return None
    return slope, intercept


@dataclass(frozen=True, slots=True)
class _AttentionLines:
    """Attention of one stage as lines in the aggregates (see the module docstring); None when not affine."""

    decode_flops: float  # per context token (after the dp fraction)
    decode_bytes: float
    decode_compute_s: float  # kc: seconds per context token, compute bound
    decode_memory_s: float  # km
    decode_memory_fixed_s: float  # cm
    prefill_flops: float  # per query-key pair
    prefill_bytes_new: float  # per new token
    prefill_bytes_ctx: float  # per context token
    prefill_compute_s: float  # per pair
    prefill_memory_s_per_byte: float
    prefill_memory_fixed_s: float

    @staticmethod
    def of(ops: StageOps, gpu: GPU) -> _AttentionLines | None:
        """The lines of `ops.price_attention` on `gpu`, or None when its roofline is not affine in bytes."""
        eff, bw = gpu.efficiency, gpu.memory_bandwidth_bytes_per_s
        dec, pre = ops.decode, ops.prefill
        d_f, d_b = dec.flops_of(1.0), dec.bytes_of(1.0)
        p_f, p_bn, p_bc = pre.flops_of(1.0), pre.bytes_of(1.0, 0.0), pre.bytes_of(0.0, 1.0)
        linear = (
            math.isclose(dec.flops_of(3.0), 3 * d_f, rel_tol=_AFFINE_RTOL)
            and math.isclose(dec.bytes_of(3.0), 3 * d_b, rel_tol=_AFFINE_RTOL)
            and math.isclose(pre.flops_of(3.0), 3 * p_f, rel_tol=_AFFINE_RTOL)
            and math.isclose(pre.bytes_of(2.0, 3.0), 2 * p_bn + 3 * p_bc, rel_tol=_AFFINE_RTOL)
        )
        peak_d, peak_p = gpu.peak_flops("bf16"), gpu.peak_flops(pre.compute_dtype)

        def decode_memory(b):
            e_m = memory_efficiency(eff, b / dec.count, eff.attention_memory_max)
            return price(0.0, b, peak_d, eff.attention_max, bw, e_m)[0]

        def prefill_memory(b):
            return price(0.0, b, peak_p, eff.attention_max, bw, memory_efficiency(eff, b / pre.count))[0]

        big = 1e9
        d_mem, p_mem = _affine(decode_memory, big, 4 * big), _affine(prefill_memory, big, 4 * big)
        if not linear or d_mem is None or p_mem is None or d_b <= 0 or p_bc <= 0:
            return None
        return _AttentionLines(
            decode_flops=d_f,
            decode_bytes=d_b,
            decode_compute_s=price(d_f, 0.0, peak_d, eff.attention_max, bw, 1.0)[0],
            decode_memory_s=d_mem[0] * d_b,
            decode_memory_fixed_s=d_mem[1],
            prefill_flops=p_f,
            prefill_bytes_new=p_bn,
            prefill_bytes_ctx=p_bc,
            prefill_compute_s=price(p_f, 0.0, peak_p, eff.attention_max, bw, 1.0)[0],
            prefill_memory_s_per_byte=p_mem[0],
            prefill_memory_fixed_s=p_mem[1],
        )


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
    _by_tokens: dict = field(default_factory=dict, repr=False)
    _by_seqs: dict = field(default_factory=dict, repr=False)
    _by_both: dict = field(default_factory=dict, repr=False)
    _by_decode: dict = field(default_factory=dict, repr=False)  # num_decode -> coefficients of price_decode

    def __post_init__(self):
        dp = self.ops.split.attn_dp
        follow = [_rows_follow(op, dp) for op in self.ops.static]
        self._token_ops = tuple(op for op, f in zip(self.ops.static, follow, strict=True) if f == "tokens")
        self._seq_ops = tuple(op for op, f in zip(self.ops.static, follow, strict=True) if f == "seqs")
        self._both_ops = tuple(op for op, f in zip(self.ops.static, follow, strict=True) if f == "both")
        self._lines = _AttentionLines.of(self.ops, self.gpu)
        self._e_flop, self._e_byte = energy_coefficients(self.gpu, self.compute_dtype)
        self._graph_overhead_s = self._overhead(BatchShape(num_decode=1))
        self._eager_overhead_s = self._overhead(BatchShape(num_prefill_tokens=1, num_prefill_seqs=1))

    # ---- static part: exact caches by the count each op's rows follow --------------------------------------
    def _static(self, num_tokens: int, num_seqs: int) -> tuple[float, float, float, float]:
        """(seconds, FLOPs, HBM bytes) of the static ops on the busiest GPU, and the attention-dp fraction."""
        tok = self._by_tokens.get(num_tokens)
        if tok is None:
            tok = self._by_tokens[num_tokens] = _price_ops(
                self._token_ops, Load.of(num_tokens, max(num_seqs, 1), self.ops.split), self.gpu
            )
        seq = self._by_seqs.get(num_seqs)
        if seq is None:
            load = Load.of(max(num_tokens, 1), num_seqs, self.ops.split)
            seq = self._by_seqs[num_seqs] = (*_price_ops(self._seq_ops, load, self.gpu), load.dp_fraction)
        t, f, b = tok[0] + seq[0], tok[1] + seq[1], tok[2] + seq[2]
        if self._both_ops:
            key = (num_tokens, num_seqs)
            both = self._by_both.get(key)
            if both is None:
                load = Load.of(num_tokens, num_seqs, self.ops.split)
                both = self._by_both[key] = _price_ops(self._both_ops, load, self.gpu)
            t, f, b = t + both[0], f + both[1], b + both[2]
        return t, f, b, seq[3]

    def _overhead(self, shape: BatchShape) -> float:
        eff = self.gpu.efficiency
        per_layer = (
            eff.layer_overhead_graph_s
            if (self.cuda_graphs and not shape.num_prefill_tokens)
            else eff.layer_overhead_eager_s
        )
        return self.ops.num_layers * per_layer + (eff.iteration_overhead_s if self.first else 0.0)

    # ---- the fused price -------------------------------------------------------------------------------------
    def price(self, shape: BatchShape) -> tuple[float, float, float]:
        """(seconds, joules, useful FLOPs) of one iteration over `shape`: iteration_time, energy and flops
        in one pass."""
        num_tokens = shape.num_prefill_tokens + shape.num_decode
        if num_tokens == 0:
            return 0.0, 0.0, 0.0
        num_seqs = shape.num_prefill_seqs + shape.num_decode
        t, f, b, frac = self._static(num_tokens, num_seqs)
        lines = self._lines
        if lines is None:
            for c in price_attention(self.ops.prefill, self.ops.decode, shape, frac, self.gpu):
                t += c.time_s
                f += c.flops
                b += c.bytes
        else:
            if shape.num_prefill_tokens:
                pairs = shape.prefill_attention_pairs * frac
                pb = (
                    lines.prefill_bytes_new * shape.num_prefill_tokens
                    + lines.prefill_bytes_ctx * shape.prefill_context_tokens
                ) * frac
                tc = lines.prefill_compute_s * pairs
                tm = lines.prefill_memory_s_per_byte * pb + lines.prefill_memory_fixed_s
                t += tc if tc >= tm else tm
                f += lines.prefill_flops * pairs
                b += pb
            if shape.num_decode:
                ctx = shape.decode_context_tokens * frac
                if ctx > 0:
                    tc = lines.decode_compute_s * ctx
                    tm = lines.decode_memory_s * ctx + lines.decode_memory_fixed_s
                    t += tc if tc >= tm else tm
                    f += lines.decode_flops * ctx
                    b += lines.decode_bytes * ctx
        t += self._eager_overhead_s if shape.num_prefill_tokens else self._graph_overhead_s
        return t, self._energy(t, f, b), self.flops(shape)

    def price_decode(self, num_decode: int, context_tokens: int) -> tuple[float, float, float]:
        """`price` of a decode-only iteration: num_decode sequences reading context_tokens cached tokens."""
        k = self._by_decode.get(num_decode)
        if k is None:
            k = self._decode_coefficients(num_decode)
        if k[0] is None:
            return self.price(BatchShape(num_decode=num_decode, decode_context_tokens=context_tokens))
        lines, base_s, frac, f0, b0, flops0 = k
        ctx = context_tokens * frac
        t, f, b = base_s, f0, b0
        if ctx > 0:
            tc = lines.decode_compute_s * ctx
            tm = lines.decode_memory_s * ctx + lines.decode_memory_fixed_s
            t += tc if tc >= tm else tm
            f += lines.decode_flops * ctx
            b += lines.decode_bytes * ctx
        return t, self._energy(t, f, b), flops0 + self.attn_flops_per_pair * context_tokens

    def _decode_coefficients(self, n: int) -> tuple:
        if self._lines is None or n <= 0:
            k = (None,)
        else:
            t, f, b, frac = self._static(n, n)
            lm = self.lm_flops_per_seq * n if self.last else 0.0
            k = (self._lines, t + self._graph_overhead_s, frac, f, b, self.useful_flops_per_token * n + lm)
        self._by_decode[n] = k
        return k

    def _energy(self, time_s: float, flops: float, nbytes: float) -> float:
        """`num_gpus x energy.gpu_energy(...)` with the coefficients computed once."""
        gpu = self.gpu
        joules = gpu.idle_w * time_s + self._e_flop * flops + self._e_byte * nbytes
        if time_s > 0:
            cap = gpu.tdp_w * time_s
            if joules > cap:
                joules = cap
        return self.num_gpus * joules

    # ---- StageCost -------------------------------------------------------------------------------------------
    def iteration_time(self, shape: BatchShape) -> float:
        return self.price(shape)[0]

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
        _, f, b, frac = self._static(shape.num_tokens, shape.num_seqs)
        for c in price_attention(self.ops.prefill, self.ops.decode, shape, frac, self.gpu):
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
    _send: dict = field(default_factory=dict, repr=False)  # num_tokens -> seconds between two stages

    def send_time(self, stage_index: int, num_tokens: int) -> float:
        if stage_index >= len(self.stages) - 1 or num_tokens <= 0:
            return 0.0
        t = self._send.get(num_tokens)
        if t is None:
            t = self._send[num_tokens] = comm.send_seconds(
                self.link, self.link_eff.efficiency, num_tokens * self.hidden_bytes_per_token
            )
        return t

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
