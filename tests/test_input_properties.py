"""Property: whatever a scenario file says, `apex check` and `apex simulate` end with exit 0, 1 or 2, never with
a traceback, and an exit 2 names the file and the field.

Hypothesis mutates a small valid scenario: any field set to a valid alternative, a wrong type, a non-finite or
absurd number, removed, or an unknown key added next to it. Derandomized so the fast tier is repeatable; raise
`max_examples` (e.g. APEX_PROPERTY_EXAMPLES=2000) to search further.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cli import main

BASE = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 2},
    "dtype": {"weights": "bf16", "kv_cache": "bf16", "activations": "bf16"},
    "engine": {"kind": "vllm-v1", "max_num_seqs": 64, "max_num_batched_tokens": 4096},
    "workload": {
        "requests": 12,
        "arrival": {"process": "poisson", "rate": 10.0},
        "input_tokens": {"dist": "lognormal", "mean": 300, "std": 100, "max": 2000},
        "output_tokens": {"dist": "fixed", "value": 8},
        "seed": 1,
    },
    "plan": "tp=1",
    "goals": {"objective": "min_cost", "slo": {"ttft_s": {"p99": 2.0}}, "budget": {"usd_per_hour": 100}},
}

# Every field of the scenario, with values that are valid for it (the garbage comes from GARBAGE).
FIELDS: dict[str, list] = {
    "name": ["demo"],
    "model": ["llama-3.1-70b", "mixtral-8x7b", "deepseek-v3", "llama-2-7b", "no-such-model", "missing.yaml"],
    "cluster": ["dgx-h100", "no-such-cluster", {"gpu": "a100-80gb", "nodes": 2}],
    "cluster.gpu": ["h200-sxm", "a100-40gb", "b200", "h900"],
    "cluster.nodes": [1, 2, 100_000],
    "cluster.gpus_per_node": [1, 4, 8, 1024],
    "cluster.scale_up_domain": [2, 8],
    "cluster.intra_node": ["nvlink4", "pcie5", "carrier-pigeon"],
    "cluster.inter_node": ["ib-ndr-400", None],
    "dtype.weights": ["fp8", "int4", "fp4", "fp16"],
    "dtype.kv_cache": ["fp8", "int8"],
    "dtype.activations": ["fp8", "int4"],
    "engine.kind": ["vllm-v0", "sglang", "trtllm", "orca", "static"],
    "engine.max_num_seqs": [1, 1_000_000],
    "engine.max_num_batched_tokens": [16, 256, 10_000_000],
    "engine.enable_chunked_prefill": [True, False],
    "engine.block_size": [1, 4096],
    "engine.gpu_memory_fraction": [0.05, 1.0],
    "engine.preemption_mode": ["recompute", "swap"],
    "engine.cuda_graphs": [False],
    "engine.router": ["round-robin", "power-of-two"],
    "engine.prefix_caching": [True, False],
    "engine.speculative": [
        {"method": "eagle", "num_tokens": 3},
        {"method": "mtp", "num_tokens": 1, "acceptance": 0.9},
        {"method": "draft", "num_tokens": 4, "acceptance": [0.9, 0.8, 0.7, 0.6], "draft_cost": 0.15},
        {"method": "draft", "num_tokens": 2},
    ],
    "workload.requests": [1, 50],
    "workload.arrival": [{"process": "burst"}, {"process": "gamma", "rate": 5.0, "cv": 4.0}],
    "workload.arrival.process": ["constant", "burst", "gamma"],
    "workload.arrival.rate": [1e-4, 1e6],
    "workload.arrival.cv": [0.001, 100],
    "workload.input_tokens": [
        {"dist": "uniform", "low": 10, "high": 200_000},
        {"dist": "empirical", "values": [100, 4000], "weights": [3, 1]},
        {"dist": "normal", "mean": 1000, "std": 5000},
    ],
    "workload.input_tokens.dist": ["fixed", "uniform", "normal", "empirical"],
    "workload.input_tokens.mean": [1, 10_000_000],
    "workload.input_tokens.std": [0, 10_000_000],
    "workload.input_tokens.min": [1, 5000],
    "workload.input_tokens.max": [1, 10_000_000],
    "workload.output_tokens.value": [1, 200_000],
    "workload.preset": ["chat-sharegpt", "code-azure", "nope"],
    "workload.trace": ["missing.jsonl"],
    "workload.trace_format": ["apex", "azure"],
    "workload.seed": [0, 2**32 - 1],
    "workload.prefix": [
        {"groups": 2, "share": 0.5, "tokens": {"dist": "fixed", "value": 500}},
        {
            "tokens": {"dist": "fixed", "value": 100},
            "turns": {"dist": "uniform", "low": 1, "high": 4},
            "turn_gap_s": 2.0,
        },
    ],
    "workload.prefix.share": [0.0, 1.0],
    "workload.prefix.turn_gap_s": [0.5],
    "plan": ["tp=2", "tp=1,dp=2", "pp=2", "tp=3", "ep=2", "tp=1,tp=2", "tp=0", "dp=100"],
    "goals.objective": ["max_goodput", "min_energy", "min_latency", "max_throughput"],
    "goals.slo.ttft_s.p99": [1e-6, 1e6],
    "goals.slo.tpot_s": [{"p50": 0.05}],
    "goals.budget.num_gpus": [1, 1_000_000],
    "goals.budget.watts": [1.0],
    "calibration": ["missing-cal.yaml"],
}

GARBAGE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 1e-300, 0, -1, 2**63, 10**30]),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["50", "1e9", "true", "", "tp=", " ", "-", "1x[tp8]"]),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.sampled_from(["a", "tp", "dist", "value"]), st.integers(-3, 3), max_size=2),
)


@st.composite
def mutations(draw):
    """1 to 3 edits of the base scenario: (kind, dotted field, value)."""
    edits = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        field = draw(st.sampled_from(sorted(FIELDS)))
        kind = draw(st.sampled_from(["valid", "garbage", "garbage", "delete", "unknown-key"]))
        if kind == "valid":
            value = draw(st.sampled_from(FIELDS[field]))
        elif kind == "garbage":
            value = draw(GARBAGE)
        elif kind == "unknown-key":
            value = draw(st.sampled_from(["colour", "max_seq", "Model", "requests_"]))
        else:
            value = None
        edits.append((kind, field, value))
    return edits


def _apply(data: dict, edits) -> dict:
    data = copy.deepcopy(data)
    for kind, field, value in edits:
        keys = field.split(".")
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if kind == "delete":
            node.pop(keys[-1], None)
        elif kind == "unknown-key":
            node[value] = 1
        else:
            node[keys[-1]] = value
    return data


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# error: <file>: <field>: <detail>: a field is a dotted name, maybe with [i] indices or a --flag
NAMES_A_FIELD = re.compile(r"^error: \S.*?: [A-Za-z_][\w\-]*(?:\.[\w\-]+|\[\d+\])*: ", re.S)


@settings(
    max_examples=int(os.environ.get("APEX_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(edits=mutations())
def test_any_scenario_ends_in_0_1_or_2_and_2_names_the_field(edits):
    data = _apply(BASE, edits)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.yaml"
        path.write_text(yaml.safe_dump(data))
        for command in ("check", "simulate"):
            code, out, err = _run(command, str(path), *(["--json"] if command == "simulate" else []))
            assert code in (0, 1, 2), (command, code, err)
            assert "Traceback" not in out + err
            if code == 2:
                assert NAMES_A_FIELD.match(err.replace("\n", " ")), (command, err)
            if command == "check" and code != 0:
                break  # simulate fails the same way
