"""A checker of the Trace Event Format (the Chrome / Perfetto JSON trace), for the trace tests.

Written from the format's specification (Google's "Trace Event Format" document: the required fields of each
phase, nestable async events paired by category and id, metadata events naming processes and threads), as
the public loaders (Perfetto's trace processor, catapult) cannot be installed here offline.
"""

from __future__ import annotations

import math
from collections import defaultdict

REQUIRED = {
    "X": {"ph", "name", "ts", "dur", "pid", "tid"},  # complete event
    "C": {"ph", "name", "ts", "pid", "args"},  # counter
    "b": {"ph", "name", "cat", "id", "ts", "pid", "tid"},  # nestable async begin
    "e": {"ph", "name", "cat", "id", "ts", "pid", "tid"},  # ... end
    "n": {"ph", "name", "cat", "id", "ts", "pid", "tid"},  # ... instant
    "M": {"ph", "name", "pid", "args"},  # metadata
}
METADATA = {"process_name", "process_sort_index", "thread_name", "thread_sort_index"}
SLACK_US = 1e-6  # rounding of µs written with 3 decimals


def check_trace(doc: dict) -> dict[str, list[dict]]:
    """Assert that `doc` is a valid trace (see module docstring); returns its events grouped by phase."""
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list)
    by_phase: dict[str, list[dict]] = defaultdict(list)
    last_x: dict[tuple, tuple[float, float]] = {}
    last_counter: dict[tuple, float] = {}
    open_async: dict[tuple, list[tuple[str, float]]] = defaultdict(list)
    names: set[tuple] = set()
    for event in doc["traceEvents"]:
        ph = event.get("ph")
        assert ph in REQUIRED, event
        missing = REQUIRED[ph] - event.keys()
        assert not missing, (missing, event)
        by_phase[ph].append(event)
        if ph == "M":
            assert event["name"] in METADATA, event
            if event["name"].endswith("_name"):
                assert isinstance(event["args"]["name"], str) and event["args"]["name"]
                names.add(
                    (
                        event["name"],
                        event["pid"],
                        event.get("tid") if event["name"] == "thread_name" else None,
                    )
                )
            continue
        ts = event["ts"]
        assert isinstance(ts, int | float) and math.isfinite(ts) and ts >= 0, event
        if ph == "X":
            assert event["dur"] >= 0, event
            track = (event["pid"], event["tid"])
            if track in last_x:  # in time order, one slice at a time per thread (iterations never overlap)
                start, end = last_x[track]
                assert ts >= start and ts >= end - SLACK_US, (event, last_x[track])
            last_x[track] = (ts, ts + event["dur"])
        elif ph == "C":
            assert event["args"] and all(isinstance(v, int | float) for v in event["args"].values()), event
            track = (event["pid"], event["name"])
            assert ts >= last_counter.get(track, 0.0), event
            last_counter[track] = ts
        else:
            key = (event["cat"], event["id"])
            stack = open_async[key]
            if stack:
                assert ts >= stack[-1][1], (event, stack)
            if ph == "b":
                stack.append((event["name"], ts))
            elif ph == "e":
                assert stack and stack[-1][0] == event["name"], (event, stack)
                stack.pop()
    unclosed = {key: stack for key, stack in open_async.items() if stack}
    assert not unclosed, list(unclosed.items())[:3]
    for event in by_phase["X"]:
        assert ("thread_name", event["pid"], event["tid"]) in names, event
    for ph in ("X", "C", "b", "n"):
        for event in by_phase[ph]:
            assert ("process_name", event["pid"], None) in names, event
    return by_phase
