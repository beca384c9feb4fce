"""What-if studies: expansion, validation, streaming to disk, resume, failures, Ray, plots."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import yaml

from planner import studies
from planner.studies import expand, load_study, run_study
from simulator.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"

BASE = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
    "workload": {
        "requests": 50,
        "arrival": {"process": "poisson", "rate": 4.0},
        "input_tokens": {"dist": "fixed", "value": 256},
        "output_tokens": {"dist": "fixed", "value": 32},
        "seed": 1,
    },
    "plan": "tp=1",
    "goals": {"slo": {"ttft_s": {"p99": 0.5}}},
}


def make_study(**fields) -> dict:
    """A small simulate study over the request rate (fields override its keys)."""
    spec = {"name": "tiny", "base": copy.deepcopy(BASE), "vary": {"workload.arrival.rate": [2.0, 4.0, 8.0]}}
    spec.update(fields)
    return spec


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_expand_grid_crossed_with_zip_counts_and_values():
    """The grid of vary is crossed with the rows of zip, first axis slowest, zip rows innermost."""
    spec = make_study(
        vary={"workload.arrival.rate": [1.0, 2.0], "cluster.gpu": ["h100-sxm", "h200-sxm", "b200"]},
        zip={"goals.slo.ttft_s.p99": [0.5, 1.0], "goals.slo.tpot_s.p99": [0.03, 0.05]},
    )
    points = expand(spec)
    assert len(points) == 2 * 3 * 2
    assert [p.index for p in points] == list(range(12))
    assert points[0].params == {
        "workload.arrival.rate": 1.0,
        "cluster.gpu": "h100-sxm",
        "goals.slo.ttft_s.p99": 0.5,
        "goals.slo.tpot_s.p99": 0.03,
    }
    assert (
        points[1].params["goals.slo.ttft_s.p99"] == 1.0 and points[1].params["goals.slo.tpot_s.p99"] == 0.05
    )
    last = points[-1]
    assert last.scenario["cluster"]["gpu"] == "b200"
    assert last.scenario["workload"]["arrival"]["rate"] == 2.0
    assert last.scenario["goals"]["slo"]["tpot_s"] == {"p99": 0.05}
    assert BASE["workload"]["arrival"]["rate"] == 4.0  # the base is not mutated


def test_expand_creates_intermediate_mappings():
    """Setting a dotted field under a missing mapping creates it."""
    base = copy.deepcopy(BASE)
    del base["goals"]
    (point,) = expand(make_study(base=base, vary={"goals.budget.usd_per_hour": [50.0]}))
    assert point.scenario["goals"] == {"budget": {"usd_per_hour": 50.0}}


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"vary": {"workload.arrival.rate": "fast"}}, "vary.workload.arrival.rate", "list"),
        ({"vary": {"workload.arrival.rate": []}}, "vary", "non-empty"),
        ({"runs": "simulate"}, "runs", "unknown key"),
        ({"run": "optimise"}, "run", "simulate"),
        ({"zip": {"workload.seed": [1, 2], "workload.requests": [10]}}, "zip", "equal lengths"),
        ({"vary": {"cluster.gpu": ["h100-sxm", "h900"]}}, "vary.cluster.gpu", "h900"),
        ({"vary": {"workload.arival.rate": [1.0]}}, "vary.workload.arival.rate", "unknown key"),
        ({"pareto": ["cost.usd_per_million_output_tokens"]}, "pareto", "two metrics"),
        ({"plan_options": {"top_k": 2}}, "plan_options", "run: plan"),
        ({"base": "missing.yaml"}, "base", "not found"),
    ],
)
def test_load_study_bad_field_names_file_and_field(tmp_path, fields, field, text):
    """A bad study field is an InputError naming the study file, the field and what was expected."""
    path = tmp_path / "bad-study.yaml"
    path.write_text(yaml.safe_dump(make_study(**fields)))
    with pytest.raises(InputError) as info:
        load_study(str(path))
    assert info.value.file == str(path)
    assert info.value.field == field
    assert text in str(info.value)


def test_load_study_cluster_preset_cannot_take_gpu_axis():
    """Varying cluster.gpu on a cluster preset name explains to write the cluster as a mapping."""
    base = copy.deepcopy(BASE)
    base["cluster"] = "dgx-h100"
    base["plan"] = "tp=8"
    with pytest.raises(InputError, match="cluster as a mapping") as info:
        load_study(make_study(base=base, vary={"cluster.gpu": ["h200-sxm"]}))
    assert info.value.field == "vary.cluster.gpu"


def test_load_study_base_path_is_relative_to_study_file(tmp_path):
    """A base scenario path is read relative to the study file."""
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(make_study(base="scenario.yaml")))
    study = load_study(str(tmp_path / "study.yaml"))
    assert study.name == "tiny" and len(study.points) == 3
    assert study.points[2].scenario["workload"]["arrival"]["rate"] == 8.0


def test_run_study_interrupted_then_resumed_runs_every_point_once(tmp_path):
    """A study on 2 workers interrupted after 2 rows resumes from results.csv and every point appears once."""
    spec = make_study(vary={"workload.arrival.rate": [1.0, 2.0, 4.0, 8.0, 16.0]})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        for _ in run_study(spec, workers=2, out=out, stop_after=2):
            pass
    first = read_csv(out / "results.csv")
    assert 2 <= len(first) < 5
    assert not (out / "results.parquet").exists()
    with pytest.raises(InputError, match="--resume"):
        run_study(spec, out=out)
    rows = list(run_study(spec, workers=2, out=out, resume=True))
    assert sorted(r["point"] for r in rows) == [0, 1, 2, 3, 4]
    table = read_csv(out / "results.csv")
    assert sorted(int(r["point"]) for r in table) == [0, 1, 2, 3, 4]
    assert all(r["status"] == "ok" for r in table)
    assert (out / "results.parquet").exists()
    import pyarrow.parquet as pq

    assert pq.read_table(out / "results.parquet").num_rows == 5


def test_run_study_resume_refuses_a_different_study(tmp_path):
    """Resuming into a directory that holds another study is refused with a clear message."""
    out = tmp_path / "out"
    list(run_study(make_study(vary={"workload.arrival.rate": [2.0]}), out=out))
    with pytest.raises(InputError, match="different study"):
        run_study(make_study(vary={"workload.arrival.rate": [3.0]}), out=out, resume=True)


def test_run_study_failing_point_is_recorded_and_others_complete(tmp_path, monkeypatch):
    """A point that raises is a row with status error and its message; the other points still run."""
    real = studies.run_point

    def flaky(run, scenario, plan_options):
        if scenario["workload"]["arrival"]["rate"] == 4.0:
            raise_in = scenario["workload"]
            raise_in["arrival"]["process"] = "bogus"  # makes the simulator reject the point
        return real(run, scenario, plan_options)

    monkeypatch.setattr(studies, "run_point", flaky)
    rows = list(run_study(make_study(), out=tmp_path / "out"))
    by_rate = {r["workload.arrival.rate"]: r for r in rows}
    assert by_rate[4.0]["status"] == "error" and "process" in by_rate[4.0]["error"]
    assert by_rate[2.0]["status"] == by_rate[8.0]["status"] == "ok"
    assert by_rate[8.0]["throughput.output_tokens_per_s"] > by_rate[2.0]["throughput.output_tokens_per_s"]
    assert len(read_csv(tmp_path / "out" / "results.csv")) == 3


def test_run_point_no_plan_is_a_row_not_an_exception(monkeypatch):
    """NoPlanError from the planner becomes status no_plan with the reason."""
    from planner import plan_api
    from planner.errors import NoPlanError

    def no_plan(*args, **kwargs):
        raise NoPlanError("ttft_s.p99 misses its target by 2x")

    monkeypatch.setattr(plan_api, "plan", no_plan)
    result = studies.run_point("plan", copy.deepcopy(BASE), None)
    assert result == {"status": "no_plan", "error": "ttft_s.p99 misses its target by 2x"}


def test_study_api_rows_carry_axes_status_and_metrics():
    """api rows have the varied fields by dotted name, status, plan and the flattened metrics."""
    from planner.study_api import study

    rows = list(study(make_study(vary={"workload.arrival.rate": [2.0, 4.0]})))
    assert [r["workload.arrival.rate"] for r in rows] == [2.0, 4.0]
    keys = list(rows[0])
    assert keys[:4] == ["point", "workload.arrival.rate", "status", "plan"]
    assert rows[0]["status"] == "ok" and rows[0]["plan"] == "1x[tp1]"
    for metric in ("throughput.output_tokens_per_s", "ttft_s.p99", "cost.usd_per_million_output_tokens"):
        assert rows[0][metric] > 0


@pytest.mark.slow
def test_run_study_ray_local_matches_local_workers(tmp_path):
    """--ray local gives the same rows as local worker processes."""
    pytest.importorskip("ray")
    spec = make_study(vary={"workload.arrival.rate": [2.0, 8.0]})
    local = sorted(run_study(spec, workers=2), key=lambda r: r["point"])
    on_ray = sorted(run_study(spec, workers=2, ray="local"), key=lambda r: r["point"])
    assert on_ray == local


def test_report_redraws_plots_from_stored_table(tmp_path, capsys):
    """`apex report DIR` re-draws the PNGs (metrics per axis, Pareto front) from results.csv."""
    from planner.study_command import report_command, study_command

    path = tmp_path / "study.yaml"
    spec = make_study(
        vary={"workload.arrival.rate": [2.0, 8.0], "cluster.gpu": ["h100-sxm", "h200-sxm"]},
        pareto=["cost.usd_per_million_output_tokens", "ttft_s.p99"],
    )
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    study_command(str(path), workers=1, ray=None, out=str(out), resume=False)
    pngs = {"metrics-vs-workload-arrival-rate.png", "metrics-vs-cluster-gpu.png", "pareto.png"}
    assert pngs <= {p.name for p in out.iterdir()}
    for name in pngs:
        (out / name).unlink()
    report_command(str(out))
    assert pngs <= {p.name for p in out.iterdir()}
    assert "h200-sxm" in capsys.readouterr().out


def test_report_on_a_non_study_directory_is_input_error(tmp_path):
    """`apex report` on a directory without study.yaml/results.csv says what it expected."""
    from planner.study_command import report_command

    with pytest.raises(InputError, match="results.csv"):
        report_command(str(tmp_path))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("study-*.yaml")), ids=lambda p: p.stem)
def test_example_studies_validate(path):
    """Every example study file and each of its points' scenarios is valid."""
    study = load_study(str(path))
    assert study.points and study.spec.name


