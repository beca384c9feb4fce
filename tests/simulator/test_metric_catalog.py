"""The metric catalog names every leaf of the simulation JSON once, with a unit and a better direction."""

from __future__ import annotations

import pytest

from simulator.metric_catalog import BY_PATH, METRICS, STUDY_METRICS, metric
from simulator.scenario import load_scenario
from simulator.simulate import simulate


def _leaf_paths(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaf_paths(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1]


@pytest.fixture(scope="module")
def summary():
    spec = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
        "workload": {
            "preset": "chat-lmsys",
            "requests": 40,
            "arrival": {"process": "poisson", "rate": 5},
            "seed": 3,
        },
        "plan": "tp=1",
    }
    return simulate(load_scenario(spec)).to_json()


def test_catalog_covers_every_json_leaf_once(summary):
    """Every numeric leaf of the simulation JSON has exactly one catalog entry, and nothing else does."""
    leaves = [p for p in _leaf_paths(summary) if p != "plan"]
    assert [m.path for m in METRICS] == leaves
    assert len(BY_PATH) == len(METRICS)


def test_catalog_values_units_and_directions(summary):
    """Values are read from the JSON; units and directions are stated where one direction is better."""
    assert metric("ttft_s.p99").value(summary) == summary["ttft_s"]["p99"]
    assert metric("ttft_s.p99").title == "TTFT p99 (s)"
    assert metric("throughput.output_tokens_per_s").higher_is_better
    assert metric("cost.usd_per_hour").better == "lower"
    assert all(m.better in ("higher", "lower", None) for m in METRICS)
    with pytest.raises(KeyError, match="unknown metric"):
        metric("ttft_s.p95")


def test_study_columns_are_the_catalogs_study_metrics():
    """A study row's metric columns come from the catalog, in its order."""
    from planner.studies import METRICS as STUDY_COLUMNS

    assert tuple(STUDY_COLUMNS) == STUDY_METRICS
