"""The timeline trace (`apex simulate --trace-out`): valid Trace Event Format, the documented tracks, slices that
are the run's iterations, request phases that are the run's times, the window and the cap, and no trace work
(and no change to the run) when no trace is asked for."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from engine_fakes import FakeStage, make_cost, make_engine, make_requests
from trace_format import check_trace

from simulator.engine.cluster import ReplicaSpec
from simulator.engine.replica import Replica
from simulator.engine.run import simulate_requests
from simulator.engine.trace import TraceRecorder
from simulator.scenario import load_scenario
from simulator.simulate import simulate
from simulator.trace_export import chrome_trace, write_chrome_trace
from simulator.yamlio import read_yaml

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "examples" / "llama-70b-h100.yaml"
PHASES = {"queued", "prefill", "decode", "kv transfer", "queued (decode)"}


@pytest.fixture(scope="module")
def example_scenario():
    data = read_yaml(EXAMPLE)
    data["workload"]["requests"] = 2_000
    return load_scenario(data)


@pytest.fixture(scope="module")
def example_trace(example_scenario, tmp_path_factory):
    """The issue's case: the llama-70b example with 2,000 requests, traced whole, read back from the file."""
    recorder = TraceRecorder()
    result = simulate(example_scenario, trace=recorder)
    path = tmp_path_factory.mktemp("trace") / "trace.json"
    summary = write_chrome_trace(path, recorder.timeline)
    return result, json.loads(path.read_text()), summary


def _requests_by_id(by_phase) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for event in by_phase["b"] + by_phase["e"]:
        out.setdefault(event["id"], []).append(event)
    return out


def test_example_trace_is_valid_and_has_the_documented_tracks(example_trace):
    result, doc, summary = example_trace
    by_phase = check_trace(doc)
    meta = {(e["name"], e["pid"], e.get("tid")): e["args"] for e in by_phase["M"]}
    replicas = [
        pid for (name, pid, _), args in meta.items() if name == "process_name" and "replica" in args["name"]
    ]
    assert len(replicas) == 2  # the example's plan: tp=4 × 2 colocated replicas
    assert any(name == "process_name" and args["name"] == "requests" for (name, _, _), args in meta.items())
    for pid in replicas:
        assert ("thread_name", pid, 1) in meta
        counters = {e["name"] for e in by_phase["C"] if e["pid"] == pid}
        assert counters == {"KV cache", "requests"}
    # one slice per iteration, the whole run: every engine step of the result
    assert len(by_phase["X"]) == result.num_steps == summary.iterations
    assert {e["name"] for e in by_phase["X"]} <= {"prefill", "decode", "mixed"}
    parents = [e for e in by_phase["b"] if e["name"].startswith("request ")]
    assert len(parents) == 2_000 == summary.requests
    assert {e["name"] for e in by_phase["b"]} - {e["name"] for e in parents} <= PHASES
    assert doc["otherData"]["apex"]["cut_by_cap"] is False
    assert summary.events == len(doc["traceEvents"]) <= summary.max_events


def test_slices_carry_the_run_batches(example_trace):
    """The slices' batch composition adds up to the run's work: every computed token is in one slice, and the
    KV counter's highest value is the run's peak KV use."""
    result, doc, _ = example_trace
    by_phase = check_trace(doc)
    records = result.records
    assert result.to_json()["requests"]["preemptions"] == 0
    computed = int((records.input_tokens + records.output_tokens - 1).sum())
    assert sum(e["args"]["batched_tokens"] for e in by_phase["X"]) == computed
    assert sum(e["args"]["prefill_tokens"] for e in by_phase["X"]) == int(records.input_tokens.sum())
    assert sum(e["args"]["decode_seqs"] for e in by_phase["X"]) == int((records.output_tokens - 1).sum())
    kv_peak = max(e["args"]["used_tokens"] for e in by_phase["C"] if e["name"] == "KV cache")
    assert kv_peak == result.to_json()["memory"]["kv_cache_peak_tokens"]
    running = [e["args"]["running"] for e in by_phase["C"] if e["name"] == "requests"]
    assert max(running) <= 2_000 and running[-1] == 0