def test_run_study_ray_missing_package_is_input_error(monkeypatch):
    """--ray without the ray package says how to install it."""
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"apex-planner\[ray\]"):
        list(run_study(make_study(), ray="local"))


def test_run_study_resume_drops_a_torn_last_row(tmp_path):
    """A row cut short by a hard kill is dropped on resume and its point runs again."""
    spec = make_study()
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        list(run_study(spec, out=out, stop_after=1))
    with open(out / "results.csv", "a") as f:
        f.write("1,4.0,o")  # a half-written row, no newline
    rows = list(run_study(spec, out=out, resume=True))
    assert sorted(r["point"] for r in rows) == [0, 1, 2]
    assert sorted(int(r["point"]) for r in read_csv(out / "results.csv")) == [0, 1, 2]


# ---- issue 10: strict study files, output paths checked first, damaged outputs, interruptions ---------------


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        (
            {"run": "plan", "plan_options": {"time_limit_s": float("nan")}},
            "plan_options.time_limit_s",
            "finite",
        ),
        ({"run": "plan", "plan_options": {"time_limit_s": 1e9}}, "plan_options.time_limit_s", "allowed: > 0"),
        ({"run": "plan", "plan_options": {"top_k": "3"}}, "plan_options.top_k", "valid integer"),
        ({"run": "plan", "plan_options": {"exhaustive": "yes"}}, "plan_options.exhaustive", "boolean"),
        (
            {"vary": {"workload.seed": list(range(400)), "workload.requests": list(range(1, 400))}},
            "vary",
            "100,000",
        ),
    ],
)
def test_load_study_strict_values_name_field(tmp_path, fields, field, text):
    """Study options are strict and finite like scenarios; a grid too large to run is refused with the limit."""
    path = tmp_path / "bad-study.yaml"
    path.write_text(yaml.safe_dump(make_study(**fields)))
    with pytest.raises(InputError) as info:
        load_study(str(path))
    assert (info.value.file, info.value.field) == (str(path), field)
    assert text in str(info.value)


