"""Invariants of the simulator on every shipped example scenario: conservation, causality, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.scenario import load_scenario
from simulator.simulate import simulate
from simulator.yamlio import read_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"

# A plan for each example that carries none (they are `apex plan` inputs); the file's own plan otherwise.
PLANS = {
    "mixtral-8x22b-2node-energy": "tp=8,dp=2",
    "deepseek-v3-h200": "tp=8,ep=8,pp=4",
    "hetero-h100-a100-cost": {
        "replicas": [
            {"count": 1, "stages": [{"layers": [0, 80], "gpu": "h100-sxm", "tp": 4}]},
            {"count": 1, "stages": [{"layers": [0, 80], "gpu": "a100-sxm-80gb", "tp": 8}]},
        ]
    },
}
SCENARIOS = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("study-"))


def _small(path: Path) -> dict:
    data = read_yaml(path)
    data["workload"]["requests"] = 150
    data["plan"] = PLANS.get(path.stem, data.get("plan"))
    return data


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_example_simulation_conserves_requests_and_is_causal(path):
    """Every request of every example completes exactly once, after it arrived, and a rerun is identical."""
    scenario = load_scenario(_small(path))
    result = simulate(scenario)
    summary = result.to_json()
    assert summary["requests"]["completed"] == summary["requests"]["total"] == 150
    assert summary["requests"]["rejected"] == 0
    cols = result.request_columns()
    assert len(set(cols["id"].tolist())) == 150
    assert np.all(cols["ttft_s"] > 0)
    assert np.all(cols["finish_s"] >= cols["arrival_s"] + cols["ttft_s"] - 1e-12)
    assert summary["makespan_s"] >= float(np.max(cols["e2e_s"])) - 1e-9
    assert simulate(scenario).to_json() == summary
