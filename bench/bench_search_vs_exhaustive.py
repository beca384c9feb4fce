"""`apex plan` against `--exhaustive` on the scenarios of tests/planner/search_scenarios.py (not a test; the
slow-tier test asserts the same). For each: the exhaustive optimum and its simulations, the loop's best, its
simulations (baselines included), the bound it proves and why it stopped.

Run: `python bench/bench_search_vs_exhaustive.py [NAME ...]`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the scenarios live with the slow-tier test

from formulations.objectives import objective_spec  # noqa: E402
from tests.planner.search_scenarios import SCENARIOS, compare  # noqa: E402


def main(names: list[str]) -> None:
    print(
        "| scenario | objective | exhaustive: plans simulated, best | loop: simulations (share), best | bound | stopped | wall s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names or sorted(SCENARIOS):
        t0 = time.perf_counter()
        c = compare(name)
        exh, found = c.exhaustive, c.search
        spec = objective_spec(exh.objective)
        share = found.search.simulations / max(exh.search.simulations, 1)
        bound = "none" if found.search.bound is None else f"{found.search.bound:.4g}"
        print(
            f"| {name} | {exh.objective} | {exh.search.simulations}, {exh.best.objective:.4g} {spec.unit} "
            f"({exh.best.name}) | {found.search.simulations} ({share:.1%}), {found.best.objective:.4g} "
            f"| {bound} | {found.search.stopped} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