def test_study_duplicate_key_exits_2_naming_line(tmp_path, run_cli):
    """Two `vary:` lines used to keep the last silently."""
    path = tmp_path / "study.yaml"
    text = yaml.safe_dump(make_study(), sort_keys=False)
    path.write_text(text + "vary: {workload.arrival.rate: [1.0]}\n")
    code, out, err = run_cli("study", str(path))
    assert code == 2 and str(path) in err and "vary" in err and "written twice" in err
    assert "Traceback" not in out + err


def test_study_out_with_missing_parent_exits_2_before_any_point(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(studies, "run_point", lambda *a: pytest.fail("a point ran before the check"))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(make_study()))
    code, out, err = run_cli("study", str(path), "--out", str(tmp_path / "no" / "out"))
    assert code == 2 and "--out" in err and "does not exist" in err
    assert "Traceback" not in out + err


def _finished_study(tmp_path) -> Path:
    out = tmp_path / "out"
    list(run_study(make_study(vary={"workload.arrival.rate": [2.0]}), out=out))
    return out


@pytest.mark.parametrize(
    ("name", "content", "text"),
    [
        ("study.yaml", b"name: tiny\nbase: {a: [1\n", "invalid YAML"),
        ("study.yaml", b"- not\n- a study\n", "expected the mapping"),
        ("study.yaml", b"name: tiny\nbase: {}\nvary: 7\n", "vary"),
        ("study.yaml", b"name: tiny\nname: again\nbase: {}\n", "written twice"),
        ("results.csv", b"point,status\n0,ok\n\xff\xfe\n", "not UTF-8"),
        ("results.csv", b"a,b\n1,2\n", "the header lacks point"),
    ],
)
def test_report_on_damaged_study_output_exits_2_naming_the_file(tmp_path, run_cli, name, content, text):
    """`apex report` on a corrupt study.yaml or results.csv used to end in a traceback."""
    out = _finished_study(tmp_path)
    (out / name).write_bytes(content)
    code, stdout, err = run_cli("report", str(out))
    assert code == 2, err
    assert str(out / name) in err.replace("\n", "") and text in err
    assert "Traceback" not in stdout + err


