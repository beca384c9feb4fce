"""Prefix caching and speculative decoding as plan dimensions the scenario opens (`engine.prefix_caching: auto`,
`engine.speculative.enabled: auto`): templates of each variant, bounded with that variant's workload profile
(cacheable prompt tokens only where it caches, no decode-step floors only where it speculates), searched by the
loop and by --exhaustive, and reported in `best.settings`."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import yaml

from planner.api import plan
from planner.search import SearchOptions
from planner.search.loop import prepare
from planner.search.settings import apply_settings, candidate_settings
from simulator.errors import InputError
from simulator.scenario import load_scenario
from simulator.simulate import simulate
from tests.conftest import EXAMPLES
from tests.planner.test_speculative_planning import _scenario as _speculative_scenario

KNOBS = {"max_num_seqs": 256, "max_num_batched_tokens": 8192, "enable_chunked_prefill": True}


def _chat(requests: int, gpus: int) -> dict:
    """The multi-turn chat example on vLLM V0 (whose default is no prefix caching), caching left to the planner."""
    data = yaml.safe_load((EXAMPLES / "chat-multiturn-prefix.yaml").read_text())
    data["workload"]["requests"] = requests
    data["cluster"]["gpus_per_node"] = gpus
    data["engine"] = {"kind": "vllm-v0", "prefix_caching": "auto", **KNOBS}
    return data


def _eagle(gpus: int) -> dict:
    """Llama-3.1-8B with TPOT p99 ≤ 6 ms, EAGLE k = 3 stated and left to the planner."""
    data = _speculative_scenario({"method": "eagle", "num_tokens": 3, "enabled": "auto"})
    data["cluster"]["gpus_per_node"] = gpus
    data["engine"].update(KNOBS)
    return data


def _one_gpu(prepared, **features):
    """The colocated one-GPU template of each feature value asked for."""
    out = {}
    for p in prepared.priced:
        s = p.template.settings
        if p.template.num_gpus == 1 and p.template.role == "colocated" and p.template.sm_clock_mhz is None:
            ((name, values),) = features.items()
            if getattr(s, name) in values:
                out[getattr(s, name)] = p
    return out


def test_prefix_caching_auto_bounds_each_variant_with_its_own_prompt_work():
    """Both variants are templates; the cached one's TTFT floors count only uncacheable prompt tokens, the other's
    the whole prompt, and each stays below what that variant's simulation gives."""
    sc = load_scenario(_chat(300, 1))
    assert candidate_settings(sc).prefix_caching == (False, True)
    prepared = prepare(sc, SearchOptions(), math.inf)
    space = prepared.space
    by = _one_gpu(prepared, prefix_caching=(True, False))
    assert set(by) == {True, False}
    on, off = by[True].template.id, by[False].template.id
    assert space.profile_of(off).cacheable_tokens is None
    assert (space.profile_of(on).cacheable_tokens > 0).mean() > 0.9
    assert space.profile.cacheable_tokens is not None  # the template-independent parts use the weaker profile
    assert np.all(space.floors[on][0] < space.floors[off][0])
    for p in (by[True], by[False]):
        result = simulate(apply_settings(sc, p.template.settings))
        ttft = result.records.first_token_s - result.records.arrival_s
        assert np.all(space.floors[p.template.id][0] <= ttft * (1 + 1e-9))
        assert result.to_json()["prefix_cache"]["enabled"] is p.template.settings.prefix_caching


def test_speculative_auto_drops_decode_floors_only_where_it_speculates():
    """Without speculation the decode-step floor rules the TPOT target out for most requests; with it the
    template keeps every request (the floors speculation makes invalid are not used there)."""
    sc = load_scenario(_eagle(1))
    assert candidate_settings(sc).speculative == (True, False)
    prepared = prepare(sc, SearchOptions(), math.inf)
    space = prepared.space
    by = _one_gpu(prepared, speculative=(True, False))
    on, off = by[True].template.id, by[False].template.id
    assert not space.floors[on][1].any() and space.requests[on].ok.all()
    assert space.floors[off][1].all() and space.requests[off].ok.mean() < 0.1
    assert apply_settings(sc, by[False].template.settings).spec.engine.speculation is None
    assert apply_settings(sc, by[True].template.settings).spec.engine.speculation.num_tokens == 3


