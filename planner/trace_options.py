"""`apex simulate --trace-out FILE.json [--trace-window START:END] [--trace-max-events N]`: the checks made before
the simulation starts, and the recorder the run fills (`simulator.engine.trace`, written by
`simulator.trace_export`).

The path follows `--requests-out`: it must end in .json, must not exist (nothing is overwritten) and its
directory must exist; one scenario at a time. The window is in simulated seconds (either side may be left
empty: `:30`, `120:`); the cap is on trace events, at least MIN_EVENTS.
"""

from __future__ import annotations

import math
from pathlib import Path

from planner.errors import InputError
from planner.outputs import check_new_file

MIN_EVENTS = 1_000  # below this a trace holds little more than its track names


def parse_window(text: str) -> tuple[float, float]:
    """(start, end) seconds of a `START:END` window; an empty END is the end of the run."""
    parts = text.split(":")
    if len(parts) != 2:
        raise InputError(
            f"{text!r}: expected START:END in simulated seconds, e.g. 60:120, :30 or 120:",
            field="--trace-window",
        )
    try:
        start = float(parts[0]) if parts[0].strip() else 0.0
        end = float(parts[1]) if parts[1].strip() else math.inf
    except ValueError:
        raise InputError(
            f"{text!r}: START and END must be numbers of seconds, e.g. 60:120", field="--trace-window"
        ) from None
    if not math.isfinite(start) or start < 0 or math.isnan(end) or end == -math.inf:
        raise InputError(
            f"{text!r}: START must be a finite number ≥ 0 and END a number", field="--trace-window"
        )
    if not end > start:
        raise InputError(f"{text!r}: END must be later than START", field="--trace-window")
    return start, end


def trace_recorder(
    trace_out: str | None, window: str | None, max_events: int | None, num_scenarios: int
) -> tuple[Path | None, object | None]:
    """The checked output path and a fresh TraceRecorder, or (None, None) when no trace was asked for."""
    if trace_out is None:
        for flag, value in (("--trace-window", window), ("--trace-max-events", max_events)):
            if value is not None:
                raise InputError(f"{flag} needs --trace-out FILE.json", field=flag)
        return None, None
    if num_scenarios > 1:
        raise InputError("--trace-out takes one scenario at a time", field="--trace-out")
    path = check_new_file(trace_out, "--trace-out", suffixes=(".json",))
    start, end = parse_window(window) if window is not None else (0.0, math.inf)
    # imported here: numpy and the engine load only when a trace is asked for (start-up time of the CLI)
    from simulator.engine.trace import DEFAULT_MAX_EVENTS, TraceRecorder

    if max_events is None:
        max_events = DEFAULT_MAX_EVENTS
    if max_events < MIN_EVENTS:
        raise InputError(f"{max_events}: expected at least {MIN_EVENTS:,} events", field="--trace-max-events")
    return path, TraceRecorder(start, end, max_events)
