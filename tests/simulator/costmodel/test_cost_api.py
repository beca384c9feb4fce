"""The public `simulator.cost` functions."""

from __future__ import annotations

import pytest

from simulator import catalog, cost


def test_cost_functions_accept_names_and_objects():
    """Catalog names and GPU objects price the same GEMM."""
    gpu = catalog.get_gpu("h100-sxm")
    assert cost.gemm_time("h100-sxm", 512, 4096, 4096) == cost.gemm_time(gpu, 512, 4096, 4096) > 0


def test_cost_fp8_gemm_faster_than_bf16():
    """A large FP8 GEMM runs at the FP8 rate but at its own, lower best-shape fraction (H100: 71% vs 80%) and
    after quantizing its bf16 activations: between half and 0.7 of the BF16 time."""
    ratio = cost.gemm_time("h100-sxm", 8192, 8192, 8192, "fp8") / cost.gemm_time("h100-sxm", 8192, 8192, 8192)
    assert 0.5 * 0.80 / 0.71 < ratio < 0.7


def test_cost_attention_prefill_grows_quadratically_efficiency_rising():
    """Doubling a long prompt almost quadruples causal attention time: a bit under 4x, because flash-attention
    efficiency still rises with the keys each query block streams."""
    t1 = cost.attention_prefill_time("h100-sxm", 1, 8192, 0, 64, 8, 128)
    t2 = cost.attention_prefill_time("h100-sxm", 1, 16384, 0, 64, 8, 128)
    assert 3.5 < t2 / t1 < 4.0
    short = cost.attention_prefill_time("h100-sxm", 1, 512, 0, 64, 8, 128)
    flops = lambda s: 4 * s * (s + 1) / 2 * 64 * 128  # noqa: E731
    assert flops(16384) / t2 > 2 * flops(512) / short  # long causal prefill runs far closer to peak


def test_cost_attention_decode_reads_kv_tokens():
    """Decode attention of 64 x 4096 tokens ~ floor + KV bytes (valid tokens only, plus Q/O) at the streaming rate."""
    from simulator.costmodel.kernels import streaming_bandwidth

    gpu = catalog.get_gpu("h100-sxm")
    kv = 64 * 4096 * 2 * 8 * 128 * 2 + 64 * 2 * 64 * 128 * 2
    expected = gpu.efficiency.attention_decode_floor_s + kv / streaming_bandwidth(gpu)
    assert cost.attention_decode_time(gpu, 64, 4096, 64, 8, 128) == pytest.approx(expected, rel=0.05)


def test_cost_all_reduce_monotone_in_size_and_accepts_cluster(node):
    """Bigger messages cost more; a Cluster picks its fabric."""
    small = cost.all_reduce_time("h100-sxm", 8, 2**20)
    assert cost.all_reduce_time("h100-sxm", 8, 2**26) > small
    assert cost.all_reduce_time(node, 8, 2**20) == pytest.approx(small)