SLOW_POINT = {**BASE, "workload": {**BASE["workload"], "requests": 6000, "arrival": {"process": "burst"}}}


@pytest.mark.parametrize(("signum", "code", "word"), [(2, 130, "interrupted"), (15, 143, "terminated")])
def test_study_signal_stops_workers_keeps_rows_and_resumes(tmp_path, signum, code, word):
    """SIGINT / SIGTERM: exit 130 / 143 with one line, workers gone at once, finished rows kept, resumable."""
    import subprocess
    import sys
    import time

    spec = make_study(base=SLOW_POINT, vary={"workload.seed": list(range(8))})
    path, out = tmp_path / "study.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, "-m", "planner.cli", "study", str(path), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_rows_on_disk(out)) < 1:
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert workers, "the study runs its points in worker processes"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(word) and "--resume" in lines[0], stderr
    assert "Traceback" not in stdout + stderr
    time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived the study"
    kept = _rows_on_disk(out)
    assert 1 <= len(kept) < 8 and f"{len(kept)} of 8 points" in lines[0]
    rows = list(run_study(spec | {"base": SLOW_POINT}, out=out, resume=True, workers=2))
    assert sorted(r["point"] for r in rows) == list(range(8))


def _rows_on_disk(out: Path) -> list[dict]:
    path = out / "results.csv"
    return read_csv(path) if path.is_file() else []


def _children(pid: int) -> list[int]:
    from pathlib import Path as P

    kids = P(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in kids.read_text().split()] if kids.exists() else []


def _alive(pid: int) -> bool:
    from pathlib import Path as P

    stat = P(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] not in ("Z", "X")
