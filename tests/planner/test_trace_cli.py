"""`apex simulate --trace-out`: the file is written and described; bad paths and flags exit 2 before the run,
naming the flag, and nothing the user wrote is overwritten."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import SMALL


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def test_trace_out_writes_a_trace_and_says_what_it_holds(scenario, tmp_path, run_cli):
    target = tmp_path / "trace.json"
    code, out, err = run_cli("simulate", str(scenario), "--json", "--trace-out", str(target))
    assert code == 0, err
    doc = json.loads(target.read_text())
    slices = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    requests = {e["id"] for e in doc["traceEvents"] if e["ph"] == "b"}
    assert len(requests) == 30 and slices
    assert f"trace: wrote {target}" in err and f"{len(slices):,} iterations" in err and "the whole run" in err
    assert json.loads(out)["requests"]["completed"] == 30  # the result is printed as without a trace


def test_trace_window_and_cap_reach_the_trace(scenario, tmp_path, run_cli):
    target = tmp_path / "window.json"
    code, _, err = run_cli(
        "simulate",
        str(scenario),
        "--trace-out",
        str(target),
        "--trace-window",
        "0.5:",
        "--trace-max-events",
        "1000",
    )
    assert code == 0, err
    apex = json.loads(target.read_text())["otherData"]["apex"]
    assert apex["window_s"][0] == 0.5 and apex["max_events"] == 1000
    assert all(e["ts"] >= 0.5e6 for e in json.loads(target.read_text())["traceEvents"] if "ts" in e)


def test_trace_out_never_overwrites(scenario, tmp_path, run_cli):
    target = tmp_path / "mine.json"
    target.write_text("precious\n")
    code, _, err = run_cli("simulate", str(scenario), "--trace-out", str(target))
    assert code == 2 and "--trace-out" in err and "exists" in err
    assert target.read_text() == "precious\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--trace-out", "{tmp}/nope/t.json"], ["--trace-out", "does not exist"]),
        (["--trace-out", "{tmp}/t.txt"], ["--trace-out", ".json"]),
        (["--trace-window", "1:2"], ["--trace-window", "needs --trace-out"]),
        (["--trace-max-events", "5000"], ["--trace-max-events", "needs --trace-out"]),
        (["--trace-out", "{tmp}/t.json", "--trace-window", "5:1"], ["--trace-window", "later than START"]),
        (["--trace-out", "{tmp}/t.json", "--trace-window", "a:b"], ["--trace-window", "numbers"]),
        (["--trace-out", "{tmp}/t.json", "--trace-window", "-1:5"], ["--trace-window", "≥ 0"]),
        (["--trace-out", "{tmp}/t.json", "--trace-window", "10"], ["--trace-window", "START:END"]),
        (
            ["--trace-out", "{tmp}/t.json", "--trace-max-events", "10"],
            ["--trace-max-events", "at least 1,000"],
        ),
    ],
)
def test_bad_trace_flags_exit_2_before_simulating(scenario, tmp_path, run_cli, monkeypatch, args, words):
    from planner import api

    monkeypatch.setattr(api, "simulate", lambda *a, **k: pytest.fail("simulated before checking the flags"))
    code, out, err = run_cli("simulate", str(scenario), *(a.format(tmp=tmp_path) for a in args))
    assert code == 2, err
    assert all(w in err for w in words), err
    assert "Traceback" not in out + err
    assert not (tmp_path / "t.json").exists()


def test_trace_out_takes_one_scenario(scenario, tmp_path, run_cli):
    code, _, err = run_cli("simulate", str(scenario), str(scenario), "--trace-out", str(tmp_path / "t.json"))
    assert code == 2 and "one scenario" in err
