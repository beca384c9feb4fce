"""The throughput–interactivity view of `apex plan --report` (planner/report_interactivity.py)."""

from __future__ import annotations

import csv

import pytest

from planner.report_interactivity import Point, front


def _p(gpu: float, user: float, met: bool = True) -> Point:
    return Point("sweep", "p", 1, "closed 1 clients", gpu, user, 0.1, 1 / user, met)


def test_front_keeps_the_non_dominated_points_meeting_the_slos():
    pts = [_p(100, 10), _p(50, 40), _p(90, 9), _p(60, 30), _p(200, 50, met=False), _p(100, 10)]
    # (90, 9) is beaten by (100, 10); (200, 50) misses the SLOs; equal points both stay
    assert front(pts) == {0, 1, 3, 5}


@pytest.mark.solver
def test_report_writes_the_sweep_and_its_front(tmp_path, run_cli):
    """`apex plan --report` on the tiny scenario: every simulated plan at the scenario's load, closed-loop sweeps
    of the best plans along which tokens/s per GPU rise and tokens/s per user fall, a front of points that meet
    the SLOs and that nothing beats on both axes, and the PNG."""
    from tests.planner.test_plan_cli import _register_plan, write_scenario

    _register_plan()
    out = tmp_path / "report"
    code, _, _ = run_cli("plan", write_scenario(tmp_path), "--report", str(out), "--workers", "1", "--json")
    assert code == 0
    rows = list(csv.DictReader((out / "throughput_interactivity.csv").open()))
    assert {r["source"] for r in rows} >= {"candidate", "sweep"}
    sweeps: dict[str, list[dict]] = {}
    for r in rows:
        if r["source"] == "sweep":
            sweeps.setdefault(r["plan"], []).append(r)
    assert sweeps
    for curve in sweeps.values():
        clients = [int(r["load"].split()[1]) for r in curve]
        assert clients == sorted(clients) and len(clients) >= 3
        per_gpu = [float(r["output_tokens_per_s_per_gpu"]) for r in curve]
        per_user = [float(r["output_tokens_per_s_per_user"]) for r in curve]
        assert per_gpu == sorted(per_gpu)
        if "prefill:" not in curve[0]["plan"]:
            # colocated: more clients share each replica's iterations. (A disaggregated plan's tokens/s per
            # user is its decode pool's: once its prefill pool is the bottleneck, fewer requests decode at
            # once and it may rise again.)
            assert per_user == sorted(per_user, reverse=True)
    on_front = [r for r in rows if r["pareto"] == "True"]
    assert on_front and all(r["meets_slos"] == "True" for r in on_front)
    met = [r for r in rows if r["meets_slos"] == "True"]
    for r in on_front:
        g, u = float(r["output_tokens_per_s_per_gpu"]), float(r["output_tokens_per_s_per_user"])
        assert not any(
            float(q["output_tokens_per_s_per_gpu"]) > g and float(q["output_tokens_per_s_per_user"]) > u
            for q in met
        )
    png = (out / "throughput_interactivity.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
