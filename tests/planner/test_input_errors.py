"""Broken scenario files end with exit code 2, a message naming the file and the field, and no traceback."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL

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
    ("clock-below-range", ("sm_clock_mhz", 500), "sm_clock_mhz"),
    ("clock-above-boost", ("sm_clock_mhz", 2100), "sm_clock_mhz"),
    ("clock-not-an-int", ("sm_clock_mhz", "fast"), "sm_clock_mhz"),
    ("clock-for-absent-gpu", ("sm_clock_mhz", {"a100-sxm-80gb": 1200}), "sm_clock_mhz.a100-sxm-80gb"),
    (
        "group-clock-out-of-range",
        ("plan", {"replicas": [{"sm_clock_mhz": 3000, "stages": [{"layers": [0, 80], "tp": 8}]}]}),
        "plan.replicas[0].sm_clock_mhz",
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


# ------------------------------------------------------------------------------------------------------------
# issue 10: inputs that used to end in a traceback, or were accepted silently. Each case: exit 2, the message
# names the file, the field and what was expected, and there is no traceback.
INF, NAN = float("inf"), float("nan")

# (case id, mutation (dotted field, value), field the message names, text the message contains)
STRICT_CASES = [
    ("seed-negative", ("workload.seed", -1), "workload.seed", "allowed: >= 0"),
    (
        "gamma-cv-inf",
        ("workload.arrival", {"process": "gamma", "rate": 2.0, "cv": INF}),
        "workload.arrival.cv",
        "finite",
    ),
    (
        "gamma-cv-tiny",
        ("workload.arrival", {"process": "gamma", "rate": 2.0, "cv": 1e-200}),
        "workload.arrival.cv",
        "allowed: >= 0.001 and <= 100",
    ),
    (
        "empirical-no-values",
        ("workload.input_tokens", {"dist": "empirical", "values": []}),
        "workload.input_tokens.values",
        "at least 1 item",
    ),
    (
        "empirical-zero-weights",
        ("workload.input_tokens", {"dist": "empirical", "values": [10, 20], "weights": [0.0, 0.0]}),
        "workload.input_tokens",
        "weights must not all be zero",
    ),
    (
        "empirical-nan-weight",
        ("workload.input_tokens", {"dist": "empirical", "values": [10, 20], "weights": [NAN, 1.0]}),
        "workload.input_tokens.weights[0]",
        "finite",
    ),
    ("requests-true", ("workload.requests", True), "workload.requests", "valid integer"),
    ("requests-string", ("workload.requests", "50"), "workload.requests", "'50'"),
    (
        "lognormal-mean-inf",
        ("workload.input_tokens", {"dist": "lognormal", "mean": INF, "std": 10}),
        "workload.input_tokens.mean",
        "allowed: > 0 and <= 10,000,000",
    ),
    (
        "lognormal-mean-1e300",
        ("workload.output_tokens", {"dist": "lognormal", "mean": 1e300, "std": 10}),
        "workload.output_tokens.mean",
        "allowed: > 0 and <= 10,000,000",
    ),
    ("rate-1e-300", ("workload.arrival.rate", 1e-300), "workload.arrival.rate", "allowed: >= 0.0001"),
    ("rate-nan", ("workload.arrival.rate", NAN), "workload.arrival.rate", "finite"),
    ("nodes-1e9", ("cluster.nodes", 10**9), "cluster.nodes", "allowed: > 0 and <= 100,000"),
    ("slo-inf", ("goals", {"slo": {"ttft_s": {"p99": INF}}}), "goals.slo.ttft_s.p99", "finite"),
    ("fraction-string", ("engine.gpu_memory_fraction", "0.9"), "engine.gpu_memory_fraction", "valid number"),
    (
        "chunked-prefill-string",
        ("engine.enable_chunked_prefill", "no"),
        "engine.enable_chunked_prefill",
        "boolean",
    ),
    ("plan-repeated-key", ("plan", "tp=2,tp=4"), "plan", "tp is given twice"),
    (
        "plan-tp-string",
        ("plan", {"replicas": [{"stages": [{"layers": [0, 80], "tp": "8"}]}]}),
        "plan.replicas[0].stages[0].tp",
        "valid integer",
    ),
    (
        "plan-only-prefill",
        ("plan", {"replicas": [{"role": "prefill", "stages": [{"layers": [0, 80], "tp": 8}]}]}),
        "plan.replicas",
        "no decode replicas",
    ),
    (
        "plan-only-decode",
        ("plan", {"replicas": [{"role": "decode", "stages": [{"layers": [0, 80], "tp": 8}]}]}),
        "plan.replicas",
        "only decode replicas",
    ),
]


def _assert_input_error(code, out, err, path, field, text):
    flat = err.replace("\n", "")
    assert code == 2, (out, err)
    assert str(path) in flat, err
    assert f": {field}: " in flat, err
    assert text in flat, err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("case", "mutation", "field", "text"), STRICT_CASES, ids=[c[0] for c in STRICT_CASES]
)
@pytest.mark.parametrize("command", ["check", "simulate"])
def test_strict_scenario_field_exits_2_naming_field_and_range(
    tmp_path, run_cli, command, case, mutation, field, text
):
    """Wrong types, non-finite numbers, values out of range and impossible plans: exit 2 before any work."""
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(_set(BASE, *mutation)))
    code, out, err = run_cli(command, str(path))
    _assert_input_error(code, out, err, path, field, text)


def test_nodes_written_1e9_is_not_coerced(tmp_path, run_cli):
    """`nodes: 1e9` (YAML reads a string) is refused as not an integer instead of being converted."""
    path = tmp_path / "s.yaml"
    text = yaml.safe_dump(BASE).replace("nodes: 1", "nodes: 1e9")
    path.write_text(text)
    code, out, err = run_cli("check", str(path))
    _assert_input_error(code, out, err, path, "cluster.nodes", "valid integer")


@pytest.mark.parametrize(
    ("text", "field", "lines"),
    [
        ("model: llama-3.1-70b\nmodel: llama-3.1-8b\n", "model", "lines 1 and 2"),
        ("workload:\n  seed: 1\n  requests: 10\n  seed: 2\n", "workload.seed", "lines 2 and 4"),
        ("goals: {objective: min_cost, objective: min_energy}\n", "goals.objective", "lines 1 and 1"),
    ],
)
def test_duplicate_yaml_key_exits_2_naming_line_and_key(tmp_path, run_cli, text, field, lines):
    """A key written twice is refused (YAML would silently keep the last one), naming both lines."""
    path = tmp_path / "dup.yaml"
    path.write_text(text + yaml.safe_dump({"cluster": BASE["cluster"], "plan": "tp=8"}))
    code, out, err = run_cli("check", str(path))
    _assert_input_error(code, out, err, path, field, "written twice")
    assert lines in err.replace("\n", "")


def _trace_scenario(tmp_path, name: str, content: bytes) -> Path:
    trace = tmp_path / name
    trace.write_bytes(content)
    data = {k: v for k, v in BASE.items() if k != "workload"}
    data["workload"] = {"trace": name}
    path = tmp_path / "trace-scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return trace


JSONL_OK = b'{"arrival_s": 0.0, "input_tokens": 100, "output_tokens": 10}\n'
CSV_HEADER = b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,100,10\n"


@pytest.mark.parametrize(
    ("name", "content", "field", "text"),
    [
        (
            "nan.jsonl",
            JSONL_OK + b'{"arrival_s": 1, "input_tokens": NaN, "output_tokens": 5}\n',
            "input_tokens",
            "line 2",
        ),
        (
            "inf.jsonl",
            JSONL_OK + b'{"arrival_s": 1, "input_tokens": 5, "output_tokens": Infinity}\n',
            "output_tokens",
            "line 2",
        ),
        (
            "huge.jsonl",
            b'{"arrival_s": 0, "input_tokens": 1e30, "output_tokens": 5}\n',
            "input_tokens",
            "10,000,000",
        ),
        (
            "bytes.jsonl",
            JSONL_OK + b'{"arrival_s": 1, "input_tokens": 5, "output_tokens": 5, "x": "\xff"}\n',
            "workload.trace",
            "line 2",
        ),
        ("nan.csv", CSV_HEADER + b"2023-11-16 18:15:47.0000000,nan,5\n", "ContextTokens", "row 3"),
        ("bytes.csv", CSV_HEADER + b"2023-11-16 18:15:47.0000000,\xfe,5\n", "workload.trace", "line 3"),
        (
            "dup.jsonl",
            b'{"arrival_s": 0, "input_tokens": 5, "input_tokens": 6, "output_tokens": 5}\n',
            "workload.trace",
            "written twice",
        ),
    ],
)
def test_bad_trace_exits_2_naming_trace_line_and_field(tmp_path, run_cli, name, content, field, text):
    """NaN, Infinity, 1e30 token counts, bytes that are not UTF-8, a repeated key: exit 2 naming the line."""
    trace = _trace_scenario(tmp_path, name, content)
    code, out, err = run_cli("check", str(tmp_path / "trace-scenario.yaml"))
    _assert_input_error(code, out, err, trace.name, field, text)


HF_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"num_attention_heads": 0}, "num_attention_heads", "at least 1"),
        ({"num_attention_heads": "32"}, "num_attention_heads", "whole number, got '32'"),
        ({"hidden_size": 4096.5}, "hidden_size", "whole number"),
        ({"num_attention_heads": 30, "num_key_value_heads": 6}, "num_attention_heads", "give head_dim"),
        ({"tie_word_embeddings": "false"}, "tie_word_embeddings", "true or false"),
    ],
)
def test_bad_hf_config_exits_2_naming_key(tmp_path, run_cli, change, field, text):
    """A HuggingFace config.json with a zero, a string, a fraction or heads that do not divide the hidden size."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**HF_LLAMA, **change}))
    data = {**BASE, "model": "config.json", "plan": "tp=1"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = run_cli("check", str(path))
    _assert_input_error(code, out, err, config, field, text)


def test_hf_config_heads_not_dividing_hidden_accepted_with_head_dim(tmp_path, run_cli):
    """With an explicit head_dim, heads that do not divide the hidden size are the model's own choice."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({**HF_LLAMA, "num_attention_heads": 30, "num_key_value_heads": 6, "head_dim": 128})
    )
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "model": "config.json", "plan": "tp=1"}))
    code, _, err = run_cli("check", str(path))
    assert code == 0, err


@pytest.mark.parametrize(
    ("mutation", "field", "limit"),
    [
        (("workload.input_tokens", {"dist": "fixed", "value": 140_000}), "workload.input_tokens", "131,072"),
        (
            ("engine", {"kind": "trtllm", "max_num_batched_tokens": 128}),
            "engine.max_num_batched_tokens",
            "128",
        ),
    ],
    ids=["longer-than-context", "over-token-budget"],
)
@pytest.mark.parametrize("command", ["check", "simulate"])
def test_no_request_can_run_exits_2_naming_field_and_limit(
    tmp_path, run_cli, command, mutation, field, limit
):
    """Every request impossible: exit 2 before simulating (it used to print 'completed 0' and NaNs, exit 0)."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_set(SMALL, *mutation)))
    code, out, err = run_cli(command, str(path))
    _assert_input_error(code, out, err, path, field, limit)
    assert "none of the 30 requests" in err


def test_some_requests_cannot_run_warn_and_count_as_rejected(tmp_path, run_cli):
    """Some impossible: one warning line with the counts, exit 0, `requests rejected` in the table and JSON."""
    data = _set(SMALL, "workload.input_tokens", {"dist": "uniform", "low": 100, "high": 250_000})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = run_cli("simulate", str(path), "--json")
    assert code == 0, err
    rejected = json.loads(out)["requests"]["rejected"]
    assert 0 < rejected < 30
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{rejected} of 30 requests" in warnings[0]
    assert str(path) in warnings[0] and "workload.input_tokens" in warnings[0] and "131,072" in warnings[0]
    code, out, _ = run_cli("simulate", str(path))
    row = next(line for line in out.splitlines() if "requests rejected" in line)
    assert row.split("│")[2].strip() == str(rejected)


def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_simulate_json_has_null_never_nan(tmp_path, run_cli):
    """Metrics without a value (one output token each: no TPOT, no ITL) are null; the line is strict JSON."""
    data = _set(SMALL, "workload.output_tokens", {"dist": "fixed", "value": 1})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = run_cli("simulate", str(path), "--json")
    assert code == 0, err
    result = _strict_json(out)
    assert result["tpot_s"]["p99"] is None and result["itl_s"]["mean"] is None
    assert result["requests"]["completed"] == 30


def test_render_json_line_turns_nan_and_inf_into_null():
    from planner.render import json_line

    line = json_line({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}, "e": 2})
    assert _strict_json(line) == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": 2}


