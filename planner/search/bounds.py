"""Bounds the simulator cannot beat, per template, from the cost model's own StageCost objects (docs/design.md
§5.3).

The simulator prices every iteration of every stage with `StageCost.iteration_time(shape)` and
`StageCost.energy(shape, time)`. This module evaluates those same objects at shapes that provably cost no more
than any iteration they stand for, and turns the values into per-token rates with the work-rate LP
(`formulations.work_bound`). What it assumes of the cost model — each checked by tests/planner/test_bounds.py
on the shipped cost model, so a cost-model change that breaks one fails a test instead of a certificate:

* (M) an iteration with at least p prefill tokens and d decodes costs at least the *corner value* of (p, d):
  the cheapest shape with those tokens (one chunk, one attention pair and one context token per prefill token,
  zero decode context, and with attention data parallelism also the chunking that spreads the sequences evenly
  over the dp groups), priced, times 1 − TIME_SLACK (time) or 1 − ENERGY_SLACK (dynamic energy: energy above the
  stage's idle power over the same time);
* (A) only the decode-attention operator of `StageCost.breakdown` reads the decode context, and it costs at
  least γ per context token (γ: its least time per token, measured where the whole KV cache is read).

From them, for one replica:

* `time` rates: α, β (s per prefill / decode token) of the bottleneck stage from cells of the (p, d) iteration
  space priced at their corner without decode attention, and γ: busy time ≥ α·P + β·D + γ·X over any iterations
  processing P prefill tokens, D decode tokens and X decode context — with the TPOT multiplier when a TPOT limit
  holds for those tokens' requests;
* `energy` rates: the same for dynamic energy (J), summed over the stages;
* `prefill_floor(n)`, `decode_floor(x)`: one request's prefill of n tokens through every stage, and one decode
  step at context x through every stage, each on an otherwise empty replica (TTFT ≥ prefill floor, every gap
  between two of its tokens ≥ decode floor).

Cells start as a grid (COARSE or FINE) and the cells the LP finds tight are split, so the rates rise towards the
cost model's best per-token cost while every cell keeps covering its part of the space: every intermediate result
is valid.

Roles (disaggregated serving): a *prefill* replica runs only prefill iterations (a request leaves it with its
first token), so its work is α·P alone, its rates are those of the mix (P, 0) without the TPOT multiplier (no
decode token waits on it) and it reads no decode context (γ = 0); a *decode* replica receives each request's KV
cache and runs its D decode tokens, so its work is β·D + γ·X, its rates those of the mix (0, D) with the TPOT
multiplier (each decode token still waited for its iteration). Recompute after a preemption only adds work.

Sharing: templates of one layout, dtypes and role that differ only in engine knobs price every shape alike (the
knobs change what an iteration may hold and the KV cache, not the stages); their coarse rates come from one
computation on the componentwise largest limits (`IterationLimits.union`): every iteration a member can run
lies in that larger space, so the rates bound each member; each member keeps its own limits for its floors and
what fits, and gets its own rates when refined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from formulations.work_bound import WorkRates, solve_work_rates
from simulator.costmodel.clock import energy_scales
from simulator.costmodel.interface import BatchShape, StageCost

TIGHT = 0.02  # a cell whose row has less slack than this (relative) is split when refining
MIN_GAIN = 0.002  # stop refining when the LP value improves by less than this (relative)


@dataclass(frozen=True, slots=True)
class IterationLimits:
    """What one iteration of a replica can hold (the engine's knobs and the KV cache)."""

    max_tokens: int  # token budget per iteration (max_num_batched_tokens)
    max_seqs: int  # running sequences (max_num_seqs)
    max_decodes: int  # decodes in one iteration: ≤ max_seqs and ≤ the KV cache's requests
    min_context: int  # the least decode context a decode can have (the shortest prompt)
    kv_tokens: int  # tokens of KV cache of one replica
    block_size: int = 16  # KV-cache block (1 for engines without paging)
    chunked_prefill: bool = True  # prompts may be split across iterations

    @property
    def max_batch_tokens(self) -> int:
        """A decode-only iteration may exceed the token budget by running every sequence (vLLM v0, SGLang)."""
        return max(self.max_tokens, self.max_seqs)

    @staticmethod
    def union(limits: Sequence[IterationLimits]) -> IterationLimits:
        """Limits whose iteration space holds every one of `limits`' (componentwise largest)."""
        return IterationLimits(
            max_tokens=max(x.max_tokens for x in limits),
            max_seqs=max(x.max_seqs for x in limits),
            max_decodes=max(x.max_decodes for x in limits),
            min_context=min(x.min_context for x in limits),
            kv_tokens=max(x.kv_tokens for x in limits),
            block_size=min(x.block_size for x in limits),
            chunked_prefill=any(x.chunked_prefill for x in limits),
        )


def role_mixes(role: str, mixes: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (prefill, decode) tokens a replica of `role` processes for each class mix."""
    if role == "prefill":
        return [(p, 0.0) for p, _ in mixes]
    if role == "decode":
        return [(0.0, d) for _, d in mixes]
    return list(mixes)


# How much the shipped cost model's time and dynamic energy can fall when one aggregate of a shape grows (the
# attention kernels' wave quantization over the SMs; the GEMM kernels' HBM traffic, which drops when a larger
# M selects another tiling; measured by tests/planner/test_bounds.py, which fails if a change exceeds them).
# Every cell's value is its lower corner's times (1 − slack).
TIME_SLACK = 0.05
ENERGY_SLACK = 0.25
DECODE_ATTENTION = "attention_decode"  # the op of `StageCost.breakdown` that reads the decode context


def prefill_shape(p: int, d: int = 0, x: int = 0, chunks: int = 1) -> BatchShape:
    """The cheapest shape with p prefill tokens (in `chunks` chunks, one pair and one context token per token)
    and d decodes of total context x: every aggregate at its least value."""
    if p <= 0:
        return BatchShape(num_decode=d, decode_context_tokens=x)
    return BatchShape(
        num_prefill_tokens=p,
        num_prefill_seqs=max(1, min(chunks, p)),
        prefill_attention_pairs=float(p),
        prefill_context_tokens=p,
        num_decode=d,
        decode_context_tokens=x,
    )


def _attention_dp(stage) -> int:
    split = getattr(getattr(stage, "ops", None), "split", None)
    return max(int(getattr(split, "attn_dp", 1) or 1), 1)


class StageProbe:
    """Prices shapes on one StageCost and remembers them.

    `time`/`dynamic_energy` price one shape; `corner_time`/`corner_energy` price the least any iteration with
    at least p prefill tokens and d decodes can cost: the cheapest shape (one chunk) and — with attention data
    parallelism, where more sequences spread the batch over the dp groups and can make it cheaper — the same
    tokens in as many chunks as make the sequences a multiple of dp, times (1 − slack)."""

    def __init__(self, stage: StageCost):
        self.stage = stage
        self.dp = _attention_dp(stage)
        self.signature = stage_signature(stage)
        self._time: dict[tuple[int, int, int, int], float] = {}
        self._energy: dict[tuple[int, int, int, int], float] = {}
        self.evaluations = 0

    def time(self, p: int, d: int, x: int = 0, chunks: int = 1) -> float:
        key = (p, d, x, chunks)
        t = self._time.get(key)
        if t is None:
            shape = prefill_shape(p, d, x, chunks)
            t = self._time[key] = self.stage.iteration_time(shape) if p + d else 0.0
            self.evaluations += 1
        return t

    def dynamic_energy(self, p: int, d: int, x: int = 0, chunks: int = 1) -> float:
        """Joules above the stage's idle power over the iteration's own duration."""
        key = (p, d, x, chunks)
        e = self._energy.get(key)
        if e is None:
            if p + d == 0:
                e = 0.0
            else:
                t = self.time(p, d, x, chunks)
                shape = prefill_shape(p, d, x, chunks)
                e = max(self.stage.energy(shape, t) - self.stage.energy(BatchShape(), t), 0.0)
            self._energy[key] = e
        return e

    def time_without_decode_attention(self, p: int, d: int, chunks: int = 1) -> float:
        """Iteration time at zero decode context less its decode-attention kernel (`breakdown`'s op, as
        `StageCost.decode_attention_time` prices it, with attention dp at the busiest group's share of all
        the shape's sequences): what every op but decode attention costs; those ops do not read the decode
        context (A)."""
        key = (p, d, -1, chunks)
        t = self._time.get(key)
        if t is None:
            shape = prefill_shape(p, d, 0, chunks)
            t = self._time[key] = self.time(p, d, 0, chunks) - self.stage.decode_attention_time(shape)
        return t

    def decode_attention(self, d: int, x: int) -> float:
        """The decode-attention kernel's time for d decodes over x context tokens."""
        return self.stage.decode_attention_time(BatchShape(num_decode=d, decode_context_tokens=x))

    def _chunkings(self, p: int, d: int) -> list[int]:
        out = [1]
        if p > 1 and self.dp > 1:
            extra = (-(d + 1)) % self.dp
            if 0 < extra < p:
                out.append(1 + extra)
        return out

    def prime(self, corners) -> None:
        """Price the shapes of these (p, d) corners' cells together (`StageCost.prime`): the cell partition's
        corners are hundreds of scattered token counts, each priced alone otherwise."""
        tokens, seqs = [], []
        for p, d in corners:
            if not p:  # a decode-only corner
                tokens.append(d)
                seqs.append(d)
                continue
            for c in self._chunkings(p, d):
                tokens.append(p + d)
                seqs.append(max(1, min(c, p)) + d)
        self.stage.prime(np.array(tokens, dtype=np.int64), np.array(seqs, dtype=np.int64))

    def corner_time(self, p: int, d: int) -> float:
        """The least time of an iteration with ≥ p prefill tokens and ≥ d decodes, its decode attention left
        out (the context rate γ accounts for it)."""
        return (1 - TIME_SLACK) * min(
            self.time_without_decode_attention(p, d, c) for c in self._chunkings(p, d)
        )

    def corner_energy(self, p: int, d: int, x: int) -> float:
        return energy_corner_factor(self.stage.gpu) * min(
            self.dynamic_energy(p, d, x, c) for c in self._chunkings(p, d)
        )


@dataclass(frozen=True, slots=True)
class GridPrecision:
    """How finely the initial cells cut the (p, d) space: prefill-token intervals grow by `p_ratio` above
    `p_geometric_from` (doubling below it); decode intervals double up to half the limit and then each covers
    `d_fraction` of what is left below the limit (cells get narrow where batches are largest, which is where
    the rates are set); `refine_rounds` rounds of splitting the tight cells follow."""

    p_ratio: float
    p_geometric_from: int
    d_fraction: float
    refine_rounds: int


def energy_corner_factor(gpu) -> float:
    """The share of a corner's dynamic energy every iteration above it is known to cost: 1 − ENERGY_SLACK at the
    default clock. At a locked SM clock the FLOPs and bytes of every iteration are those of the boost clock (the
    kernel choices do not move), per-FLOP energy shrinks by s_f and per-byte energy by s_b ≥ s_f
    (`costmodel.clock.energy_scales`), so an iteration's energy is at least s_f times its boost-clock energy and a
    corner's at most s_b times its own: the factor becomes (1 − ENERGY_SLACK) · s_f / s_b (docs/design.md §5.3)."""
    flop, byte = energy_scales(gpu)
    return (1 - ENERGY_SLACK) * flop / byte


COARSE = GridPrecision(1.6, 256, 0.4, 0)
FINE = GridPrecision(1.07, 256, 0.7, 4)


def prefill_edges(limit: int, precision: GridPrecision) -> list[int]:
    """Interval starts covering 0..limit (the single point `limit` last)."""
    out = [0]
    k = 1
    while k < min(precision.p_geometric_from, limit):
        out.append(k)
        k *= 2
    while k < limit:
        out.append(k)
        k = max(k + 1, int(k * precision.p_ratio))
    if limit > 0:
        out.append(limit)
    return sorted(set(out))


def decode_edges(limit: int, precision: GridPrecision) -> list[int]:
    """Interval starts covering 0..limit, narrowing towards `limit` (the single point `limit` last)."""
    out = [0]
    k = 1
    while k < limit // 2:
        out.append(k)
        k *= 2
    rest = limit - k
    while rest >= 1:
        out.append(limit - rest)
        rest = min(rest - 1, int(rest * precision.d_fraction))
    if limit > 0:
        out.append(limit)
    return sorted(set(out))


@dataclass
class CellPartition:
    """Rectangles [p_lo, p_hi] × [d_lo, d_hi] covering every (p, d) an iteration can have, each with the cost
    of its lower corner (`cost(p, d)`)."""

    limits: IterationLimits
    cost: object  # (p, d) -> float, non-decreasing
    precision: GridPrecision = COARSE
    cells: list[tuple[int, int, int, int]] = field(default_factory=list)
    prime: object = None  # list of (p, d) corners -> None: prices them together before `cost` reads each

    def __post_init__(self):
        if not self.cells:
            ps = prefill_edges(self.limits.max_tokens, self.precision)
            ds = decode_edges(self.limits.max_decodes, self.precision)
            p_iv = [(a, b - 1) for a, b in zip(ps, ps[1:], strict=False)] + [(ps[-1], ps[-1])]
            d_iv = [(a, b - 1) for a, b in zip(ds, ds[1:], strict=False)] + [(ds[-1], ds[-1])]
            self.cells = [c for pa, pb in p_iv for da, db in d_iv if (c := self._clip(pa, pb, da, db))]

    def _clip(self, p_lo, p_hi, d_lo, d_hi):
        """The cell cut to the region an iteration can be in, or None when empty. With prefill in it, an
        iteration holds at most the token budget and max_seqs − 1 decodes; decode-only, at most
        max(budget, max_seqs) tokens; never more decodes than the KV cache holds requests."""
        lim = self.limits
        if p_hi == 0 and d_hi == 0:
            return None  # the empty iteration costs nothing and does nothing
        budget = lim.max_tokens if p_lo > 0 else lim.max_batch_tokens
        p_hi = min(p_hi, lim.max_tokens, budget - d_lo)
        seq_cap = lim.max_decodes if p_lo == 0 else min(lim.max_decodes, lim.max_seqs - 1)
        d_hi = min(d_hi, seq_cap, budget - p_lo)
        if p_hi < p_lo or d_hi < d_lo:
            return None
        return (p_lo, p_hi, d_lo, d_hi)

    def array(self) -> np.ndarray:
        if self.prime is not None:
            self.prime([(a, c) for a, _, c, _ in self.cells])
        return np.array([(a, b, c, d, self.cost(a, c)) for a, b, c, d in self.cells], dtype=float)

    def split(self, index: int) -> bool:
        """Split cell `index` in two along the side whose lower corner is furthest (relatively) from its upper
        corner; False when it is a single point."""
        p_lo, p_hi, d_lo, d_hi = self.cells[index]
        if p_hi == p_lo and d_hi == d_lo:
            return False
        rp = (p_hi - p_lo) / max(p_hi, 1)
        rd = (d_hi - d_lo) / max(d_hi, 1)
        if rp >= rd and p_hi > p_lo:
            mid = (p_lo + p_hi) // 2
            parts = [self._clip(p_lo, mid, d_lo, d_hi), self._clip(mid + 1, p_hi, d_lo, d_hi)]
        else:
            mid = (d_lo + d_hi) // 2
            parts = [self._clip(p_lo, p_hi, d_lo, mid), self._clip(p_lo, p_hi, mid + 1, d_hi)]
        self.cells[index : index + 1] = [c for c in parts if c]
        return True


def rates(
    partition: CellPartition,
    mixes: Sequence[tuple[float, float]],
    tpot_s: float | None,
    *,
    max_cells: int = 6000,
) -> list[WorkRates]:
    """The work rates of each (prefill tokens, decode tokens) mix, after refining the partition for the sum
    of the mixes (the precision's rounds of splitting the tight cells)."""
    refine_rounds = partition.precision.refine_rounds
    total_p = sum(m[0] for m in mixes)
    total_d = sum(m[1] for m in mixes)
    arr = partition.array()  # priced again only after cells are split
    best, slack = solve_work_rates(arr, total_p, total_d, tpot_s)
    for _ in range(refine_rounds):
        tight = np.flatnonzero(slack <= TIGHT * np.maximum(arr[:, 4], 1e-300))
        if len(tight) == 0 or len(partition.cells) >= max_cells:
            break
        for i in sorted(tight.tolist(), reverse=True):  # from the end so indices stay valid
            partition.split(i)
        arr = partition.array()
        new, slack = solve_work_rates(arr, total_p, total_d, tpot_s)
        gain = (new.value - best.value) / max(best.value, 1e-300)
        best = new
        if gain < MIN_GAIN:
            break
    if len(mixes) == 1:
        return [best]  # the one mix is the sum just solved
    return [solve_work_rates(arr, p, d, tpot_s)[0] for p, d in mixes]


def context_rate(probe: StageProbe, dmax: int, kv_tokens: int) -> float:
    """γ: the least seconds of decode attention per token of decode context, taken where it is least — the
    whole KV cache read by one, dp, or the most decodes (the kernel streams every KV byte; its per-sequence
    latency floors only add, so the ratio falls as context grows)."""
    x = max(int(kv_tokens), 1)
    counts = sorted({1, probe.dp, max(1, dmax)})
    return (1 - TIME_SLACK) * min(max(probe.decode_attention(d, x), 0.0) / x for d in counts)


def geometric_points(limit: int, ratio: float) -> np.ndarray:
    """1, ..., limit (integers, each at most `ratio` times the previous, `limit` included)."""
    pts = [1]
    while pts[-1] < limit:
        pts.append(min(limit, max(pts[-1] + 1, int(pts[-1] * ratio))))
    return np.array(pts, dtype=np.int64)


def floor_lookup(points: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values at the largest point ≤ each query (0 below the first point): a lower bound of a non-decreasing
    function known at `points`."""
    idx = np.searchsorted(points, query, side="right") - 1
    out = np.where(idx >= 0, values[np.clip(idx, 0, len(values) - 1)], 0.0)
    return out


@dataclass
class TemplateBound:
    """Everything the planner proves about one replica of a template (see the module docstring)."""

    limits: IterationLimits
    probes: list[StageProbe]
    bottleneck: int  # the stage whose busy time bounds the replica's work (any stage would be valid)
    precision: GridPrecision
    time: list[WorkRates]  # per workload mix
    gamma: float  # s per token of decode context on the bottleneck stage
    energy: list[WorkRates] | None  # per mix, dynamic J per token summed over the stages
    prefill_points: np.ndarray
    prefill_values: np.ndarray  # Σ over stages of one prefill of that many tokens
    context_points: np.ndarray
    decode_values: np.ndarray  # Σ over stages of one decode at that context
    role: str = "colocated"

    def for_limits(self, limits: IterationLimits) -> TemplateBound:
        """The same proven rates and floors for a template whose iteration space lies inside this one's
        (a member of a sharing group), with its own limits."""
        return replace(self, limits=limits)

    @property
    def evaluations(self) -> int:
        return sum(p.evaluations for p in self.probes)

    def prefill_floor(self, tokens: np.ndarray) -> np.ndarray:
        """Seconds one request's prefill of `tokens` takes at least (TTFT ≥ this): its chunks pass every
        stage one after another."""
        tokens = np.asarray(tokens, dtype=np.int64)
        chunk = np.minimum(tokens, self.limits.max_tokens)
        one = floor_lookup(self.prefill_points, self.prefill_values, chunk)
        chunks = np.ceil(tokens / self.limits.max_tokens)
        return np.maximum(one, chunks * self.prefill_values[0])

    def decode_floor(self, context: np.ndarray) -> np.ndarray:
        """Seconds one decode step at `context` takes at least (every gap between two tokens ≥ this)."""
        return floor_lookup(self.context_points, self.decode_values, np.asarray(context, dtype=np.int64))


def bound_template(
    stages: Sequence[StageCost],
    limits: IterationLimits,
    mixes: Sequence[tuple[float, float]],
    tpot_s: float | None,
    *,
    energy: bool,
    precision: GridPrecision = COARSE,
    max_context: int | None = None,
    role: str = "colocated",
    probes: list[StageProbe] | None = None,
) -> TemplateBound:
    """The bounds of one replica (its stages in pipeline order) for the workload mixes (per class: prefill
    tokens, decode tokens) in `role` (the module docstring). `energy`: also the dynamic-energy rates (min_energy
    and J/token budgets). `probes`: StageProbes of stages that price alike, to reuse their evaluations."""
    probes = probes or [StageProbe(s) for s in stages]
    dmax = limits.max_decodes
    # which stage is busiest on the work the role does
    weight = [
        (p.time(limits.max_tokens, 0) if role != "decode" else 0.0)
        + (p.time(0, dmax) if role != "prefill" else 0.0)
        for p in probes
    ]
    neck = int(np.argmax(weight))
    p_pts = geometric_points(limits.max_tokens, 1.25)
    for pr in {pr.signature: pr for pr in probes}.values():  # one request's prefill, each length at once
        pr.stage.prime(p_pts, np.ones_like(p_pts))
    p_vals = (1 - TIME_SLACK) * np.array(
        [_over_stages(probes, lambda pr, n=int(n): pr.time(n, 0)) for n in p_pts]
    )
    if role == "prefill":  # no decode runs on it: its decode floor is never read
        x_pts, x_vals = np.array([0], dtype=np.int64), np.zeros(1)
    else:
        x_pts = np.concatenate(([0], geometric_points(max(max_context or limits.kv_tokens, 1), 1.6)))
        x_vals = (1 - TIME_SLACK) * np.array(
            [_over_stages(probes, lambda pr, x=int(x): pr.time(0, 1, x)) for x in x_pts]
        )
    bound = TemplateBound(limits, probes, neck, precision, [], 0.0, None, p_pts, p_vals, x_pts, x_vals, role)
    return with_precision(bound, mixes, tpot_s, precision, energy=energy)


def with_precision(
    bound: TemplateBound, mixes, tpot_s: float | None, precision: GridPrecision, *, energy: bool
) -> TemplateBound:
    """(Re)compute the time (and, with `energy`, energy) rates on cells of `precision` (priced shapes are
    remembered, so refining reuses the coarse pass's evaluations). `mixes` are the workload's per class; the
    bound's role projects them (`role_mixes`)."""
    probe = bound.probes[bound.bottleneck]
    mixes = role_mixes(bound.role, mixes)
    tpot = None if bound.role == "prefill" else tpot_s
    part = CellPartition(bound.limits, probe.corner_time, precision, prime=probe.prime)
    bound.time = rates(part, mixes, tpot)
    if bound.role == "prefill":
        bound.gamma = 0.0
    else:
        bound.gamma = context_rate(probe, bound.limits.max_decodes, bound.limits.kv_tokens)
    bound.energy = _energy_rates(bound.probes, bound.limits, mixes, precision) if energy else None
    bound.precision = precision
    return bound


def stage_signature(stage) -> tuple:
    """What a stage's prices depend on: its GPU, GPUs, place in the pipeline, split and operators (two stages
    with the same signature price every shape alike)."""
    ops = getattr(stage, "ops", None)
    if ops is None:
        return (id(stage),)
    op_key = tuple((type(op).__name__, getattr(op, "name", ""), getattr(op, "count", 0)) for op in ops.static)
    return (stage.gpu.name, stage.num_gpus, stage.first, stage.last, repr(ops.split), op_key, ops.num_layers)


def _over_stages(probes, fn) -> float:
    """Σ over the stages of fn(probe), pricing each distinct stage once."""
    seen: dict = {}
    total = 0.0
    for pr in probes:
        key = pr.signature
        if key not in seen:
            seen[key] = fn(pr)
        total += seen[key]
    return total


def _energy_rates(probes, limits, mixes, precision) -> list[WorkRates]:
    """Dynamic-energy rates summed over the stages (every token passes every stage)."""
    per_stage = []
    done: dict = {}
    for pr in probes:
        key = pr.signature
        if key not in done:  # identical stages (the middle of a deep pipeline) have identical rates
            part = CellPartition(
                limits, lambda p, d, pr=pr: pr.corner_energy(p, d, 0), precision, prime=pr.prime
            )
            done[key] = rates(part, mixes, None)
        per_stage.append(done[key])
    out = []
    for k, (p, d) in enumerate(mixes):
        a = sum(r[k].alpha for r in per_stage)
        b = sum(r[k].beta for r in per_stage)
        out.append(WorkRates(a, b, 0.0, a * p + b * d))
    return out


def trivial_bound(
    stages, limits: IterationLimits, mixes, *, energy: bool, role: str = "colocated"
) -> TemplateBound:
    """The bound of a template nothing was proven about (the time limit came first): no work, no energy, no
    latency — true of every plan, and no use for pruning. Marked FINE so the loop does not refine it."""
    probes = [StageProbe(s) for s in stages]
    zero = WorkRates(0.0, 0.0, 0.0, 0.0)
    points = np.array([1], dtype=np.int64)
    return TemplateBound(
        limits,
        probes,
        0,
        FINE,
        [zero for _ in mixes],
        0.0,
        [zero for _ in mixes] if energy else None,
        points,
        np.zeros(1),
        np.array([0], dtype=np.int64),
        np.zeros(1),
        role,
    )