def test_request_phases_are_the_run_times(example_trace):
    """Each request's slice spans arrival to finish; its phases tile it and the prefill ends at the first token
    (engine times, µs)."""
    result, doc, _ = example_trace
    by_phase = check_trace(doc)
    records = result.records
    events = _requests_by_id(by_phase)
    for req in (0, 1, 777, 1_999):
        evs = sorted(events[f"0x{req:x}"], key=lambda e: (e["ts"], e["ph"] == "b"))
        parent_b = next(e for e in evs if e["ph"] == "b" and e["name"].startswith("request"))
        parent_e = next(e for e in evs if e["ph"] == "e" and e["name"].startswith("request"))
        assert parent_b["ts"] == pytest.approx(records.arrival_s[req] * 1e6, abs=1e-3)
        assert parent_e["ts"] == pytest.approx(records.finish_s[req] * 1e6, abs=1e-3)
        phases = [e for e in evs if not e["name"].startswith("request")]
        durations = Counter()
        begin = {}
        for e in phases:
            if e["ph"] == "b":
                begin[e["name"]] = e["ts"]
            else:
                durations[e["name"]] += e["ts"] - begin.pop(e["name"])
        assert sum(durations.values()) == pytest.approx(parent_e["ts"] - parent_b["ts"], abs=1e-2)
        prefill_end = next(e["ts"] for e in phases if e["ph"] == "e" and e["name"] == "prefill")
        assert prefill_end == pytest.approx(records.first_token_s[req] * 1e6, abs=1e-3)


def test_tracing_does_not_change_the_run(example_scenario, example_trace):
    """The traced run takes the same decisions at the same times (every decode step through schedule() instead
    of in place); energy sums in another order, equal to rounding."""
    traced, _, _ = example_trace
    plain = simulate(example_scenario)
    assert np.array_equal(plain.records.first_token_s, traced.records.first_token_s)
    assert np.array_equal(plain.records.finish_s, traced.records.finish_s)
    assert plain.num_steps == traced.num_steps
    a, b = plain.to_json(), traced.to_json()
    assert a["energy"]["joules"] == pytest.approx(b["energy"]["joules"], rel=1e-12)
    a.pop("energy"), b.pop("energy")
    assert a == b


def test_no_trace_work_without_a_recorder(example_scenario, monkeypatch):
    """Without --trace-out no recorder exists, no hook runs, and steady decode steps run in place (far fewer
    priced batches than iterations); with one, every iteration is a priced batch the recorder sees."""
    calls = Counter()
    run_stages = Replica._run_stages

    def counting(self, batch, now_s, spans=None):
        calls["batches"] += 1
        return run_stages(self, batch, now_s, spans)

    monkeypatch.setattr(Replica, "_run_stages", counting)
    for hook in ("iteration", "finished", "kv_landed"):
        monkeypatch.setattr(
            TraceRecorder, hook, lambda *a, **k: pytest.fail("a trace hook ran without a trace")
        )
    plain = simulate(example_scenario)
    assert calls["batches"] < plain.num_steps / 2
    monkeypatch.undo()
    monkeypatch.setattr(Replica, "_run_stages", counting)
    calls.clear()
    recorder = TraceRecorder()
    traced = simulate(example_scenario, trace=recorder)
    assert calls["batches"] == traced.num_steps == len(recorder.timeline.iterations)


def _pipelined_pd_run(**recorder_args):
    """Two-stage colocated replica + a prefill and a decode replica (KV transfer 5 ms), 60 requests."""
    rng = np.random.default_rng(3)
    requests = make_requests(
        60,
        prompt=rng.integers(20, 400, 60),
        output=rng.integers(1, 40, 60),
        arrival=np.cumsum(rng.exponential(0.02, 60)),
    )
    specs = [
        ReplicaSpec(make_cost(stages=[FakeStage(0.004, 1e-5), FakeStage(0.006, 1e-5)], send_s=0.001)),
        ReplicaSpec(make_cost(a=0.003, b=2e-5, kv_transfer_s=0.005), role="prefill"),
        ReplicaSpec(make_cost(a=0.002, b=1e-5), role="decode"),
    ]
    recorder = TraceRecorder(**recorder_args)
    result, system = simulate_requests(
        requests, specs, make_engine(max_num_batched_tokens=256), trace=recorder
    )
    return result, system, recorder


