"""Typed records of a benchmark run, whatever tool wrote it: per-request latencies and lengths, and the load."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    """One completed request as the client measured it, in seconds (None where the file does not say)."""

    ttft_s: float  # first token (or first streamed chunk) − request sent
    itl_s: tuple[float, ...]  # gaps between consecutive streamed chunks after the first
    e2e_s: float  # last token − request sent
    input_tokens: int | None
    output_tokens: int | None
    sent_s: float | None = None  # when the client sent it (the tool's clock, seconds), where the file says

    @property
    def num_tokens(self) -> int:
        """Output tokens: the count the file gives, else the streamed chunks (each at least one token)."""
        return self.output_tokens if self.output_tokens is not None else len(self.itl_s) + 1

    @property
    def tpot_s(self) -> float | None:
        """(E2E − TTFT) / (output tokens − 1), as vLLM and SGLang report it; None without a count above 1."""
        if self.output_tokens is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass(frozen=True)
class BenchmarkRun:
    """The requests of one benchmark run and the load it offered."""

    tool: str  # vllm-bench | sglang-bench | genai-perf | aiperf
    source: str  # the file (and line, for files holding several runs)
    request_rate: float | None  # requests/s offered; math.inf = all at once; None = not recorded
    max_concurrency: int | None  # the client's concurrency limit, when it had one
    requests: tuple[RequestRecord, ...]  # completed requests
    failed: int  # requests the tool recorded as failed
    duration_s: float | None  # the run's wall time as the tool recorded it
    burstiness: float | None = None  # vLLM's gamma shape of inter-arrival gaps (1 = Poisson), where written

    def summary(self) -> dict:
        """Counts, the offered load and mean / p50 / p90 / p99 of TTFT, TPOT, ITL and E2E (seconds)."""
        import numpy as np  # here, not at the top: `apex --help` loads this module, numpy is slow to import

        def stats(values) -> dict | None:
            arr = np.asarray([v for v in values if v is not None], dtype=float)
            if arr.size == 0:
                return None
            p50, p90, p99 = np.percentile(arr, [50, 90, 99])
            return {"mean": float(arr.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}

        rate = self.request_rate
        return {
            "tool": self.tool,
            "source": self.source,
            "request_rate": "inf" if rate is not None and math.isinf(rate) else rate,
            "max_concurrency": self.max_concurrency,
            "completed": len(self.requests),
            "failed": self.failed,
            "duration_s": self.duration_s,
            "ttft_s": stats(r.ttft_s for r in self.requests),
            "tpot_s": stats(r.tpot_s for r in self.requests),
            "itl_s": stats(x for r in self.requests for x in r.itl_s),
            "e2e_s": stats(r.e2e_s for r in self.requests),
            "input_tokens": stats(r.input_tokens for r in self.requests),
            "output_tokens": stats(r.output_tokens for r in self.requests),
        }
