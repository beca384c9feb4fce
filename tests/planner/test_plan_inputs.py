"""`apex plan`: option values and the --report directory are checked before the search starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from planner.errors import InputError
from planner.outputs import REPORT_MARKER, check_report_dir


def write_scenario(tmp_path) -> str:
    """A tiny Llama-3.1-8B scenario on 4 H100s with TTFT/TPOT SLOs, min cost; returns its path."""
    data = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 4},
        "workload": {
            "requests": 60,
            "arrival": {"process": "poisson", "rate": 5.0},
            "input_tokens": {"dist": "lognormal", "mean": 512, "std": 256, "max": 2048},
            "output_tokens": {"dist": "fixed", "value": 64},
            "seed": 2,
        },
        "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": 1.0}, "tpot_s": {"p99": 0.05}}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def run_plan(run_cli):
    """Run `apex plan ARGS...` in-process (one worker unless ARGS say); returns (exit_code, stdout, stderr)."""
    return lambda *args: run_cli("plan", *args, *(() if "--workers" in args else ("--workers", "1")))


@pytest.fixture
def no_search(monkeypatch):
    """Fail the test if the plan search starts (the checks must come first)."""
    import planner.plan_api

    monkeypatch.setattr(
        planner.plan_api, "plan", lambda *a, **k: pytest.fail("the search ran before the check")
    )


@pytest.mark.parametrize(
    ("args", "flag", "text"),
    [
        (("--time-limit", "nan"), "--time-limit", "got nan"),
        (("--time-limit", "inf"), "--time-limit", "at most a week"),
        (("--time-limit", "-5"), "--time-limit", "(0, 604800]"),
        (("--top-k", "1000"), "--top-k", "1 to 100"),
        (("--workers", "0"), "--workers", "1 to 1024"),
    ],
)
def test_plan_option_out_of_range_exits_2_before_the_search(run_plan, tmp_path, no_search, args, flag, text):
    """NaN, infinity and out-of-range option values exit 2 naming the flag and the range."""
    code, out, err = run_plan(write_scenario(tmp_path), *args)
    assert code == 2 and flag in err and text in err.replace("\n", "")
    assert "Traceback" not in out + err


def test_plan_report_into_a_file_exits_2_before_the_search(run_plan, tmp_path, no_search):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    code, out, err = run_plan(write_scenario(tmp_path), "--report", str(target))
    assert code == 2 and "--report" in err and "is a file" in err
    assert target.read_text() == "mine\n" and "Traceback" not in out + err


def test_plan_report_into_a_users_directory_is_refused_untouched(run_plan, tmp_path, no_search):
    """A non-empty directory that is not an earlier report is refused; the user's plan.yaml stays as it was."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "plan.yaml").write_text("my plan\n")
    code, _, err = run_plan(write_scenario(tmp_path), "--report", str(mine))
    assert code == 2 and "--report" in err and "not an earlier APEX report" in err
    assert (mine / "plan.yaml").read_text() == "my plan\n"


def test_plan_report_with_missing_parent_exits_2_before_the_search(run_plan, tmp_path, no_search):
    code, _, err = run_plan(write_scenario(tmp_path), "--report", str(tmp_path / "no" / "such" / "dir"))
    assert code == 2 and "--report" in err and "does not exist" in err


@pytest.mark.solver
def test_plan_report_may_replace_an_earlier_report_only(run_plan, tmp_path):
    """An earlier report's directory is accepted again; once the user adds a file there it is refused."""
    scenario, out_dir = write_scenario(tmp_path), tmp_path / "report"
    assert run_plan(scenario, "--report", str(out_dir), "--json")[0] == 0
    marker = json.loads((out_dir / REPORT_MARKER).read_text())
    assert set(marker["files"]) >= {"plan.yaml", "candidates.csv", "pareto.png"}
    assert set(marker["files"]) | {REPORT_MARKER} == {p.name for p in out_dir.iterdir()}
    assert check_report_dir(out_dir) == out_dir  # what a second `--report` there checks first
    (out_dir / "my-notes.md").write_text("keep\n")
    code, _, err = run_plan(scenario, "--report", str(out_dir), "--json")
    assert code == 2 and "my-notes.md" in err and (out_dir / "my-notes.md").read_text() == "keep\n"


def test_report_dir_with_a_damaged_marker_is_not_an_earlier_report(tmp_path):
    (tmp_path / REPORT_MARKER).write_text("{not json")
    (tmp_path / "plan.yaml").write_text("mine\n")
    with pytest.raises(InputError, match="not an earlier APEX report"):
        check_report_dir(tmp_path)


def test_plan_with_no_request_that_can_run_exits_2_before_the_search(run_plan, tmp_path, monkeypatch):
    """Prompts longer than the context window on every plan: exit 2 naming the limit, not exit 1 after a search."""
    import planner.plan_api

    monkeypatch.setattr(planner.plan_api, "run_search", lambda *a, **k: pytest.fail("searched"))
    path = write_scenario(tmp_path)
    data = yaml.safe_load(Path(path).read_text())
    data["workload"]["input_tokens"] = {"dist": "fixed", "value": 140_000}
    Path(path).write_text(yaml.safe_dump(data))
    code, out, err = run_plan(path)
    assert code == 2 and "workload.input_tokens" in err and "131,072" in err
    assert "Traceback" not in out + err


def test_check_on_a_study_file_says_so(run_cli):
    study = Path(__file__).resolve().parents[2] / "configs" / "examples" / "study-gpu-cost.yaml"
    code, _, err = run_cli("check", str(study))
    assert code == 2 and "apex study" in err


def test_plan_on_a_closed_loop_workload_exits_2_naming_the_process(run_plan, tmp_path):
    """apex plan states its bounds on arrival times; a closed loop has none before it runs: exit 2, naming
    workload.arrival.process and what to use instead."""
    data = yaml.safe_load(Path(write_scenario(tmp_path)).read_text())
    data["workload"]["arrival"] = {"process": "closed", "concurrency": 8}
    path = tmp_path / "closed.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_plan(str(path))
    assert code == 2
    assert "workload.arrival.process" in err and "apex simulate" in err