def test_pipeline_stages_and_disaggregated_phases():
    result, system, recorder = _pipelined_pd_run()
    doc, summary = chrome_trace(recorder.timeline)
    by_phase = check_trace(json.loads(json.dumps(doc)))
    slices = Counter((e["pid"], e["tid"]) for e in by_phase["X"])
    for r in system.replicas:  # one slice per iteration on every stage of every replica
        for stage in range(r.pp):
            assert slices[(r.index + 1, stage + 1)] == r.num_iterations > 0
    assert len(slices) == 4
    stage0 = sorted((e for e in by_phase["X"] if e["pid"] == 1 and e["tid"] == 1), key=lambda e: e["ts"])
    stage1 = sorted((e for e in by_phase["X"] if e["pid"] == 1 and e["tid"] == 2), key=lambda e: e["ts"])
    for a, b in zip(stage0, stage1, strict=True):  # a micro-batch enters stage 1 after stage 0 and the send
        assert b["args"] == a["args"] and b["ts"] >= a["ts"] + a["dur"] + 1_000 - 1e-3
    handed_off = [e for e in by_phase["b"] if e["name"] == "kv transfer"]
    assert handed_off
    for e in handed_off:
        end = next(x for x in by_phase["e"] if x["id"] == e["id"] and x["name"] == "kv transfer")
        assert end["ts"] - e["ts"] == pytest.approx(5_000, abs=1e-2)  # the transfer time of the fake cost
    for e in handed_off:  # then it decodes on the decode replica, after its cache landed
        landed = next(x["ts"] for x in by_phase["e"] if x["id"] == e["id"] and x["name"] == "kv transfer")
        decode = [x["ts"] for x in by_phase["b"] if x["id"] == e["id"] and x["name"] == "decode"]
        assert len(decode) == 1 and decode[0] >= landed
    assert summary.requests == 60


def test_window_keeps_the_iterations_that_start_in_it():
    _, _, whole = _pipelined_pd_run()
    full = check_trace(chrome_trace(whole.timeline)[0])
    start_s, end_s = 0.3, 0.6
    _, _, windowed = _pipelined_pd_run(start_s=start_s, end_s=end_s)
    doc, summary = chrome_trace(windowed.timeline)
    part = check_trace(doc)
    expected = [e for e in full["X"] if start_s * 1e6 <= _iteration_start(full, e) < end_s * 1e6]
    assert sorted((e["pid"], e["tid"], e["ts"]) for e in part["X"]) == sorted(
        (e["pid"], e["tid"], e["ts"]) for e in expected
    )
    assert summary.iterations == len(windowed.timeline.iterations) > 0
    stamped = part["b"] + part["e"] + part["C"]
    assert all(start_s * 1e6 - 1e-3 <= e["ts"] <= end_s * 1e6 + 1e-3 for e in stamped)
    assert (summary.start_s, summary.end_s, summary.cut_by_cap) == (start_s, end_s, False)


def _iteration_start(by_phase, event) -> float:
    """The start of the iteration a slice belongs to (its stage-0 slice: same replica, same iteration)."""
    if event["tid"] == 1:
        return event["ts"]
    return next(
        e["ts"]
        for e in by_phase["X"]
        if e["pid"] == event["pid"] and e["tid"] == 1 and e["args"]["iteration"] == event["args"]["iteration"]
    )


def test_the_cap_bounds_a_long_run():
    """8,000 requests (30,128 iterations), cap 3,000 events: the trace holds at most the cap, everything
    before the cut (as a trace of the window that ends at the cut has it) and nothing after it; the recorder
    itself kept no more than the cap, and the summary says that the cap cut the run."""
    n = 8_000
    rng = np.random.default_rng(7)
    requests = make_requests(
        n, prompt=rng.integers(10, 200, n), output=rng.integers(2, 30, n), arrival=np.arange(n) * 0.01
    )
    specs = [ReplicaSpec(make_cost(a=0.005, b=1e-5), count=2)]
    capped = TraceRecorder(max_events=3_000)
    result, _ = simulate_requests(requests, specs, make_engine(), trace=capped)
    doc, summary = chrome_trace(capped.timeline)
    by_phase = check_trace(doc)
    assert 2_990 <= len(doc["traceEvents"]) <= 3_000
    assert summary.cut_by_cap and summary.end_s < summary.run_end_s / 10
    recorded = capped.timeline.iterations, capped.timeline.kv.time_s, capped.timeline.queue.time_s
    assert sum(len(x) for x in recorded) <= 3_000 < result.num_steps
    assert "cap of 3,000 events" in summary.message() and "--trace-window" in summary.message()
    windowed = TraceRecorder(end_s=summary.end_s, max_events=10**6)
    simulate_requests(requests, specs, make_engine(), trace=windowed)
    reference, _ = chrome_trace(windowed.timeline)
    assert reference["traceEvents"] == doc["traceEvents"]
    cut_us = round(summary.end_s * 1e6, 3)  # as the trace writes times
    assert max(e["ts"] for e in doc["traceEvents"] if e["ph"] != "X" and "ts" in e) <= cut_us
    assert max(e["ts"] for e in by_phase["X"]) < cut_us


