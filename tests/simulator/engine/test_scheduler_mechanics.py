"""Single-replica mechanics under the fake cost: exact timings, KV competition, chunking, preemption."""

from __future__ import annotations

import math

import numpy as np
import pytest
from engine_fakes import FakeStage, batch_requests, make_cost, make_requests, make_scheduler, run

from simulator.engine.request import RequestStatus


def test_replica_ttft_single_request_equals_prefill_time():
    """A lone request's TTFT is exactly its prefill iteration time and each later token one decode time."""
    result, _ = run(make_requests(1, prompt=100, output=5), make_cost(a=0.01, b=0.001))
    out = result.to_json()
    assert out["ttft_s"]["mean"] == pytest.approx(0.01 + 0.001 * 100, abs=1e-12)
    assert out["e2e_s"]["mean"] == pytest.approx(0.11 + 4 * 0.011, abs=1e-12)
    assert out["tpot_s"]["mean"] == pytest.approx(0.011, abs=1e-12)
    assert out["itl_s"]["p50"] == pytest.approx(0.011, abs=1e-12)


def test_chunked_prefill_splits_prompt_into_ceil_budget_iterations():
    """A 1000-token prompt under a 256-token budget takes ceil(1000/256) = 4 iterations before its first token."""
    result, system = run(
        make_requests(1, prompt=1000, output=1), make_cost(a=0.01, b=0.001), max_num_batched_tokens=256
    )
    assert system.replicas[0].num_iterations == math.ceil(1000 / 256)
    assert result.to_json()["ttft_s"]["mean"] == pytest.approx(4 * 0.01 + 1000 * 0.001)


def test_vllm_v0_prefill_is_whole_prompt_in_one_iteration():
    """vLLM v0 without chunking prefills a 1000-token prompt in one iteration."""
    _, system = run(make_requests(1, prompt=1000, output=1), kind="vllm-v0", max_num_batched_tokens=2048)
    assert system.replicas[0].num_iterations == 1


def test_kv_competition_preempts_and_recomputes_vllm_v1():
    """Two requests that outgrow the KV cache together: the later one is preempted, recomputed, and both finish."""
    result, system = run(make_requests(2, prompt=64, output=48), make_cost(kv_tokens=160), block_size=16)
    out = result.to_json()
    assert out["requests"]["completed"] == 2
    assert out["requests"]["preempted"] == 1
    assert result.records.num_preemptions.tolist() == [0, 1]
    assert system.kv_blocks_conserved()


@pytest.mark.parametrize("kind", ["trtllm", "orca"])
def test_kv_competition_second_waits_when_reserving_full_length(kind):
    """Engines that reserve the full length admit the second request only after the first finishes."""
    result, _ = run(make_requests(2, prompt=64, output=48), make_cost(kv_tokens=160), kind=kind)
    t = result.records
    assert result.to_json()["requests"]["preempted"] == 0
    assert t.first_token_s[1] > t.finish_s[0]


def test_static_batch_runs_to_completion_before_next():
    """Static batching starts the next batch only when every member of the current one is done."""
    requests = make_requests(4, prompt=10, output=[5, 20, 5, 5])
    result, _ = run(requests, kind="static", max_num_seqs=2)
    t = result.records
    assert t.first_token_s[2] >= t.finish_s[1]
    assert t.first_token_s[3] == t.first_token_s[2]


def test_rejected_request_too_big_for_kv_is_reported_not_looped():
    """A request larger than the whole KV cache is rejected and the others still complete."""
    requests = make_requests(3, prompt=[50, 5000, 50], output=10)
    result, _ = run(requests, make_cost(kv_tokens=1024))
    out = result.to_json()["requests"]
    assert (out["completed"], out["rejected"]) == (2, 1)


def test_vllm_v1_schedule_mixes_decodes_and_new_prefill():
    """vLLM v1 batches running decodes first, then the new prompt, in one iteration."""
    sched = make_scheduler("vllm-v1", make_requests(3, prompt=20, output=5))
    sched.add_request(0)
    sched.add_request(1)
    first = sched.schedule(0.0)
    sched.update_from_output(first, 1.0)
    sched.add_request(2)
    batch = sched.schedule(1.0)
    assert batch_requests(batch) == [0, 1, 2]
    assert (batch.shape.num_decode, batch.shape.num_prefill_tokens) == (2, 20)


def test_sglang_schedule_prefill_priority_excludes_decodes():
    """SGLang runs a waiting prompt alone before decoding the running requests."""
    sched = make_scheduler("sglang", make_requests(3, prompt=20, output=5))
    sched.add_request(0)
    sched.add_request(1)
    sched.update_from_output(sched.schedule(0.0), 1.0)
    sched.add_request(2)
    batch = sched.schedule(1.0)
    assert batch_requests(batch) == [2]
    sched.update_from_output(batch, 2.0)
    decode = sched.schedule(2.0)
    assert decode.shape is None and decode.num_decode == 3


def test_scheduler_max_num_seqs_caps_running():
    """No more than max_num_seqs requests run at once."""
    sched = make_scheduler("vllm-v1", make_requests(10, prompt=5, output=5), max_num_seqs=3)
    for i in range(10):
        sched.add_request(i)
    batch = sched.schedule(0.0)
    assert len(batch_requests(batch)) == 3 and len(sched.waiting) == 7


@pytest.mark.parametrize("pp", [1, 2])
@pytest.mark.parametrize("kind", ["vllm-v0", "vllm-v1", "sglang", "trtllm", "orca", "static"])
def test_conservation_every_request_completes_once_and_blocks_freed(kind, pp):
    """Under KV pressure every request finishes exactly once with all its tokens, and all blocks are free."""
    rng = np.random.default_rng(0)
    requests = make_requests(
        60,
        prompt=rng.integers(10, 200, 60),
        output=rng.integers(1, 120, 60),
        arrival=np.sort(rng.uniform(0, 2, 60)),
    )
    cost = make_cost(kv_tokens=800, stages=[FakeStage() for _ in range(pp)])
    result, system = run(requests, cost, kind=kind, max_num_batched_tokens=512)
    t = result.records
    assert (t.status == RequestStatus.FINISHED).all()
    assert system.num_completed == 60
    assert (t.num_output_tokens == t.output_tokens).all()
    assert np.isfinite(t.finish_s).all() and (t.first_token_s >= t.arrival_s).all()
    assert (t.finish_s >= t.first_token_s).all()
    assert system.kv_blocks_conserved()
    assert all(r.scheduler.kv.num_free_blocks == r.scheduler.kv.num_blocks for r in system.replicas)
    assert all(not r.scheduler.running and not r.scheduler.cohorts for r in system.replicas)
