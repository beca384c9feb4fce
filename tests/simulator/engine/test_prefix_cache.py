"""Prefix caching (simulator/engine/prefix_cache.py): mechanisms on a hand-checkable fake cost, and the aggregate
engine against the block-by-block reference (reference_engine/prefix_cache.py) on random shared-prefix workloads.

The shipped-example and random-system equivalence tests (test_equivalence.py) run with each engine's default, so
prefix caching is on there for vllm-v1, sglang and trtllm (it matters after preemptions); here the workloads share
prefixes, so hits, shared blocks and evictions happen all the time.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_fakes import FakeStage, make_cost, make_engine, make_requests, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_engine.run import simulate_requests as reference_simulate_requests
from test_equivalence import assert_equivalent

from simulator.engine.cluster import ReplicaSpec
from simulator.engine.run import simulate_requests
from simulator.workload import Requests, SharedPrefixes


def with_prefixes(requests: Requests, parent, fork, groups: int = 0) -> Requests:
    """The requests with content: request parents and forks, then `groups` shared prefixes (parent -1)."""
    return Requests(
        requests.arrival_s,
        requests.input_tokens,
        requests.output_tokens,
        requests.ids,
        prefixes=SharedPrefixes(
            np.asarray(list(parent) + [-1] * groups), np.asarray(list(fork) + [0] * groups), len(requests)
        ),
    )


def grouped(n, *, prefix, new, output, arrival, group_of=None):
    """n requests whose prompts start with a shared prefix of `prefix` tokens (group_of[i], default 0)."""
    group_of = np.zeros(n, dtype=int) if group_of is None else np.asarray(group_of)
    groups = int(group_of.max()) + 1
    reqs = make_requests(n, prompt=prefix + np.asarray(new), output=output, arrival=arrival)
    return with_prefixes(reqs, n + group_of, np.full(n, prefix), groups)


# ---------------------------------------------------------------------------------------------- mechanisms
def test_cached_prefill_tokens_are_not_priced():
    """The second request's prefill computes only its uncached tokens: TTFT = a + b x (prompt - hit), the hit
    being the whole 16-token blocks of the 1000-token shared prefix (992 tokens)."""
    a, b = 0.01, 0.001
    requests = grouped(2, prefix=1000, new=[40, 40], output=2, arrival=[0.0, 10.0])
    result, _ = run(requests, make_cost(a=a, b=b), prefix_caching=True, block_size=16)
    ttft = result.records.first_token_s - result.records.arrival_s
    assert ttft[0] == pytest.approx(a + b * 1040)  # nothing cached yet
    assert ttft[1] == pytest.approx(a + b * (1040 - 992))
    cache = result.to_json()["prefix_cache"]
    assert cache["saved_prefill_tokens"] == 992
    assert cache["queried_tokens"] == 2080 and cache["lookups"] == 2
    assert cache["hit_rate"] == pytest.approx(992 / 2080)
    off, _ = run(requests, make_cost(a=a, b=b), prefix_caching=False, block_size=16)
    assert (off.records.first_token_s - off.records.arrival_s)[1] == pytest.approx(a + b * 1040)
    assert off.to_json()["prefix_cache"] == {
        "enabled": False,
        "lookups": 0,
        "queried_tokens": 0,
        "saved_prefill_tokens": 0,
        "hit_rate": None,
        "evicted_blocks": 0,
    }


def test_cached_tokens_count_as_attention_context():
    """A hit shortens the chunk but its tokens stay in the prefill's context: the cost's context term sees the
    whole prompt (c x context tokens), the token term only the new ones."""
    a, b, c = 0.01, 0.001, 1e-6
    requests = grouped(2, prefix=512, new=[64, 64], output=2, arrival=[0.0, 10.0])

    class ContextStage(FakeStage):
        def iteration_time(self, shape):
            return self.a + self.b * shape.num_tokens + self.c * shape.prefill_context_tokens

    result, _ = run(requests, make_cost(stages=[ContextStage(a, b, c)]), prefix_caching=True, block_size=16)
    ttft = result.records.first_token_s - result.records.arrival_s
    assert ttft[1] == pytest.approx(a + b * 64 + c * 576)


def test_multi_turn_reuses_the_previous_prompt_and_answer():
    """Turn 2's prompt begins with turn 1's prompt and answer: it hits every whole block of them except the
    block holding turn 1's last token (whose KV was never computed)."""
    turn1 = (100, 40)  # prompt, output
    prompt2 = 140 + 30
    requests = with_prefixes(
        make_requests(2, prompt=[turn1[0], prompt2], output=[turn1[1], 5], arrival=[0.0, 50.0]),
        [-1, 0],
        [0, 140],
    )
    result, _ = run(requests, make_cost(a=0.01, b=0.001), prefix_caching=True, block_size=16)
    # turn 1 computed 139 tokens of KV (its last token was sampled, not computed): 8 whole blocks, 128 tokens
    assert result.to_json()["prefix_cache"]["saved_prefill_tokens"] == 128
    ttft = result.records.first_token_s - result.records.arrival_s
    assert ttft[1] == pytest.approx(0.01 + 0.001 * (prompt2 - 128))


