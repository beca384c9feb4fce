"""The planner's placement step on real scenarios: kimi-k2 / deepseek-v3 plans on 256×8 H200 and 2,048 GPUs,
GB200 NVL72 domains, the JSON it adds, and the deadline."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from formulations.placement import Placement, check_placement, node_groups_from_cluster
from planner.placement_step import place_best, place_plan, placement_replicas
from simulator.scenario import load_scenario

WORKLOAD = {
    "requests": 10,
    "arrival": {"process": "poisson", "rate": 1.0},
    "input_tokens": {"dist": "fixed", "value": 512},
    "output_tokens": {"dist": "fixed", "value": 64},
}


def _scenario(model: str, cluster, plan: dict):
    data = {
        "model": model,
        "cluster": cluster,
        "dtype": {"weights": "fp8", "kv_cache": "fp8"},
        "workload": WORKLOAD,
    }
    return load_scenario(data).with_plan(plan)


def _stage(layers, tp, ep=None):
    return {"layers": list(layers), "tp": tp, **({"ep": ep} if ep else {})}


def _check(sc, placement):
    replicas = placement_replicas(sc, sc.plan)
    p = Placement(
        placement.gpus,
        placement.cross_node_boundaries,
        placement.cross_domain_boundaries,
        placement.method,
        placement.optimal,
        placement.lower_bound,
    )
    assert check_placement(replicas, node_groups_from_cluster(sc.cluster), p) == []


@pytest.mark.solver
def test_kimi_k2_disaggregated_plan_places_on_256x8_h200_in_seconds():
    """Prefill pp2×tp8, decode tp8 ep32 (4 whole nodes) and an uneven dense-first pipeline [tp4|tp8|tp4] on
    2,048 H200s: placed, valid, proven optimal (one boundary per pp2, two per 3-stage pipeline) in seconds."""
    plan = {
        "replicas": [
            {"count": 40, "role": "prefill", "stages": [_stage((0, 31), 8, 8), _stage((31, 61), 8, 8)]},
            {"count": 16, "role": "decode", "stages": [_stage((0, 61), 8, 32)]},
            {"count": 30, "stages": [_stage((0, 3), 4), _stage((3, 32), 8, 8), _stage((32, 61), 4, 4)]},
        ]
    }
    sc = _scenario("kimi-k2", {"gpu": "h200-sxm", "nodes": 256, "gpus_per_node": 8}, plan)
    t0 = time.perf_counter()
    placement, why = place_plan(sc, sc.plan, time_limit_s=30)
    assert placement is not None, why
    assert time.perf_counter() - t0 < 5.0
    _check(sc, placement)
    assert placement.optimal and placement.cross_node_boundaries == 40 + 2 * 30
    data = placement.to_json()
    assert {
        "cross_node_boundaries",
        "replicas",
        "cross_domain_boundaries",
        "method",
        "optimal",
        "lower_bound",
    } <= set(data)
    assert len(data["replicas"]) == 40 + 16 + 30


@pytest.mark.solver
def test_deepseek_v3_mixed_plan_on_2048_gpus_packs_small_replicas_exactly():
    """deepseek-v3 tp8 replicas, pp2×tp8 and [tp2|tp2|tp2] pipelines filling 2,046 of 256×8 H200: the
    constructive placement's simple bound cannot prove its count; the exact aggregate model does, in seconds."""
    plan = {
        "replicas": [
            {"count": 120, "stages": [_stage((0, 61), 8, 8)]},
            {"count": 30, "stages": [_stage((0, 30), 8, 8), _stage((30, 61), 8, 8)]},
            {"count": 101, "stages": [_stage((0, 20), 2), _stage((20, 40), 2), _stage((40, 61), 2)]},
        ]
    }
    sc = _scenario("deepseek-v3", {"gpu": "h200-sxm", "nodes": 256, "gpus_per_node": 8}, plan)
    placement, why = place_plan(sc, sc.plan, time_limit_s=30)
    assert placement is not None, why
    _check(sc, placement)
    assert placement.optimal and placement.method == "aggregate" and placement.wall_s < 5.0


@pytest.mark.solver
def test_gb200_nvl72_tp_groups_span_trays_inside_the_rack():
    """On the shipped GB200 NVL72 rack (18 trays of 4 GPUs, one 72-GPU NVLink domain), [tp8|tp8] replicas
    cross no NVLink domain; the summary names the domain count."""
    plan = {"replicas": [{"count": 4, "stages": [_stage((0, 30), 8, 8), _stage((30, 61), 8, 8)]}]}
    sc = _scenario("deepseek-v3", "gb200-nvl72", plan)
    placement, why = place_plan(sc, sc.plan)
    assert placement is not None, why
    _check(sc, placement)
    assert placement.cross_domain_boundaries == 0 and placement.optimal
    assert all(len({n for _, n, _ in stage}) >= 2 for stages in placement.gpus.values() for stage in stages)


@pytest.mark.solver
def test_place_best_past_the_deadline_still_places_the_best_plan():
    """With the planner's deadline already passed the best plan is still placed (constructive, fast), not
    dropped for 'no plan'."""
    plan = {"replicas": [{"count": 60, "stages": [_stage((0, 30), 4), _stage((30, 61), 2)]}]}
    sc = _scenario("deepseek-v3", {"gpu": "h200-sxm", "nodes": 64, "gpus_per_node": 8}, plan)
    cand = SimpleNamespace(plan=sc.plan, name="best", feasible=True)
    result = SimpleNamespace(best=cand, candidates=[cand], scenario=sc, placement=None)
    t0 = time.monotonic()
    notes = place_best(result, deadline=t0)
    assert result.placement is not None and time.monotonic() - t0 < 1.0
    _check(sc, result.placement)
    assert result.placement.method == "constructive"
    assert all("cannot be placed" not in n for n in notes)
