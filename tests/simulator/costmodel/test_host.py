"""Engine host overheads: every figure either cites a measurement or says it is an assumption."""

from __future__ import annotations

from simulator.costmodel import host


def test_every_host_row_is_measured_or_labelled_an_assumption():
    """Only vLLM v0's per-step figure is a public measurement; the other rows say plainly they are assumed."""
    for kind, row in host.ENGINES.items():
        assert row.source
        if row.measured:
            assert kind == "vllm-v0"
        else:
            assert row.source.startswith("assumption"), kind


def test_host_step_grows_with_running_sequences_and_v0_costs_most():
    """The un-overlapped step grows with the running sequences, and v0 pays the most per step (no overlap)."""
    for kind in host.ENGINES:
        assert host.iteration_seconds(kind, 256) >= host.iteration_seconds(kind, 1)
    v0 = host.iteration_seconds("vllm-v0", 64)
    assert all(host.iteration_seconds(k, 64) < v0 for k in ("vllm-v1", "sglang", "trtllm"))
