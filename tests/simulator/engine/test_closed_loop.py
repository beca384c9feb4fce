"""Closed-loop load (`arrival: {process: closed, concurrency: N, think_time_s: T}`): N requests in flight, each
finished (or rejected) request replaced after T, in both the aggregate engine and the per-request reference."""

from __future__ import annotations

import numpy as np
import pytest
from engine_fakes import FakeStage, make_cost, make_engine, make_requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_engine.run import simulate_requests as reference_simulate_requests
from test_equivalence import assert_equivalent, systems

from simulator.engine.cluster import ReplicaSpec
from simulator.engine.request import RequestStatus
from simulator.engine.run import simulate_requests
from simulator.scenario import load_scenario
from simulator.simulate import simulate
from simulator.workload import ClosedLoop, closed_loop, generate


def _in_flight(arrival: np.ndarray, finish: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Requests sent and not finished at each of `times`."""
    return ((arrival[None, :] <= times[:, None]) & (finish[None, :] > times[:, None])).sum(axis=1)


def _between_events(arrival: np.ndarray, finish: np.ndarray) -> np.ndarray:
    """One instant strictly between each pair of consecutive distinct event times."""
    events = np.unique(np.concatenate([arrival, finish]))
    return (events[:-1] + events[1:]) / 2


ENGINES = ["vllm-v0", "vllm-v1", "sglang", "trtllm", "orca", "static"]


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("disaggregated", [False, True])
def test_in_flight_stays_at_the_concurrency(kind, disaggregated):
    """Without think time, exactly N requests are in flight from t = 0 until the last request is sent; every
    request is sent once, in workload order, and a rerun is identical."""
    rng = np.random.default_rng(7)
    n, concurrency = 300, 12
    base = make_requests(n, prompt=rng.integers(20, 900, n), output=rng.integers(1, 120, n))
    requests = closed_loop(base, ClosedLoop(concurrency))
    cost = make_cost(a=0.004, b=2e-5, kv_tokens=20_000, kv_transfer_s=0.002)
    specs = (
        [ReplicaSpec(cost, 1, "prefill"), ReplicaSpec(make_cost(a=0.003, b=1e-5), 2, "decode")]
        if disaggregated
        else [ReplicaSpec(cost, 2)]
    )
    result, _ = simulate_requests(requests, specs, make_engine(kind))
    r = result.records
    assert np.all(r.status == RequestStatus.FINISHED)
    assert np.all(r.arrival_s[:concurrency] == 0.0)
    assert np.all(np.diff(r.arrival_s) >= 0)  # sent in workload order
    sends = np.sort(r.arrival_s[concurrency:])
    finishes = np.sort(r.finish_s)[: n - concurrency]
    assert np.array_equal(sends, finishes)  # each send is a finish (no think time)
    probes = _between_events(r.arrival_s, r.finish_s)
    probes = probes[probes < r.arrival_s.max()]
    assert len(probes) > 100
    assert set(_in_flight(r.arrival_s, r.finish_s, probes).tolist()) == {concurrency}
    assert np.isnan(requests.arrival_s[concurrency:]).all()  # the caller's Requests is left as it was
    again, _ = simulate_requests(requests, specs, make_engine(kind))
    assert again.to_json() == result.to_json()


def test_think_time_clients_in_flight_plus_thinking_is_the_concurrency():
    """With think time T, the next request of a client leaves T after its previous one finished: requests in
    flight plus clients thinking is N at every instant until the last request is handed out."""
    n, concurrency, think = 200, 6, 0.05
    requests = closed_loop(
        make_requests(n, prompt=300, output=np.arange(n) % 17 + 2), ClosedLoop(concurrency, think)
    )
    result, _ = simulate_requests(requests, [ReplicaSpec(make_cost(a=0.003, b=1e-5))], make_engine())
    r = result.records
    sends = np.sort(r.arrival_s[concurrency:])
    assert np.allclose(sends, np.sort(r.finish_s)[: n - concurrency] + think, rtol=0, atol=1e-12)
    sent_after = np.sort(r.finish_s)[: n - concurrency]  # the finishes that sent a successor
    probes = _between_events(np.concatenate([r.arrival_s, r.finish_s + think]), r.finish_s)
    probes = probes[probes < sent_after.max()]  # later, a client that finishes has nothing left to send
    thinking = (
        (sent_after[None, :] <= probes[:, None]) & (sent_after[None, :] + think > probes[:, None])
    ).sum(1)
    assert set((_in_flight(r.arrival_s, r.finish_s, probes) + thinking).tolist()) == {concurrency}


def test_rejected_request_frees_its_client():
    """A request that can never fit is rejected at once and the client sends its next request."""
    outputs = np.array([10] * 5 + [10_000] + [10] * 5)  # request 5 needs more KV than the replica has
    requests = closed_loop(make_requests(11, prompt=50, output=outputs), ClosedLoop(2))
    result, _ = simulate_requests(requests, [ReplicaSpec(make_cost(kv_tokens=2_000))], make_engine())
    out = result.to_json()
    assert out["requests"]["rejected"] == 1
    assert out["requests"]["completed"] == 10
    assert np.isfinite(result.records.arrival_s).all()


@st.composite
def closed_systems(draw):
    """The equivalence tests' random systems, driven by a closed loop instead of their arrival times."""
    requests, specs, engine = draw(systems())
    loop = ClosedLoop(draw(st.integers(1, 40)), draw(st.sampled_from([0.0, 0.0, 0.003, 0.5])))
    return closed_loop(requests, loop), specs, engine


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(system=closed_systems(), seed=st.integers(0, 3))
def test_closed_loop_matches_reference_engine(system, seed):
    """Random engines x pp x P/D x concurrency x think time: the reference engine's metrics and send times."""
    requests, specs, engine = system
    new, new_system = simulate_requests(requests, specs, engine, seed=seed)
    ref, _ = reference_simulate_requests(requests, specs, engine, seed=seed)
    assert_equivalent(new.to_json(), ref.to_json())
    assert np.allclose(new.records.arrival_s, ref.table.arrival_s, rtol=1e-9, atol=0, equal_nan=True)
    assert new_system.kv_blocks_conserved()


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(system=closed_systems(), seed=st.integers(0, 3))
def test_many_closed_loops_match_reference_engine(system, seed):
    """The same on 200 random closed systems (slow tier)."""
    test_closed_loop_matches_reference_engine.hypothesis.inner_test(system, seed)


def _closed_scenario(**arrival) -> dict:
    return {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
        "workload": {
            "requests": 400,
            "arrival": {"process": "closed", **arrival},
            "input_tokens": {"dist": "lognormal", "mean": 512, "std": 200, "max": 4096},
            "output_tokens": {"dist": "lognormal", "mean": 128, "std": 60, "max": 1024},
            "seed": 3,
        },
        "plan": "tp=1",
    }


def test_closed_scenario_keeps_the_open_loops_lengths_and_reports_a_steady_window():
    """From a scenario: the same lengths as the open-loop workload of the same seed; the steady window's
    occupancy is the concurrency; more clients give more throughput and longer TPOT."""
    sc = load_scenario(_closed_scenario(concurrency=8))
    open_data = _closed_scenario(concurrency=8)
    open_data["workload"]["arrival"] = {"process": "poisson", "rate": 5.0}
    reqs, open_reqs = generate(sc.spec.workload), generate(load_scenario(open_data).spec.workload)
    assert np.array_equal(reqs.input_tokens, open_reqs.input_tokens)
    assert np.array_equal(reqs.output_tokens, open_reqs.output_tokens)
    low = simulate(sc).to_json()
    high = simulate(load_scenario(_closed_scenario(concurrency=32))).to_json()
    assert low["steady"]["window"]["occupancy"] == 8
    assert high["steady"]["window"]["occupancy"] == 32
    assert (
        high["steady"]["throughput"]["requests_per_s"] > 1.5 * low["steady"]["throughput"]["requests_per_s"]
    )
    assert high["steady"]["tpot_s"]["mean"] > low["steady"]["tpot_s"]["mean"]
    assert low["steady"]["keeps_up"] and high["steady"]["keeps_up"]


def test_closed_loop_with_fake_stage_pp2():
    """Pipelined replica (pp = 2) in a closed loop: still N in flight."""
    requests = closed_loop(make_requests(120, prompt=200, output=30), ClosedLoop(5))
    cost = make_cost(stages=[FakeStage(a=0.002, b=1e-5), FakeStage(a=0.002, b=1e-5)], send_s=0.0005)
    result, _ = simulate_requests(requests, [ReplicaSpec(cost)], make_engine())
    r = result.records
    probes = _between_events(r.arrival_s, r.finish_s)
    probes = probes[probes < r.arrival_s.max()]
    assert set(_in_flight(r.arrival_s, r.finish_s, probes).tolist()) == {5}
