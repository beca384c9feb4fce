"""Typed results: the JSON keys of the engine before the rewrite, None for undefined values, exact ITL."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from engine_fakes import make_cost, make_requests, run
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_engine.run import simulate_requests as reference_simulate_requests

from simulator.engine.cluster import ReplicaSpec
from simulator.results import Distribution
from simulator.scenario import Engine


def _key_tree(node):
    """The nested keys of a JSON object, in order (leaves are None)."""
    if isinstance(node, dict):
        return [(k, _key_tree(v)) for k, v in node.items()]
    return None


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node


def test_json_keys_are_the_reference_engines_keys_in_order():
    """Byte-for-byte the same keys, in the same order, as the per-request engine wrote (docs/design.md §6), then
    the steady-state and prefix-cache blocks added since (keys are added, never renamed)."""
    requests = make_requests(
        30, prompt=np.arange(30) + 5, output=np.arange(30) % 7 + 1, arrival=np.arange(30) * 0.01
    )
    specs = [ReplicaSpec(make_cost(kv_tokens=400))]
    new, _ = run(requests, specs=specs)
    ref, _ = reference_simulate_requests(requests, specs, Engine())
    whole = {k: v for k, v in new.to_json().items() if k not in ("steady", "prefix_cache")}
    assert json.dumps(_key_tree(whole)) == json.dumps(_key_tree(ref.to_json()))
    assert list(new.to_json()) == [
        *("plan", "throughput", "ttft_s", "tpot_s", "itl_s", "e2e_s", "energy", "cost", "memory"),
        *("slo", "requests", "mfu", "makespan_s", "steady", "prefix_cache"),
    ]


def test_no_completed_request_gives_none_never_nan():
    """Every request rejected: latency statistics and per-token figures are None (JSON null), never NaN."""
    result, _ = run(make_requests(3, prompt=5000, output=10), make_cost(kv_tokens=1024))
    out = result.to_json()
    assert out["requests"]["rejected"] == 3
    text = json.dumps(out, allow_nan=False)  # raises on NaN / inf
    assert json.loads(text) == out
    for metric in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(out[metric].values()) == {None}
    assert out["energy"]["joules_per_output_token"] is None
    assert out["cost"]["usd_per_million_output_tokens"] is None
    assert out["slo"]["met"] is True and out["slo"]["attainment"] == 0.0
    assert not any(isinstance(v, float) and math.isnan(v) for _, v in _leaves(out))


def test_one_token_outputs_have_no_tpot_or_itl():
    """Requests with a single output token: TPOT and ITL are undefined (None), TTFT is not."""
    result, _ = run(make_requests(4, prompt=20, output=1))
    out = result.to_json()
    assert out["tpot_s"]["p99"] is None and out["itl_s"]["mean"] is None
    assert out["ttft_s"]["p99"] > 0


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 50)), min_size=1, max_size=40)
)
def test_run_length_encoded_percentiles_are_exact(pairs):
    """Distribution.of_counts equals numpy's percentiles of the expanded values (ITL stays exact)."""
    values = np.array([v for v, _ in pairs])
    counts = np.array([c for _, c in pairs])
    encoded = Distribution.of_counts(values, counts)
    if counts.sum() == 0:
        assert encoded == Distribution()
        return
    plain = Distribution.of(np.repeat(values, counts))
    assert (encoded.p50, encoded.p90, encoded.p99) == (plain.p50, plain.p90, plain.p99)
    assert encoded.mean == pytest.approx(plain.mean, rel=1e-12, abs=1e-300)


def test_itl_counts_every_gap_once():
    """Tokens after the first, over all requests, are the ITL samples (encoded by cohort step)."""
    result, _ = run(make_requests(12, prompt=30, output=np.arange(12) + 1, arrival=np.arange(12) * 0.003))
    r = result.records
    assert int(r.itl_counts.sum()) == int((r.output_tokens - 1).sum())
