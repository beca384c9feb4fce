"""GenAI-Perf `profile_export.json` (the perf_analyzer export GenAI-Perf 0.0.16 parses).

Layout (triton-inference-server/perf_analyzer genai-perf/genai_perf/profile_data_parser/profile_data_parser.py
and llm_profile_data_parser.py): `experiments[]`, each with `experiment` {`mode`: "concurrency" or
"request_rate", `value`} and `requests[]` holding `timestamp` (ns, request sent), `response_timestamps[]` (ns,
one per streamed response) and `response_outputs[]` ({"response": the SSE text}). As GenAI-Perf does, responses
without generated text (the role-only first chunk, a usage-only chunk, `[DONE]`) are dropped before timing:
TTFT = first kept response − sent, ITL = gaps between kept responses, E2E = last kept response − sent.

The export holds no token counts (GenAI-Perf tokenizes the text itself); `output_tokens` is taken from a
`usage.completion_tokens` field when the server streamed one, else left None, and `input_tokens` is None.
"""

from __future__ import annotations

import json

from planner.bench_results.fields import integer, mapping, number, parse_json, read_text, require, seq
from planner.bench_results.records import BenchmarkRun, RequestRecord
from simulator.errors import InputError


def _events(response: str) -> list[dict | None]:
    """The JSON payloads of the SSE events in one response ("data: {...}"); None for [DONE] or non-JSON."""
    out = []
    for part in response.strip().split("\n\n"):
        part = part.strip()
        if not part:
            continue
        payload = part.removeprefix("data:").strip()
        if payload == "[DONE]":
            out.append(None)
            continue
        try:
            data = json.loads(payload)
        except json.JSONDecodeError:
            out.append(None)
            continue
        out.append(data if isinstance(data, dict) else None)
    return out


def _text(event: dict) -> str:
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    first = choices[0]
    delta = first.get("delta") if isinstance(first.get("delta"), dict) else {}
    return str(first.get("text") or delta.get("content") or "")


def parse_genai_perf(path: str) -> list[BenchmarkRun]:
    """One run per experiment of a GenAI-Perf / perf_analyzer profile export."""
    data = mapping(parse_json(read_text(path), file=path), file=path, field=None)
    experiments = seq(require(data, "experiments", file=path), file=path, field="experiments")
    runs = []
    for e, exp in enumerate(experiments):
        where = f"experiments[{e}]"
        exp = mapping(exp, file=path, field=where)
        load = mapping(
            require(exp, "experiment", file=path, prefix=f"{where}."), file=path, field=f"{where}.experiment"
        )
        mode = require(load, "mode", file=path, prefix=f"{where}.experiment.")
        value = require(load, "value", file=path, prefix=f"{where}.experiment.")
        if mode not in ("concurrency", "request_rate"):
            raise InputError(
                f"expected 'concurrency' or 'request_rate', got {mode!r}",
                file=path,
                field=f"{where}.experiment.mode",
            )
        requests, failed = [], 0
        for i, req in enumerate(
            seq(require(exp, "requests", file=path, prefix=f"{where}."), file=path, field=f"{where}.requests")
        ):
            rw = f"{where}.requests[{i}]"
            req = mapping(req, file=path, field=rw)
            sent = integer(
                require(req, "timestamp", file=path, prefix=f"{rw}."), file=path, field=f"{rw}.timestamp"
            )
            stamps = seq(
                require(req, "response_timestamps", file=path, prefix=f"{rw}."),
                file=path,
                field=f"{rw}.response_timestamps",
            )
            outputs = seq(
                require(req, "response_outputs", file=path, prefix=f"{rw}."),
                file=path,
                field=f"{rw}.response_outputs",
            )
            if len(stamps) != len(outputs):
                raise InputError(
                    f"has {len(stamps)} entries but response_outputs has {len(outputs)}",
                    file=path,
                    field=f"{rw}.response_timestamps",
                )
            kept, completion_tokens = [], None
            for j, (ts, out) in enumerate(zip(stamps, outputs, strict=True)):
                t = integer(ts, file=path, field=f"{rw}.response_timestamps[{j}]")
                text = require(
                    mapping(out, file=path, field=f"{rw}.response_outputs[{j}]"),
                    "response",
                    file=path,
                    prefix=f"{rw}.response_outputs[{j}].",
                )
                if not isinstance(text, str):
                    raise InputError(
                        f"expected the response text, got {text!r}",
                        file=path,
                        field=f"{rw}.response_outputs[{j}].response",
                    )
                events = [ev for ev in _events(text) if ev is not None]
                for ev in events:
                    usage = ev.get("usage")
                    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                        completion_tokens = usage["completion_tokens"]
                if any(_text(ev) for ev in events):
                    kept.append(t)
            if not kept:
                failed += 1
                continue
            if kept[0] < sent or any(b < a for a, b in zip(kept, kept[1:], strict=False)):
                raise InputError(
                    "response timestamps must not precede the request timestamp or each other",
                    file=path,
                    field=f"{rw}.response_timestamps",
                )
            requests.append(
                RequestRecord(
                    ttft_s=(kept[0] - sent) / 1e9,
                    itl_s=tuple((b - a) / 1e9 for a, b in zip(kept, kept[1:], strict=False)),
                    e2e_s=(kept[-1] - sent) / 1e9,
                    input_tokens=None,
                    output_tokens=completion_tokens,
                    sent_s=sent / 1e9,
                )
            )
        runs.append(
            BenchmarkRun(
                tool="genai-perf",
                source=f"{path} ({where})",
                request_rate=number(value, file=path, field=f"{where}.experiment.value")
                if mode == "request_rate"
                else None,
                max_concurrency=integer(value, file=path, field=f"{where}.experiment.value", minimum=1)
                if mode == "concurrency"
                else None,
                requests=tuple(requests),
                failed=failed,
                duration_s=None,
            )
        )
    if not runs:
        raise InputError("holds no experiments", file=path, field="experiments")
    return runs
