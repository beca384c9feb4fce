"""Placement (CP-SAT): map chosen replicas onto concrete (node group, node, GPU index).

Rules: a stage of s GPUs sits on one node when s ≤ GPUs per node, otherwise on s / gpus_per_node whole nodes
(s must then be a multiple of it); the node's GPU type must be the stage's; unavailable GPUs are never used.
Objective: minimize cross-node stage boundaries (pipeline neighbours on different nodes; a boundary next to a
multi-node stage always counts as crossing). GPU indices are assigned after the solve, lowest free index first, so a node's
stages take contiguous free GPUs where possible.

Simple necessary conditions are checked first, so an infeasible placement names its reason (e.g. "stage of
8 h100-sxm GPUs needs a node with 8 free GPUs; the most free on any h100-sxm node is 6 ...").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from formulations.cpsat_util import solve_cpsat
from formulations.result import SolutionStatus, SolveResult, SolverOptions, Termination, relative_gap


@dataclass(frozen=True, slots=True)
class PlacementStage:
    num_gpus: int
    gpu_type: str


@dataclass(frozen=True, slots=True)
class PlacementReplica:
    id: str
    stages: tuple[PlacementStage, ...]


@dataclass(frozen=True, slots=True)
class PlacementNodeGroup:
    name: str
    gpu_type: str
    nodes: int
    gpus_per_node: int


GpuSlot = tuple[str, int, int]  # (node group, node, gpu index)


@dataclass(frozen=True, slots=True)
class Placement:
    gpus: dict[str, list[list[GpuSlot]]]  # replica id -> stage -> GPUs
    cross_node_boundaries: int


def node_groups_from_cluster(cluster) -> tuple[PlacementNodeGroup, ...]:
    """Plain placement data from a `simulator.hardware.Cluster`."""
    return tuple(PlacementNodeGroup(g.name, g.gpu, g.nodes, g.gpus_per_node) for g in cluster.node_groups)


def _free_gpus(groups, unavailable) -> dict[tuple[str, int], list[int]]:
    return {
        (g.name, n): [i for i in range(g.gpus_per_node) if (g.name, n, i) not in unavailable]
        for g in groups
        for n in range(g.nodes)
    }


def explain_placement_infeasibility(
    replicas: Sequence[PlacementReplica],
    groups: Sequence[PlacementNodeGroup],
    unavailable: frozenset[GpuSlot] = frozenset(),
) -> tuple[str, ...]:
    """Necessary conditions, each violated one as a sentence (empty when all hold)."""
    free = _free_gpus(groups, unavailable)
    gtype = {g.name: g for g in groups}
    reasons = []
    need_by_type: dict[str, int] = {}
    for r in replicas:
        for k, s in enumerate(r.stages):
            need_by_type[s.gpu_type] = need_by_type.get(s.gpu_type, 0) + s.num_gpus
            nodes = [(key, len(v)) for key, v in free.items() if gtype[key[0]].gpu_type == s.gpu_type]
            if not nodes:
                reasons.append(f"replica {r.id} stage {k} needs {s.gpu_type} GPUs but no node group has them")
                continue
            per_node = gtype[nodes[0][0][0]].gpus_per_node
            if s.num_gpus <= per_node:
                best = max(n for _, n in nodes)
                if best < s.num_gpus:
                    reasons.append(
                        f"replica {r.id} stage {k}: a stage of {s.num_gpus} {s.gpu_type} GPUs needs a "
                        f"node with {s.num_gpus} free GPUs; the most free on any {s.gpu_type} node is "
                        f"{best} after excluding unavailable GPUs"
                    )
            else:
                whole = sum(1 for key, n in nodes if n == gtype[key[0]].gpus_per_node)
                if s.num_gpus % per_node:
                    reasons.append(
                        f"replica {r.id} stage {k}: {s.num_gpus} GPUs exceed a node of {per_node} and "
                        f"are not a whole number of nodes"
                    )
                elif whole < s.num_gpus // per_node:
                    reasons.append(
                        f"replica {r.id} stage {k}: a stage of {s.num_gpus} {s.gpu_type} GPUs needs "
                        f"{s.num_gpus // per_node} fully free nodes; only {whole} are"
                    )
    for gpu_type, need in need_by_type.items():
        have = sum(len(v) for key, v in free.items() if gtype[key[0]].gpu_type == gpu_type)
        if need > have:
            reasons.append(f"the replicas need {need} {gpu_type} GPUs but only {have} are available")
    return tuple(reasons)


def build_placement(
    replicas: Sequence[PlacementReplica],
    groups: Sequence[PlacementNodeGroup],
    unavailable: frozenset[GpuSlot] = frozenset(),
):
    """The CP-SAT model: `on[r, k, node]` = stage k of replica r uses `node`; `same[r, k]` = stages k and k+1
    share a node."""
    from ortools.sat.python import cp_model

    free = _free_gpus(groups, unavailable)
    gtype = {g.name: g for g in groups}
    m = cp_model.CpModel()
    on: dict[tuple[int, int, tuple[str, int]], object] = {}
    use_on_node: dict[tuple[str, int], list] = {key: [] for key in free}
    for ri, r in enumerate(replicas):
        for k, s in enumerate(r.stages):
            candidates = [key for key in free if gtype[key[0]].gpu_type == s.gpu_type]
            per_node = gtype[candidates[0][0]].gpus_per_node if candidates else s.num_gpus
            nodes_needed = 1 if s.num_gpus <= per_node else s.num_gpus // per_node
            gpus_each = s.num_gpus if nodes_needed == 1 else per_node
            lits = []
            for key in candidates:
                if len(free[key]) < gpus_each:
                    continue
                lit = m.new_bool_var(f"on_{r.id}_{k}_{key[0]}_{key[1]}")
                on[ri, k, key] = lit
                use_on_node[key].append((gpus_each, lit))
                lits.append(lit)
            # Each stage sits on exactly `nodes_needed` nodes of its GPU type (1, or whole nodes).
            m.add(sum(lits) == nodes_needed)
    # A node's stages fit its free GPUs: Σ_stages gpus · on ≤ free GPUs.
    for key, uses in use_on_node.items():
        if uses:
            m.add(sum(g * lit for g, lit in uses) <= len(free[key]))
    # same[r,k] ⇒ stages k and k+1 of replica r share some node (only possible for single-node stages).
    same = []
    for ri, r in enumerate(replicas):
        for k in range(len(r.stages) - 1):
            a, b = r.stages[k], r.stages[k + 1]
            shared = [key for key in free if (ri, k, key) in on and (ri, k + 1, key) in on]
            single = all(s.num_gpus <= gtype[shared[0][0]].gpus_per_node for s in (a, b)) if shared else False
            lit = m.new_bool_var(f"same_{r.id}_{k}")
            if not single:
                m.add(lit == 0)
            else:
                both = []
                for key in shared:
                    x = m.new_bool_var(f"both_{r.id}_{k}_{key[0]}_{key[1]}")
                    m.add_implication(x, on[ri, k, key])
                    m.add_implication(x, on[ri, k + 1, key])
                    both.append(x)
                m.add(lit <= sum(both))
            same.append(lit)
    num_boundaries = sum(len(r.stages) - 1 for r in replicas)
    # Minimize cross-node boundaries = boundaries − Σ same.
    m.minimize(num_boundaries - sum(same) if same else 0)
    return m, on


def solve_placement(
    replicas: Sequence[PlacementReplica],
    groups: Sequence[PlacementNodeGroup],
    options: SolverOptions,
    *,
    unavailable: frozenset[GpuSlot] = frozenset(),
) -> SolveResult[Placement]:
    t0 = time.perf_counter()
    reasons = explain_placement_infeasibility(replicas, groups, unavailable)
    if reasons:
        return SolveResult.infeasible(time.perf_counter() - t0, *reasons, log="necessary conditions failed")
    m, on = build_placement(replicas, groups, unavailable)
    run = solve_cpsat(m, options)
    wall = time.perf_counter() - t0
    if not run.has_incumbent:
        why = (
            (
                "no packing of the stages into the free GPUs of each node exists (bin packing is infeasible although "
                "every stage fits some node and the totals suffice)",
            )
            if run.termination == Termination.INFEASIBLE
            else (f"CP-SAT stopped without a placement ({run.termination})",)
        )
        return SolveResult(
            run.termination, SolutionStatus.NO_SOLUTION, None, None, None, wall, run.log, None, why
        )
    free = _free_gpus(groups, unavailable)
    next_free = {key: 0 for key in free}
    out: dict[str, list[list[GpuSlot]]] = {}
    for ri, r in enumerate(replicas):
        stages = []
        for k, s in enumerate(r.stages):
            slots: list[GpuSlot] = []
            nodes = sorted(
                key for (rj, kk, key), lit in on.items() if rj == ri and kk == k and run.solver.value(lit)
            )
            each = s.num_gpus // len(nodes)
            for key in nodes:
                idx = free[key][next_free[key] : next_free[key] + each]
                next_free[key] += each
                slots += [(key[0], key[1], i) for i in idx]
            stages.append(slots)
        out[r.id] = stages
    obj = round(run.objective)
    status = SolutionStatus.OPTIMAL if run.termination == Termination.OPTIMAL else SolutionStatus.FEASIBLE
    return SolveResult(
        run.termination,
        status,
        float(obj),
        run.bound,
        relative_gap(obj, run.bound),
        wall,
        run.log,
        Placement(out, obj),
    )
