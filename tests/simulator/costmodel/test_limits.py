"""Limits: huge GEMMs reach gemm_max, batch-1 decode is weight-bandwidth-bound, tiny all-reduces cost α."""

from __future__ import annotations

import pytest

from simulator import catalog, cost
from simulator.costmodel import comm
from simulator.costmodel.interface import BatchShape
from simulator.costmodel.roofline import gemm_efficiency
from simulator.scenario import DTypes, Engine


def test_gemm_time_huge_shape_approaches_gemm_max(h100):
    """A 16k^3 BF16 GEMM runs within 2% of gemm_max x peak."""
    m = n = k = 16384
    achieved = 2.0 * m * n * k / cost.gemm_time(h100, m, n, k, "bf16")
    assert achieved == pytest.approx(h100.efficiency.gemm_max * h100.peak_flops("bf16"), rel=0.02)


def test_gemm_time_small_m_is_memory_bound(h100):
    """An m=1 GEMM costs about its weight bytes over HBM bandwidth, not its FLOPs."""
    t = cost.gemm_time(h100, 1, 8192, 8192, "bf16")
    weights = 8192 * 8192 * 2
    assert t >= weights / h100.memory_bandwidth_bytes_per_s
    assert t == pytest.approx(
        weights / (h100.memory_bandwidth_bytes_per_s * h100.efficiency.memory_max), rel=0.1
    )


def test_gemm_efficiency_wave_quantization_steps(h100):
    """One more tile than a full wave of SMs halves the GEMM efficiency (a second, nearly empty wave)."""
    eff, sms = h100.efficiency, h100.num_sms
    full = gemm_efficiency(eff, sms, 128, 128 * sms)
    over = gemm_efficiency(eff, sms, 128, 128 * (sms + 1))
    assert full == pytest.approx(eff.gemm_max)
    assert over == pytest.approx(eff.gemm_max * (sms + 1) / (2 * sms))


def test_decode_iteration_batch1_70b_one_h100_memory_bound(make_stage):
    """Batch-1 decode of llama-3.1-70b (fp8 weights) on one H100 ~ weights / (bw x memory_max)."""
    stage = make_stage(
        "llama-3.1-70b", dtypes=DTypes(weights="fp8", kv_cache="fp8"), engine=Engine(kind="vllm-v1")
    )
    shape = BatchShape.from_requests(decode_context=[512])
    t = stage.iteration_time(shape)
    gpu = stage.gpu
    floor = stage.memory.weights_bytes / (gpu.memory_bandwidth_bytes_per_s * gpu.efficiency.memory_max)
    assert floor < t < 1.2 * floor
    bounds = {c.name: c.bound for c in stage.breakdown(shape)}
    assert bounds["ffn_up"] == bounds["qkv_proj"] == "memory"


def test_all_reduce_tiny_message_costs_latency_floor(h100):
    """A 2 KiB all-reduce over 8 GPUs costs ~ the α floor (2*log2(8) hops x fabric latency)."""
    fabric = catalog.get_fabric("nvlink4-nvswitch")
    alpha = fabric.latency_us * 1e-6 * 2 * 3
    assert alpha < cost.all_reduce_time(h100, 8, 2048) < 1.15 * alpha


def test_all_reduce_large_message_uses_nvls_bus_rate(h100):
    """A 1 GiB all-reduce over 8 NVSwitch GPUs runs near the NVLS bus bandwidth."""
    fabric = catalog.get_fabric("nvlink4-nvswitch")
    size = 2**30
    t = comm.all_reduce_seconds(fabric, h100.efficiency, 8, size)
    busbw = 2 * 7 / 8 * size / t
    expected = fabric.bandwidth_gbps * 1e9 * fabric.bus_efficiency_max * comm.NVLS_BUS_GAIN
    assert busbw == pytest.approx(expected, rel=0.02)


def test_all_reduce_inter_node_slower_than_nvlink(node):
    """Sixteen GPUs over two nodes all-reduce over InfiniBand, slower than eight over NVLink."""
    assert cost.all_reduce_time(node, 16, 2**26) > 3 * cost.all_reduce_time(node, 8, 2**26)
