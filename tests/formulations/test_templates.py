"""Templates: enumeration pruning and the analytic capacity model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formulations.layer_partition import evaluate_split
from formulations.templates import (
    analytic_capacity,
    cell_options,
    enumerate_structures,
    largest_batch,
    partition_problem_for,
    stage_weight_bytes_per_gpu,
)
from simulator.hardware import GPU, Cluster, NodeGroup, PeakRates
from simulator.model import Model, MoEConfig
from simulator.plan import even_layer_split


def make_gpu(name: str, memory_gib: float) -> GPU:
    return GPU(
        name=name,
        peak_tflops=PeakRates(bf16=989, fp16=989, fp8=1979),
        memory_gib=memory_gib,
        memory_bandwidth_tbps=3.35,
        scale_up_bandwidth_gbps=450,
        scale_up_fabric="nvlink4-nvswitch",
        num_sms=132,
        tdp_w=700,
        idle_w=100,
        price_usd_per_hour=3.0,
    )


def make_model(**kw) -> Model:
    base = dict(
        name="toy",
        source="test",
        num_layers=8,
        hidden_size=1024,
        num_heads=16,
        num_kv_heads=4,
        head_dim=64,
        ffn_size=4096,
        vocab_size=32000,
    )
    base.update(kw)
    return Model(**base)


def test_enumerate_structures_divisibility_and_memory():
    """Every enumerated stage divides heads and FFN, fits its domain, and its weights fit GPU memory."""
    model = make_model(num_heads=12, num_kv_heads=4)
    gpus = {"g": make_gpu("g", 80)}
    cluster = Cluster(node_groups=[NodeGroup(gpu="g", nodes=2, gpus_per_node=8)])
    templates = enumerate_structures(model, cluster, gpus, max_pp=3)
    assert templates
    for t in templates:
        for i, s in enumerate(t.stages):
            assert model.num_heads % s.attention.tp == 0 and model.ffn_size % s.ffn.tp == 0
            assert s.num_gpus <= 8 and s.attention.tp != 8  # 12 heads: tp 8 pruned
            assert (
                stage_weight_bytes_per_gpu(model, s, i == 0, i == len(t.stages) - 1, "bf16")
                <= 80 * 2**30 * 0.72
            )


def test_enumerate_structures_memory_prunes_small_gpus():
    """A model too large for one small GPU only appears split over enough GPUs."""
    model = make_model(
        hidden_size=8192, ffn_size=28672, num_layers=16, num_heads=64, num_kv_heads=8, head_dim=128
    )
    gpus = {"g": make_gpu("g", 24)}
    cluster = Cluster(node_groups=[NodeGroup(gpu="g", nodes=1, gpus_per_node=8)])
    templates = enumerate_structures(model, cluster, gpus, max_pp=2)
    assert templates and all(t.num_gpus >= 2 for t in templates)


def test_enumerate_structures_mixed_gpus_uneven_split():
    """With mixed GPU types allowed, a bigger-memory GPU takes more layers in an uneven split."""
    model = make_model(
        num_layers=32, hidden_size=4096, ffn_size=14336, num_heads=32, num_kv_heads=8, head_dim=128
    )
    gpus = {"big": make_gpu("big", 141), "small": make_gpu("small", 8)}
    cluster = Cluster(
        node_groups=[NodeGroup(name="a", gpu="big", nodes=1), NodeGroup(name="b", gpu="small", nodes=1)]
    )
    templates = enumerate_structures(model, cluster, gpus, max_pp=2, allow_mixed_gpus=True)
    mixed = [t for t in templates if len(t.gpus_by_type) == 2 and t.stages[0].num_gpus == 1]
    assert mixed
    for t in mixed:
        big = next(s for s in t.stages if s.gpu == "big")
        assert big.num_layers > model.num_layers // 2


def test_cell_options_moe_expert_parallel():
    """MoE models get expert-parallel and attention-data-parallel cells whose ep divides the experts."""
    model = make_model(moe=MoEConfig(num_experts=8, top_k=2, expert_ffn_size=1024))
    cells = cell_options(model, 8)
    assert any(f.ep == 8 and a.dp > 1 for a, f in cells)
    assert all(model.moe.num_experts % f.ep == 0 for _, f in cells)


def test_analytic_capacity_matches_hand_computation():
    """With a linear step time the batch, rate and M/M/1 TTFT match a hand computation."""

    def step(prefill_tokens, num_decode, context):
        return 0.01 + 0.0001 * num_decode + 1e-5 * prefill_tokens

    est = analytic_capacity(
        step,
        kv_capacity_tokens=1e9,
        mean_input=1000,
        mean_output=100,
        ttft_target_s=10.0,
        tpot_target_s=0.02,
        max_num_seqs=512,
    )
    assert est.decode_batch == 100 and est.limited_by == "tpot"
    prefill = 0.01 + 0.01
    rate = 100 / (100 * 0.02 + 100 * prefill)
    assert est.requests_per_s == pytest.approx(rate)
    assert est.ttft_s == pytest.approx(prefill / (1 - rate * prefill))


def test_analytic_capacity_kv_and_ttft_limits():
    """KV capacity bounds the batch, and a tight TTFT target lowers the rate to where M/M/1 TTFT meets it."""

    def step(prefill_tokens, num_decode, context):
        return 0.01 + 0.001 * prefill_tokens / 100

    est = analytic_capacity(
        step,
        kv_capacity_tokens=10 * 150,
        mean_input=100,
        mean_output=100,
        ttft_target_s=0.012,
        tpot_target_s=1.0,
        max_num_seqs=64,
    )
    assert est.decode_batch == 10
    assert est.limited_by == "ttft" and est.ttft_s == pytest.approx(0.012)
    none = analytic_capacity(step, 1e9, 100, 100, ttft_target_s=0.001, tpot_target_s=1.0, max_num_seqs=8)
    assert none.requests_per_s == 0 and none.limited_by.startswith("infeasible")


def _catalog(model: str, gpu: str, nodes: int):
    from simulator.scenario import load_scenario

    sc = load_scenario(
        {
            "model": model,
            "cluster": {"gpu": gpu, "nodes": nodes, "gpus_per_node": 8},
            "workload": {
                "requests": 4,
                "arrival": {"process": "poisson", "rate": 1.0},
                "input_tokens": {"dist": "fixed", "value": 8},
                "output_tokens": {"dist": "fixed", "value": 8},
            },
        }
    )
    return sc.model, sc.cluster, sc.gpus


def test_models_larger_than_four_domains_get_deeper_pipelines():
    """Kimi-K2 in bf16 (~2 TB) does not fit 4 stages of 8 H100s: the enumeration goes to the fewest stages that
    fit (and one more) instead of returning nothing."""
    model, cluster, gpus = _catalog("kimi-k2", "h100-sxm", 16)
    templates = enumerate_structures(model, cluster, gpus, weights_dtype="bf16", memory_fraction=0.9)
    assert templates
    depths = {len(t.stages) for t in templates}
    assert min(depths) >= 5 and max(depths) <= 16


@pytest.mark.parametrize("backend", ["dp", "cpsat", pytest.param("highs", marks=pytest.mark.slow)])
def test_dense_first_layers_get_a_balanced_uneven_split_from_the_partition_model(backend):
    """DeepSeek-V3's three dense layers cost less than its MoE layers: besides the even split, pipelines get the
    layer-partition model's balanced split — the same with every backend — whose bottleneck is lower."""
    model, cluster, gpus = _catalog("deepseek-v3", "h200-sxm", 4)
    templates = enumerate_structures(
        model, cluster, gpus, weights_dtype="fp8", max_pp=4, partition_backend=backend, partition_time_s=20
    )
    uneven = [
        t
        for t in templates
        if len(t.stages) > 1
        and [s.layers for s in t.stages]
        != [tuple(b) for b in even_layer_split(model.num_layers, len(t.stages))]
        and t.stages[0].num_gpus == 8
    ]
    assert uneven
    t = uneven[0]
    attention, ffn = t.stages[0].attention, t.stages[0].ffn
    problem = partition_problem_for(model, gpus, [s.gpu for s in t.stages], attention, ffn, "fp8", 0.72, 8)
    balanced = evaluate_split(problem, [s.layers for s in t.stages])
    even = evaluate_split(problem, [tuple(b) for b in even_layer_split(model.num_layers, len(t.stages))])
    assert balanced.bottleneck_s <= 0.97 * even.bottleneck_s
    assert t.stages[0].num_layers > t.stages[-1].num_layers  # the cheap dense layers share the first stage


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1e-3, allow_nan=False), min_size=1, max_size=300),
    st.integers(1, 300),
    st.floats(0.0, 0.2, allow_nan=False),
)
def test_largest_batch_is_the_largest_batch_meeting_the_target(steps, upper, slack):
    """For a non-decreasing step time met at batch 1, the largest batch up to the cap that meets the target."""
    times = [0.0]
    for dt in steps:
        times.append(times[-1] + dt)
    upper = min(upper, len(times) - 1)
    target = times[1] + slack * (times[-1] - times[1])

    def step(b):
        return times[b]

    want = max(b for b in range(1, upper + 1) if times[b] <= target)
    assert largest_batch(step, upper, target) == want


def test_largest_batch_prices_the_same_batches_under_different_caps():
    """Searches of one step function under caps above its answer price the same batches (the cost model's
    caches serve knob variants of one layout) but for the larger cap's higher powers of two, and no more of
    them than a binary search would."""

    def search(upper):
        asked = []

        def step(b):
            asked.append(b)
            return 1e-3 * b

        return largest_batch(step, upper, 0.3), set(asked)

    (a, seen_a), (b, seen_b), (c, seen_c) = search(700), search(1000), search(1500)
    assert a == b == c == 300
    assert seen_a == seen_b
    assert seen_c - seen_a == {1024}
    assert len(seen_c) <= (1500).bit_length()
