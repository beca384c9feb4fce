"""Placement: the rules (distinct GPUs of the stage's type, TP groups inside a node or NVLink domain, whole nodes
for larger stages, unavailable GPUs untouched), exactness of the aggregate model against the direct one, the
time limit, named infeasibility, and scale (256×8 and 2,048 GPUs)."""

from __future__ import annotations

import random
import time
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from formulations.placement import (
    AGGREGATE,
    CONSTRUCTIVE,
    DIRECT,
    Placement,
    PlacementNodeGroup,
    PlacementReplica,
    PlacementStage,
    check_placement,
    solve_placement,
)
from formulations.placement_aggregate import solve_aggregate
from formulations.placement_layout import Layout, count_boundaries, realize, templates_of
from formulations.result import SolverOptions, Termination

OPTIONS = SolverOptions(time_limit_s=10, mip_rel_gap=0.0, threads=1, seed=0)


def _replicas(stage_lists) -> tuple[PlacementReplica, ...]:
    return tuple(
        PlacementReplica(f"r{i}", tuple(PlacementStage(n, t) for n, t in stages))
        for i, stages in enumerate(stage_lists)
    )


@st.composite
def instances(draw):
    """Small clusters (8-GPU nodes, or 4-GPU trays in 8/16-GPU NVLink domains, plus maybe an a100 group), some
    GPUs down, and replicas filling up to the free GPUs."""
    if draw(st.booleans()):
        groups = [
            PlacementNodeGroup("g", "gb200", draw(st.integers(2, 6)), 4, draw(st.sampled_from([8, 16])))
        ]
    else:
        groups = [PlacementNodeGroup("h", "h100", draw(st.integers(1, 4)), 8)]
    if draw(st.booleans()):
        groups.append(PlacementNodeGroup("a", "a100", draw(st.integers(1, 3)), draw(st.sampled_from([4, 8]))))
    slots = [(g.name, n, i) for g in groups for n in range(g.nodes) for i in range(g.gpus_per_node)]
    unavailable = frozenset(draw(st.lists(st.sampled_from(slots), max_size=len(slots) // 6)))
    free = {g.gpu_type: sum(s[0] == g.name and s not in unavailable for s in slots) for g in groups}
    types = sorted(free)
    stage = st.tuples(st.sampled_from([1, 2, 2, 3, 4, 4, 6, 8, 16]), st.sampled_from(types))
    stage_lists = draw(st.lists(st.lists(stage, min_size=1, max_size=4), min_size=1, max_size=6))
    kept, used = [], dict.fromkeys(types, 0)
    for stages in stage_lists:  # keep replicas while their GPUs fit the totals (most instances are feasible)
        need = {t: sum(n for n, tt in stages if tt == t) for t in types}
        if all(used[t] + need[t] <= free[t] for t in types):
            kept.append(stages)
            used = {t: used[t] + need[t] for t in types}
    return _replicas(kept or stage_lists[:1]), tuple(groups), unavailable


def _exact_count(result) -> int | None:
    return None if result.solution is None else result.solution.cross_domain_boundaries


@pytest.mark.solver
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_placement_invariants_on_random_instances(instance):
    """Every answer obeys every rule (check_placement), reports its own boundary counts, and bounds them
    truthfully; an infeasible answer says why."""
    replicas, groups, unavailable = instance
    result = solve_placement(replicas, groups, OPTIONS, unavailable=unavailable)
    event("placed" if result.solution else "infeasible")
    if result.solution is None:
        assert result.termination == Termination.INFEASIBLE and result.explanation
        return
    p = result.solution
    assert check_placement(replicas, groups, p, unavailable) == []
    assert result.objective == p.cross_domain_boundaries >= p.lower_bound == result.bound
    assert p.optimal == (result.termination == Termination.OPTIMAL)


@pytest.mark.solver
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_aggregate_model_is_exact_against_the_direct_model(instance):
    """The aggregate model (patterns and per-domain counts), the automatic choice and the direct per-stage
    model reach the same minimum of cross-domain boundaries; the constructive placement is never better and its
    lower bound never above it."""
    replicas, groups, unavailable = instance
    direct = solve_placement(replicas, groups, OPTIONS, unavailable=unavailable, method=DIRECT)
    if direct.termination == Termination.INFEASIBLE:
        assert solve_placement(replicas, groups, OPTIONS, unavailable=unavailable).solution is None
        return
    assert direct.is_optimal
    best = _exact_count(direct)
    event(f"{best} boundaries" if best < 3 else "3+ boundaries")
    assert (
        _exact_count(solve_placement(replicas, groups, OPTIONS, unavailable=unavailable, method=AGGREGATE))
        == best
    )
    assert _exact_count(solve_placement(replicas, groups, OPTIONS, unavailable=unavailable)) == best
    layout = Layout(groups, unavailable)
    counts = solve_aggregate(layout, templates_of(replicas), len(replicas), OPTIONS, pattern_limit=0)
    assert counts.packing == "counts" and counts.run.termination == Termination.OPTIMAL
    assert count_boundaries(layout, realize(layout, replicas, counts.sites))[1] == best
    greedy = solve_placement(replicas, groups, OPTIONS, unavailable=unavailable, method=CONSTRUCTIVE)
    if greedy.solution is not None:
        assert greedy.objective >= best >= greedy.bound


def test_check_placement_catches_each_broken_rule():
    """The checker the invariant tests rely on flags a used-down GPU, a reused GPU, a wrong GPU type and a stage
    split across nodes."""
    groups = (PlacementNodeGroup("h", "h100", 2, 8), PlacementNodeGroup("a", "a100", 1, 8))
    replicas = _replicas([[(4, "h100"), (4, "h100")]])

    def broken(stage0, stage1, down=frozenset()):
        p = Placement({"r0": [stage0, stage1]}, 0, 0, CONSTRUCTIVE, True, 0)
        return " ".join(check_placement(replicas, groups, p, down))

    good0, good1 = [("h", 0, i) for i in range(4)], [("h", 0, i) for i in range(4, 8)]
    assert broken(good0, good1) == ""
    assert "unavailable" in broken(good0, good1, frozenset({("h", 0, 5)}))
    assert "used twice" in broken(good0, good0)
    assert "not a h100" in broken(good0, [("a", 0, i) for i in range(4)])
    assert "several scale-up domains" in broken(good0, [("h", 0, 4), ("h", 0, 5), ("h", 1, 0), ("h", 1, 1)])


@pytest.mark.solver
def test_placement_prefers_pipeline_neighbours_on_one_node():
    """Two 4-GPU stages of one replica share a node when one is free, so no boundary crosses nodes."""
    groups = (PlacementNodeGroup("h", "h100", 2, 8),)
    replicas = _replicas([[(4, "h100"), (4, "h100")]] * 2)
    result = solve_placement(replicas, groups, OPTIONS)
    assert result.solution.cross_node_boundaries == 0 and result.is_optimal


@pytest.mark.solver
def test_exact_model_beats_the_greedy_cut_and_says_so():
    """[2|2|6] and [6] on two 8-GPU nodes: the greedy cut [2|2]+[6] cannot pack (6, 6, 4 into 8, 8) and splits
    twice; the exact model cuts [2]+[2|6] and pairs [2] with [6]: one boundary, proven. The greedy answer states
    its quality (2 against a lower bound of 1)."""
    groups = (PlacementNodeGroup("h", "h100", 2, 8),)
    replicas = _replicas([[(2, "h100"), (2, "h100"), (6, "h100")], [(6, "h100")]])
    greedy = solve_placement(replicas, groups, OPTIONS, method=CONSTRUCTIVE)
    assert (greedy.objective, greedy.bound, greedy.solution.optimal) == (2, 1, False)
    result = solve_placement(replicas, groups, OPTIONS)
    assert check_placement(replicas, groups, result.solution) == []
    assert result.objective == 1 and result.is_optimal and result.solution.method == "aggregate"


def test_placement_infeasible_explains_largest_free_node():
    """An 8-GPU stage with 2 GPUs down on every node is refused with the most free GPUs on any node."""
    groups = (PlacementNodeGroup("h", "h100-sxm", 2, 8),)
    unavailable = frozenset({("h", 0, 0), ("h", 0, 1), ("h", 1, 2), ("h", 1, 3)})
    result = solve_placement(_replicas([[(8, "h100-sxm")]]), groups, OPTIONS, unavailable=unavailable)
    assert result.termination == Termination.INFEASIBLE
    assert "8 free GPUs" in result.explanation[0] and "is 6" in result.explanation[0]


def test_placement_infeasible_packing_is_proven_not_timed_out():
    """681 stages of 3 GPUs on 256 nodes of 8 (2,043 of 2,048 GPUs): only two fit a node, and the aggregate
    model proves it at once instead of timing out."""
    groups = (PlacementNodeGroup("h", "h200", 256, 8),)
    result = solve_placement(_replicas([[(3, "h200")] * 3] * 227), groups, OPTIONS)
    assert result.termination == Termination.INFEASIBLE and "no packing" in result.explanation[0]
    assert result.wall_s < 5


@pytest.mark.solver
def test_placement_multi_node_stage_uses_whole_nodes():
    """A 16-GPU stage on 8-GPU nodes takes two whole nodes."""
    groups = (PlacementNodeGroup("h", "h100", 3, 8),)
    result = solve_placement(_replicas([[(16, "h100")]]), groups, OPTIONS)
    assert {n for _, n, _ in result.solution.gpus["r0"][0]} in ({0, 1}, {1, 2}, {0, 2})
    assert check_placement(_replicas([[(16, "h100")]]), groups, result.solution) == []


# ---- NVLink domains larger than a node (GB200 NVL72) --------------------------------------------------------

NVL72 = PlacementNodeGroup("main", "gb200", 18, 4, 72)


@pytest.mark.solver
def test_nvl72_tp_group_spans_trays_inside_the_domain():
    """On one NVL72 rack (18 trays of 4), tp8 and tp6 stages span trays (not allowed on plain 4-GPU nodes) and
    a [tp8|tp8] pipeline crosses no NVLink domain."""
    replicas = _replicas([[(8, "gb200"), (8, "gb200")], [(6, "gb200")] * 3, [(36, "gb200")]])
    result = solve_placement(replicas, (NVL72,), OPTIONS)
    p = result.solution
    assert check_placement(replicas, (NVL72,), p) == []
    assert p.cross_domain_boundaries == 0 and result.is_optimal
    assert len({n for _, n, _ in p.gpus["r0"][0]}) == 2  # 8 GPUs on two trays
    # The same replicas on 18 plain 4-GPU nodes: an 8-GPU stage takes two whole nodes and a 6-GPU one cannot sit.
    plain = PlacementNodeGroup("main", "gb200", 18, 4)
    refused = solve_placement(replicas, (plain,), OPTIONS)
    assert refused.termination == Termination.INFEASIBLE
    assert any("6 GPUs exceed a node of 4" in why for why in refused.explanation)


@pytest.mark.solver
def test_nvl_domains_keep_pipelines_inside_one_domain():
    """Two 8-GPU NVLink domains of two 4-GPU trays: [4|4] replicas never straddle a domain, so no boundary
    crosses one, although half of them cross trays."""
    groups = (PlacementNodeGroup("g", "gb200", 8, 4, 8),)
    replicas = _replicas([[(4, "gb200"), (4, "gb200")]] * 4)
    result = solve_placement(replicas, groups, OPTIONS)
    p = result.solution
    assert check_placement(replicas, groups, p) == []
    assert p.cross_domain_boundaries == 0 and p.cross_node_boundaries == 4


def test_nvl_domain_infeasibility_names_the_domain():
    """A tp8 stage when every 8-GPU NVLink domain has a GPU down names the domain and its most free GPUs."""
    groups = (PlacementNodeGroup("g", "gb200", 4, 4, 8),)
    down = frozenset({("g", 0, 0), ("g", 2, 1)})
    result = solve_placement(_replicas([[(8, "gb200")]]), groups, OPTIONS, unavailable=down)
    assert "needs a NVLink domain with 8 free GPUs" in result.explanation[0]
    assert "is 7" in result.explanation[0]


# ---- time limit: the best found, never "no placement" because the clock ran out ------------------------------


def _tight_instance():
    """341 [2|2|2] replicas on 256×8 (2,046 of 2,048 GPUs): the greedy placement is optimal here (170 cuts) but
    its simple bound (0) cannot prove it; the exact model can."""
    return _replicas([[(2, "h200")] * 3] * 341), (PlacementNodeGroup("h", "h200", 256, 8),)


@pytest.mark.solver
def test_placement_past_deadline_returns_constructive_placement_with_note():
    replicas, groups = _tight_instance()
    t0 = time.monotonic()
    result = solve_placement(replicas, groups, OPTIONS, deadline=t0)
    assert time.monotonic() - t0 < 1.0
    p = result.solution
    assert p.method == CONSTRUCTIVE and not p.optimal and "no time left" in p.note
    assert result.termination == Termination.TIME_LIMIT and check_placement(replicas, groups, p) == []
    # ~2 s on an idle core; the generous limit keeps a heavily loaded machine from turning it into a time-out
    exact = solve_placement(replicas, groups, replace(OPTIONS, time_limit_s=120))
    assert exact.is_optimal and exact.solution.lower_bound == exact.objective == 170


@pytest.mark.solver
def test_placement_found_by_exact_model_when_greedy_fails_even_past_deadline():
    """Stages 3,3,2,2,2,2 into two nodes with 7 free GPUs: best-fit decreasing gets stuck, the exact model
    packs {3,2,2}+{3,2,2}; out of time it still gets its short minimum instead of answering 'no placement'."""
    groups = (PlacementNodeGroup("h", "h100", 2, 8),)
    down = frozenset({("h", 0, 7), ("h", 1, 7)})
    replicas = _replicas([[(3, "h100")], [(3, "h100")]] + [[(2, "h100")]] * 4)
    assert solve_placement(replicas, groups, OPTIONS, unavailable=down, method=CONSTRUCTIVE).solution is None
    result = solve_placement(replicas, groups, OPTIONS, unavailable=down, deadline=time.monotonic())
    assert check_placement(replicas, groups, result.solution, down) == []


def _full_nvl72_racks():
    """14 NVL72 racks 99.9% filled by long pipelines of 1-4 GPU stages, 3% of GPUs down: an exact answer takes
    CP-SAT longer than a second."""
    rng = random.Random(3)
    groups = (PlacementNodeGroup("nvl", "gb200", 256, 4, 72),)
    down = frozenset(("nvl", n, i) for n in range(256) for i in range(4) if rng.random() < 0.03)
    shapes = [[(rng.choice([1, 2, 3, 4]), "gb200") for _ in range(rng.randint(2, 16))] for _ in range(30)]
    chosen, used = [], 0
    while True:
        shape = rng.choice(shapes)
        if used + sum(n for n, _ in shape) > 0.999 * (1024 - len(down)):
            return _replicas(chosen), groups, down
        chosen.append(shape)
        used += sum(n for n, _ in shape)


@pytest.mark.solver
def test_time_limit_holds_and_the_best_placement_found_is_returned():
    """Asked for 1 s on an instance CP-SAT cannot finish in that time, the call returns within the limit (plus
    model-building slack) a valid placement, not proven optimal, with its lower bound and why."""
    replicas, groups, down = _full_nvl72_racks()
    solve_placement(replicas[:2], groups, OPTIONS, method=DIRECT)  # import ortools outside the timing
    t0 = time.monotonic()
    result = solve_placement(replicas, groups, SolverOptions(time_limit_s=1.0), unavailable=down)
    assert time.monotonic() - t0 < 2.0  # slack for building the model on a loaded machine
    p = result.solution
    assert check_placement(replicas, groups, p, down) == []
    assert not p.optimal and p.lower_bound <= p.cross_domain_boundaries and "CP-SAT" in p.note
    assert result.termination != Termination.OPTIMAL and result.wall_s < 2.0


# ---- scale ----------------------------------------------------------------------------------------------------


def _h200(nodes: int) -> tuple[PlacementNodeGroup, ...]:
    return (PlacementNodeGroup("main", "h200-sxm", nodes, 8),)


def _place_timed(replicas, groups, unavailable=frozenset(), limit_s=10.0):
    t0 = time.perf_counter()
    result = solve_placement(replicas, groups, SolverOptions(time_limit_s=limit_s), unavailable=unavailable)
    wall = time.perf_counter() - t0
    assert result.solution is not None, result.explanation
    assert check_placement(replicas, groups, result.solution, unavailable) == []
    return result, wall


@pytest.mark.solver
def test_256_nodes_of_h200_place_in_well_under_a_second():
    """128 [tp8|tp8] replicas (deepseek-v3-like pp2) on 256×8 H200: the old per-node CP-SAT model timed out
    here; now one boundary per replica, proven optimal."""
    result, wall = _place_timed(_replicas([[(8, "h200-sxm")] * 2] * 128), _h200(256))
    assert result.is_optimal and result.objective == 128
    assert wall < 1.0


@pytest.mark.solver
def test_kimi_and_deepseek_like_plans_on_256x8_and_2048_gpus():
    """Mixed prefill/decode/colocated shapes of kimi-k2 and deepseek-v3 (whole-node tp16/ep32 stages, uneven
    [tp4|tp8|tp4] pipelines with dense-first stages, tp4 pairs) on 256×8 H200, with 2% of GPUs down, and on 2,048
    GPUs of GB200 NVL72 racks: placed, valid and proven optimal in a few seconds."""
    h = "h200-sxm"
    kimi = (
        [[(8, h), (8, h)]] * 40  # prefill pp2 × tp8 ep8
        + [[(32, h)]] * 16  # decode tp8 ep32: four whole nodes
        + [[(4, h), (8, h), (4, h)]] * 30  # uneven pipeline: dense-first tp4 stage
        + [[(4, h), (4, h)]] * 25
    )
    rng = random.Random(7)
    down = frozenset(("main", n, i) for n in range(256) for i in range(8) if rng.random() < 0.02)
    result, wall = _place_timed(_replicas(kimi), _h200(256), down)
    assert result.is_optimal and wall < 5.0
    deepseek = [[(8, h)]] * 100 + [[(16, h)]] * 30 + [[(2, h)] * 4] * 70 + [[(1, h), (2, h)]] * 60
    result, wall = _place_timed(_replicas(deepseek), _h200(256))
    assert result.is_optimal and wall < 5.0
    racks = (PlacementNodeGroup("nvl", "gb200", 512, 4, 72),)
    gb = "gb200"
    shapes = [[(8, gb), (8, gb)]] * 50 + [[(4, gb)] * 4] * 60 + [[(6, gb), (6, gb)]] * 20
    result, wall = _place_timed(_replicas(shapes), racks)
    assert result.solution.cross_domain_boundaries == result.bound and wall < 5.0
