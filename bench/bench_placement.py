"""Placement wall time vs cluster size (not a test): 8 to 2,048 GPUs, three plan mixes, automatic method vs the
direct per-stage CP-SAT model (the pre-aggregate formulation) under the same time limit.

Mixes (replica counts scale with the cluster; the last shape fills up to 99% of the free GPUs (95% for
kimi, whose decode stages need whole free nodes), so the packing is tight):
* deepseek: tp8 replicas, pp2×tp8 and [tp2|tp2|tp2] pipelines on 8-GPU H200 nodes;
* kimi: prefill pp2×tp8, decode tp8 ep32 (4 whole nodes), [tp4|tp8|tp4] pipelines, [tp4|tp4]; 1% of GPUs down;
* nvl72: [tp8|tp8], [tp4|tp4|tp4|tp4] and [tp6|tp6] on GB200 NVL72 racks (18 trays of 4, one NVLink domain).

Run: `python bench/bench_placement.py [--limit S] [--direct-up-to GPUS]`. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import time

from formulations.placement import (
    DIRECT,
    PlacementNodeGroup,
    PlacementReplica,
    PlacementStage,
    check_placement,
    solve_placement,
)
from formulations.result import SolverOptions

MIXES = {
    # name: (gpu type, GPUs per node, NVLink domain GPUs, [(share of GPUs, stage sizes)], share of GPUs down,
    #        share of the free GPUs filled)
    "deepseek": ("h200-sxm", 8, None, [(0.45, (8,)), (0.30, (8, 8)), (0.25, (2, 2, 2))], 0.0, 0.99),
    "kimi": (
        "h200-sxm",
        8,
        None,
        [(0.30, (8, 8)), (0.22, (32,)), (0.22, (4, 8, 4)), (0.26, (4, 4))],
        0.01,
        0.95,
    ),
    "nvl72": ("gb200", 4, 72, [(0.40, (8, 8)), (0.35, (4, 4, 4, 4)), (0.25, (6, 6))], 0.0, 0.99),
}


def instance(mix: str, num_gpus: int):
    gpu, per_node, domain, shares, down_share, fill = MIXES[mix]
    groups = (PlacementNodeGroup("main", gpu, num_gpus // per_node, per_node, domain),)
    rng = random.Random(0)
    down = frozenset(
        ("main", n, i)
        for n in range(num_gpus // per_node)
        for i in range(per_node)
        if rng.random() < down_share
    )
    free = num_gpus - len(down)
    replicas, used = [], 0
    for n, (share, sizes) in enumerate(shares):
        count = int(share * free) // sum(sizes) if n < len(shares) - 1 else free  # the last mix fills up
        for _ in range(count):
            if used + sum(sizes) > fill * free:
                break
            stages = tuple(PlacementStage(s, gpu) for s in sizes)
            replicas.append(PlacementReplica(f"r{len(replicas)}", stages))
            used += sum(sizes)
    return replicas, groups, down


def run(replicas, groups, down, limit: float, method=None):
    t0 = time.perf_counter()
    result = solve_placement(
        replicas, groups, SolverOptions(time_limit_s=limit), unavailable=down, method=method
    )
    wall = time.perf_counter() - t0
    if result.solution is None:
        return wall, f"none ({result.termination})", "", ""
    assert not check_placement(replicas, groups, result.solution, down)
    p = result.solution
    quality = "optimal" if p.optimal else f"≥ {p.lower_bound}"
    return wall, p.method, f"{p.cross_domain_boundaries}", quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=10.0, help="time limit per placement, seconds")
    parser.add_argument(
        "--direct-up-to", type=int, default=2048, help="run the direct model up to this many GPUs"
    )
    args = parser.parse_args()
    solve_placement(
        *instance("deepseek", 64)[:2], SolverOptions(time_limit_s=5), method=DIRECT
    )  # import ortools
    print("| mix | GPUs | replicas | method | cross-domain boundaries | quality | wall s | direct model |")
    print("|---|---|---|---|---|---|---|---|")
    for mix in MIXES:
        sizes = [72, 576, 2016] if mix == "nvl72" else [8, 64, 256, 512, 1024, 2048]
        for num_gpus in sizes:
            replicas, groups, down = instance(mix, num_gpus)
            if not replicas:
                continue
            wall, method, count, quality = run(replicas, groups, down, args.limit)
            direct = ""
            if num_gpus <= args.direct_up_to:
                d_wall, _, d_count, d_quality = run(replicas, groups, down, args.limit, DIRECT)
                direct = f"{d_wall:.2f} s, {d_count or '–'} ({d_quality or 'no placement'})"
            print(
                f"| {mix} | {num_gpus} | {len(replicas)} | {method} | {count} | {quality} | {wall:.2f} | {direct} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
