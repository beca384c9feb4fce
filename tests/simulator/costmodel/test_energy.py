"""Energy per iteration: saturated GPUs draw TDP, idle ones idle power."""

from __future__ import annotations

import pytest

from simulator.costmodel.energy import energy_coefficients, gpu_energy, mbu, mfu
from simulator.costmodel.interface import BatchShape


def test_gpu_energy_compute_saturation_draws_tdp(h100):
    """One second of GEMMs at gemm_max x peak costs TDP joules."""
    flops = h100.peak_flops("bf16") * h100.efficiency.gemm_max
    assert gpu_energy(h100, 1.0, flops, 0.0) == pytest.approx(h100.tdp_w)


def test_gpu_energy_memory_saturation_draws_tdp(h100):
    """One second of streaming HBM at memory_max x bandwidth costs TDP joules."""
    nbytes = h100.memory_bandwidth_bytes_per_s * h100.efficiency.memory_max
    assert gpu_energy(h100, 1.0, 0.0, nbytes) == pytest.approx(h100.tdp_w)
    e_flop, e_byte = energy_coefficients(h100)
    assert e_flop > 0 and e_byte > 0


def test_gpu_energy_idle_and_cap(h100):
    """No work costs idle power; both saturated at once is capped at TDP."""
    assert gpu_energy(h100, 2.0, 0.0, 0.0) == pytest.approx(2 * h100.idle_w)
    big = 1e18
    assert gpu_energy(h100, 1.0, big, big) == pytest.approx(h100.tdp_w)


def test_stage_energy_large_prefill_near_tdp(make_stage):
    """An 8k-token prefill of llama-3.1-8b is compute-bound, so the stage draws close to TDP."""
    stage = make_stage("llama-3.1-8b")
    shape = BatchShape.from_requests([8192], [0])
    t = stage.iteration_time(shape)
    watts = stage.energy(shape, t) / t
    assert 0.8 * stage.gpu.tdp_w < watts <= stage.gpu.tdp_w * (1 + 1e-12)  # capped at TDP (float division)
    util = mfu(stage.gpu, stage.flops(shape), t, 1)
    assert 0.3 < util < stage.gpu.efficiency.gemm_max
    assert 0 < mbu(stage.gpu, stage.gpu_work(shape)[1], t, 1) < 1
