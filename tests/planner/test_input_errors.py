"""Broken scenario files end with exit code 2, a message naming the file and the field, and no traceback."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"

BASE = {
    "model": "llama-3.1-70b",
    "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 8},
    "engine": {"kind": "vllm-v1"},
    "workload": {
        "requests": 100,
        "arrival": {"process": "poisson", "rate": 2.0},
        "input_tokens": {"dist": "fixed", "value": 512},
        "output_tokens": {"dist": "fixed", "value": 128},
    },
    "plan": "tp=8",
}


def _set(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()

# (case id, mutation (dotted field, value), text the message must contain)
CASES = [
    ("unknown-model", ("model", "llama-9-1t"), "model"),
    ("tp-not-dividing-heads", ("plan", "tp=3"), "plan"),
    ("negative-rate", ("workload.arrival.rate", -1.0), "workload.arrival.rate"),
    ("wrong-type", ("workload.requests", "many"), "workload.requests"),
    ("unknown-key", ("engine.max_seqs", 12), "engine.max_seqs"),
    ("unknown-gpu", ("cluster.gpu", "h900"), "cluster.gpu"),
    ("ep-on-dense-model", ("plan", "tp=8,ep=2"), "plan"),
    ("too-many-gpus", ("plan", "tp=8,dp=2"), "plan"),
    ("bad-shorthand", ("plan", "tp=four"), "plan"),
    ("bad-shorthand-key", ("plan", "tq=4"), "plan"),
    ("unknown-engine", ("engine.kind", "vllm-v9"), "engine.kind"),
    ("missing-workload", ("workload", _DELETE), "workload"),
    ("memory-fraction-above-one", ("engine.gpu_memory_fraction", 1.5), "engine.gpu_memory_fraction"),
    (
        "lognormal-without-std",
        ("workload.input_tokens", {"dist": "lognormal", "mean": 100}),
        "workload.input_tokens",
    ),
    ("unknown-objective", ("goals", {"objective": "max_fun"}), "goals.objective"),
    ("negative-slo", ("goals", {"slo": {"ttft_s": {"p99": -2}}}), "goals.slo.ttft_s.p99"),
    ("unknown-cluster-preset", ("cluster", "dgx-z900"), "cluster"),
    ("zero-gpus-per-node", ("cluster.gpus_per_node", 0), "cluster.gpus_per_node"),
    ("unknown-fabric", ("cluster.inter_node", "carrier-pigeon"), "inter_node"),
    (
        "layers-with-gap",
        ("plan", {"replicas": [{"stages": [{"layers": [0, 40], "tp": 4}, {"layers": [41, 80], "tp": 4}]}]}),
        "plan.replicas[0].stages[1].layers",
    ),
    (
        "layers-short",
        ("plan", {"replicas": [{"stages": [{"layers": [0, 40], "tp": 4}]}]}),
        "plan.replicas[0].stages",
    ),
    (
        "cells-disagree",
        ("plan", {"replicas": [{"stages": [{"layers": [0, 80], "attention": {"tp": 8}, "ffn": {"tp": 4}}]}]}),
        "plan.replicas[0].stages[0]",
    ),
    (
        "uniform-low-above-high",
        ("workload.input_tokens", {"dist": "uniform", "low": 10, "high": 5}),
        "input_tokens",
    ),
    (
        "burst-needs-no-rate-but-poisson-does",
        ("workload.arrival", {"process": "poisson"}),
        "workload.arrival",
    ),
]


@pytest.mark.parametrize(("case", "mutation", "field"), CASES, ids=[c[0] for c in CASES])
def test_check_broken_scenario_exits_2_naming_field(tmp_path, run_cli, case, mutation, field):
    """Each broken scenario is rejected with exit 2 and a message naming its file and field, without a traceback."""
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(_set(BASE, *mutation)))
    code, out, err = run_cli("check", str(path))
    assert code == 2, (out, err)
    assert str(path) in err.replace("\n", "")
    assert field in err.replace("\n", "")
    assert "Traceback" not in out + err


def test_check_mixtral_experts_not_divisible_exits_2(tmp_path, run_cli):
    """An expert-parallel degree that does not divide the experts is named."""
    data = _set(_set(BASE, "model", "mixtral-8x7b"), "plan", "tp=1,ep=3")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_cli("check", str(path))
    assert code == 2
    assert "ep=3" in err and "8 experts" in err


def test_check_yaml_syntax_error_names_line(tmp_path, run_cli):
    """A YAML syntax error names the file and the line."""
    path = tmp_path / "broken.yaml"
    path.write_text("model: llama-3.1-70b\ncluster: {gpu: h100-sxm\nworkload: [\n")
    code, out, err = run_cli("check", str(path))
    assert code == 2
    assert "invalid YAML at line" in err and str(path) in err.replace("\n", "")
    assert "Traceback" not in out + err


def test_check_missing_file_exits_2(tmp_path, run_cli):
    """A scenario path that does not exist is reported as such."""
    code, _, err = run_cli("check", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "file not found" in err


def test_check_scenario_not_a_mapping_exits_2(tmp_path, run_cli):
    """A YAML list instead of a mapping is rejected with what was expected."""
    path = tmp_path / "list.yaml"
    path.write_text("- model\n- cluster\n")
    code, _, err = run_cli("check", str(path))
    assert code == 2
    assert "mapping" in err


def test_show_unknown_model_lists_known_names(run_cli):
    """`apex show model` with an unknown name lists the catalog."""
    code, _, err = run_cli("show", "model", "gpt-17")
    assert code == 2
    assert "llama-3.1-70b" in err


def test_cli_unknown_option_exits_2(run_cli):
    """A misspelt flag is a usage error with exit code 2."""
    code, _, _ = run_cli("check", "--plann", "tp=2", "x.yaml")
    assert code == 2


def test_simulate_requests_out_never_overwrites(tmp_path, run_cli):
    """`--requests-out` refuses a path that exists instead of overwriting what is there."""
    target = tmp_path / "mine.csv"
    target.write_text("precious\n")
    code, _, err = run_cli("simulate", str(EXAMPLES / "llama-70b-h100.yaml"), "--requests-out", str(target))
    assert code == 2 and "--requests-out" in err
    assert target.read_text() == "precious\n"


def test_simulate_writes_per_request_parquet(tmp_path, run_cli):
    """`--requests-out FILE.parquet` writes one row per request."""
    import pyarrow.parquet as pq

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(_set(BASE, "workload.requests", 40)))
    target = tmp_path / "requests.parquet"
    code, _, _ = run_cli("simulate", str(scenario), "--requests-out", str(target))
    assert code == 0
    assert pq.read_table(target).num_rows == 40
