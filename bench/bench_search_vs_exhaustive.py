"""`apex plan` against `--exhaustive` on the scenarios of tests/planner/search_scenarios.py (not a test; the
slow-tier test asserts the same). For each: the exhaustive optimum and its simulations, the loop's best, its
simulations (baselines included) and their share of the space, the bound it proves and why it stopped. Above
3,000 plans --exhaustive simulates in order of proven bound (planner/baselines.py): fewer simulations, same
optimum.

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
        "| scenario | objective | space: plans, how --exhaustive covered it | exhaustive: simulations, best "
        "| loop: simulations (share of the space), best | bound | stopped | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names or sorted(SCENARIOS):
        t0 = time.perf_counter()
        c = compare(name)
        exh, found = c.exhaustive, c.search
        spec = objective_spec(exh.objective)
        plans = exh.search.space_plans
        share = found.search.simulations / max(plans or exh.search.simulations, 1)
        bound = "none" if found.search.bound is None else f"{found.search.bound:.4g}"
        print(
            f"| {name} | {exh.objective} | {plans}, {exh.search.stopped} | {exh.search.simulations}, "
            f"{exh.best.objective:.4g} {spec.unit} ({exh.best.name.replace('|', chr(92) + '|')}) | {found.search.simulations} ({share:.1%}), "
            f"{found.best.objective:.4g} | {bound} | {found.search.stopped} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
