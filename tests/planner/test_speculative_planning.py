"""Speculative decoding in the planner: a decode step may advance a request by several tokens, which the
decode-step bounds do not model, so the planner's floors and work bounds leave decode out
(`WorkloadProfile.speculative`) and stay below what the simulator gives; so does `apex capacity`'s bracket."""

from __future__ import annotations

import math

import numpy as np

from planner.capacity.bracket import bracket
from planner.search import SearchOptions
from planner.search.loop import prepare
from simulator.scenario import load_scenario
from simulator.simulate import replica_specs, simulate
from simulator.workload import generate


def _scenario(speculative: dict | None) -> dict:
    return {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
        "engine": {"speculative": speculative} if speculative else {},
        "workload": {
            "requests": 120,
            "arrival": {"process": "poisson", "rate": 1.0},
            "input_tokens": {"dist": "lognormal", "mean": 512, "std": 200, "max": 2048},
            "output_tokens": {"dist": "lognormal", "mean": 256, "std": 100, "max": 1024},
            "seed": 2,
        },
        "plan": "tp=1",
        "goals": {"objective": "min_cost", "slo": {"tpot_s": {"p99": 0.006}}},
    }


def test_floors_stay_below_the_simulated_latencies_under_speculation():
    """EAGLE (k = 3) brings TPOT under the plain decode step: the plain decode-step floor would say the TPOT
    target cannot be met, while the floors the planner uses stay below every simulated latency."""
    sc = load_scenario(_scenario({"method": "eagle", "num_tokens": 3}))
    prepared = prepare(sc, SearchOptions(), math.inf)
    profile, space = prepared.profile, prepared.space
    assert profile.speculative and not profile.decode_work.any() and not profile.context_work.any()
    tid = next(iter(space.floors))
    pre, dec, lat = space.floors[tid]
    result = simulate(sc)
    r = result.records
    ttft, e2e = r.first_token_s - r.arrival_s, r.finish_s - r.arrival_s
    tpot = (r.finish_s - r.first_token_s) / np.maximum(r.output_tokens - 1, 1)
    assert np.all(pre <= ttft * (1 + 1e-9)) and np.all(lat <= e2e * (1 + 1e-9)) and not dec.any()
    plain_floor = space.bounds[tid].decode_floor(profile.input_tokens)
    assert (plain_floor > tpot).mean() > 0.9
    assert result.to_json()["tpot_s"]["p99"] <= 0.006  # the target speculation meets
    assert space.requests[tid].ok.all()  # the template is not ruled out


def test_capacity_bracket_holds_under_speculation():
    """The bracket's upper bound stays above the rate the plan serves, and its TPOT floor does not rule out a
    target only speculation meets."""
    sc = load_scenario(_scenario({"method": "eagle", "num_tokens": 3}))
    reqs = generate(sc.spec.workload)
    br = bracket(sc, replica_specs(sc), reqs.input_tokens, reqs.output_tokens)
    assert not br.floor_misses
    served = simulate(sc).to_json()["throughput"]["requests_per_s"]
    assert br.upper_rps >= served
    plain = load_scenario(_scenario(None))
    assert bracket(plain, replica_specs(plain), reqs.input_tokens, reqs.output_tokens).floor_misses
