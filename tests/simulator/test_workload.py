"""Workload generators, presets and trace import (simulator/workload.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from simulator.errors import InputError
from simulator.scenario import Arrival, LengthDist, WorkloadSpec
from simulator.workload import check_preset, generate, read_trace, sample_arrivals, sample_lengths

TRACE = Path(__file__).resolve().parents[2] / "data" / "traces" / "apex-vllm" / "lmsys_05-run-tp8.jsonl"


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_lengths_lognormal_mean_std_are_of_lengths():
    """Lognormal mean/std describe the token counts themselves (not their log)."""
    values = sample_lengths(LengthDist(dist="lognormal", mean=500, std=300), 200_000, _rng())
    assert values.mean() == pytest.approx(500, rel=0.02)
    assert values.std() == pytest.approx(300, rel=0.03)


def test_lengths_clipped_to_min_max():
    """Every distribution is clipped to [min, max]."""
    values = sample_lengths(LengthDist(dist="normal", mean=100, std=200, min=10, max=150), 10_000, _rng())
    assert values.min() == 10 and values.max() == 150


def test_lengths_uniform_and_empirical_stay_in_support():
    """Uniform stays within [low, high]; empirical draws only its values, by weight."""
    uni = sample_lengths(LengthDist(dist="uniform", low=5, high=9), 5000, _rng())
    assert set(np.unique(uni)) == {5, 6, 7, 8, 9}
    emp = sample_lengths(LengthDist(dist="empirical", values=[10, 20], weights=[3, 1]), 40_000, _rng())
    assert set(np.unique(emp)) == {10, 20}
    assert (emp == 10).mean() == pytest.approx(0.75, abs=0.01)


def test_arrivals_poisson_rate_and_gamma_cv():
    """Poisson gaps average 1/rate; gamma gaps have the requested coefficient of variation."""
    poisson = np.diff(sample_arrivals(Arrival(process="poisson", rate=4.0), 100_000, _rng()))
    assert poisson.mean() == pytest.approx(0.25, rel=0.02)
    gamma = np.diff(sample_arrivals(Arrival(process="gamma", rate=2.0, cv=3.0), 200_000, _rng()))
    assert gamma.std() / gamma.mean() == pytest.approx(3.0, rel=0.05)


def test_arrivals_burst_and_constant():
    """Burst puts every request at t=0; constant-rate spaces them by 1/rate."""
    assert (sample_arrivals(Arrival(process="burst"), 5, _rng()) == 0).all()
    assert np.diff(sample_arrivals(Arrival(process="constant", rate=2.0), 5, _rng())).tolist() == [0.5] * 4


def test_generate_seed_streams_are_independent():
    """Changing the output distribution leaves arrivals and inputs unchanged; the same seed repeats."""
    base = dict(
        requests=100,
        arrival={"process": "poisson", "rate": 1.0},
        seed=3,
        input_tokens={"dist": "lognormal", "mean": 100, "std": 50},
    )
    a = generate(WorkloadSpec(**base, output_tokens={"dist": "fixed", "value": 10}))
    b = generate(WorkloadSpec(**base, output_tokens={"dist": "uniform", "low": 1, "high": 99}))
    c = generate(WorkloadSpec(**base, output_tokens={"dist": "fixed", "value": 10}))
    assert (a.arrival_s == b.arrival_s).all() and (a.input_tokens == b.input_tokens).all()
    assert (a.input_tokens == c.input_tokens).all() and (a.arrival_s == c.arrival_s).all()


def test_preset_fills_lengths_and_spec_overrides():
    """A preset supplies lengths and arrivals; the spec's own fields win."""
    spec = WorkloadSpec(preset="chat-lmsys", requests=20_000, output_tokens={"dist": "fixed", "value": 7})
    requests = generate(spec)
    assert len(requests) == 20_000 and (requests.output_tokens == 7).all()
    assert requests.input_tokens.mean() == pytest.approx(69.5, rel=0.1)


