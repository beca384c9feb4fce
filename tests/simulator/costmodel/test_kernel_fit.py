"""Leave-one-GPU-out accuracy of the kernel model on data/reference/kernels.yaml (README 'Accuracy').

Fit on one GPU's measured kernels, predict the other GPU with its own datasheet figures. The bounds are the
figures the README reports (rounded up by at most two points): they fail if the model or the fit regresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.costmodel.kernel_fit import fit_kernels, load_kernel_points, transfer_errors
from simulator.errors import InputError

KERNELS = Path(__file__).parents[3] / "data" / "reference" / "kernels.yaml"

# gpu fitted -> {gpu predicted -> {op kind -> max MdAPE}}
BOUNDS = {
    "h100-sxm": {
        "h100-sxm": {"all_reduce": 0.07, "context_attention": 0.11, "gemm_bf16": 0.08, "gemm_fp8": 0.12,
                     "generation_attention": 0.07},
        "a100-sxm-80gb": {"all_reduce": 0.08, "context_attention": 0.11, "gemm_bf16": 0.15,
                          "generation_attention": 0.25},  # misses the 15% bar: README 'Accuracy'
    },
    "a100-sxm-80gb": {
        "a100-sxm-80gb": {"all_reduce": 0.09, "context_attention": 0.12, "gemm_bf16": 0.08,
                          "generation_attention": 0.12},
        # gemm bf16/fp8 and generation attention miss the 15% bar here: README 'Accuracy' says why
        "h100-sxm": {"all_reduce": 0.09, "context_attention": 0.10, "gemm_bf16": 0.19, "gemm_fp8": 0.18,
                     "generation_attention": 0.22},
    },
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(BOUNDS))
def fit(request):
    return fit_kernels(KERNELS, request.param)


def test_leave_one_gpu_out_mdape_per_op_kind(fit):
    """Per op kind, the median absolute error on the fitted GPU and on the GPU left out stays within bounds."""
    for gpu, bounds in BOUNDS[fit.gpu].items():
        assert set(fit.errors[gpu]) == set(bounds)
        for kind, bound in bounds.items():
            assert fit.errors[gpu][kind] <= bound, (fit.gpu, gpu, kind, fit.errors[gpu][kind])


def test_held_out_all_reduce_and_attention_within_15_percent(fit):
    """The issue's bar holds for collectives and prefill attention in both directions."""
    for errors in fit.held_out().values():
        assert errors["all_reduce"] <= 0.15
        assert errors["context_attention"] <= 0.15


def test_gemm_transfer_gap_is_the_streaming_fraction():
    """The GEMM errors on the GPU left out come from one generation-specific coefficient: with the achieved HBM
    fraction (memory_max) taken from the held-out GPU's own fit and everything else transferred, GEMMs land
    within the 15% bar both ways, while decode attention from the H100 fit still misses it (FlashAttention-3's
    CTA costs are not FlashAttention-2's)."""
    h100, a100 = fit_kernels(KERNELS, "h100-sxm"), fit_kernels(KERNELS, "a100-sxm-80gb")
    to_a100 = transfer_errors(KERNELS, h100, a100)
    to_h100 = transfer_errors(KERNELS, a100, h100)
    assert to_a100["gemm_bf16"] < 0.10 < h100.errors["a100-sxm-80gb"]["gemm_bf16"]
    assert to_h100["gemm_bf16"] < 0.15 < a100.errors["h100-sxm"]["gemm_bf16"]
    assert to_h100["gemm_fp8"] < 0.15 < a100.errors["h100-sxm"]["gemm_fp8"]
    assert to_a100["generation_attention"] > 0.15


def test_fit_moves_coefficients_from_priors(fit):
    """The fit is not a no-op: the launch floor lands at the measured ~2.7-3 us, the NCCL latency scale near 1."""
    assert 2.0e-6 < fit.params["kernel_launch_s"] < 3.5e-6
    assert 0.7 < fit.params["collective_latency_scale"] < 1.3


def test_kernel_points_validated(tmp_path):
    """A point with a non-positive latency or a missing shape field is an InputError naming the field."""
    bad = tmp_path / "k.yaml"
    bad.write_text("points:\n- {op: gemm, gpu: h100-sxm, dtype: bf16, m: 1, n: 2, k: 3, latency_ms: 0}\n")
    with pytest.raises(InputError, match=r"points\[0\]\.latency_ms"):
        load_kernel_points(bad)
    bad.write_text("points:\n- {op: gemm, gpu: h100-sxm, dtype: bf16, m: 1, k: 3, latency_ms: 1}\n")
    with pytest.raises(InputError, match=r"points\[0\]\.n"):
        load_kernel_points(bad)
    assert len(load_kernel_points(KERNELS)) == 300
