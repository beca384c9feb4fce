"""Engine host overheads: CPU time the serving engine spends around the GPU work (docs/design.md §3.1).

Per engine kind, two figures:
* `per_iteration_s` — scheduler, input preparation and output processing of one engine step that the GPU
  waits for (not overlapped with the forward pass);
* `per_sequence_s` — the part of that step that grows with the running sequences (sampling bookkeeping,
  detokenization, Python objects per request).

The figures are engine properties, not GPU ones. Each row says what its public source measured and, where
no source gives a number, says plainly that the number is an assumption (`measured` is False then). Only
vLLM v0's per-step figure is a public measurement; every `per_sequence_s` is an assumption.

A third figure, `frontend_s`, is paid once per request before the engine sees it: the HTTP server, request parsing
and tokenization of the prompt. It lengthens each request's TTFT and E2E as the client measures them, not its ITL.
Its default is 0 for every engine: no public measurement of that path on its own was found (the vLLM v0.6.0 blog
gives the API server's share of a profiled step loop, not a latency per request), so without a measurement TTFT is
the engine's own; `apex calibrate RESULTS --scenario` fits it from the user's benchmark runs, and a calibration
file's `host` section replaces any of the three figures for the engine it names (`for_engine`). Those fitted
figures are what should replace the assumptions above.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FIELDS = ("per_iteration_s", "per_sequence_s", "frontend_s")  # what a calibration file's `host` may set


@dataclass(frozen=True, slots=True)
class HostOverhead:
    per_iteration_s: float
    per_sequence_s: float
    source: str
    measured: bool = False  # per_iteration_s comes from a public measurement (else an assumption)
    frontend_s: float = 0.0  # per request, before the engine (module docstring)

    def step_seconds(self, num_seqs: int) -> float:
        """Un-overlapped CPU seconds of one engine step with `num_seqs` running sequences."""
        return self.per_iteration_s + self.per_sequence_s * num_seqs


ENGINES: dict[str, HostOverhead] = {
    "vllm-v0": HostOverhead(
        4.0e-3,
        20e-6,
        "vLLM RFC 'Multi-Step Scheduling' (github.com/vllm-project/vllm issue 6854, July 2024): nsys profiles "
        "of v0 decoding show about 4 ms of GPU bubble incurred on every decode step (sampled-token copy to "
        "the CPU, pythonizing outputs, preparing the next step's inputs, the scheduler), 5-13 ms in general; "
        "the v0.6.0 performance blog (blog.vllm.ai/2024/09/05/perf-update.html) profiles Llama-3-8B on one "
        "H100 with v0.5.3 at 33% of the time in the HTTP API server and 29% in scheduling and output "
        "processing. per_iteration_s = the 4 ms bubble; per_sequence_s (20 us) is an assumption",
        measured=True,
    ),
    "vllm-v1": HostOverhead(
        0.5e-3,
        2e-6,
        "assumption: the vLLM V1 alpha blog (blog.vllm.ai/2025/01/27/v1-alpha-release.html) states the goal "
        "of near-zero CPU overhead, moves tokenization, detokenization and request streaming out of the "
        "engine-core loop into other processes and reports up to 1.7x V0's throughput, but publishes no "
        "per-step CPU time; 0.5 ms and 2 us per sequence are assumed",
    ),
    "sglang": HostOverhead(
        0.3e-3,
        2e-6,
        "assumption: the SGLang v0.4 blog (lmsys.org/blog/2024-12-04-sglang-v0-4, 'zero-overhead batch "
        "scheduler') overlaps the CPU scheduling of the next batch with the current forward pass and shows "
        "the GPU kept busy, without a per-step figure for what remains un-overlapped; 0.3 ms is assumed",
    ),
    "trtllm": HostOverhead(
        0.2e-3,
        1e-6,
        "assumption: TensorRT-LLM's batch manager runs in-flight batching in C++ and its overlap scheduler "
        "(TensorRT-LLM docs, 'Overlap Scheduler', on by default) launches step n+1 before step n's CPU work; "
        "no public per-step figure; 0.2 ms is assumed",
    ),
    "orca": HostOverhead(
        1.0e-3,
        0.0,
        "assumption: no public measurement of Orca's host path; the former engine-independent 1 ms per step",
    ),
    "static": HostOverhead(
        1.0e-3,
        0.0,
        "assumption: no public measurement for a static-batching server; the former engine-independent 1 ms",
    ),
}


def host_overhead(engine_kind: str) -> HostOverhead:
    """The host figures of one engine kind."""
    return ENGINES[engine_kind]


def iteration_seconds(engine_kind: str, num_seqs: int) -> float:
    """Un-overlapped CPU seconds of one engine step with `num_seqs` running sequences."""
    return ENGINES[engine_kind].step_seconds(num_seqs)


def for_engine(engine_kind: str, overrides: dict[str, float] | None = None, source: str = "") -> HostOverhead:
    """The engine kind's figures with `overrides` (keys of FIELDS, e.g. from a calibration file) applied; fitted
    figures count as measured."""
    base = ENGINES[engine_kind]
    if not overrides:
        return base
    values = {k: float(v) for k, v in overrides.items()}
    return replace(base, **values, source=source or base.source, measured=True)
