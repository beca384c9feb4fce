"""Replica pipelines, routing, disaggregation, determinism and a queueing-theory check."""

from __future__ import annotations

import numpy as np
import pytest
from engine_fakes import FakeStage, make_cost, make_requests, run

from simulator.engine.cluster import ReplicaSpec
from simulator.scenario import SLO, Percentiles


def _two_stage(times):
    return make_cost(stages=[FakeStage(a=t, b=0.0) for t in times])


@pytest.mark.parametrize(("times", "tpot"), [((0.01, 0.03), 0.06), ((0.02, 0.02), 0.04)])
def test_pipeline_two_stages_throughput_set_by_slow_stage(times, tpot):
    """With two micro-batches in flight, each request's token period is 2 x the slowest stage, not the sum."""
    requests = make_requests(2, prompt=100, output=200)
    result, _ = run(requests, _two_stage(times), max_num_batched_tokens=100)
    assert result.to_json()["tpot_s"]["p50"] == pytest.approx(tpot, rel=0.01)


def test_pipeline_send_time_adds_to_latency():
    """The activation send between stages adds to a lone request's TTFT."""
    cost = make_cost(stages=[FakeStage(a=0.01, b=0.0), FakeStage(a=0.01, b=0.0)], send_s=0.005)
    result, _ = run(make_requests(1, prompt=10, output=1), cost)
    assert result.to_json()["ttft_s"]["mean"] == pytest.approx(0.025)


def test_router_round_robin_spreads_evenly():
    """Round-robin puts 10 requests 5 and 5 on two replicas."""
    result, _ = run(make_requests(10, arrival=np.arange(10) * 0.001), count=2, router="round-robin")
    assert np.bincount(result.records.replica).tolist() == [5, 5]


def test_router_least_outstanding_avoids_busy_replica():
    """Least-outstanding sends short requests away from the replica busy with a long one."""
    requests = make_requests(5, prompt=10, output=[2000, 2, 2, 2, 2], arrival=[0, 1, 2, 3, 4])
    lo, _ = run(requests, count=2, router="least-outstanding")
    rr, _ = run(requests, count=2, router="round-robin")
    assert lo.records.replica.tolist() == [0, 1, 1, 1, 1]
    assert rr.records.replica.tolist() == [0, 1, 0, 1, 0]


def test_disaggregation_kv_transfer_delays_decode_start():
    """P/D: the first token comes at the end of prefill; decoding starts after the KV transfer time."""
    prefill, decode = make_cost(kv_transfer_s=0.5), make_cost()
    specs = [ReplicaSpec(prefill, 1, "prefill"), ReplicaSpec(decode, 1, "decode")]
    result, system = run(make_requests(1, prompt=100, output=5), specs=specs)
    out = result.to_json()
    assert out["ttft_s"]["mean"] == pytest.approx(0.11)
    assert out["e2e_s"]["mean"] == pytest.approx(0.11 + 0.5 + 4 * 0.011)
    assert result.records.replica[0] == 1
    assert system.kv_blocks_conserved()


def test_simulation_deterministic_for_fixed_seed():
    """The same seed gives the same result, power-of-two routing included."""
    rng = np.random.default_rng(1)
    requests = make_requests(
        200,
        prompt=rng.integers(10, 500, 200),
        output=rng.integers(1, 100, 200),
        arrival=np.cumsum(rng.exponential(0.01, 200)),
    )
    first = run(requests, count=4, router="power-of-two", seed=7)[0]
    second = run(requests, count=4, router="power-of-two", seed=7)[0]
    assert first.to_json() == second.to_json()
    assert (first.records.replica == second.records.replica).all()


def test_slo_attainment_and_goodput_count_requests_under_every_threshold():
    """Attainment is the fraction of requests under the TTFT threshold; goodput those per second."""
    requests = make_requests(2, prompt=100, output=1, arrival=[0.0, 0.0])
    slo = SLO(ttft_s=Percentiles(p99=0.15))
    result, _ = run(requests, slo=slo, max_num_batched_tokens=100)  # TTFTs: 0.11 and 0.22
    out = result.to_json()
    assert out["slo"]["attainment"] == 0.5
    assert out["slo"]["goodput_rps"] == pytest.approx(1 / 0.22)
    assert out["slo"]["met"] is False


def test_queue_md1_mean_wait_matches_formula():
    """Single server, deterministic service, Poisson arrivals: mean wait ~ rho / (2 mu (1 - rho))."""
    service_s, rho, n = 0.01, 0.5, 8000
    rng = np.random.default_rng(3)
    arrival = np.cumsum(rng.exponential(service_s / rho, n))
    requests = make_requests(n, prompt=9, output=1, arrival=arrival)
    result, _ = run(requests, make_cost(a=0.001, b=0.001), max_num_seqs=1)
    wait = result.to_json()["ttft_s"]["mean"] - service_s
    mu = 1 / service_s
    assert wait == pytest.approx(rho / (2 * mu * (1 - rho)), rel=0.1)


def test_result_json_has_design_keys_and_writes_records(tmp_path):
    """to_json() carries docs/design.md §6's keys and write_requests writes one row per request (CSV and Parquet)."""
    result, _ = run(make_requests(3, prompt=10, output=3))
    out = result.to_json()
    for key in (
        "plan",
        "throughput",
        "ttft_s",
        "tpot_s",
        "itl_s",
        "e2e_s",
        "energy",
        "cost",
        "memory",
        "slo",
        "requests",
        "makespan_s",
    ):
        assert key in out
    assert set(out["e2e_s"]) == {"mean", "p50", "p90", "p99"}
    assert {"output_tokens_per_s", "total_tokens_per_s", "requests_per_s"} <= set(out["throughput"])
    result.write_requests(tmp_path / "r.csv")
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4
    pq = pytest.importorskip("pyarrow.parquet")
    result.write_requests(tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 3


def test_energy_counts_iterations_and_idle_gaps():
    """Energy = busy stage energy + idle watts over the rest of the makespan."""
    requests = make_requests(2, prompt=90, output=1, arrival=[0.0, 1.0])
    result, _ = run(requests, make_cost(a=0.01, b=0.001))
    busy = 2 * 0.1
    makespan = 1.1
    assert result.to_json()["energy"]["joules"] == pytest.approx(500 * busy + 100 * (makespan - busy))
