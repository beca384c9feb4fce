"""The SM clock as a plan dimension (planner/search/pricing.py `searches_clocks`, `_clocked`; `clock_choice.py`):
on a memory-bound, decode-heavy workload min_energy picks a locked clock that beats every plan at the default
clock, reports the clock and its latency cost, and --exhaustive covers the clock choice."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from planner.api import plan
from planner.search.clock_choice import default_clock_twin
from planner.search.labels import plan_key

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "examples" / "decode-heavy-clock-energy.yaml"


def _scenario(**goals) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["cluster"]["gpus_per_node"] = 2  # a small space: every plan of it is simulated
    data["workload"]["requests"] = 200
    data["goals"].update(goals)
    return data


@functools.cache
def _exhaustive():
    return plan(_scenario(), workers=1, exhaustive=True, time_limit_s=600)


def _at_default_clock(c) -> bool:
    return all(g.sm_clock_mhz is None for g in c.plan.replicas)


def test_exhaustive_min_energy_picks_a_locked_clock_below_every_plan_at_the_default_clock():
    res = _exhaustive()
    assert res.search.stopped == "every plan simulated"
    default = [c for c in res.candidates if c.feasible and _at_default_clock(c)]
    assert default, "the space holds the default-clock plans too"
    assert not _at_default_clock(res.best)
    assert res.best.objective < min(c.objective for c in default)
    # the clock dimension multiplies the templates: each structure at the boost clock and three locked clocks
    clocks = {g.sm_clock_mhz for c in res.candidates for g in c.plan.replicas}
    assert clocks == {None, 1680, 1380, 1080}


def test_the_report_names_the_clock_and_the_latency_it_costs_against_the_same_plan_at_the_boost_clock():
    res = _exhaustive()
    choice = res.clock
    assert choice.clocks_mhz == tuple(g.sm_clock_mhz for g in res.best.plan.replicas)
    key = plan_key(default_clock_twin(res.best.plan))
    (twin,) = [c for c in res.candidates if plan_key(c.plan) == key and c.settings == res.best.settings]
    assert choice.default_plan == twin.name
    energy = res.best.metrics["energy"]["joules_per_output_token"]
    assert choice.energy_change == pytest.approx(
        energy / twin.metrics["energy"]["joules_per_output_token"] - 1
    )
    assert choice.energy_change < 0
    assert choice.latency_change["tpot_mean"] > 0  # a slower clock: every decode step a little longer
    out = res.to_json()["clock"]
    assert out["sm_clock_mhz"] == list(choice.clocks_mhz)
    assert out["latency_s"]["tpot_mean"]["picked"] > out["latency_s"]["tpot_mean"]["default_clock"]
    assert "MHz" in choice.describe() and "tpot mean" in choice.describe()


@pytest.mark.slow
def test_the_loop_finds_a_plan_below_the_best_default_clock_plan_too():
    exh = _exhaustive()
    best_default = min(c.objective for c in exh.candidates if c.feasible and _at_default_clock(c))
    found = plan(_scenario(), workers=1, time_limit_s=600)
    assert found.best.objective < best_default
    assert found.clock is not None and found.clock.clocks_mhz == tuple(
        g.sm_clock_mhz for g in found.best.plan.replicas
    )


def test_without_auto_the_space_has_no_clock_dimension_and_a_locked_scenario_keeps_its_clock():
    data = _scenario()
    del data["sm_clock_mhz"]
    res = plan(data, workers=1, exhaustive=True, time_limit_s=600)
    assert res.clock is None and "clock" not in res.to_json()
    assert all(_at_default_clock(c) for c in res.candidates)
    locked = plan({**data, "sm_clock_mhz": 1380}, workers=1, exhaustive=True, time_limit_s=600)
    assert all(_at_default_clock(c) for c in locked.candidates)  # every GPU at 1380: no group overrides it
    assert locked.best.objective < res.best.objective  # the scenario's clock reaches the simulations


def test_an_emitted_deployment_says_which_clock_to_lock_since_no_engine_sets_it():
    from planner.emit.emitter import _clock_warnings
    from simulator.scenario import load_scenario

    sc = load_scenario(_scenario())  # the example's plan: one replica at 1080 MHz
    (warning,) = _clock_warnings(sc, sc.plan)
    assert "nvidia-smi -lgc 1080" in warning and "replica group 0" in warning
    locked = load_scenario({**_scenario(), "sm_clock_mhz": 1380, "plan": "tp=1"})
    assert (
        _clock_warnings(load_scenario({**_scenario(), "plan": "tp=1"}), locked.plan) == []
    )  # auto, no group
    (warning,) = _clock_warnings(locked, locked.plan)
    assert "nvidia-smi -lgc 1380" in warning
