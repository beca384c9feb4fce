"""The bounds' assumptions about the cost model, checked on the shipped cost model (planner/search/bounds.py).

If a cost-model change breaks one of these, the planner's bounds would no longer be proven: the change must
restore the property or the bounds must change with it.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.search.bounds import (
    COARSE,
    DECODE_ATTENTION,
    FINE,
    CellPartition,
    IterationLimits,
    StageProbe,
    bound_template,
    context_rate,
    prefill_shape,
)
from simulator.costmodel import build_replica_cost
from simulator.costmodel.interface import BatchShape
from simulator.scenario import load_scenario

# stages of different kinds: dense tp1 / tp4 / pp, MoE with expert and attention-data parallelism, MLA fp8
STAGES = {
    "llama8b-tp1": ("llama-3.1-8b", "h100-sxm", "tp=1", {}),
    "llama70b-tp4-pp2": ("llama-3.1-70b", "h100-sxm", "tp=4,pp=2", {}),
    "mixtral-ep8-dp": ("mixtral-8x7b", "h100-sxm", "tp=2,ep=8", {}),
    "deepseek-mla-fp8": ("deepseek-v3", "h200-sxm", "tp=8,pp=4", {"weights": "fp8", "kv_cache": "fp8"}),
    # the planner's clock dimension: the same properties at a locked SM clock (costmodel/clock.py)
    "llama8b-tp1-1080mhz": ("llama-3.1-8b", "h200-sxm", "tp=1", {}, 1080),
}


@functools.cache
def stages_of(name: str):
    model, gpu, plan, dtype, *clock = STAGES[name]
    sc = load_scenario(
        {
            "sm_clock_mhz": clock[0] if clock else None,
            "model": model,
            "cluster": {"gpu": gpu, "nodes": 4, "gpus_per_node": 8},
            "dtype": dtype,
            "workload": {
                "requests": 10,
                "arrival": {"process": "poisson", "rate": 1.0},
                "input_tokens": {"dist": "fixed", "value": 16},
                "output_tokens": {"dist": "fixed", "value": 16},
            },
            "plan": plan,
        }
    )
    cost = build_replica_cost(
        sc.model, sc.plan.replicas[0], sc.gpus, sc.cluster, sc.spec.dtype, sc.spec.engine
    )
    return cost


def dynamic(stage, shape: BatchShape) -> float:
    t = stage.iteration_time(shape)
    return stage.energy(shape, t) - stage.energy(BatchShape(), t)


COORDS = (
    "num_prefill_tokens",
    "num_prefill_seqs",
    "prefill_attention_pairs",
    "prefill_context_tokens",
    "num_decode",
    "decode_context_tokens",
)


@st.composite
def shapes(draw):
    """A shape an iteration can have: chunks ≤ prefill tokens ≤ pairs, prefill context ≥ its tokens."""
    p = draw(st.integers(0, 8192))
    chunks = draw(st.integers(1, min(p, 300))) if p else 0
    d = draw(st.integers(0, 256))
    if p + d == 0:
        d = 1
    pairs = draw(st.floats(p, p * (p + 1) / 2 + p * 4096)) if p else 0.0
    ctx_p = draw(st.integers(p, p + 16384)) if p else 0
    ctx_d = draw(st.integers(0, d * 8192))
    return BatchShape(p, chunks, pairs, ctx_p, d, ctx_d)


@pytest.mark.parametrize("name", sorted(STAGES))
@settings(max_examples=300, deadline=None)
@given(shape=shapes(), shrink_p=st.floats(0, 1), shrink_d=st.floats(0, 1))
def test_a_cell_corner_costs_at_most_any_iteration_above_it(name, shape, shrink_p, shrink_d):
    """What the bounds use of the cost model: an iteration with at least p prefill tokens and d decodes costs at
    least the corner value of (p, d) — time, and dynamic energy at the least decode context — whatever its
    chunks, attention pairs, contexts and, with attention data parallelism, the spread of its sequences over
    the dp groups (within the slack `bounds.TIME_SLACK` / `ENERGY_SLACK`)."""
    p = int(shape.num_prefill_tokens * shrink_p)
    d = int(shape.num_decode * shrink_d)
    if p + d == 0:
        return
    for stage in stages_of(name).stages:
        probe = StageProbe(stage)
        assert stage.iteration_time(shape) >= probe.corner_time(p, d), (p, d)
        assert dynamic(stage, shape) >= probe.corner_energy(p, d, d * 0), (p, d)


def _split(stage, shape):
    ops = stage.breakdown(shape)
    attn = sum(c.time_s for c in ops if c.name == DECODE_ATTENTION)
    return attn, sum(c.time_s for c in ops) - attn


@pytest.mark.parametrize("name", sorted(STAGES))
@settings(max_examples=150, deadline=None)
@given(shape=shapes())
def test_only_decode_attention_reads_the_decode_context_at_least_gamma_per_token(name, shape):
    """(A) the ops other than decode attention cost the same whatever the decode context, the breakdown adds up
    to the iteration time, and decode attention costs at least γ per context token."""
    cost = stages_of(name)
    for stage in cost.stages:
        probe = StageProbe(stage)
        gamma = context_rate(probe, 256, int(cost.kv_capacity_tokens))
        without = BatchShape(*(getattr(shape, c) for c in COORDS[:5]), 0)
        attn, rest = _split(stage, shape)
        assert rest == pytest.approx(_split(stage, without)[1], rel=1e-12, abs=1e-15)
        assert attn + rest == pytest.approx(stage.iteration_time(shape), rel=1e-9)
        assert attn >= gamma * shape.decode_context_tokens * (1 - 1e-12)


@pytest.mark.parametrize("name", ["llama8b-tp1", "mixtral-ep8-dp", "deepseek-mla-fp8"])
@pytest.mark.parametrize("precision", [COARSE, FINE], ids=["coarse", "fine"])
def test_work_rates_are_below_every_iteration(name, precision):
    """The proven rates hold for every iteration shape of the region: α·p + β·d + γ·x ≤ T on the bottleneck
    stage, with and without a TPOT multiplier (then with the TPOT term: ≤ T + μ(d·T − τ·d))."""
    cost = stages_of(name)
    limits = IterationLimits(8192, 256, 256, 16, int(cost.kv_capacity_tokens))
    mixes = [(3e5, 1e5), (1e5, 3e5)]
    rng = np.random.default_rng(0)
    for tpot in (None, 0.05):
        tb = bound_template(cost.stages, limits, mixes, tpot, energy=True, precision=precision)
        stage = cost.stages[tb.bottleneck]
        for _ in range(400):
            p = int(rng.integers(0, 8193))
            d = int(rng.integers(0 if p else 1, min(256, 8192 - p) + 1)) if p < 8192 else 0
            x = int(rng.integers(d * 16, d * 4096 + 1)) if d else 0
            shape = prefill_shape(p, d, x)
            t = stage.iteration_time(shape)
            e = sum(dynamic(s, prefill_shape(p, d, d * 16)) for s in cost.stages)
            for k in range(len(mixes)):
                r = tb.time[k]
                lhs = r.alpha * p + r.beta * d + tb.gamma * x
                assert lhs <= t + r.mu * (d * t - (tpot or 0) * d) + 1e-12, (p, d, x, r)
                er = tb.energy[k]
                assert er.alpha * p + er.beta * d <= e * (1 + 1e-9) + 1e-12, (p, d, er)


def test_cells_cover_every_iteration_and_refine_upward():
    """Every (p, d) an iteration can have lies in exactly one cell; fine cells give rates at least as high."""
    limits = IterationLimits(512, 64, 48, 1, 10_000)
    part = CellPartition(limits, lambda p, d: float(p + d), COARSE)
    cover = np.zeros((513, 65), dtype=int)
    for p_lo, p_hi, d_lo, d_hi in part.cells:
        cover[p_lo : p_hi + 1, d_lo : d_hi + 1] += 1
    for p in range(513):
        for d in range(65):
            allowed = (p + d > 0) and d <= 48 and (p + d <= 512 if p else d <= 512) and (p == 0 or d <= 63)
            if allowed:
                assert cover[p, d] == 1, (p, d)
    cost = stages_of("llama8b-tp1")
    lim = IterationLimits(8192, 256, 256, 16, int(cost.kv_capacity_tokens))
    coarse = bound_template(cost.stages, lim, [(1e5, 1e5)], None, energy=False, precision=COARSE)
    fine = bound_template(cost.stages, lim, [(1e5, 1e5)], None, energy=False, precision=FINE)
    assert fine.time[0].value >= coarse.time[0].value * (1 - 1e-9)


def test_floors_are_below_one_request_alone():
    """The prefill and decode floors are at most one request's own prefill and decode step on the replica."""
    cost = stages_of("llama70b-tp4-pp2")
    lim = IterationLimits(8192, 256, 256, 16, int(cost.kv_capacity_tokens))
    tb = bound_template(cost.stages, lim, [(1e5, 1e5)], None, energy=False)
    for n in (1, 7, 300, 4097, 8192, 20000):
        chunks = [8192] * (n // 8192) + ([n % 8192] if n % 8192 else [])
        cached, real = 0, 0.0
        for c in chunks:
            shape = BatchShape.from_requests([c], [cached])
            real += sum(s.iteration_time(shape) for s in cost.stages)
            cached += c
        assert tb.prefill_floor(np.array([n]))[0] <= real * (1 + 1e-12)
    probe = StageProbe(cost.stages[0])
    assert probe.time(0, 1, 5000) >= probe.time(0, 1, 0)
    for x in (0, 100, 5000, 100000):
        real = sum(s.iteration_time(BatchShape(num_decode=1, decode_context_tokens=x)) for s in cost.stages)
        assert tb.decode_floor(np.array([x]))[0] <= real * (1 + 1e-12)