def test_eviction_under_kv_pressure_lowers_the_hit_rate():
    """Requests of two prompt families alternate; with room for both families' prefixes every later request
    hits; with room for little more than one request at a time, each family's blocks are evicted by the other's
    (LRU), so the hit rate falls and evictions are counted."""
    n = 40
    group_of = np.arange(n) % 2
    requests = grouped(
        n, prefix=1024, new=np.full(n, 32), output=4, arrival=np.arange(n) * 1.0, group_of=group_of
    )
    roomy, _ = run(requests, make_cost(kv_tokens=100_000), prefix_caching=True, block_size=16)
    tight, system = run(requests, make_cost(kv_tokens=1600), prefix_caching=True, block_size=16)
    roomy_cache, tight_cache = roomy.to_json()["prefix_cache"], tight.to_json()["prefix_cache"]
    assert roomy_cache["evicted_blocks"] == 0
    assert roomy_cache["saved_prefill_tokens"] == (n - 2) * 1024
    assert tight_cache["evicted_blocks"] > 0
    assert tight_cache["hit_rate"] < roomy_cache["hit_rate"]
    assert tight.to_json()["ttft_s"]["mean"] > roomy.to_json()["ttft_s"]["mean"]
    assert system.kv_blocks_conserved()


def test_a_shared_prefix_takes_kv_memory_once():
    """Ten requests running together on one 2048-token prefix hold its blocks once: the peak KV use is one
    prefix plus ten suffixes (vLLM shares blocks by reference count, SGLang by the radix tree)."""
    n = 10
    requests = grouped(n, prefix=2048, new=np.full(n, 64), output=64, arrival=np.arange(n) * 1e-3)
    on, _ = run(requests, make_cost(), prefix_caching=True, block_size=16)
    off, _ = run(requests, make_cost(), prefix_caching=False, block_size=16)
    assert off.to_json()["memory"]["kv_cache_peak_tokens"] >= n * 2048
    assert on.to_json()["memory"]["kv_cache_peak_tokens"] <= 2048 + n * (64 + 64 + 16)


def test_engines_insert_at_their_own_moment():
    """Two requests on one prefix admitted in the same iteration: vLLM caches blocks when it allocates them, so
    the second already hits the first's; SGLang inserts a prompt after its prefill ran, so it does not."""
    requests = grouped(2, prefix=512, new=[16, 16], output=2, arrival=[0.0, 0.0])
    vllm, _ = run(requests, make_cost(), kind="vllm-v1", prefix_caching=True, block_size=16)
    sglang, _ = run(requests, make_cost(), kind="sglang", prefix_caching=True, block_size=16)
    assert vllm.to_json()["prefix_cache"]["saved_prefill_tokens"] == 512
    assert sglang.to_json()["prefix_cache"]["saved_prefill_tokens"] == 0


def test_a_preempted_request_recomputes_only_what_was_evicted():
    """Recompute preemption with prefix caching: the victim's blocks stay cached, so when it is readmitted it
    hits them (vLLM v1 keeps a preempted request's blocks in the free queue)."""
    requests = make_requests(3, prompt=[400, 400, 400], output=[200, 200, 200], arrival=[0.0, 0.0, 0.0])
    cost = make_cost(a=0.01, b=1e-4, kv_tokens=1300)
    on, _ = run(requests, cost, prefix_caching=True, block_size=16)
    off, _ = run(requests, cost, prefix_caching=False, block_size=16)
    assert on.to_json()["requests"]["preemptions"] > 0
    assert on.to_json()["prefix_cache"]["saved_prefill_tokens"] > 0
    assert on.to_json()["makespan_s"] < off.to_json()["makespan_s"]


def test_orca_and_static_batching_refuse_prefix_caching():
    from simulator.errors import InputError
    from simulator.scenario import load_scenario

    spec = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "gpus_per_node": 1},
        "engine": {"kind": "orca", "prefix_caching": True},
        "workload": {
            "requests": 4,
            "input_tokens": {"dist": "fixed", "value": 8},
            "output_tokens": {"dist": "fixed", "value": 8},
        },
    }
    with pytest.raises(InputError, match="prefix_caching") as err:
        load_scenario(spec)
    assert err.value.field.startswith("engine")


