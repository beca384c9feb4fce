"""Concrete StageCost / ReplicaCost: `build_replica_cost(model, group, gpus, cluster, dtypes, engine)`.

The fused price (`StageCostModel.price`, `price_decode`): time, energy and FLOPs of one iteration in one pass,
**exact** — equal to the per-operator `breakdown` summed (tests/simulator/costmodel/test_fused_price.py), so a
bound computed from `iteration_time` is a bound on the breakdown too; there is no bucket grid. It is fast because
* each static op (GEMMs, elementwise, collectives) reads one row count of the `Load`: ops on token rows are cached
  by `num_tokens`, ops on sequence rows by `num_seqs`, and (only with attention dp > 1, where the busiest dp
  group's rows mix both) the attention-side ops by the pair. Every key is the exact count, so a cached value is
  the value; at most max_num_batched_tokens + max_num_seqs entries per stage. A miss reads price tables
  (`_RowPrices`) that price many counts at once over numpy arrays, after their first few counts priced alone;
  the tables hold one layer's ops and are shared by the stages of one GPU and split (`_LayerRows`: a stage
  sums its layer groups times their layers, so a layout's other pipeline depths read what one priced);
* decode attention of n sequences is, in their context tokens, `base + max(mem·ctx + mem0, comp·ctx, lat)`
  (`attention.decode_attention`: streaming bytes, FLOPs, a latency floor, per-row and per-call fixed costs).
  The coefficients per n are read off the kernel function itself and checked on probe points when first
  needed; if the check fails the decode attention is priced op by op (same value, slower);
* prefill attention (a few per-request chunks) is memoized by its exact aggregates, priced with the
  batch-independent part of its kernel read once per stage (`ops.prefill_attention_price`);
* energy is `energy.gpu_energy`'s rule on the summed FLOPs and bytes of the busiest GPU; FLOPs are linear in the
  aggregates; the per-iteration overhead (per-layer launch + the engine's host figures) is cached by sequences.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulator.costmodel import attention, comm, host
from simulator.costmodel.arrays import full_like
from simulator.costmodel.build import StageOps, build_stage_ops
from simulator.costmodel.calibration import Calibration, apply_calibration, load_calibration
from simulator.costmodel.calibration import host_overhead as calibrated_host
from simulator.costmodel.energy import energy_coefficients, gpu_energy, usd_per_hour
from simulator.costmodel.interface import BatchShape, OpCost
from simulator.costmodel.kernels import clear_gemm_cache
from simulator.costmodel.memory import StageMemory, stage_memory
from simulator.costmodel.ops import (
    Collective,
    Load,
    MoEExperts,
    op_times,
    prefill_attention_kernel,
    prefill_attention_price,
    price_attention,
    price_op,
)
from simulator.dtypes import bytes_per_element, compute_dtype
from simulator.errors import InputError
from simulator.hardware import GPU, Cluster, Fabric, NodeGroup
from simulator.model import Model
from simulator.plan import ReplicaGroup, Stage
from simulator.scenario import DTypes, Engine

# Which count of the iteration each static op's rows follow (ops.Load): the tokens or the sequences, or (only with
# attention dp > 1) the rows of the busiest attention-dp group, ceil(tokens * ceil(seqs/dp)/seqs) tokens and
# ceil(seqs * ceil(seqs/dp)/seqs) sequences.
_TOKEN_ROWS = frozenset({"tokens", "ffn_tokens", "moe_tokens", "moe_rows", "moe_touched"})
_ATTN_TOKEN_ROWS = frozenset({"attn_tokens", "a2a_tokens"})
_SEQ_ROWS = frozenset({"seqs"})
_ATTN_SEQ_ROWS = frozenset({"attn_seqs"})
_AXES = ("tokens", "seqs", "attn_tokens", "attn_seqs")
_PROBE_RTOL = 1e-10  # how closely the decode-attention form must reproduce the kernel function
_PROBES = (1.0, 1e3, 3.3e4, 2.9e7)  # context tokens the form is checked at: latency-, row- and memory-bound
_PREFILL_MEMO = 1 << 16  # prefill-attention prices kept per stage (exact keys; a bound on memory only)
# A count priced alone costs about as much as SINGLE_COUNTS counts of a table, measured while the planner priced
# the kimi-k2 / llama-3.1-70b / llama-3.1-8b bench spaces (`price_space`, each count's pricing timed): on
# 2026-12-02 (first machine) 62 / 65 / 90 us a count alone against 1.85 / 1.20 / 1.31 us in a table (ratios 33 /
# 54 / 69); after knob variants came to share their layout's stages (second machine) 32 / 30 / 30 us alone
# against 1.79 / 1.50 / 1.25 us (ratios 18 / 20 / 24): alone counts hit the one-shape GEMM cache that tables do
# not read. The smallest ratio, 18, rounded down.
SINGLE_COUNTS = 16
_TABLE_STEP = 512  # price tables grow by whole steps of row counts
_TABLE_MAX = 1 << 15  # row counts at or above it are priced one at a time, not tabled


def _rows_follow(op, attn_dp: int) -> str:
    """The count of the iteration (one of _AXES) an op's Load rows follow."""
    if isinstance(op, MoEExperts):  # moe_tokens, moe_rows, moe_touched: functions of the tokens only
        return "tokens"
    rows = op.rows
    if rows in _TOKEN_ROWS or (attn_dp == 1 and rows in _ATTN_TOKEN_ROWS):
        return "tokens"
    if rows in _SEQ_ROWS or (attn_dp == 1 and rows in _ATTN_SEQ_ROWS):
        return "seqs"
    return "attn_tokens" if rows in _ATTN_TOKEN_ROWS else "attn_seqs"