def test_a_rejected_request_is_an_instant():
    requests = make_requests(3, prompt=[50, 5_000, 50], output=5, arrival=[0.0, 0.01, 0.02])
    recorder = TraceRecorder()
    simulate_requests(requests, [ReplicaSpec(make_cost(kv_tokens=1_000))], make_engine(), trace=recorder)
    by_phase = check_trace(chrome_trace(recorder.timeline)[0])
    assert [e["id"] for e in by_phase["n"]] == ["0x1"]
    assert {e["id"] for e in by_phase["b"]} == {"0x0", "0x2"}
    later = TraceRecorder(start_s=0.015)  # the rejection happened before this window: not in it
    simulate_requests(requests, [ReplicaSpec(make_cost(kv_tokens=1_000))], make_engine(), trace=later)
    by_phase = check_trace(chrome_trace(later.timeline)[0])
    assert not by_phase["n"] and "0x2" in {e["id"] for e in by_phase["b"]}


def test_a_window_past_the_run_holds_only_the_track_names():
    requests = make_requests(5, arrival=np.arange(5) * 0.01)
    recorder = TraceRecorder(start_s=100.0, end_s=200.0)
    simulate_requests(requests, [ReplicaSpec(make_cost())], make_engine(), trace=recorder)
    doc, summary = chrome_trace(recorder.timeline)
    assert {e["ph"] for e in doc["traceEvents"]} == {"M"} and summary.iterations == 0
    with pytest.raises(ValueError):
        TraceRecorder(start_s=2.0, end_s=1.0)
    with pytest.raises(ValueError, match="already holds a run"):  # one recorder, one run: never two mixed
        simulate_requests(requests, [ReplicaSpec(make_cost())], make_engine(), trace=recorder)


@pytest.mark.parametrize("kind", ["vllm-v0", "vllm-v1", "sglang", "trtllm", "orca", "static"])
@pytest.mark.parametrize("pp", [1, 2])
@pytest.mark.parametrize("disaggregated", [False, True])
def test_every_engine_gives_a_valid_trace_of_every_iteration(kind, pp, disaggregated):
    """Six engines × pp 1/2 × colocated and P/D, under KV pressure (preemptions where the engine preempts): the
    trace is valid, has one slice per iteration and stage, and the run is the untraced run."""
    n = 80
    rng = np.random.default_rng(11)
    requests = make_requests(
        n,
        prompt=rng.integers(1, 600, n),
        output=rng.integers(1, 60, n),
        arrival=np.cumsum(rng.exponential(0.005, n)),
    )
    stages = [FakeStage(0.004, 2e-5, 1e-7) for _ in range(pp)]
    roles = ["prefill", "decode"] if disaggregated else ["colocated"]
    specs = [
        ReplicaSpec(make_cost(stages=stages, kv_tokens=6_000, kv_transfer_s=0.002), role=r) for r in roles
    ]
    engine = make_engine(kind, max_num_batched_tokens=1_024)
    plain, _ = simulate_requests(requests, specs, engine)
    recorder = TraceRecorder()
    traced, system = simulate_requests(requests, specs, engine, trace=recorder)
    assert np.array_equal(plain.records.finish_s, traced.records.finish_s, equal_nan=True)
    assert plain.num_steps == traced.num_steps
    doc, summary = chrome_trace(recorder.timeline)
    by_phase = check_trace(json.loads(json.dumps(doc)))
    slices = Counter((e["pid"], e["tid"]) for e in by_phase["X"])
    assert slices == Counter(
        {(r.index + 1, s + 1): r.num_iterations for r in system.replicas for s in range(r.pp)}
    )
    alive = {e["id"] for e in by_phase["b"]} | {e["id"] for e in by_phase["n"]}
    assert len(alive) == n == summary.requests
    parents = [e for e in by_phase["b"] if e["name"].startswith("request ")]
    assert sum(e["args"]["preemptions"] for e in parents) == traced.to_json()["requests"]["preemptions"]