def test_check_plan_that_does_not_fit_exits_2_naming_stage_and_gib(tmp_path, run_cli):
    """`apex check` used to print 'scenario is valid' and exit 0 while reporting that the weights do not fit."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_set(BASE, "plan", "tp=1")))
    code, out, err = run_cli("check", str(path))
    _assert_input_error(code, out, err, path, "plan.replicas[0].stages[0]", "do not fit")
    flat = err.replace("\n", "")
    assert "needs 134.4 GiB per GPU" in flat and "offers 72.0 GiB" in flat  # 70B bf16 on one 80 GiB H100
    assert "scenario is valid" not in out
    code, _, err = run_cli("check", str(path), "--plan", "tp=2")
    assert code == 0, err


def test_requests_out_into_missing_directory_fails_before_simulating(tmp_path, run_cli, monkeypatch):
    """A --requests-out path in a directory that does not exist is refused at once, not after the run."""
    from planner import api

    monkeypatch.setattr(api, "simulate", lambda *a, **k: pytest.fail("simulated before checking the path"))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    code, out, err = run_cli("simulate", str(path), "--requests-out", str(tmp_path / "nope" / "r.parquet"))
    assert code == 2 and "--requests-out" in err and "does not exist" in err
    assert "Traceback" not in out + err
    code, _, err = run_cli("simulate", str(path), "--requests-out", str(tmp_path / "r.txt"))
    assert code == 2 and ".csv or .parquet" in err