class _RowPrices:
    """(seconds, FLOPs, HBM bytes, dp fraction) of a tuple of static ops on the busiest GPU as a function of one
    row count x (the tokens, or the sequences, of an iteration); `load_of(x)` gives the load of x (a number or
    an array), the dp fraction is the load's (the busiest attention-dp group's share of the batch).

    A count the table does not hold is priced alone, in floats, until the counts priced alone since the table
    last grew have cost what growing it to hold the count would (SINGLE_COUNTS table counts each): then every
    count below a size is priced at once with numpy, the table extended by whole _TABLE_STEPs (up to
    _TABLE_MAX; larger counts are always priced alone). The simulator asks for hundreds of nearby counts and
    gets a table soon; the planner's bounds and capacity searches ask for a few dozen scattered ones, up to
    the token budget, and mostly pay for those alone — never more than twice what the cheaper way would have
    cost. The columns are lists of floats, so a read is a Python float and a table adds no objects for the
    garbage collector to walk."""

    def __init__(self, ops: tuple, gpu: GPU, load_of):
        self._ops = ops
        self._gpu = gpu
        self._load_of = load_of
        self._singles = 0
        self._columns: tuple[list[float], ...] = ([], [], [], [])
        # counts above the table, priced together (`prime`)
        self._primed: dict[int, tuple[float, float, float, float]] = {}

    def __getitem__(self, x: int) -> tuple[float, float, float, float]:
        columns = self._columns
        if x >= len(columns[0]):
            primed = self._primed.get(x)
            if primed is not None:
                return primed
            size = (x // _TABLE_STEP + 1) * _TABLE_STEP
            if x >= _TABLE_MAX or size - len(columns[0]) > self._singles * SINGLE_COUNTS:
                self._singles += 1
                return self._price(float(x))
            self._singles = 0
            if not columns[0]:  # no rows, no kernels: the float path prices that without the arrays' masks
                for column, priced in zip(columns, self._price(0.0), strict=True):
                    column.append(priced)
            more = self._price(np.arange(len(columns[0]), size, dtype=float))
            for column, priced in zip(columns, more, strict=True):
                column += priced.tolist()
        return columns[0][x], columns[1][x], columns[2][x], columns[3][x]

    def prime(self, counts) -> None:
        """Price these counts (positive integers, any order) together over numpy arrays, for reads that would
        otherwise price each alone: the same values (elementwise the same formulas), one pass."""
        held = len(self._columns[0])
        todo = sorted({int(x) for x in counts if x > 0 and x >= held and int(x) not in self._primed})
        if len(todo) < 2:
            return
        columns = [c.tolist() for c in self._price(np.array(todo, dtype=float))]
        for i, x in enumerate(todo):
            self._primed[x] = (columns[0][i], columns[1][i], columns[2][i], columns[3][i])

    def _price(self, counts) -> tuple:
        """(seconds, FLOPs, bytes, dp fraction) of `counts` (a number, or an array of them)."""
        load = self._load_of(counts)
        t = f = b = 0.0
        for op in self._ops:
            k = op_times(op, load, self._gpu)
            t = t + k.seconds
            f = f + k.flops
            if not isinstance(op, Collective):  # network bytes are not HBM traffic
                b = b + k.bytes
        return tuple(full_like(counts, 0.0) + x for x in (t, f, b, load.dp_fraction))


class _LayerRows:
    """A stage's static ops on one row axis priced as Σ layers × (its ops priced for one layer): the ops are
    grouped by the layers they repeat on (`count`), and each group's one-layer ops are a `_RowPrices` shared by
    every stage of the process with the same GPU, split and ops — the stages of a layout's other pipeline
    depths, and of its other knobs, read what one of them priced (every op's price is linear in its count)."""

    def __init__(self, groups: tuple[tuple[int, _RowPrices], ...]):
        self.groups = groups

    def __getitem__(self, x: int) -> tuple[float, float, float, float]:
        t = f = b = 0.0
        frac = 1.0
        for layers, rows in self.groups:
            rt, rf, rb, frac = rows[x]
            t += layers * rt
            f += layers * rf
            b += layers * rb
        return t, f, b, frac

    def prime(self, counts) -> None:
        """`_RowPrices.prime` of every group."""
        for _, rows in self.groups:
            rows.prime(counts)


_SHARED_ROWS = 4096  # one-layer price tables a process keeps (least recently used dropped first)
_rows: OrderedDict[str, _RowPrices] = OrderedDict()


def _shared_rows(key: str, ops: tuple, gpu: GPU, load_of) -> _RowPrices:
    """The one-layer price table of these ops under this key (the repr of the GPU, split, axis and ops)."""
    rows = _rows.get(key)
    if rows is None:
        rows = _rows[key] = _RowPrices(ops, gpu, load_of)
        if len(_rows) > _SHARED_ROWS:
            _rows.popitem(last=False)
    else:
        _rows.move_to_end(key)
    return rows


_SHARED_STAGES = 64  # stages whose caches a process keeps (least recently built dropped first)
_shared: OrderedDict[str, dict[str, dict]] = OrderedDict()


def _shared_caches(key: str) -> dict[str, dict]:
    """The price caches of the stage whose pricing fields have this repr (new, empty ones the first time)."""
    caches = _shared.get(key)
    if caches is None:
        caches = {
            name: {} for name in ("tokens", "seqs", "both", "prefill", "decode_lines", "decode", "tables")
        }
        _shared[key] = caches
        if len(_shared) > _SHARED_STAGES:
            _shared.popitem(last=False)
    else:
        _shared.move_to_end(key)
    return caches


def clear_price_caches() -> None:
    """Forget every cached price (benchmarks time a cold start with it)."""
    _shared.clear()
    _rows.clear()
    clear_gemm_cache()


@dataclass(frozen=True, slots=True)
class _DecodeAttention:
    """Decode attention of a fixed number of sequences as a function of their (dp-scaled) context tokens:
    seconds `base + max(mem·ctx + mem0, comp·ctx, lat)`, FLOPs `flops·ctx`, bytes `nbytes·ctx + nbytes0`."""

    base_s: float
    mem_s: float
    mem0_s: float
    comp_s: float
    lat_s: float
    flops: float
    nbytes: float
    nbytes0: float

    def seconds(self, ctx: float) -> float:
        t = self.mem_s * ctx + self.mem0_s
        c = self.comp_s * ctx
        if c > t:
            t = c
        return self.base_s + (t if t > self.lat_s else self.lat_s)

    @staticmethod
    def of(ops: StageOps, gpu: GPU, seqs: float) -> _DecodeAttention | None:
        """The form of `attention.decode_attention` for `seqs` sequences, read off its kernel's numbers and checked
        on probe points against the kernel; None when the kernel is not of that form."""
        dec = ops.decode
        kernel = attention.DecodeAttentionKernel.of(
            gpu, seqs=seqs, heads=dec.heads, kv_heads=dec.kv_heads, calls=dec.count
        )
        nbytes0 = dec.bytes_of(0.0, seqs)
        nbytes = dec.bytes_of(1.0, seqs) - nbytes0
        flops = dec.flops_of(1.0)
        line = _DecodeAttention(
            kernel.fixed_s + kernel.rows_s,
            nbytes / kernel.bw,
            nbytes0 / kernel.bw,
            flops / kernel.rate,
            kernel.latency_s,
            flops,
            nbytes,
            nbytes0,
        )
        for ctx in _PROBES:
            exact = kernel.price(flops=dec.flops_of(ctx), nbytes=dec.bytes_of(ctx, seqs)).seconds
            if not math.isclose(line.seconds(ctx), exact, rel_tol=_PROBE_RTOL):
                return None
            if not math.isclose(dec.bytes_of(ctx, seqs), nbytes * ctx + nbytes0, rel_tol=_PROBE_RTOL):
                return None
        return line


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
    host: host.HostOverhead | None = None  # None: the engine kind's catalog figures (costmodel/host.py)
    fused_decode: bool = True  # False: price decode attention op by op (the fallback; tests)

    def __post_init__(self):
        # Every cached price is a pure function of the fields above but the memory plan (their repr), so stage
        # cost models built for the same stage share one set of caches in a process (a planner or a study
        # simulates the same stages again and again, and prices one layout under many engine knobs, which move
        # the memory plan only); a new stage gets new caches.
        caches = _shared_caches(self._pricing_key())
        self._by_tokens = caches["tokens"]
        self._by_seqs = caches["seqs"]
        self._by_both = caches["both"]
        self._by_prefill = caches["prefill"]  # prefill aggregates -> attention price
        self._decode_lines = caches["decode_lines"]  # num_decode -> decode attention form
        self._by_decode = caches["decode"]  # num_decode -> price_decode's coefficients
        self._tables = self._row_tables(caches["tables"])
        self._prefill_kernel = prefill_attention_kernel(self.ops.prefill, self.gpu)
        self._e_flop, self._e_byte = energy_coefficients(self.gpu, self.compute_dtype)

    def _pricing_key(self) -> str:
        """The repr of the fields prices depend on (all but `memory`: what fits, not what an iteration costs)."""
        return repr([(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "memory"])

    # ---- static part: exact caches by the count each op's rows follow, filled from price tables -------------
    def _row_tables(self, tables: dict) -> dict[str, _LayerRows]:
        """The price tables of the static ops by the count their rows follow (shared like the caches), each the
        sum over the stage's layer groups of one-layer tables shared between stages (`_LayerRows`)."""
        if not tables:
            split = self.ops.split
            whole = dataclasses.replace(split, attn_dp=1)  # a table's count is the busiest group's rows
            loads = {
                "tokens": lambda x: Load.of(x, 1.0, split),
                "seqs": lambda x: Load.of(1.0, x, split),
                "attn_tokens": lambda x: Load.of(x, 1.0, whole),
                "attn_seqs": lambda x: Load.of(1.0, x, whole),
            }
            follow = [_rows_follow(op, split.attn_dp) for op in self.ops.static]
            where = f"{self.gpu!r}|{split!r}"
            for axis in _AXES:
                by_layers: dict[int, list] = {}
                for op, f in zip(self.ops.static, follow, strict=True):
                    if f == axis and op.count > 0:
                        by_layers.setdefault(op.count, []).append(dataclasses.replace(op, count=1))
                groups = tuple(
                    (layers, _shared_rows(f"{axis}|{where}|{ops!r}", ops, self.gpu, loads[axis]))
                    for layers, ops in ((n, tuple(u)) for n, u in sorted(by_layers.items()))
                )
                # no ops on this axis: an empty table still gives the load's dp fraction
                tables[axis] = _LayerRows(groups or ((1, _RowPrices((), self.gpu, loads[axis])),))
        return tables

    def prime(self, num_tokens, num_seqs) -> None:
        """Price the static ops of many iterations (their token and sequence counts, arrays) together, so that
        pricing shapes with those counts reads caches: what the planner's bounds call before pricing hundreds
        of scattered corner shapes. Changes no price."""
        tokens = np.asarray(num_tokens, dtype=float)
        seqs = np.asarray(num_seqs, dtype=float)
        live = (tokens > 0) & (seqs > 0)
        tokens, seqs = tokens[live], seqs[live]
        self._tables["tokens"].prime(tokens)
        self._tables["seqs"].prime(seqs)
        if self.ops.split.attn_dp > 1 and len(tokens):
            load = Load.of(tokens, seqs, self.ops.split)
            self._tables["attn_tokens"].prime(load.attn_tokens)
            self._tables["attn_seqs"].prime(load.attn_seqs)

    def _seq_part(self, num_seqs: int) -> tuple:
        """(seconds, FLOPs, bytes, dp fraction, overhead without prefill, overhead with) for num_seqs."""
        t, f, b, frac = self._tables["seqs"][num_seqs]
        decode_only = BatchShape(num_decode=num_seqs)
        mixed = BatchShape(num_prefill_tokens=1, num_prefill_seqs=1, num_decode=num_seqs - 1)
        part = (t, f, b, frac, self._overhead(decode_only), self._overhead(mixed))
        self._by_seqs[num_seqs] = part
        return part

    def _attention_rows(self, num_tokens: int, num_seqs: int) -> tuple[float, float, float]:
        """(seconds, FLOPs, bytes) of the ops on the busiest attention-dp group's rows (attention dp > 1)."""
        load = Load.of(num_tokens, num_seqs, self.ops.split)
        tok = self._tables["attn_tokens"][int(load.attn_tokens)]
        seq = self._tables["attn_seqs"][int(load.attn_seqs)]
        both = self._by_both[(num_tokens, num_seqs)] = (tok[0] + seq[0], tok[1] + seq[1], tok[2] + seq[2])
        return both

    def _static(self, num_tokens: int, num_seqs: int) -> tuple[float, float, float, tuple]:
        """(seconds, FLOPs, HBM bytes) of the static ops on the busiest GPU, and the sequence part."""
        tok = self._by_tokens.get(num_tokens)
        if tok is None:
            tok = self._by_tokens[num_tokens] = self._tables["tokens"][num_tokens][:3]
        seq = self._by_seqs.get(num_seqs) or self._seq_part(num_seqs)
        t, f, b = tok[0] + seq[0], tok[1] + seq[1], tok[2] + seq[2]
        if self.ops.split.attn_dp > 1:
            both = self._by_both.get((num_tokens, num_seqs)) or self._attention_rows(num_tokens, num_seqs)
            t, f, b = t + both[0], f + both[1], b + both[2]
        return t, f, b, seq

    def _overhead(self, shape: BatchShape) -> float:
        eff = self.gpu.efficiency
        per_layer = (
            eff.layer_overhead_graph_s
            if (self.cuda_graphs and not shape.num_prefill_tokens)
            else eff.layer_overhead_eager_s
        )
        figures = self.host or host.host_overhead(self.engine_kind)
        engine = figures.step_seconds(shape.num_seqs) if self.first else 0.0
        return self.ops.num_layers * per_layer + engine

    def _decode_attention(self, num_decode: int, frac: float) -> _DecodeAttention | None:
        """The decode attention form of num_decode sequences when the busiest dp group holds `frac` of the
        batch (cached by the sequences that group decodes)."""
        seqs = max(1.0, num_decode * frac)
        line = self._decode_lines.get(seqs, False)
        if line is False:
            line = _DecodeAttention.of(self.ops, self.gpu, seqs) if self.fused_decode else None
            self._decode_lines[seqs] = line
        return line

    def _prefill_attention(self, shape: BatchShape, frac: float) -> tuple[float, float, float]:
        """(seconds, FLOPs, bytes) of the prefill chunks' attention, memoized by their exact aggregates and the
        busiest dp group's share of the batch (a single new prompt of a given length recurs)."""
        key = (
            shape.num_prefill_tokens,
            shape.num_prefill_seqs,
            shape.prefill_attention_pairs,
            shape.prefill_context_tokens,
            frac,
        )
        hit = self._by_prefill.get(key)
        if hit is None:
            k = prefill_attention_price(self.ops.prefill, self._prefill_kernel, shape, frac)
            hit = (k.seconds, k.flops, k.bytes)
            if len(self._by_prefill) < _PREFILL_MEMO:
                self._by_prefill[key] = hit
        return hit

    # ---- the fused price -------------------------------------------------------------------------------------
    def price(self, shape: BatchShape) -> tuple[float, float, float]:
        """(seconds, joules, useful FLOPs) of one iteration over `shape`: iteration_time, energy and flops
        in one pass."""
        num_decode = shape.num_decode
        num_tokens = shape.num_prefill_tokens + num_decode
        if num_tokens == 0:
            return 0.0, 0.0, 0.0
        t, f, b, seq = self._static(num_tokens, shape.num_prefill_seqs + num_decode)
        frac = seq[3]
        if shape.num_prefill_tokens:
            pt, pf, pb = self._prefill_attention(shape, frac)
            t += pt + seq[5]
            f += pf
            b += pb
        else:
            t += seq[4]
        if num_decode:
            line = self._decode_attention(num_decode, frac)
            if line is None:
                for c in price_attention(None, self.ops.decode, shape, frac, self.gpu):
                    t += c.time_s
                    f += c.flops
                    b += c.bytes
            else:
                ctx = shape.decode_context_tokens * frac
                t += line.seconds(ctx)
                f += line.flops * ctx
                b += line.nbytes * ctx + line.nbytes0
        pairs = shape.prefill_attention_pairs + shape.decode_context_tokens
        flops = self.useful_flops_per_token * num_tokens + self.attn_flops_per_pair * pairs
        if self.last:
            flops += self.lm_flops_per_seq * (shape.num_prefill_seqs + num_decode)
        return t, self._energy(t, f, b), flops

    def price_decode(self, num_decode: int, context_tokens: int) -> tuple[float, float, float]:
        """`price` of a decode-only iteration: num_decode sequences reading context_tokens cached tokens."""
        k = self._by_decode.get(num_decode)
        if k is None:
            k = self._decode_coefficients(num_decode)
        line, base_s, frac, f0, b0, flops0 = k
        if line is None:
            return self.price(BatchShape(num_decode=num_decode, decode_context_tokens=context_tokens))
        ctx = context_tokens * frac
        t = line.mem_s * ctx + line.mem0_s
        c = line.comp_s * ctx
        if c > t:
            t = c
        if line.lat_s > t:
            t = line.lat_s
        t += base_s
        flops = flops0 + self.attn_flops_per_pair * context_tokens
        return t, self._energy(t, f0 + line.flops * ctx, b0 + line.nbytes * ctx), flops

    def decode_attention_time(self, shape: BatchShape) -> float:
        """Seconds of the decode-attention operator of `breakdown(shape)`, from the fused form `price` adds
        (cached by the decodes of the busiest dp group; op by op where the kernel is not of that form)."""
        if not shape.num_decode:
            return 0.0
        frac = self._static(shape.num_tokens, shape.num_seqs)[3][3]
        line = self._decode_attention(shape.num_decode, frac)
        if line is None:
            return sum(c.time_s for c in price_attention(None, self.ops.decode, shape, frac, self.gpu))
        return line.seconds(shape.decode_context_tokens * frac)

    def _decode_coefficients(self, n: int) -> tuple:
        """(attention form, seconds without attention's ctx part, dp fraction, FLOPs, bytes, useful FLOPs)."""
        t, f, b, seq = self._static(n, n)
        line = self._decode_attention(n, seq[3])
        lm = self.lm_flops_per_seq * n if self.last else 0.0
        if line is None:
            k = (None, 0.0, 1.0, 0.0, 0.0, 0.0)
        else:
            k = (
                line,
                t + seq[4] + line.base_s,
                seq[3],
                f,
                b + line.nbytes0,
                self.useful_flops_per_token * n + lm,
            )
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
        frac = float(load.dp_fraction)
        out += price_attention(self.ops.prefill, self.ops.decode, shape, frac, self.gpu)
        out.append(OpCost("fixed_overhead", self._overhead(shape), 0.0, 0.0, "overhead"))
        return out

    def gpu_work(self, shape: BatchShape) -> tuple[float, float]:
        """(FLOPs, HBM bytes) of the busiest GPU in this iteration."""
        if shape.num_tokens == 0:
            return 0.0, 0.0
        _, f, b, seq = self._static(shape.num_tokens, shape.num_seqs)
        for c in price_attention(self.ops.prefill, self.ops.decode, shape, seq[3], self.gpu):
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
            t = self._send[num_tokens] = self._send_seconds(num_tokens)
        return t

    def _send_seconds(self, num_tokens: int) -> float:
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
    host_overhead: host.HostOverhead | None = None,
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
        host=host_overhead,
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
    figures = calibrated_host(engine.kind, calibration)
    stages = []
    n = len(group.stages)
    for i, stage in enumerate(group.stages):
        try:
            clocked = gpus[stage.gpu or default].at_clock(group.sm_clock_mhz)
        except ValueError as exc:
            raise InputError(str(exc), field="sm_clock_mhz") from None
        gpu = apply_calibration(clocked, calibration)
        stage_cost = build_stage_cost(
            model, stage, gpu, cluster, dtypes, engine, first=i == 0, last=i == n - 1, host_overhead=figures
        )
        stages.append(stage_cost)
    return _replica(stages, model, group, cluster, dtypes)


def with_engine(
    cost: ReplicaCostModel,
    model: Model,
    group: ReplicaGroup,
    cluster: Cluster,
    dtypes: DTypes,
    engine: Engine,
) -> ReplicaCostModel:
    """`build_replica_cost` of the model, group, cluster and dtypes `cost` was built for, under `engine`: another
    setting of its knobs (max_num_seqs, the token budget, chunked prefill, memory fraction) moves the memory plan
    only, so the stage cost models are copied with a new one and keep their prices. The engine's kind, block
    size and CUDA graphs must be those `cost` was priced under (they change prices: ValueError otherwise)."""
    n = len(group.stages)
    if n != len(cost.stages):
        raise ValueError(f"a replica of {len(cost.stages)} stages cannot be re-planned as one of {n}")
    stages = []
    for i, (stage, priced) in enumerate(zip(group.stages, cost.stages, strict=True)):
        if (engine.kind, engine.cuda_graphs, engine.block_size) != (
            priced.engine_kind,
            priced.cuda_graphs,
            priced.ops.decode.block_size,
        ):
            raise ValueError(
                "with_engine changes engine knobs only, not the engine kind, block size or graphs"
            )
        again = copy.copy(priced)  # the same prices and price caches (a shallow copy: no __post_init__)
        again.memory = stage_memory(model, stage, priced.gpu, dtypes, engine, first=i == 0, last=i == n - 1)
        stages.append(again)
    return _replica(stages, model, group, cluster, dtypes)


def _replica(
    stages: list[StageCostModel], model: Model, group: ReplicaGroup, cluster: Cluster, dtypes: DTypes
) -> ReplicaCostModel:
    """The replica of these priced stages: memory, price, power and links."""
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