def test_check_preset_unknown_lists_known():
    """An unknown preset raises InputError listing the known ones."""
    with pytest.raises(InputError, match="chat-lmsys"):
        check_preset("nope", file="s.yaml", field="workload.preset")


def test_trace_apex_lmsys_imports_sorted_from_zero():
    """The APEX lmsys trace imports 1023 requests, times in seconds from zero, and `requests` caps it."""
    requests = read_trace(TRACE)
    assert len(requests) == 1023 and requests.arrival_s[0] == 0.0
    assert (np.diff(requests.arrival_s) >= 0).all()
    assert requests.arrival_s[1] == pytest.approx(2.392, abs=1e-3)
    assert len(generate(WorkloadSpec(trace=str(TRACE), requests=10))) == 10


def test_trace_relative_to_scenario_and_formats(tmp_path):
    """Our JSONL and the Azure CSV import; trace paths resolve relative to the scenario file."""
    (tmp_path / "ours.jsonl").write_text(
        '{"arrival_s": 1.5, "input_tokens": 10, "output_tokens": 3}\n'
        '{"arrival_s": 2.0, "input_tokens": 20, "output_tokens": 4}\n'
    )
    ours = generate(WorkloadSpec(trace="ours.jsonl"), file=str(tmp_path / "scenario.yaml"))
    assert ours.arrival_s.tolist() == [0.0, 0.5] and ours.input_tokens.tolist() == [10, 20]
    (tmp_path / "azure.csv").write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
    )
    azure = read_trace(tmp_path / "azure.csv")
    assert azure.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    assert azure.output_tokens.tolist() == [44, 109]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("missing.jsonl", '{"arrival_s": 0, "input_tokens": 5}\n', r"output_tokens: line 1"),
        (
            "negative.jsonl",
            '{"arrival_s": 0, "input_tokens": 5, "output_tokens": 2}\n'
            '{"arrival_s": 1, "input_tokens": -3, "output_tokens": 2}\n',
            r"input_tokens: line 2",
        ),
        (
            "unsorted.jsonl",
            '{"StartTimeOffset": 5, "ContextTokens": 5, "GeneratedTokens": 2}\n'
            '{"StartTimeOffset": 1, "ContextTokens": 5, "GeneratedTokens": 2}\n',
            r"StartTimeOffset: line 2",
        ),
        ("empty.jsonl", "\n", "no requests"),
        ("bad.csv", "TIMESTAMP,ContextTokens\n1,2\n", "GeneratedTokens"),
        ("badjson.jsonl", "{nope\n", "line 1"),
    ],
)
def test_trace_bad_raises_input_error_naming_file_line_field(tmp_path, name, text, match):
    """Defective traces raise InputError naming the file, the line or row and the field."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        read_trace(path)
    assert name in str(info.value)


def test_trace_missing_file_raises_input_error(tmp_path):
    """A trace path that does not exist is an InputError, not a crash."""
    with pytest.raises(InputError, match="not found"):
        generate(WorkloadSpec(trace="nowhere.jsonl"), file=str(tmp_path / "s.yaml"))


def test_trace_jsonl_round_trip_values(tmp_path):
    """APEX JSONL StartTimeOffset is nanoseconds."""
    rows = [
        {"StartTimeOffset": 10**9 * i, "ContextTokens": 3, "GeneratedTokens": 1, "RequestID": f"r{i}"}
        for i in range(3)
    ]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    requests = read_trace(tmp_path / "t.jsonl")
    assert requests.arrival_s.tolist() == [0.0, 1.0, 2.0] and requests.ids.tolist() == ["r0", "r1", "r2"]


def test_lengths_without_max_are_clipped_to_the_largest_accepted():
    """A heavy-tailed distribution without `max` never overflows int64 into negative token counts."""
    from simulator.scenario import MAX_TOKENS

    dist = LengthDist(dist="lognormal", mean=1.0, std=float(MAX_TOKENS))
    values = sample_lengths(dist, 100_000, np.random.default_rng(0))
    assert values.min() >= 1 and values.max() <= MAX_TOKENS


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"dist": "empirical", "values": [5, 6], "weights": [1.0]}, "as many as the values"),
        ({"dist": "empirical", "values": [5, 6], "weights": [0.0, 0.0]}, "all be zero"),
        ({"dist": "empirical", "values": [0, 6]}, "greater than 0"),
        ({"dist": "fixed", "value": 10_000_001}, "less than or equal to 10000000"),
    ],
)
def test_length_distribution_refuses_impossible_parameters(fields, text):
    with pytest.raises(ValidationError, match=text):
        LengthDist.model_validate(fields)


@pytest.mark.parametrize(
    ("arrival", "field", "needle"),
    [
        ({"process": "closed"}, "workload.arrival", "needs a concurrency"),
        ({"process": "closed", "concurrency": 4, "rate": 2.0}, "workload.arrival", "remove 'rate'"),
        ({"process": "poisson", "rate": 2.0, "concurrency": 4}, "workload.arrival", "for process 'closed'"),
        (
            {"process": "constant", "rate": 2.0, "think_time_s": 1.0},
            "workload.arrival",
            "for process 'closed'",
        ),
        ({"process": "closed", "concurrency": 0}, "workload.arrival.concurrency", "greater than 0"),
        ({"process": "closed", "concurrency": -3}, "workload.arrival.concurrency", "greater than 0"),
        ({"process": "closed", "concurrency": 10**9}, "workload.arrival.concurrency", "1,000,000"),
        ({"process": "closed", "concurrency": 2.5}, "workload.arrival.concurrency", "integer"),
        ({"process": "closed", "concurrency": "8"}, "workload.arrival.concurrency", "integer"),
        (
            {"process": "closed", "concurrency": 4, "think_time_s": -1.0},
            "workload.arrival.think_time_s",
            ">= 0",
        ),
        (
            {"process": "closed", "concurrency": 4, "think_time_s": float("nan")},
            "workload.arrival.think_time_s",
            "finite",
        ),
        (
            {"process": "closed", "concurrency": 4, "think_time_s": float("inf")},
            "workload.arrival.think_time_s",
            "finite",
        ),
        (
            {"process": "closed", "concurrency": 4, "think_time_s": 1e7},
            "workload.arrival.think_time_s",
            "1e+06",
        ),
    ],
)
def test_closed_loop_arrival_fields_are_validated(arrival, field, needle):
    """Every closed-loop field is checked: the error names the field and what was expected."""
    from simulator.scenario import load_scenario

    data = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
        "workload": {
            "requests": 10,
            "arrival": arrival,
            "input_tokens": {"dist": "fixed", "value": 10},
            "output_tokens": {"dist": "fixed", "value": 10},
        },
    }
    with pytest.raises(InputError) as info:
        load_scenario(data)
    assert info.value.field == field and needle in str(info.value)


def test_closed_loop_workload_sends_the_first_n_at_zero_and_replays_a_traces_lengths():
    """Generated: the first N arrive at t = 0, the rest have no time yet (NaN); a trace keeps its lengths in
    order and drops its times."""
    spec = WorkloadSpec(
        requests=20,
        arrival=Arrival(process="closed", concurrency=5, think_time_s=0.2),
        input_tokens=LengthDist(dist="fixed", value=100),
        output_tokens=LengthDist(dist="fixed", value=10),
    )
    reqs = generate(spec)
    assert reqs.closed.concurrency == 5 and reqs.closed.think_time_s == 0.2
    assert np.all(reqs.arrival_s[:5] == 0) and np.isnan(reqs.arrival_s[5:]).all()
    traced = generate(
        WorkloadSpec(trace=str(TRACE), requests=50, arrival=Arrival(process="closed", concurrency=8))
    )
    plain = read_trace(TRACE)
    assert np.array_equal(traced.input_tokens, plain.input_tokens[:50])
    assert np.array_equal(traced.output_tokens, plain.output_tokens[:50])
    assert traced.closed.concurrency == 8 and np.isnan(traced.arrival_s[8:]).all()
