"""Limits of the kernel models: huge GEMMs reach gemm_max, small ones pay the launch floor, split-K fills the
machine, FP8 pays its quantization pass, decode is weight-bandwidth-bound, NCCL protocols at both ends."""

from __future__ import annotations

import pytest

from simulator import catalog, cost
from simulator.costmodel import comm, nccl
from simulator.costmodel.interface import BatchShape
from simulator.costmodel.kernels import gemm_kernel, streaming_bandwidth
from simulator.scenario import DTypes, Engine


def test_gemm_time_huge_shape_approaches_gemm_max(h100):
    """A 16k^3 BF16 GEMM runs within 2% of gemm_max x peak."""
    m = n = k = 16384
    achieved = 2.0 * m * n * k / cost.gemm_time(h100, m, n, k, "bf16")
    assert achieved == pytest.approx(h100.efficiency.gemm_max * h100.peak_flops("bf16"), rel=0.02)


def test_gemm_time_small_m_is_memory_bound(h100):
    """An m=1 GEMM costs its launch floor plus its weight bytes at the streaming bandwidth, not its FLOPs."""
    k = gemm_kernel(h100, 1, 8192, 8192, 2.0, 2.0, "bf16")
    weights = 8192 * 8192 * 2
    assert k.bound == "memory"
    assert k.seconds == pytest.approx(
        h100.efficiency.kernel_launch_s + weights / streaming_bandwidth(h100), rel=0.02
    )
    assert k.fixed_s == pytest.approx(h100.efficiency.kernel_launch_s)


def test_tiny_gemm_costs_the_launch_floor(h100):
    """A GEMM of a few hundred FLOPs still costs one kernel launch (measured kernels rarely run under 2-3 us)."""
    t = cost.gemm_time(h100, 8, 32, 32)
    assert h100.efficiency.kernel_launch_s <= t < 1.1 * h100.efficiency.kernel_launch_s


def test_split_k_beats_output_tiles_for_few_tiles_long_k(h100):
    """A 128x128 output with K=65536 is one output tile: split-K spreads K over the SMs and is much faster than
    a single CTA walking the whole K, and faster than tiles/SMs of peak would allow without it."""
    eff = h100.efficiency
    k = gemm_kernel(h100, 128, 128, 65536, 2.0, 2.0, "bf16")
    one_cta = 2 * 128 * 128 * 65536 / (h100.peak_flops("bf16") * eff.gemm_max / h100.num_sms)
    assert k.seconds < one_cta / 10
    assert k.fixed_s == pytest.approx(eff.kernel_launch_s + eff.gemm_split_k_s)


