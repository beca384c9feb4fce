"""Shared prefixes and multi-turn conversations in workloads (simulator/workload.py `SharedPrefixes`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator.errors import InputError
from simulator.scenario import WorkloadSpec, load_scenario
from simulator.workload import generate, read_trace


def spec(**prefix) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "requests": 3000,
            "arrival": {"process": "poisson", "rate": 4.0},
            "input_tokens": {"dist": "lognormal", "mean": 200, "std": 100},
            "output_tokens": {"dist": "lognormal", "mean": 150, "std": 80},
            "seed": 7,
            "prefix": prefix,
        }
    )


def test_conversations_grow_their_context_turn_by_turn():
    """Each later turn's prompt begins with its previous turn's prompt and answer (its fork) and adds new user
    tokens; the first turn begins with its conversation's shared prefix; parents come first."""
    reqs = generate(
        spec(
            groups=3,
            share=1.0,
            tokens={"dist": "fixed", "value": 800},
            turns={"dist": "uniform", "low": 2, "high": 6},
            turn_gap_s=20.0,
        )
    )
    pre = reqs.prefixes
    n = len(reqs)
    parent, fork = pre.parent[:n], pre.fork[:n]
    turns = (parent >= 0) & (parent < n)
    firsts = parent >= n
    assert turns.any() and firsts.any() and (turns | firsts).all()
    assert (parent[turns] < np.arange(n)[turns]).all()  # a parent is earlier in the workload
    p = parent[turns]
    assert np.array_equal(fork[turns], reqs.input_tokens[p] + reqs.output_tokens[p])
    assert (reqs.input_tokens[turns] > fork[turns]).all()
    assert (reqs.arrival_s[turns] >= reqs.arrival_s[p]).all()
    assert (fork[firsts] == 800).all() and (reqs.input_tokens[firsts] > 800).all()
    assert set(parent[firsts] - n) <= {0, 1, 2}
    assert (pre.parent[n:] == -1).all() and (pre.fork[n:] == 0).all()
    # requests still arrive at the stated rate on average (conversations start at rate / mean turns): count the
    # arrivals in the body of the run, past the first conversations' ramp and before the last ones' tail
    body = ((reqs.arrival_s > 100) & (reqs.arrival_s < 600)).sum() / 500
    assert body == pytest.approx(4.0, rel=0.15)


def test_share_zero_single_turn_keeps_the_plain_workload():
    """Without sharing or turns the prefix model changes nothing: the same arrivals and lengths as no prefix."""
    plain = generate(spec(share=0.0).model_copy(update={"prefix": None}))
    none_shared = generate(spec(share=0.0))
    assert np.array_equal(plain.arrival_s, none_shared.arrival_s)
    assert np.array_equal(plain.input_tokens, none_shared.input_tokens)
    assert (none_shared.prefixes.parent[: len(plain)] == -1).all()


def test_shared_prefix_share_and_seed():
    """About `share` of the requests start with a shared prefix; the same seed draws the same workload."""
    a = generate(spec(groups=2, share=0.3, tokens={"dist": "uniform", "low": 100, "high": 900}))
    b = generate(spec(groups=2, share=0.3, tokens={"dist": "uniform", "low": 100, "high": 900}))
    n = len(a)
    assert (a.prefixes.parent[:n] >= n).mean() == pytest.approx(0.3, abs=0.03)
    assert np.array_equal(a.prefixes.parent, b.prefixes.parent) and np.array_equal(a.arrival_s, b.arrival_s)


