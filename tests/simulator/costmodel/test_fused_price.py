"""The fused price (time, energy and FLOPs in one pass) equals the per-operator breakdown `apex estimate` shows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import catalog
from simulator.costmodel import BatchShape, build_stage_cost
from simulator.costmodel.energy import gpu_energy
from simulator.costmodel.replica import clear_price_caches
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import Stage
from simulator.scenario import DTypes, Engine

# (model, stage cells, dtypes, gpu, first, last): dense GQA, MoE with ep, attention dp, MLA, a middle stage, fp8
CASES = [
    ("llama-3.1-70b", {"tp": 8}, DTypes(weights="fp8", kv_cache="fp8"), "h100-sxm", True, True),
    ("llama-3.1-8b", {"tp": 1}, DTypes(), "a100-sxm-80gb", True, True),
    ("mixtral-8x7b", {"tp": 2, "ep": 2}, DTypes(), "h100-sxm", True, True),
    ("llama-3.1-70b", {"tp": 4, "layers": (20, 60)}, DTypes(), "h100-sxm", False, False),
    (
        "deepseek-v3",
        {"attention": {"tp": 2, "dp": 4}, "ffn": {"tp": 1, "ep": 8}},
        DTypes(weights="fp8"),
        "h200-sxm",
        True,
        True,
    ),
    ("qwen3-235b-a22b", {"tp": 4, "ep": 4, "layers": (0, 47)}, DTypes(), "b200", True, False),
]
IDS = ["70b-tp8-fp8", "8b-a100", "mixtral-ep2", "70b-middle", "dsv3-attn-dp", "qwen3-moe-first"]


def _stage(case):
    model_name, cells, dtypes, gpu_name, first, last = case
    model = catalog.get_model(model_name)
    gpu = catalog.get_gpu(gpu_name)
    cluster = Cluster(node_groups=[NodeGroup(gpu=gpu_name, nodes=2, gpus_per_node=8)])
    cells = dict(cells)
    layers = cells.pop("layers", (0, model.num_layers))
    stage = Stage(layers=layers, **cells)
    return build_stage_cost(model, stage, gpu, cluster, dtypes, Engine(), first=first, last=last)


def _by_operator(stage, shape):
    """(seconds, joules, FLOPs) summed from the per-operator breakdown, as `apex estimate` prices it."""
    ops = stage.breakdown(shape)
    time_s = sum(op.time_s for op in ops)
    flops = sum(op.flops for op in ops)
    nbytes = sum(op.bytes for op in ops if op.bound != "network")
    joules = stage.num_gpus * gpu_energy(stage.gpu, time_s, flops, nbytes, stage.compute_dtype)
    return time_s, joules, stage.flops(shape)


shapes = st.builds(
    lambda prefill, decode: BatchShape.from_requests(
        [n for n, _ in prefill], [c for _, c in prefill], decode
    ),
    st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 8000)), max_size=4),
    st.lists(st.integers(1, 16000), max_size=300),
)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(shape=shapes)
def test_fused_price_equals_operator_breakdown(case, shape):
    """Time, energy and FLOPs of the fused path equal the sums over `breakdown`'s operators (to 1e-9)."""
    stage = _stage(case)
    fused = stage.price(shape)
    assert fused == pytest.approx(_by_operator(stage, shape), rel=1e-9, abs=1e-15)
    assert stage.iteration_time(shape) == fused[0]
    assert stage.energy(shape, fused[0]) == pytest.approx(fused[1], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 512), context=st.integers(1, 4_000_000))
def test_price_decode_equals_price_of_decode_shape(case, n, context):
    """The decode-only shortcut prices exactly what `price` does for the same decode batch."""
    stage = _stage(case)
    shape = BatchShape(num_decode=n, decode_context_tokens=context)
    assert stage.price_decode(n, context) == pytest.approx(stage.price(shape), rel=1e-12)
    assert stage.price_decode(n, context) == pytest.approx(_by_operator(stage, shape), rel=1e-9)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(shape=shapes)
