"""`apex calibrate RESULTS --scenario`: fitting host, frontend and efficiency parameters to benchmark runs.

SYNTHETIC DATA: every result file here is written by planner/bench_results/export.py from a simulation whose
coefficients were perturbed on purpose (TRUTH: host overheads ×3, frontend +5 ms, compute efficiency ×0.8).
The tests check that the fit recovers those coefficients (by recovery, not against any measurement).

Tolerances (stated once, used below): per_iteration_s within 15 %, frontend_s within 1 ms, compute_scale
within 10 % of the truth; after the fit, the median error on held-out runs below 3 % and below the error before.
Measured margins (150 requests per run, workload seeds 5–8): within 4.6 %, 0.32 ms and 4.6 %.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from planner.bench_results.export import RunToWrite, write_results, write_sglang, write_vllm
from planner.bench_results.load import load_results
from planner.calibration import calibrate_serving
from planner.calibration.params import Prior
from planner.calibration.replay import ReplayRun, closed_loop_starts
from planner.calibration.synthetic import TRUTH, synthetic_scenario
from planner.calibration.synthetic import truth_runs as synthetic_truth_runs
from simulator.costmodel import load_calibration
from simulator.scenario import load_scenario
from simulator.simulate import simulate

TOL_ITERATION = 0.15
TOL_FRONTEND_S = 1.0e-3
TOL_COMPUTE = 0.10
HELD_OUT_AFTER = 0.03


def scenario_dict(n: int, rate: float = 4.0, seed: int = 5) -> dict:
    return synthetic_scenario(n, rate, seed)


def truth_runs(n: int, rates, seed: int = 5) -> list[RunToWrite]:
    return synthetic_truth_runs(n, rates, seed)


def write_format(fmt: str, runs: list[RunToWrite], folder) -> list[str]:
    return write_results(fmt, runs, folder)


def assert_recovered(fit) -> None:
    p = fit.params
    assert abs(p["per_iteration_s"] / TRUTH["per_iteration_s"] - 1) < TOL_ITERATION, p
    assert abs(p["frontend_s"] - TRUTH["frontend_s"]) < TOL_FRONTEND_S, p
    assert abs(p["compute_scale"] / TRUTH["compute_scale"] - 1) < TOL_COMPUTE, p
    before, after = fit.mdape("held-out", before=True), fit.mdape("held-out")
    assert after < HELD_OUT_AFTER and after < before, (before, after)


@pytest.mark.parametrize("fmt", ["vllm", "sglang", "genai-perf", "aiperf"])
def test_each_format_replays_the_simulated_requests_exactly(tmp_path, fmt):
    """Written, read back and replayed: the same lengths, the same arrivals (send times where the format has
    them, else the same seeded process), and the measured quantiles are the simulated ones."""
    runs = truth_runs(24, [3.0, 9.0])
    paths = write_format(fmt, runs, tmp_path)
    sc = load_scenario(scenario_dict(24))
    replays = [ReplayRun.of(r, sc, i) for i, r in enumerate(r for p in paths for r in load_results(p))]
    assert len(replays) == 2
    for src, rep in zip(runs, replays, strict=True):
        order = np.argsort(src.sent_s, kind="stable")
        np.testing.assert_allclose(rep.requests.arrival_s, src.sent_s[order] - src.sent_s.min(), atol=1e-6)
        np.testing.assert_array_equal(rep.requests.output_tokens, src.output_tokens[order])
        if fmt != "genai-perf":  # GenAI-Perf exports no input lengths: the scenario's are used, here the same
            assert "from the file" in rep.lengths
        np.testing.assert_array_equal(rep.requests.input_tokens, src.input_tokens[order])
        np.testing.assert_allclose(np.sort(rep.measured_ttft_s), np.sort(src.ttft_s), rtol=1e-6)


def test_closed_loop_replay_sends_each_request_when_a_slot_frees():
    starts = closed_loop_starts(np.array([1.0, 2.0, 0.5, 1.0, 1.0]), 2, np.zeros(5))
    np.testing.assert_allclose(starts, [0.0, 0.0, 1.0, 1.5, 2.0])
    paced = closed_loop_starts(np.array([0.1, 0.1, 0.1]), 1, np.array([0.0, 1.0, 1.05]))
    np.testing.assert_allclose(paced, [0.0, 1.0, 1.1])


def test_frontend_alone_is_solved_exactly(tmp_path):
    """Only the frontend perturbed: it needs no simulation to fit and comes back to the microsecond."""
    sc = load_scenario(scenario_dict(30))
    prior = Prior.of(sc.gpus["h100-sxm"], "vllm-v1", None)
    truth = prior.calibration({"frontend_s": 0.0123})
    run = RunToWrite.from_simulation(simulate(sc, calibration=truth), 4.0)
    write_vllm([run], tmp_path / "v.json")
    fit = calibrate_serving(
        [str(tmp_path / "v.json")], scenario_dict(30), fit=("frontend_s",), hold_out="none"
    )
    assert fit.params["frontend_s"] == pytest.approx(0.0123, abs=1e-6)
    assert fit.mdape("fit") < 1e-6 < fit.mdape("fit", before=True)


def test_cli_recovers_perturbed_coefficients_and_the_file_replans(tmp_path, run_cli):
    """vllm bench serve JSON of three runs: the CLI fits two (4 and 16 req/s), holds out 8 req/s, writes a
    calibration file that recovers TRUTH; a scenario naming it predicts the truth's latencies."""
    n = 150
    runs = truth_runs(n, [4.0, 8.0, 16.0])
    results = write_format("vllm", runs, tmp_path)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(scenario_dict(n, 8.0)))
    out = tmp_path / "cal.yaml"
    code, stdout, err = run_cli(
        "calibrate", *results, "--scenario", str(scenario), "--out", str(out), "--report"
    )
    assert code == 0, err
    assert "held out" in stdout and "run 1 (8 req/s)" in stdout
    cal = load_calibration(out)
    assert cal.engine == "vllm-v1" and cal.gpu == "h100-sxm"
    assert abs(cal.host["per_iteration_s"] / TRUTH["per_iteration_s"] - 1) < TOL_ITERATION
    assert abs(cal.host["frontend_s"] - TRUTH["frontend_s"]) < TOL_FRONTEND_S
    gemm = load_scenario(scenario_dict(n)).gpus["h100-sxm"].efficiency.gemm_max
    assert abs(cal.overrides["gemm_max"] / (0.8 * gemm) - 1) < TOL_COMPUTE
    assert cal.summary["mdape_held_out"] < min(HELD_OUT_AFTER, cal.summary["mdape_held_out_before"])
    # re-plan with `calibration:`: the held-out run's median TTFT moves to the truth's
    replanned = simulate(load_scenario({**scenario_dict(n, 8.0), "calibration": str(out)}))
    default = simulate(load_scenario(scenario_dict(n, 8.0)))
    measured = float(np.median(runs[1].ttft_s))
    assert abs(replanned.summary.ttft_s.p50 / measured - 1) < abs(default.summary.ttft_s.p50 / measured - 1)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["vllm", "sglang", "genai-perf", "aiperf"])
