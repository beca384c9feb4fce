"""Speculative decoding (engine/speculative.py, costmodel/speculative.py) on a hand-computable fake cost.

Fake stage: an iteration costs a + b × tokens. A speculative decode step of one request verifies k + 1 tokens
(a + b(k + 1)) after k draft steps of draft_cost × the plain decode step (a + b each), and advances by
accepted + 1 tokens, E = 1 + Σ_i Π_{j≤i} a_j on average.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_fakes import FakeStage, make_cost, make_requests, run
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simulator.engine.cluster import ReplicaSpec
from simulator.engine.request import RequestStatus
from simulator.engine.run import simulate_requests
from simulator.engine.speculative import AcceptanceSampler
from simulator.engine.trace import TraceRecorder
from simulator.errors import InputError
from simulator.scenario import Engine, Speculative, load_scenario
from simulator.simulate import simulate

A, B = 0.01, 0.001
K, DRAFT = 4, 0.1


def spec(acceptance, k=K, method="eagle", draft_cost=DRAFT) -> dict:
    return {"method": method, "num_tokens": k, "acceptance": acceptance, "draft_cost": draft_cost}


def alone(n=8, output=2001):
    """n requests far apart, so each decodes alone (batch of one)."""
    return make_requests(n, prompt=100, output=output, arrival=np.arange(n) * 1000.0)


def step_s(k=K, draft=DRAFT) -> float:
    return A + B * (k + 1) + k * draft * (A + B)


def tpot(result) -> float:
    return result.to_json()["tpot_s"]["mean"]


def test_acceptance_zero_is_strictly_slower_by_the_verify_and_draft_cost():
    """Nothing accepted: one token per step, as without speculation, but each step pays the k-token verify and
    the k draft steps: TPOT = a + b(k + 1) + k·r·(a + b) exactly, above the plain a + b."""
    plain, _ = run(alone(2), make_cost(a=A, b=B))
    zero, _ = run(alone(2), make_cost(a=A, b=B), speculative=spec(0.0))
    assert tpot(plain) == pytest.approx(A + B)
    assert tpot(zero) == pytest.approx(step_s())
    assert tpot(zero) > tpot(plain)


@pytest.mark.parametrize("acceptance", [0.9, [0.95, 0.9, 0.85, 0.8]])
def test_high_acceptance_divides_tpot_by_the_expected_tokens_per_step(acceptance):
    """TPOT falls to step time / E (within 5%: the draws are random; the last step may overshoot)."""
    rates = [acceptance] * K if isinstance(acceptance, float) else acceptance
    expected_tokens = 1 + np.cumprod(rates).sum()
    plain, _ = run(alone(), make_cost(a=A, b=B))
    fast, system = run(alone(), make_cost(a=A, b=B), speculative=spec(acceptance))
    assert tpot(fast) == pytest.approx(step_s() / expected_tokens, rel=0.05)
    assert tpot(plain) / tpot(fast) == pytest.approx((A + B) * expected_tokens / step_s(), rel=0.05)
    assert fast.to_json()["requests"]["completed"] == 8
    assert system.kv_blocks_conserved()


def test_the_sampler_draws_accepted_plus_one_by_the_per_position_rates():
    rates = [0.9, 0.5, 0.5]
    sampler = AcceptanceSampler(rates, np.random.default_rng(0))
    draws = np.array([sampler.draw() for _ in range(200_000)])
    assert set(np.unique(draws)) == {1, 2, 3, 4}
    assert (draws == 1).mean() == pytest.approx(0.1, abs=0.005)  # the first draft rejected
    assert (draws == 4).mean() == pytest.approx(0.9 * 0.5 * 0.5, abs=0.005)  # all three accepted
    s = Speculative(method="eagle", num_tokens=3, acceptance=rates)
    assert draws.mean() == pytest.approx(s.expected_tokens(), rel=0.01)
    assert s.expected_tokens() == pytest.approx(1 + 0.9 + 0.45 + 0.225)


def test_same_seed_same_run_other_seed_other_draws():
    reqs = make_requests(40, prompt=200, output=300, arrival=np.arange(40) * 0.05)
    one, _ = run(reqs, make_cost(a=A, b=B), speculative=spec(0.7), seed=1)
    again, _ = run(reqs, make_cost(a=A, b=B), speculative=spec(0.7), seed=1)
    other, _ = run(reqs, make_cost(a=A, b=B), speculative=spec(0.7), seed=2)
    assert one.to_json() == again.to_json()
    assert one.to_json()["e2e_s"] != other.to_json()["e2e_s"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["vllm-v0", "vllm-v1", "sglang", "trtllm"]),
    k=st.integers(1, 6),
    acceptance=st.floats(0, 1),
    block_size=st.sampled_from([1, 4, 16]),
    kv_scale=st.sampled_from([1, 2, 8]),
    pp=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**32 - 1),
)
# found by hypothesis: a request whose prompt + output + k draft tokens exceeds the cache stalled the run
@example(kind="vllm-v0", k=6, acceptance=0.75, block_size=16, kv_scale=1, pp=1, seed=2)
def test_speculative_runs_keep_kv_and_finish_every_request(
    kind, k, acceptance, block_size, kv_scale, pp, seed
):
    """Under KV pressure (preemptions), pipelines and every continuous-batching engine: all requests finish,
    KV blocks are conserved, and no request is faster than its verify steps allow."""
    rng = np.random.default_rng(seed)
    n = 30
    prompts, outputs = rng.integers(1, 300, n), rng.integers(1, 200, n)
    reqs = make_requests(n, prompt=prompts, output=outputs, arrival=np.cumsum(rng.exponential(0.01, n)))
    cost = make_cost(
        stages=[FakeStage(A, B) for _ in range(pp)], kv_tokens=int((prompts + outputs).max() + 8) * kv_scale
    )
    engine = Engine(kind=kind, block_size=block_size, speculative=spec(acceptance, k=k))
    result, system = simulate_requests(reqs, [ReplicaSpec(cost)], engine, seed=seed)
    out = result.to_json()
    assert out["requests"]["completed"] + out["requests"]["rejected"] == n
    assert system.kv_blocks_conserved()
    steps = np.ceil((outputs - 1) / (k + 1))  # at most k + 1 tokens a step
    e2e = result.records.finish_s - result.records.first_token_s
    done = result.records.status == RequestStatus.FINISHED
    assert np.all(e2e[done] >= steps[done] * (A + B * (k + 1)) * (1 - 1e-9))


def test_speculative_scenario_fields_are_checked():
    base = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "gpus_per_node": 1},
        "workload": {
            "requests": 4,
            "input_tokens": {"dist": "fixed", "value": 8},
            "output_tokens": {"dist": "fixed", "value": 8},
        },
    }
    bad = [
        ({"method": "eagle", "num_tokens": 3, "acceptance": [0.8, 0.7]}, "num_tokens"),
        ({"method": "draft", "num_tokens": 3}, "draft_cost"),
        ({"method": "eagle", "num_tokens": 3, "acceptance": 1.5}, "acceptance"),
        ({"method": "medusa", "num_tokens": 3}, "method"),
        ({"method": "eagle", "num_tokens": 3, "enabled": float("nan")}, "enabled"),
        ({"method": "eagle", "num_tokens": 3, "enabled": "sometimes"}, "enabled"),
        ({"method": "eagle", "num_tokens": 3, "draft_model": ""}, "draft_model"),
        ({"method": "mtp", "num_tokens": 1e30}, "num_tokens"),
    ]
    for speculative, needle in bad:
        with pytest.raises(InputError, match=needle) as err:
            load_scenario({**base, "engine": {"speculative": speculative}})
        assert err.value.field.startswith("engine")
    with pytest.raises(InputError, match="speculative"):
        load_scenario({**base, "engine": {"kind": "orca", "speculative": {"method": "mtp", "num_tokens": 1}}})
    for hostile in ("maybe", float("nan"), 3, ""):
        with pytest.raises(InputError, match="prefix_caching") as err:
            load_scenario({**base, "engine": {"prefix_caching": hostile}})
        assert err.value.field.startswith("engine.prefix_caching")


def test_eagle_on_the_cost_model_speeds_up_memory_bound_decode():
    """Llama-3.1-8B on one H100 at low load (decode steps memory-bound): EAGLE with its default acceptance
    (0.8) cuts TPOT; with acceptance 0 it costs more than plain decoding."""
    data = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm", "gpus_per_node": 1},
        "workload": {
            "requests": 20,
            "arrival": {"process": "poisson", "rate": 0.5},
            "input_tokens": {"dist": "fixed", "value": 512},
            "output_tokens": {"dist": "fixed", "value": 256},
        },
        "plan": "tp=1",
    }
    plain = simulate(load_scenario(data)).to_json()["tpot_s"]["mean"]
    data["engine"] = {"speculative": {"method": "eagle", "num_tokens": 3}}
    eagle = simulate(load_scenario(data)).to_json()["tpot_s"]["mean"]
    data["engine"]["speculative"]["acceptance"] = 0.0
    rejected = simulate(load_scenario(data)).to_json()["tpot_s"]["mean"]
    assert eagle < 0.6 * plain
    assert rejected > plain


@pytest.mark.parametrize("kind", ["vllm-v0", "vllm-v1", "sglang"])  # the engines that preempt here
def test_in_place_decode_takes_the_schedulers_decisions_under_speculation(kind):
    """A trace recorder makes every decode step go through schedule() (no in-place loop): under KV pressure
    (preemptions) the run is the same, draw for draw (energy to rounding)."""
    rng = np.random.default_rng(3)
    n = 300
    reqs = make_requests(
        n,
        prompt=rng.integers(10, 500, n),
        output=rng.integers(1, 300, n),
        arrival=np.cumsum(rng.exponential(0.02, n)),
    )
    engine = Engine(kind=kind, speculative=spec(0.7, k=3))
    specs = [ReplicaSpec(make_cost(a=A, b=B, kv_tokens=6000), 2)]
    in_place, _ = simulate_requests(reqs, specs, engine, seed=1)
    scheduled, _ = simulate_requests(reqs, specs, engine, seed=1, trace=TraceRecorder())
    a, b = in_place.to_json(), scheduled.to_json()
    assert a["requests"]["preemptions"] > 0
    assert a["energy"]["joules"] == pytest.approx(b["energy"]["joules"], rel=1e-12)  # summed in another order
    assert {k: v for k, v in a.items() if k != "energy"} == {k: v for k, v in b.items() if k != "energy"}
