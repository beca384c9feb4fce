"""Engine host overheads: CPU time the serving engine spends around the GPU work (docs/design.md §3.1).

Per engine kind, two figures:
* `per_iteration_s` — scheduler, input preparation and output processing of one engine step that the GPU
  waits for (not overlapped with the forward pass);
* `per_sequence_s` — the part of that step that grows with the running sequences (sampling bookkeeping,
  detokenization, Python objects per request).

The figures are engine properties, not GPU ones; each row names its public source and how the number follows.
The per-request frontend (HTTP server, tokenizer) is not modelled: no public per-request measurement was found.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HostOverhead:
    per_iteration_s: float
    per_sequence_s: float
    source: str


ENGINES: dict[str, HostOverhead] = {
    "vllm-v0": HostOverhead(
        3.0e-3,
        20e-6,
        "vLLM v0.6.0 performance blog (blog.vllm.ai/2024/09/05/perf-update.html): profiling Llama-3-8B on one H100 "
        "with v0.5.3, the HTTP API server took 33% and scheduling/output processing 29% of the time, the GPU 38%; "
        "at a ~5 ms forward step that is ~3 ms of un-overlapped CPU per step, part of it per running sequence",
    ),
    "vllm-v1": HostOverhead(
        0.5e-3,
        2e-6,
        "vLLM V1 alpha blog (blog.vllm.ai/2025/01/27/v1-alpha-release.html): the engine core runs in its own "
        "process with the API server, tokenization and detokenization moved out of the step loop and a persistent "
        "batch, reaching up to 1.7x v0's throughput; the remaining un-overlapped step cost is taken as 1/6 of v0's",
    ),
    "sglang": HostOverhead(
        0.3e-3,
        2e-6,
        "SGLang v0.4 blog (lmsys.org/blog/2024-12-04-sglang-v0-4): the zero-overhead batch scheduler overlaps CPU "
        "scheduling of the next batch with the current forward pass, leaving a small un-overlapped remainder",
    ),
    "trtllm": HostOverhead(
        0.2e-3,
        1e-6,
        "TensorRT-LLM's C++ batch manager (in-flight batching in the executor, no Python in the step loop; "
        "NVIDIA TensorRT-LLM docs, 'The Batch Manager'); trtllm-bench measures the engine without a frontend",
    ),
    "orca": HostOverhead(
        1.0e-3,
        0.0,
        "no public measurement of Orca's host path; the former engine-independent 1 ms per step of APEX",
    ),
    "static": HostOverhead(
        1.0e-3,
        0.0,
        "no public measurement for a static-batching server; the former engine-independent 1 ms per step of APEX",
    ),
}


def host_overhead(engine_kind: str) -> HostOverhead:
    """The host figures of one engine kind."""
    return ENGINES[engine_kind]


def iteration_seconds(engine_kind: str, num_seqs: int) -> float:
    """Un-overlapped CPU seconds of one engine step with `num_seqs` running sequences."""
    h = ENGINES[engine_kind]
    return h.per_iteration_s + h.per_sequence_s * num_seqs
