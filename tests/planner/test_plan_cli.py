"""`apex plan` on the command line: exit codes, --json, --report and bad option values."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from planner import cli
from planner.plan_command import plan_command
from simulator.scenario import load_scenario


def _register_plan() -> None:
    if not any(c.name == "plan" for c in cli.app.registered_commands):
        cli.app.command("plan")(plan_command)


def test_plan_json_places_best_plan_on_distinct_gpus(tmp_path, run_plan):
    """The best plan is placed on concrete GPUs: one GPU per stage slot, none used twice, all in the cluster."""
    code, out, _ = run_plan(write_scenario(tmp_path), "--json")
    assert code == 0
    best = json.loads(out)["best"]
    placement = best["placement"]
    slots = [gpu for stages in placement["replicas"].values() for stage in stages for gpu in stage]
    plan = load_scenario(write_scenario(tmp_path)).with_plan(best["plan_spec"]).plan
    assert len(slots) == plan.num_gpus
    assert len(set(slots)) == len(slots)
    assert all(s.startswith("main/node0/gpu") and int(s.rsplit("gpu", 1)[1]) < 4 for s in slots)


def write_scenario(tmp_path, *, slo: dict | None = None, requests: int = 60):
    """A tiny Llama-3.1-8B scenario on 4 H100s, written as YAML; returns its path."""
    data = {
        "name": "tiny",
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 4},
        "workload": {
            "requests": requests,
            "arrival": {"process": "poisson", "rate": 5.0},
            "input_tokens": {"dist": "lognormal", "mean": 512, "std": 256, "max": 2048},
            "output_tokens": {"dist": "fixed", "value": 64},
            "seed": 2,
        },
        "goals": {"objective": "min_cost", "slo": slo or {"ttft_s": {"p99": 1.0}, "tpot_s": {"p99": 0.05}}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def run_plan(run_cli):
    """Run `apex plan ARGS...` in-process; returns (exit_code, stdout, stderr)."""
    _register_plan()

    def run(*args: str):
        return run_cli("plan", *args, "--workers", "1")

    return run


@pytest.mark.solver
def test_plan_json_has_the_design_keys(run_plan, tmp_path):
    """--json prints one line with best, candidates, baselines and search (docs/design.md §6)."""
    code, out, _ = run_plan(write_scenario(tmp_path), "--json")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert {"best", "candidates", "baselines", "search"} <= set(data)
    assert {"plan", "objective", "metrics"} <= set(data["best"])
    assert {"solver", "rounds", "simulations", "bound", "gap", "wall_s"} <= set(data["search"])
    space = data["search"]["space"]  # the census of the plan space: generated = pruned + priced, per kind
    assert {"plans", "note", "templates", "pruned_by", "settings", "searched"} <= set(space)
    for kind, n in space["templates"].items():
        assert n["generated"] == n["pruned"] + n["priced"], kind
    assert space["templates"]["all"]["priced"] == data["search"]["templates"]
    assert sum(space["pruned_by"].values()) == space["templates"]["all"]["pruned"]
    assert {"colocated", "prefill", "decode"} <= set(space["templates"])
    assert "settings" in data["best"]
    assert data["candidates"][0]["plan"] == data["best"]["plan"]
    assert "ttft_s" in data["best"]["metrics"] and "cost" in data["best"]["metrics"]
    for entry in data["baselines"].values():
        assert {"plan", "objective", "metrics"} <= set(entry)


@pytest.mark.solver
def test_plan_infeasible_slo_exits_1_naming_the_goal(run_plan, tmp_path):
    """A 1 ms TTFT target exits 1 and says which goal the best plan misses and by how much."""
    code, out, err = run_plan(write_scenario(tmp_path, slo={"ttft_s": {"p99": 0.001}}))
    assert code == 1
    assert "TTFT p99" in err and "0.001 s target" in err
    assert out == ""


@pytest.mark.solver
def test_plan_table_shows_best_baselines_and_search(run_plan, tmp_path):
    """The terminal output has the plans table, the baseline gains and the search figures."""
    code, out, _ = run_plan(write_scenario(tmp_path))
    assert code == 0
    for text in ("Plans by min_cost", "heuristic baselines", "tp-in-node", "simulations", "gap"):
        assert text in out


@pytest.mark.solver
def test_plan_report_writes_yaml_csv_and_plots(run_plan, tmp_path):
    """--report writes a loadable plan.yaml, candidates.csv and the PNG plots."""
    out_dir = tmp_path / "report"
    code, _, _ = run_plan(write_scenario(tmp_path), "--report", str(out_dir), "--json")
    assert code == 0
    sc = load_scenario(out_dir / "plan.yaml")
    assert sc.plan is not None
    rows = list(csv.DictReader((out_dir / "candidates.csv").open()))
    assert rows and rows[0]["source"] == "candidate" and rows[0]["objective"]
    for png in ("pareto.png", "latency_cdf.png"):
        data = (out_dir / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--objective", "fastest"), "--objective"),
        (("--slo", "ttft_s=2"), "--slo"),
        (("--slo", "ttft_s.p99=soon"), "--slo"),
        (("--budget", "usd_per_hour=-1"), "--budget"),
        (("--top-k", "0"), "--top-k"),
        (("--time-limit", "0"), "--time-limit"),
    ],
)
def test_plan_bad_option_values_exit_2_naming_the_flag(run_plan, tmp_path, args, flag):
    """A bad option value exits 2 with a message naming the flag."""
    code, _, err = run_plan(write_scenario(tmp_path), *args)
    assert code == 2
    assert flag in err


def _children(pid: int) -> set[int]:
    """Child process ids of `pid` (Linux /proc)."""
    out: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out |= {int(x) for x in f.read().split()}
    except OSError:
        pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--exhaustive"]], ids=["search", "exhaustive"])
def test_sigterm_during_plan_stops_the_worker_processes_at_once(tmp_path, extra):
    """SIGTERM while simulations run in worker processes: exit 143 with one line, and every worker is gone
    within a few seconds (not left simulating until its plan is done)."""
    data = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 4},
        "workload": {
            "requests": 200_000,  # each simulation takes minutes: the signal always lands mid-simulation
            "arrival": {"process": "poisson", "rate": 40.0},
            "input_tokens": {"dist": "fixed", "value": 256},
            "output_tokens": {"dist": "fixed", "value": 32},
        },
        "goals": {"objective": "min_cost"},
    }
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner.cli", "plan", str(path), "--workers", "2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None and len(workers) >= 2, "the planner never started its worker processes"
    time.sleep(1.0)  # let them get into their simulations
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("terminated"), err
    assert "Traceback" not in out + err
    gone_by = time.monotonic() + 5
    while time.monotonic() < gone_by and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)
