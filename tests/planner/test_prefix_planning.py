"""Prefix caching in the planner: the request floors price only the prompt tokens no cache can serve (the
`WorkloadProfile.cacheable_tokens` hook), so they stay below what the simulator gives; and on the multi-turn chat
example prefix caching changes the cheapest plan (configs/examples/chat-multiturn-prefix.yaml)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from planner.capacity.bracket import bracket
from planner.plan_api import plan
from planner.search import SearchOptions
from planner.search.loop import prepare
from simulator.scenario import load_scenario
from simulator.simulate import replica_specs, simulate
from simulator.workload import generate
from tests.conftest import EXAMPLES


def _chat(requests: int, prefix_caching: bool) -> dict:
    data = yaml.safe_load((EXAMPLES / "chat-multiturn-prefix.yaml").read_text())
    data["workload"]["requests"] = requests
    data["engine"]["prefix_caching"] = prefix_caching
    return data


def test_ttft_floors_stay_below_the_simulated_ttft_with_prefix_caching():
    """Per request, the one-GPU template's TTFT floor is at most the simulated TTFT; without the hook (the whole
    prompt as prefill work) the floor would exceed the simulated TTFT of the requests that hit the cache."""
    sc = load_scenario(_chat(300, True), plan_override="tp=1")
    prepared = prepare(sc, SearchOptions(), math.inf)
    profile, space = prepared.profile, prepared.space
    assert profile.cacheable_tokens is not None and (profile.cacheable_tokens > 0).mean() > 0.9
    assert np.all(profile.prefill_tokens >= 1)
    tid = next(
        p.template.id for p in prepared.priced if p.template.num_gpus == 1 and p.template.role == "colocated"
    )
    floor = space.floors[tid][0]
    result = simulate(sc)
    ttft = result.records.first_token_s - result.records.arrival_s
    assert result.to_json()["prefix_cache"]["hit_rate"] > 0.8
    assert np.all(floor <= ttft * (1 + 1e-9))
    whole_prompt = space.bounds[tid].prefill_floor(profile.input_tokens)
    assert (whole_prompt > ttft).mean() > 0.5


def test_no_prefix_caching_prices_the_whole_prompt():
    sc = load_scenario(_chat(100, False))
    profile = prepare(sc, SearchOptions(), math.inf).profile
    assert profile.cacheable_tokens is None
    assert np.array_equal(profile.prefill_tokens, profile.input_tokens)


@pytest.mark.slow
def test_prefix_caching_halves_the_gpus_of_the_multi_turn_chat_example():
    """The shipped example: with vLLM V1's prefix cache one H100 meets TTFT p99 ≤ 0.5 s; without it the cheapest
    plan that does needs two (every turn prefills its whole ~3,000-token context)."""
    on = plan(_chat(2000, True), time_limit_s=200)
    off = plan(_chat(2000, False), time_limit_s=200)
    assert on.best.num_gpus == 1 and on.best.feasible
    assert off.best.num_gpus == 2 and off.best.feasible
    assert on.best.metrics["prefix_cache"]["hit_rate"] > 0.9
    one_gpu_off = [c for c in off.candidates if c.num_gpus == 1]
    assert one_gpu_off and not any(c.feasible for c in one_gpu_off)


def test_capacity_bracket_holds_under_prefix_caching():
    """`apex capacity`'s bracket counts one prefill token per request a cache could serve: its TTFT floor does
    not rule out the target the cached plan meets, and its upper bound is above the rate the plan serves."""
    sc = load_scenario(_chat(300, True), plan_override="tp=1")
    reqs = generate(sc.spec.workload)
    br = bracket(sc, replica_specs(sc), reqs.input_tokens, reqs.output_tokens)
    result = simulate(sc).to_json()
    assert result["slo"]["met"] and not br.floor_misses
    assert br.upper_rps >= result["throughput"]["requests_per_s"]
