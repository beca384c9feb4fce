"""`apex calibrate` and calibration override files: bad input exits 2 naming the file and the field, no
traceback, before any fitting work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KERNELS = REPO / "data" / "reference" / "kernels.yaml"
POINT = {
    "id": "X1",
    "metric": "all_reduce_time",
    "gpu": "H100-SXM",
    "tp": 8,
    "batch_or_concurrency_or_rate": "65536 bytes",
    "value": 0.03,
}


def _write(tmp_path: Path, doc, name="m.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"points": []}, "points"),
        ({"points": [{k: v for k, v in POINT.items() if k != "metric"}]}, "points[0].metric"),
        ({"points": [{k: v for k, v in POINT.items() if k != "value"}]}, "points[0].value"),
        ({"points": [{**POINT, "value": 0}]}, "points[0].value"),
        ({"points": [{**POINT, "value": -1.5}]}, "points[0].value"),
        ({"points": [{**POINT, "value": "fast"}]}, "points[0].value"),
        ({"points": [{**POINT, "batch_or_concurrency_or_rate": "a lot"}]}, "points[0]"),
        (
            {
                "points": [
                    {
                        "op": "gemm",
                        "gpu": "h100-sxm",
                        "dtype": "bf16",
                        "m": 1,
                        "n": 1,
                        "k": 1,
                        "latency_ms": 0,
                    }
                ]
            },
            "latency_ms",
        ),
    ],
)
def test_calibrate_bad_points_exit_2_naming_file_and_field(tmp_path, run_cli, doc, field):
    path = _write(tmp_path, doc)
    code, out, err = run_cli("calibrate", path)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert path in err and field in err


def test_calibrate_out_into_missing_folder_exits_2_before_fitting(tmp_path, run_cli, monkeypatch):
    """--out into a folder that does not exist is refused before anything is fitted."""
    from planner import api

    monkeypatch.setattr(api, "calibrate", lambda *a, **k: pytest.fail("fitted before checking --out"))
    code, _, err = run_cli("calibrate", str(KERNELS), "--out", str(tmp_path / "nope" / "cal.yaml"))
    assert code == 2 and "--out" in err and "does not exist" in err


def test_calibrate_kernel_file_reports_held_out_gpu_and_writes_file(tmp_path, run_cli):
    """A kernel file fits the chosen GPU and reports the GPU left out; the written file loads back."""
    from simulator.costmodel import load_calibration

    out_path = tmp_path / "h100.yaml"
    code, out, err = run_cli("calibrate", str(KERNELS), "--gpu", "h100-sxm", "--out", str(out_path))
    assert code == 0, err
    assert "held out" in out and "a100-sxm-80gb" in out
    cal = load_calibration(out_path)
    assert cal.gpu == "h100-sxm" and 2e-6 < cal.overrides["kernel_launch_s"] < 3.5e-6


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"memory_max": 0}, "overrides.memory_max"),
        ({"gemm_max": "high"}, "overrides.gemm_max"),
        ({"gemm_max": -0.5}, "overrides.gemm_max"),
        ({"attention_max": 1.7}, "overrides.attention_max"),
        ({"gemm_speed": 0.9}, "overrides.gemm_speed"),
        ({"kernel_launch_s": float("nan")}, "overrides.kernel_launch_s"),
    ],
)
def test_calibration_override_file_rejected_naming_key(tmp_path, run_cli, overrides, field):
    """A scenario naming a calibration file with a bad override exits 2 naming that file and key."""
    cal = _write(tmp_path, {"gpu": "h100-sxm", "overrides": overrides}, "cal.yaml")
    scenario = REPO / "configs" / "examples" / "llama-70b-h100.yaml"
    doc = yaml.safe_load(scenario.read_text())
    doc["calibration"] = cal
    doc["workload"] = {**doc["workload"], "requests": 20}
    path = _write(tmp_path, doc, "scenario.yaml")
    code, out, err = run_cli("simulate", path, "--plan", "tp=8")
    assert code == 2, (out, err)
    assert "Traceback" not in err and field in err and "cal.yaml" in err


def test_calibration_for_another_gpu_rejected(tmp_path, run_cli):
    """A calibration fitted for an A100 named by an H100 scenario is refused, naming calibration.gpu."""
    cal = _write(tmp_path, {"gpu": "a100-sxm-80gb", "overrides": {"gemm_max": 0.8}}, "cal.yaml")
    doc = yaml.safe_load((REPO / "configs" / "examples" / "llama-70b-h100.yaml").read_text())
    doc["calibration"] = cal
    path = _write(tmp_path, doc, "scenario.yaml")
    code, _, err = run_cli("simulate", path, "--plan", "tp=8")
    assert code == 2 and "calibration.gpu" in err and "a100-sxm-80gb" in err