def test_fp8_gemm_pays_activation_quantization(h100):
    """An FP8 GEMM fed bf16 activations pays a quantization kernel: long rows cost a launch floor and rows x K
    bytes; many short rows cost one wave time per 2 x SMs rows (one 1024-thread CTA per row, vLLM's
    scaled_fp8_quant), as the measured H100 FP8 GEMMs of data/reference/kernels.yaml grow ~7 ns per row at
    K=64."""
    eff = h100.efficiency
    long_fp8 = gemm_kernel(h100, 256, 4096, 16384, 1.0, 1.0, "fp8")  # activations already fp8
    long_quant = gemm_kernel(h100, 256, 4096, 16384, 1.0, 2.0, "fp8")
    out = 256 * 4096 * 1  # the bf16 output is one byte wider per element
    extra = eff.kernel_launch_s + (256 * 16384 * 3 + out) / streaming_bandwidth(h100)
    assert long_quant.seconds - long_fp8.seconds == pytest.approx(extra, rel=0.05)
    short_fp8 = gemm_kernel(h100, 16384, 64, 64, 1.0, 1.0, "fp8")
    short_quant = gemm_kernel(h100, 16384, 64, 64, 1.0, 2.0, "fp8")
    waves = -(-16384 // (2 * h100.num_sms))
    assert short_quant.seconds - short_fp8.seconds == pytest.approx(waves * eff.quant_wave_s, rel=0.05)


def test_decode_iteration_batch1_70b_one_h100_memory_bound(make_stage):
    """Batch-1 decode of llama-3.1-70b (fp8 weights) on one H100: weights at the streaming bandwidth plus
    the fixed costs (launch floors, attention floors, host step), which stay a minority."""
    stage = make_stage(
        "llama-3.1-70b", dtypes=DTypes(weights="fp8", kv_cache="fp8"), engine=Engine(kind="vllm-v1")
    )
    shape = BatchShape.from_requests(decode_context=[512])
    t = stage.iteration_time(shape)
    floor = stage.memory.weights_bytes / streaming_bandwidth(stage.gpu)
    ops = stage.breakdown(shape)
    fixed = sum(c.fixed_s for c in ops)
    assert floor < t < 1.35 * floor
    assert 0.03 < fixed / t < 0.3
    bounds = {c.name: c.bound for c in ops}
    assert bounds["ffn_up"] == bounds["qkv_proj"] == "memory"


def test_all_reduce_tiny_message_costs_nccl_ll_latency(h100):
    """A 2 KiB all-reduce over 8 GPUs costs about NCCL's LL ring latency, 6.6 + 14 x 0.6 us (tuning.cc)."""
    eff = h100.efficiency
    ll = eff.collective_latency_scale * (nccl.BASE_US["LL"] + 14 * nccl.HOP_US["nvlink"]["LL"]) * 1e-6
    assert ll < cost.all_reduce_time(h100, 8, 2048) < 1.1 * ll


def test_all_reduce_latency_grows_with_ranks(h100):
    """More ranks, more ring steps: a small all-reduce over 8 GPUs costs more than over 2."""
    assert cost.all_reduce_time(h100, 8, 4096) > 1.5 * cost.all_reduce_time(h100, 2, 4096)


def test_all_reduce_large_message_uses_nvls_bus_rate(h100):
    """A 1 GiB all-reduce over 8 NVSwitch GPUs runs near the NVLS bus bandwidth (Simple ramp nearly full)."""
    fabric = catalog.get_fabric("nvlink4-nvswitch")
    eff = h100.efficiency
    size = 2**30
    t = comm.all_reduce_seconds(fabric, eff, 8, size, h100.clock_ghz)
    busbw = 2 * 7 / 8 * size / t
    top = fabric.bandwidth_gbps * 1e9 * fabric.bus_efficiency_max * eff.collective_bus_scale
    assert busbw == pytest.approx(top * nccl.NVLS_BUS_GAIN, rel=0.03)


def test_all_reduce_medium_message_below_asymptotic_bus_bandwidth(h100):
    """An 8 MiB all-reduce over 8 H100s reaches well under half the asymptotic NVLS bus bandwidth (nccl-tests:
    ~107 GB/s at 4 MiB, ~220 at 16 MiB on 8xH200, data/reference/hardware.md)."""
    size = 8 * 2**20
    busbw = 2 * 7 / 8 * size / cost.all_reduce_time(h100, 8, size)
    assert 120e9 < busbw < 260e9


def test_all_reduce_inter_node_slower_than_nvlink(node):
    """Sixteen GPUs over two nodes all-reduce over InfiniBand, slower than eight over NVLink."""
    assert cost.all_reduce_time(node, 16, 2**26) > 3 * cost.all_reduce_time(node, 8, 2**26)


def test_nccl_latency_scales_with_clock(h100):
    """The same all-reduce on an A100 (1.41 GHz) has 1.98/1.41 times H100's latency term at equal scale."""
    a100 = catalog.get_gpu("a100-sxm-80gb")
    fabric = catalog.get_fabric("nvlink4-nvswitch")
    eff = h100.efficiency
    t_h = comm.all_reduce_seconds(fabric, eff, 2, 4, h100.clock_ghz)
    t_a = comm.all_reduce_seconds(fabric, eff, 2, 4, a100.clock_ghz)
    assert t_a / t_h == pytest.approx(1.98 / 1.41, rel=0.02)  # the 4-byte bandwidth term is not scaled
