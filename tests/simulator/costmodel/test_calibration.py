"""Calibration against the reference points in data/reference: MdAPE, held-out error, and the file round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import catalog
from simulator.costmodel import apply_calibration, calibrate, load_calibration, write_calibration

REFERENCE = Path(__file__).parents[3] / "data" / "reference" / "calibration.yaml"


@pytest.fixture(scope="module")
def result():
    return calibrate(REFERENCE, "h100-sxm")


def test_calibrate_mdape_reference_within_15_percent(result):
    """After fitting, the median absolute percentage error over all kernel/step points is at most 15%."""
    assert result.mdape() <= 0.15
    assert result.mdape("held-out") <= 0.20
    assert result.mdape() < result.mdape(before=True)


def test_calibrate_points_split_and_skipped(result):
    """TP8 Splitwise points are held out, simulator-only metrics are skipped with a reason."""
    tp8 = [r for r in result.rows if "tp8" in r.description]
    assert tp8 and all(r.split == "held-out" for r in tp8)
    assert any(s["reason"] == "needs the simulator" for s in result.skipped)
    assert {r.metric for r in result.rows} == {
        "max_achievable_matmul_tflops",
        "all_reduce_time",
        "prompt_phase_latency",
        "token_phase_latency",
    }


def test_calibration_file_round_trip_applies_overrides(result, tmp_path):
    """write_calibration then load_calibration gives overrides that apply to the H100 only."""
    path = tmp_path / "cal.yaml"
    write_calibration(result, path)
    cal = load_calibration(path)
    assert cal.overrides == pytest.approx(result.params)
    assert "CUDA graphs" in cal.notes and cal.errors
    h100 = apply_calibration(catalog.get_gpu("h100-sxm"), cal)
    assert h100.efficiency.gemm_max == pytest.approx(result.params["gemm_max"])
    a100 = catalog.get_gpu("a100-sxm-80gb")
    assert apply_calibration(a100, cal) is a100
