"""Time `emit_plan` (all four engines, Kubernetes manifests, benchmark scripts) on the shipped examples' plans.
Not a test: run it directly (`python bench/bench_emit.py`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from planner.emit.emitter import ENGINES, emit_plan
from planner.placement_step import place_plan
from simulator.scenario import load_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "configs" / "examples"


def main(repeats: int = 3) -> None:
    for name, plan in (("llama-70b-h100.yaml", None), ("mixtral-8x22b-2node-energy.yaml", "tp=4,dp=4")):
        sc = load_scenario(EXAMPLES / name, plan_override=plan)
        placement, why = place_plan(sc, sc.plan)
        assert placement is not None, why
        best = float("inf")
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = emit_plan(sc, sc.plan, placement, engines=ENGINES, out_dir=Path(tmp) / "out")
                best = min(best, time.perf_counter() - start)
        print(
            f"{name} {sc.plan.label()}: {best * 1000:.0f} ms (best of {repeats}), {len(result.files)} files, "
            f"engines {', '.join(result.engines)}"
        )


if __name__ == "__main__":
    main()