# ---------------------------------------------------------------------------------------------- equivalence
@st.composite
def prefixed_systems(draw):
    """A random system on a random content tree: shared prefixes, conversation chains, arbitrary forks."""
    kind = draw(st.sampled_from(["vllm-v0", "vllm-v1", "sglang", "trtllm"]))
    pp = draw(st.sampled_from([1, 2]))
    disaggregated = draw(st.booleans())
    n = draw(st.integers(3, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = draw(st.integers(0, 3))
    group_len = rng.integers(1, 700, max(groups, 1))
    rate = draw(st.sampled_from([2.0, 20.0, 200.0, 1e6]))
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    new = rng.integers(1, draw(st.sampled_from([40, 400])), n)
    outputs = rng.integers(1, draw(st.sampled_from([4, 60])), n)
    prompts, parent, fork = np.zeros(n, dtype=int), np.full(n, -1), np.zeros(n, dtype=int)
    for i in range(n):
        choice = rng.integers(0, 3)
        if choice == 1 and groups:
            g = rng.integers(0, groups)
            parent[i], fork[i] = n + g, rng.integers(0, group_len[g] + 1)
        elif choice == 2 and i:
            j = rng.integers(0, i)
            parent[i], fork[i] = j, rng.integers(0, prompts[j] + outputs[j] + 1)
        prompts[i] = fork[i] + new[i]
    requests = with_prefixes(
        make_requests(n, prompt=prompts, output=outputs, arrival=arrival), parent, fork, groups
    )
    kv_tokens = int((prompts + outputs).max()) * draw(st.sampled_from([1, 2, 4, 1000]))
    knobs = {"block_size": draw(st.sampled_from([1, 16, 32])), "prefix_caching": True}
    if draw(st.booleans()):
        knobs["max_num_batched_tokens"] = draw(st.sampled_from([64, 512, 2048]))
    if draw(st.booleans()):
        knobs["max_num_seqs"] = draw(st.sampled_from([2, 16, 256]))
    if draw(st.booleans()):
        knobs["enable_chunked_prefill"] = draw(st.booleans())
    stages = [FakeStage(a=0.002, b=1e-5, c=draw(st.sampled_from([0.0, 1e-7]))) for _ in range(pp)]
    cost = make_cost(stages=stages, kv_tokens=kv_tokens, send_s=0.0005 * (pp > 1), kv_transfer_s=0.003)
    if disaggregated:
        decode = make_cost(stages=[FakeStage(a=0.004, b=1e-5, c=1e-7)], kv_tokens=kv_tokens)
        specs = [ReplicaSpec(cost, draw(st.integers(1, 2)), "prefill"), ReplicaSpec(decode, 1, "decode")]
    else:
        specs = [ReplicaSpec(cost, draw(st.integers(1, 2)))]
    return requests, specs, make_engine(kind, **knobs)


def check_prefixed_system(system, seed):
    requests, specs, engine = system
    new, new_system = simulate_requests(requests, specs, engine, seed=seed)
    ref, ref_system = reference_simulate_requests(requests, specs, engine, seed=seed)
    assert_equivalent(new.to_json(), ref.to_json())
    assert np.array_equal(new.records.num_preemptions, ref.table.num_preemptions)
    assert new_system.kv_blocks_conserved() and ref_system.kv_blocks_conserved()
    for a, b in zip(new_system.replicas, ref_system.replicas, strict=True):
        ka, kb = a.scheduler.kv, b.scheduler.kv
        assert (ka.lookups, ka.hit_tokens, ka.queried_tokens) == (
            kb.lookups,
            kb.hit_tokens,
            kb.queried_tokens,
        )
        assert ka.evicted_blocks == kb.evicted_blocks
        assert ka.num_free_blocks == kb.num_free_blocks and ka.evictable == kb.evictable


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(system=prefixed_systems(), seed=st.integers(0, 3))
def test_random_prefixed_systems_match_the_block_by_block_reference(system, seed):
    """Random content trees x engines x block sizes x KV pressure x pp x P/D: same decisions, hits and
    evictions as the reference that keeps every block."""
    check_prefixed_system(system, seed)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(system=prefixed_systems(), seed=st.integers(0, 3))
def test_many_random_prefixed_systems_match_the_reference(system, seed):
    """The same on 600 random systems (slow tier)."""
    check_prefixed_system(system, seed)