def test_recovery_from_each_format(tmp_path, fmt):
    """200 requests per run at 2, 6 and 12 req/s, fitted on 2 and 12, held out at 6."""
    runs = truth_runs(200, [2.0, 6.0, 12.0], seed=6)
    paths = write_format(fmt, runs, tmp_path)
    fit = calibrate_serving(paths, scenario_dict(200, seed=6))
    assert [r.label.split(" (")[0] for r, f in zip(fit.runs, fit.fit_runs, strict=True) if not f] == ["run 1"]
    assert_recovered(fit)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--fit", "gemm_max"], "--fit"),
        (["--fit", ""], "--fit"),
        (["--hold-out", "random"], "--hold-out"),
        (["--gpu", "h100-sxm"], "--gpu"),
        (["--plan", "tp=9"], "--plan"),
    ],
)
def test_bad_serving_options_exit_2_naming_the_flag(tmp_path, run_cli, args, field):
    write_vllm(truth_runs(8, [4.0]), tmp_path / "v.json")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(scenario_dict(8)))
    code, _, err = run_cli("calibrate", str(tmp_path / "v.json"), "--scenario", str(scenario), *args)
    assert code == 2 and "Traceback" not in err
    assert field in err


def test_serving_flags_without_scenario_and_several_files_exit_2(tmp_path, run_cli):
    code, _, err = run_cli("calibrate", "a.json", "--fit", "frontend_s")
    assert code == 2 and "--scenario" in err
    code, _, err = run_cli("calibrate", "a.json", "b.json")
    assert code == 2 and "--scenario" in err


def test_run_without_load_or_send_times_exits_2_naming_the_file(tmp_path, run_cli):
    run = truth_runs(8, [4.0])[0]
    write_sglang([run], tmp_path / "s.jsonl")
    doc = json.loads((tmp_path / "s.jsonl").read_text())
    doc["request_rate"] = None
    (tmp_path / "s.jsonl").write_text(json.dumps(doc) + "\n")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(scenario_dict(8)))
    code, _, err = run_cli("calibrate", str(tmp_path / "s.jsonl"), "--scenario", str(scenario))
    assert code == 2 and "s.jsonl" in err and "request_rate" in err


def test_scenario_without_plan_exits_2(tmp_path, run_cli):
    write_vllm(truth_runs(8, [4.0]), tmp_path / "v.json")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({k: v for k, v in scenario_dict(8).items() if k != "plan"}))
    code, _, err = run_cli("calibrate", str(tmp_path / "v.json"), "--scenario", str(scenario))
    assert code == 2 and "plan" in err and str(scenario) in err


def test_achieved_rate_orders_the_split():
    from planner.calibration.fit import split_runs

    class R:
        def __init__(self, rate):
            self.achieved_rate = rate

    runs = [R(9.0), R(1.0), R(math.inf), R(4.0)]
    assert split_runs(runs, "alternate") == [True, True, False, False]
    assert split_runs(runs, "highest") == [True, True, False, True]
    assert split_runs(runs, "none") == [True] * 4
    assert split_runs(runs[:1], "alternate") == [True]