def test_head_and_reorder_keep_the_links():
    reqs = generate(
        spec(tokens={"dist": "fixed", "value": 64}, turns={"dist": "fixed", "value": 3}, turn_gap_s=5.0)
    )
    head = reqs.head(100)
    n = 100
    parent = head.prefixes.parent[:n]
    assert len(head.prefixes.parent) == n + 1
    own = (parent >= 0) & (parent < n)
    assert np.array_equal(parent[own], reqs.prefixes.parent[:n][own])
    assert (parent[~own & (parent >= 0)] == n).all()  # the one shared prefix, renumbered


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_trace_sessions_and_prefix_ids(tmp_path):
    """Our JSONL: a session's turn shares its previous turn's prompt and answer when it is at least that long
    (else only its prefix_id prefix, if any); prefix_id rows share prefix_tokens; conversation_id is an alias."""
    rows = [
        {
            "arrival_s": 0,
            "input_tokens": 120,
            "output_tokens": 10,
            "session_id": "a",
            "prefix_id": "sys",
            "prefix_tokens": 100,
        },
        {"arrival_s": 1, "input_tokens": 150, "output_tokens": 10, "conversation_id": "a"},
        {"arrival_s": 2, "input_tokens": 110, "output_tokens": 10, "prefix_id": "sys", "prefix_tokens": 100},
        {"arrival_s": 3, "input_tokens": 100, "output_tokens": 10, "session_id": "a"},
        {"arrival_s": 4, "input_tokens": 9, "output_tokens": 10},
    ]
    reqs = read_trace(_write(tmp_path / "t.jsonl", rows))
    assert reqs.prefixes.parent.tolist() == [5, 0, 5, -1, -1, -1]
    assert reqs.prefixes.fork.tolist() == [100, 130, 100, 0, 0, 0]
    plain = read_trace(_write(tmp_path / "plain.jsonl", [rows[-1]]))
    assert plain.prefixes is None


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ({"prefix_id": "s"}, "prefix_tokens", "partner"),
        ({"prefix_tokens": 5}, "prefix_id", "partner"),
        ({"prefix_id": "s", "prefix_tokens": 500}, "prefix_tokens", "exceeds the prompt"),
        ({"prefix_id": "s", "prefix_tokens": 1.5}, "prefix_tokens", "whole number"),
        ({"session_id": [1]}, "session_id", "not an id"),
    ],
)
def test_trace_prefix_fields_are_checked(tmp_path, row, field, needle):
    base = {"arrival_s": 0, "input_tokens": 100, "output_tokens": 10}
    with pytest.raises(InputError, match=needle) as err:
        read_trace(_write(tmp_path / "t.jsonl", [{**base, **row}]))
    assert err.value.field == field and "line 1" in str(err.value)


def test_mooncake_trace_shares_leading_hash_blocks(tmp_path):
    """Mooncake rows (timestamp ms, 512-token hash_ids): a request's parent is the latest earlier one with the
    longest common run of leading hash ids; they share that many blocks, within both prompts."""
    rows = [
        {"timestamp": 0, "input_length": 6755, "output_length": 500, "hash_ids": list(range(14))},
        {"timestamp": 0, "input_length": 7319, "output_length": 490, "hash_ids": [0, *range(14, 28)]},
        {"timestamp": 3052, "input_length": 2000, "output_length": 794, "hash_ids": [0, 1, 2, 3]},
        {"timestamp": 4000, "input_length": 900, "output_length": 5, "hash_ids": [99, 100]},
    ]
    reqs = read_trace(_write(tmp_path / "m.jsonl", rows))
    assert reqs.arrival_s.tolist() == [0.0, 0.0, 3.052, 4.0]
    assert reqs.prefixes.parent.tolist() == [-1, 0, 0, -1]
    assert reqs.prefixes.fork.tolist() == [0, 512, 2000, 0]
    with pytest.raises(InputError, match="hash_ids") as err:
        read_trace(_write(tmp_path / "bad.jsonl", [{**rows[0], "hash_ids": [1, "x"]}]))
    assert err.value.field == "hash_ids"


BASE = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm", "gpus_per_node": 1},
    "workload": {
        "requests": 10,
        "arrival": {"process": "poisson", "rate": 1.0},
        "input_tokens": {"dist": "fixed", "value": 100},
        "output_tokens": {"dist": "fixed", "value": 10},
    },
}


@pytest.mark.parametrize(
    ("prefix", "extra", "field", "needle"),
    [
        ({"share": 0.5}, {}, "workload.prefix", "tokens"),
        (
            {"tokens": {"dist": "fixed", "value": 10}, "turns": {"dist": "fixed", "value": 3}},
            {},
            "workload.prefix",
            "turn_gap_s",
        ),
        (
            {"share": float("nan"), "tokens": {"dist": "fixed", "value": 10}},
            {},
            "workload.prefix.share",
            "finite|number",
        ),
        ({"share": 1.5, "tokens": {"dist": "fixed", "value": 10}}, {}, "workload.prefix.share", "1"),
        ({"groups": "2", "tokens": {"dist": "fixed", "value": 10}}, {}, "workload.prefix.groups", "integer"),
        (
            {"tokens": {"dist": "fixed", "value": 10}, "turn_gap_s": -1.0},
            {},
            "workload.prefix.turn_gap_s",
            "0",
        ),
        (
            {
                "tokens": {"dist": "fixed", "value": 10},
                "turns": {"dist": "fixed", "value": 2},
                "turn_gap_s": 1.0,
            },
            {"arrival": {"process": "closed", "concurrency": 2}},
            "workload",
            "closed loop",
        ),
        ({"tokens": {"dist": "fixed", "value": 10}}, {"trace": "x.jsonl"}, "workload", "trace"),
    ],
)
def test_prefix_model_is_validated(prefix, extra, field, needle):
    data = json.loads(json.dumps(BASE))
    data["workload"].update(extra, prefix=prefix)
    with pytest.raises(InputError, match=needle) as err:
        load_scenario(data)
    assert err.value.field == field