def test_a_set_feature_stays_fixed():
    data = _chat(50, 1)
    data["engine"]["prefix_caching"] = True
    sc = load_scenario(data)
    choices = candidate_settings(sc)
    assert choices.prefix_caching == (None,) and choices.speculative == (None,)
    assert "prefix" not in prepare(sc, SearchOptions(), math.inf).priced[0].template.settings.key


@pytest.mark.parametrize(
    ("engine", "field"),
    [
        ({"prefix_caching": "sometimes"}, "engine.prefix_caching"),
        (
            {"speculative": {"method": "eagle", "num_tokens": 2, "enabled": "maybe"}},
            "engine.speculative.enabled",
        ),
        ({"kind": "orca", "prefix_caching": "auto"}, "engine"),
    ],
)
def test_bad_feature_settings_name_the_field(engine, field):
    data = _chat(50, 1)
    data["engine"] = engine
    with pytest.raises(InputError) as err:
        load_scenario(data)
    assert field in str(err.value)


@functools.cache
def _chat_runs():
    data = _chat(2000, 2)
    return plan(data, workers=2, exhaustive=True, time_limit_s=600), plan(data, workers=2, time_limit_s=600)


@pytest.mark.slow
def test_exhaustive_and_the_loop_pick_prefix_caching_on_for_multi_turn_chat():
    """vLLM V0 would run without a prefix cache; opened to the planner, caching on lets one H100 meet TTFT p99
    ≤ 0.5 s, which no plan without it does on one GPU."""
    exhaustive, loop = _chat_runs()
    assert exhaustive.search.stopped == "every plan simulated"
    assert {c.settings.prefix_caching for c in exhaustive.candidates} == {True, False}
    for res in (exhaustive, loop):
        assert res.best.settings.prefix_caching is True and res.best.num_gpus == 1 and res.best.feasible
        assert res.best.metrics["prefix_cache"]["hit_rate"] > 0.9
        assert res.to_json()["best"]["settings"]["prefix_caching"] is True
    uncached_one_gpu = [c for c in exhaustive.candidates if c.num_gpus == 1 and not c.settings.prefix_caching]
    assert uncached_one_gpu and not any(c.feasible for c in uncached_one_gpu)
    assert loop.best.objective == exhaustive.best.objective


@functools.cache
def _eagle_runs():
    data = _eagle(2)
    return plan(data, workers=2, exhaustive=True, time_limit_s=600), plan(data, workers=2, time_limit_s=600)


@pytest.mark.slow
def test_exhaustive_and_the_loop_pick_speculation_to_meet_a_tpot_target():
    """TPOT p99 ≤ 6 ms: EAGLE meets it on one H100; without it the cheapest plan that does takes two (tp2)."""
    exhaustive, loop = _eagle_runs()
    assert exhaustive.search.stopped == "every plan simulated"
    plain = [c for c in exhaustive.candidates if c.feasible and c.settings.speculative is False]
    assert plain and min(c.num_gpus for c in plain) == 2
    assert not any(
        c.feasible for c in exhaustive.candidates if c.num_gpus == 1 and not c.settings.speculative
    )
    for res in (exhaustive, loop):
        assert res.best.settings.speculative is True and res.best.num_gpus == 1 and res.best.feasible
        assert res.best.metrics["tpot_s"]["p99"] <= 0.006
        assert res.to_json()["best"]["settings"]["speculative"] is True
        assert res.best.scenario_in(res.scenario).spec.engine.speculative.enabled is True
