"""Names of plans: the short label people read, the shorthand when it exists, the simulation cache key, and
`Proposal` — a plan with the engine settings it is simulated with."""

from __future__ import annotations

import json
from dataclasses import dataclass

from formulations.templates import EngineSettings
from simulator.plan import Plan, Stage, even_layer_split


@dataclass(frozen=True)
class Proposal:
    """A plan to simulate and the engine knobs and dtypes every replica of it runs with (docs/design.md §4)."""

    plan: Plan
    settings: EngineSettings

    @property
    def key(self) -> str:
        """Everything that changes the simulation: the plan's groups (`plan_key`) and the settings."""
        return plan_key(self.plan) + "|" + self.settings.key


def short_label(plan: Plan) -> str:
    """`Plan.label()` with the GPU type written once per replica group: `2x[tp4|tp4]@h100-sxm`."""
    parts = []
    for g in plan.replicas:
        text = Plan(replicas=[g.model_copy(update={"sm_clock_mhz": None})]).label()
        gpus = {st.gpu for st in g.stages}
        if len(gpus) == 1 and None not in gpus:
            (gpu,) = gpus
            text = text.replace(f" @{gpu}", "") + f"@{gpu}"
        parts.append(text + g.clock_label)
    return " + ".join(parts)


def shorthand(plan: Plan) -> str:
    """`tp=4,pp=2,dp=2` (plus `ep=`) when the plan is that homogeneous shorthand, else its short label."""
    if (
        len(plan.replicas) == 1
        and plan.replicas[0].role == "colocated"
        and plan.replicas[0].sm_clock_mhz is None
    ):
        g = plan.replicas[0]
        s0 = g.stages[0]
        tp, ep, pp = s0.attention.tp, s0.ffn.ep, len(g.stages)
        num_layers = g.stages[-1].layers[1]
        same = all(
            st.attention == Stage(layers=st.layers, tp=tp, ep=ep).attention
            and st.ffn == Stage(layers=st.layers, tp=tp, ep=ep).ffn
            for st in g.stages
        ) and [st.layers for st in g.stages] == even_layer_split(num_layers, pp)
        if same and len({st.gpu for st in g.stages}) == 1:
            text = f"tp={tp}" + (f",pp={pp}" if pp > 1 else "") + (f",dp={g.count}" if g.count > 1 else "")
            return text + (f",ep={ep}" if ep > 1 else "")
    return short_label(plan)


def plan_key(plan: Plan) -> str:
    """Everything about a plan that changes its simulation — replica groups in order, each with its count,
    role and every stage's layer range, GPU type and per-cell split — as canonical JSON. (A plan's engine knobs
    and dtypes are its `Proposal`'s settings; `Simulations` keys on them too.)"""
    groups = [
        {
            "count": g.count,
            "role": g.role,
            "sm_clock_mhz": g.sm_clock_mhz,
            "stages": [
                {
                    "layers": list(st.layers),
                    "gpu": st.gpu,
                    "attention": st.attention.model_dump(mode="json"),
                    "ffn": st.ffn.model_dump(mode="json"),
                }
                for st in g.stages
            ],
        }
        for g in plan.replicas
    ]
    return json.dumps(groups, sort_keys=True, separators=(",", ":"))