def test_decode_attention_time_is_the_breakdowns_decode_operator(case, shape):
    """`decode_attention_time` (what the planner's bounds subtract) is the breakdown's decode-attention op,
    fused form and op-by-op fallback alike (with attention dp, at the busiest group's share)."""
    stage = _stage(case)
    op = sum(c.time_s for c in stage.breakdown(shape) if c.name == "attention_decode")
    assert stage.decode_attention_time(shape) == pytest.approx(op, rel=1e-9, abs=1e-15)
    slow = dataclasses.replace(stage, fused_decode=False)
    assert slow.decode_attention_time(shape) == pytest.approx(op, rel=1e-9, abs=1e-15)
    assert (op > 0) == (shape.num_decode > 0)


def test_fused_price_without_decode_form_prices_op_by_op():
    """When decode attention is not of the fused form the price falls back to the operators, same value."""
    stage = _stage(CASES[0])
    slow = dataclasses.replace(stage, fused_decode=False)
    shape = BatchShape.from_requests([700], [300], [1200] * 40)
    assert slow.price(shape) == pytest.approx(stage.price(shape), rel=1e-9)
    assert slow.price_decode(40, 48_000) == pytest.approx(stage.price_decode(40, 48_000), rel=1e-9)
    assert slow._decode_lines[40.0] is None


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_decode_attention_takes_the_fused_form_on_shipped_models(case):
    """The fast decode path is in use (not its op-by-op fallback) for every case above."""
    stage = _stage(case)
    for n in (1, 7, 64, 256):
        stage.price_decode(n, 1000 * n)
    assert stage._decode_lines and None not in stage._decode_lines.values()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_price_does_not_depend_on_what_was_priced_before(case):
    """Caches never leak one shape's price into another: a stage that priced other mixes first (with attention
    dp, the busiest group's share depends on prefill chunks too) gives the price of a cold stage."""
    warm = _stage(case)
    for shape in (
        BatchShape.from_requests([42], [0], [300] * 94),
        BatchShape.from_requests([], [], [0] * 42),
        BatchShape.from_requests([7, 9, 11], [0, 0, 5], [64] * 42),
    ):
        warm.price(shape)
    for shape in (
        BatchShape.from_requests([], [], [10] * 42),
        BatchShape.from_requests([5], [0], [10] * 41),
        BatchShape.from_requests([42], [0], [300] * 3),
    ):
        warm_price = warm.price(shape)
        clear_price_caches()  # stages of the same fields share caches: start the reference cold
        assert warm_price == pytest.approx(_stage(case).price(shape), rel=1e-12)


def test_static_cache_keys_are_exact_counts():
    """Caches hold exact counts (no grid): a shape one token larger is priced on its own, and differently
    when a GEMM crosses a tile boundary."""
    stage = _stage(CASES[1])
    a = stage.price(BatchShape.from_requests([128], [0]))[0]
    b = stage.price(BatchShape.from_requests([129], [0]))[0]
    assert 128 in stage._by_tokens and 129 in stage._by_tokens
    assert b > a


def test_apex_estimate_phases_equal_fused_price_on_every_example():
    """`apex estimate`'s per-operator phases (planner.estimate) add up to the fused price the simulator uses."""
    from planner.estimate import estimate_plan
    from simulator.costmodel import build_replica_cost
    from simulator.scenario import load_scenario

    examples = sorted(p for p in Path(__file__).resolve().parents[3].glob("configs/examples/*.yaml"))
    checked = 0
    for path in examples:
        if path.name.startswith("study-"):
            continue
        scenario = load_scenario(path)
        if scenario.plan is None:
            continue
        report = estimate_plan(scenario)
        spec = scenario.spec
        mean_in, mean_out = report.mean_input_tokens, report.mean_output_tokens
        shapes = [BatchShape.from_requests([mean_in], [0])] + [
            BatchShape.from_requests(decode_context=[mean_in + mean_out // 2] * b) for b in (1, 8, 32, 128)
        ]
        stages = [
            stage
            for group in scenario.plan.replicas
            for stage in build_replica_cost(
                scenario.model,
                group,
                scenario.gpus,
                scenario.cluster,
                spec.dtype,
                spec.engine,
                spec.calibration,
            ).stages
        ]
        for stage, estimate in zip(stages, report.stages, strict=True):
            for shape, phase in zip(shapes, estimate.phases, strict=True):
                assert phase.time_s == pytest.approx(stage.price(shape)[0], rel=1e-12)
                checked += 1
    assert checked >= 5
