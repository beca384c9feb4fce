"""Requests that can never run, counted before the simulation starts (docs/design.md §3.2).

A request can never be served when
* its prompt + output tokens exceed the model's context window (`max_context`; servers refuse it at the door),
* its prompt + output tokens need more KV-cache blocks than any replica holds (it would wait forever), or
* its prompt is longer than the token budget (`max_num_batched_tokens`) on an engine that does not split prompts
  (`enable_chunked_prefill: false`).

The engine refuses such requests and counts them in `requests.rejected`. `screen` applies the same rules to the
whole workload at once (numpy, no simulation); `enforce` turns the counts into an InputError naming the field and
the limit when no request can run (a simulation of nothing would report only NaNs), or into one InputWarning
with the counts when some cannot.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from simulator.errors import InputError, InputWarning
from simulator.model import Model
from simulator.scenario import Engine, Scenario, engine_setting
from simulator.workload import generate


@dataclass(frozen=True)
class ReplicaLimit:
    """What one replica group can hold: its role and KV-cache capacity in tokens (in whole blocks)."""

    role: str  # colocated | prefill | decode
    kv_capacity_tokens: int


@dataclass(frozen=True)
class Reason:
    """One rule and how many requests break it."""

    count: int
    field: str
    text: str


@dataclass(frozen=True)
class Screening:
    """How many of `total` requests can never run (`never_run`), and why (a request may break several rules)."""

    total: int
    never_run: int
    reasons: tuple[Reason, ...]


def length_field(workload) -> str:
    """The scenario field that sets the requests' lengths: the trace, the preset, or the length distributions."""
    if workload.trace is not None:
        return "workload.trace"
    if workload.input_tokens is None and workload.preset is not None:
        return "workload.preset"
    return "workload.input_tokens"


def _kv_blocks(tokens: np.ndarray, block_size: int) -> np.ndarray:
    return -(-tokens // block_size)


def screen(
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    model: Model,
    engine: Engine,
    replicas: list[ReplicaLimit] | None = None,
    *,
    workload_field: str = "workload.input_tokens",
) -> Screening:
    """Count the requests that can never run on the model / engine, and on `replicas` when given (a plan).

    A request fits the KV cache when some colocated replica holds its prompt + output, or some prefill
    replica holds its prompt (+ the first token) and some decode replica its prompt + output (+ the k draft
    tokens a speculative verify pass writes); the same rule as the engine's `can_ever_fit`, on every replica
    group rather than the one a router picks.
    """
    prompt = np.asarray(input_tokens, dtype=np.int64)
    total = prompt + np.asarray(output_tokens, dtype=np.int64)
    reasons = []
    over_context = total > model.max_context
    reasons.append(
        Reason(
            int(over_context.sum()),
            workload_field,
            f"prompt + output longer than the model's context window ({model.name} max_context = "
            f"{model.max_context:,} tokens)",
        )
    )
    never = over_context.copy()
    if not engine_setting(engine, "enable_chunked_prefill"):
        budget = engine_setting(engine, "max_num_batched_tokens")
        over_budget = prompt > budget
        reasons.append(
            Reason(
                int(over_budget.sum()),
                "engine.max_num_batched_tokens",
                f"prompt longer than the token budget (engine.max_num_batched_tokens = {budget:,}) on "
                f"{engine.kind} without chunked prefill (engine.enable_chunked_prefill: false)",
            )
        )
        never |= over_budget
    if replicas:
        block = 1 if engine.kind == "orca" else engine.block_size
        blocks = [r.kv_capacity_tokens // block for r in replicas]

        def fits(tokens: np.ndarray, role: str) -> np.ndarray:
            ok = np.zeros(len(tokens), dtype=bool)
            for r, num_blocks in zip(replicas, blocks, strict=True):
                if r.role == role:
                    ok |= _kv_blocks(tokens, block) <= num_blocks
            return ok

        speculation = engine.speculation  # a verify pass holds KV for its k draft tokens too
        peak = total + (speculation.num_tokens if speculation is not None else 0)
        kv_ok = fits(peak, "colocated") | (fits(prompt + 1, "prefill") & fits(peak, "decode"))
        largest = max(r.kv_capacity_tokens for r in replicas)
        reasons.append(
            Reason(
                int((~kv_ok).sum()),
                "plan",
                f"prompt + output larger than the KV cache of every replica (the largest holds {largest:,} "
                "tokens)",
            )
        )
        never |= ~kv_ok
    return Screening(
        total=len(prompt), never_run=int(never.sum()), reasons=tuple(r for r in reasons if r.count)
    )


def enforce(screening: Screening, *, file: str | None, plan_label: str | None = None) -> None:
    """InputError when no request can run; one InputWarning with the counts when some cannot. The plan's
    label is named when the KV cache is among the reasons (the other rules hold for every plan)."""
    if not screening.never_run:
        return
    what = (
        f" on plan {plan_label}" if plan_label and any(r.field == "plan" for r in screening.reasons) else ""
    )
    why = "; ".join(f"{r.count:,} with {r.text}" for r in screening.reasons)
    main = max(screening.reasons, key=lambda r: r.count)
    hint = {
        "engine.max_num_batched_tokens": "raise engine.max_num_batched_tokens or enable chunked prefill",
        "plan": "give each replica more GPUs or memory (tp/pp, a larger GPU, fp8 weights or KV cache)",
    }.get(main.field, "shorten the requests (input_tokens / output_tokens max) or use a longer-context model")
    if screening.never_run == screening.total:
        raise InputError(
            f"none of the {screening.total:,} requests{what} can ever run: {why}; {hint}",
            file=file,
            field=main.field,
        )
    where = ": ".join(p for p in (file, main.field) if p)
    warnings.warn(
        InputWarning(
            f"{where}: {screening.never_run:,} of {screening.total:,} requests{what} can never run and are "
            f"rejected (counted in requests.rejected): {why}"
        ),
        stacklevel=2,
    )


def refuse_impossible_workload(scenario: Scenario) -> None:
    """InputError when no request of the scenario's workload can run on any plan (context window, token budget
    without chunked prefill); a search would otherwise simulate every candidate for nothing."""
    requests = generate(scenario.spec.workload, file=scenario.file)
    screening = screen(
        requests.input_tokens,
        requests.output_tokens,
        scenario.model,
        scenario.spec.engine,
        workload_field=length_field(scenario.spec.workload),
    )
    if screening.never_run == screening.total:
        enforce(screening, file=scenario.file)
