"""SM clock locking in the cost model (simulator/costmodel/clock.py): time, energy, the fit, the range."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import catalog
from simulator.costmodel import build_stage_cost
from simulator.costmodel.clock import (
    MEMORY_CLOCK_INDEPENDENT_SHARE,
    VOLTAGE_EXPONENT,
    clock_levels_mhz,
    energy_scales,
    fit_memory_share,
    load_dvfs_points,
)
from simulator.costmodel.energy import energy_coefficients
from simulator.costmodel.interface import BatchShape
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import Stage
from simulator.scenario import DTypes, Engine

DVFS = Path(__file__).parents[3] / "data" / "reference" / "dvfs.yaml"


@pytest.fixture
def h200():
    return catalog.get_gpu("h200-sxm")


def _stage(gpu):
    model = catalog.get_model("llama-3.1-8b")
    cluster = Cluster(node_groups=[NodeGroup(gpu=gpu.name, nodes=1, gpus_per_node=8)])
    stage = Stage(layers=(0, model.num_layers), tp=1)
    return build_stage_cost(model, stage, gpu, cluster, DTypes(), Engine(), first=True, last=True)


def test_the_shipped_share_is_the_fit_on_both_gpus_and_each_gpu_predicts_the_other_within_7_percent():
    points = load_dvfs_points(DVFS)
    both = fit_memory_share(points)
    assert both.share == pytest.approx(MEMORY_CLOCK_INDEPENDENT_SHARE, abs=1e-3)
    for fit_on, held in (("h100", "a100"), ("a100", "h100")):
        one = fit_memory_share(points, (fit_on,))
        assert set(one.errors) == {held}
        assert abs(one.errors[held]) < 0.07  # measured: +5.2% (fit on H100), -5.9% (fit on A100)
        assert (
            abs(one.errors[held]) > 0.01
        )  # a fit that reproduced the held-out point exactly would be suspect


def test_the_default_clock_keeps_the_energy_coefficients(h200):
    dynamic = h200.tdp_w - h200.idle_w
    e_flop, e_byte = energy_coefficients(h200)
    assert e_flop == pytest.approx(dynamic / (h200.peak_flops("bf16") * h200.efficiency.gemm_max))
    assert e_byte == pytest.approx(dynamic / (h200.memory_bandwidth_bytes_per_s * h200.efficiency.memory_max))
    assert h200.at_clock(1980) == h200  # the boost clock is the unlocked GPU


def test_energy_per_flop_falls_with_the_square_of_the_clock_and_per_byte_keeps_the_hbm_share(h200):
    locked = h200.at_clock(990)
    r = 990 / 1980
    flop, byte = energy_scales(locked)
    assert flop == pytest.approx(r**VOLTAGE_EXPONENT)
    assert byte == pytest.approx(MEMORY_CLOCK_INDEPENDENT_SHARE + (1 - MEMORY_CLOCK_INDEPENDENT_SHARE) * r**2)
    e0, b0 = energy_coefficients(h200)
    e1, b1 = energy_coefficients(locked)
    assert e1 / e0 == pytest.approx(0.25)
    assert b1 / b0 == pytest.approx(byte)


def test_peaks_fall_below_the_clock_they_are_quoted_at_not_above_it(h200):
    assert h200.at_clock(1830).peak_flops("bf16") == h200.peak_flops("bf16")  # quoted at 1.83 GHz
    assert h200.at_clock(1220).peak_flops("bf16") == pytest.approx(h200.peak_flops("bf16") * 1220 / 1830)
    assert h200.at_clock(1220).memory_bandwidth_bytes_per_s == h200.memory_bandwidth_bytes_per_s


def test_compute_bound_prefill_slows_with_the_clock_and_memory_bound_decode_barely(h200):
    fast, slow = _stage(h200), _stage(h200.at_clock(1095))
    prefill = BatchShape.from_requests([4096], [0])
    decode = BatchShape(num_decode=8, decode_context_tokens=8 * 256)
    t_fast, t_slow = fast.iteration_time(prefill), slow.iteration_time(prefill)
    assert t_slow / t_fast > 1.4  # 1830 / 1095 = 1.67 on the GEMMs; attention and fixed parts dilute it
    d_fast, d_slow = fast.iteration_time(decode), slow.iteration_time(decode)
    assert 1.0 <= d_slow / d_fast < 1.10  # weights stream from HBM at the same rate
    # and the memory-bound step costs less energy at the lower clock, the compute-bound one too
    assert slow.energy(decode, d_slow) < fast.energy(decode, d_fast)
    assert slow.energy(prefill, t_slow) < fast.energy(prefill, t_fast)


def test_a_clock_outside_the_range_is_refused_naming_the_range(h200):
    assert h200.clock_range_mhz == (990, 1980)
    for bad in (989, 1981, 100):
        with pytest.raises(ValueError, match="990-1980 MHz"):
            h200.at_clock(bad)


def test_planner_levels_are_on_the_15_mhz_grid_inside_the_range(h200):
    levels = clock_levels_mhz(h200)
    assert levels[0] is None
    assert [m % 15 for m in levels[1:]] == [0] * (len(levels) - 1)
    lo, hi = h200.clock_range_mhz
    assert all(lo <= m < hi for m in levels[1:])
    assert list(levels[1:]) == sorted(levels[1:], reverse=True) and len(levels) == 4


@pytest.mark.parametrize("m", [1, 7, 64, 300, 1000, 4096, 8065, 8321])
def test_a_gemm_keeps_the_boost_clocks_split_k_choice_and_is_never_faster_at_a_locked_clock(h200, m):
    from simulator.costmodel.kernels import gemm_kernel

    for n, k in ((28672, 4096), (4096, 14336), (1024, 4096)):
        fast = gemm_kernel(h200, m, n, k, 2, 2, "bf16")
        slow = gemm_kernel(h200.at_clock(1080), m, n, k, 2, 2, "bf16")
        assert slow.bytes == fast.bytes and slow.flops == fast.flops  # the same kernel, so the same traffic
        assert slow.seconds >= fast.seconds
