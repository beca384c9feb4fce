"""The layout dominance rules of the plan space (planner/search/pricing.py): a template is dropped only when
another (or k copies of a smaller colocated one) predicts no worse everywhere and better somewhere."""

from __future__ import annotations

import pytest

from formulations.templates import EngineSettings, Template, TemplateCoefficients
from planner.search.pricing import Census, PricedTemplate, _prune_layouts
from simulator.plan import Stage

SETTINGS = EngineSettings(256, 8192)


def _priced(
    tp: int, cap: float, *, role="colocated", energy=1.0, latency=1.0, growth=0.5, pp=1, gpu="h100-sxm"
):
    layers = [(k * 80 // pp, (k + 1) * 80 // pp) for k in range(pp)]
    stages = tuple(Stage(layers=lay, tp=tp, gpu=gpu) for lay in layers)
    gpus = tp * pp
    coeffs = TemplateCoefficients(
        capacity_rps={"all": cap},
        energy_per_request_j={"all": energy},
        idle_w=100.0 * gpus,
        usd_per_hour=3.0 * gpus,
        latency_score={"all": latency},
        latency_growth_s=growth,
    )
    return PricedTemplate(Template(stages, SETTINGS, role), coeffs, None, None, (role,))


def _kept(priced, *, loaded_latency=False):
    census = Census()
    out = _prune_layouts(priced, census, loaded_latency=loaded_latency)
    return [p.template.id for p in out], census.pruned_by


def test_two_copies_of_a_smaller_replica_replace_a_larger_one():
    small, large = _priced(4, 6.0), _priced(8, 10.0)  # 2 x 6 req/s on the same 8 GPUs beats 10
    kept, why = _kept([small, large])
    assert kept == [small.template.id]
    assert why == {"layout dominance (copies of a smaller replica)": 1}


@pytest.mark.parametrize(
    "large",
    [
        _priced(8, 13.0),  # more capacity than two copies of the small one
        _priced(8, 10.0, energy=0.8),  # less energy per request
        _priced(8, 10.0, latency=0.7),  # a faster request when idle
        _priced(8, 10.0, role="decode"),  # other role: not compared
        _priced(2, 10.0, pp=3),  # 6 GPUs: not a multiple of the small one's 4
    ],
    ids=["capacity", "energy", "latency", "role", "not-a-multiple"],
)
def test_a_larger_replica_better_somewhere_is_kept(large):
    small = _priced(4, 6.0)
    kept, _ = _kept([small, large])
    assert large.template.id in kept


def test_a_larger_domain_need_keeps_the_copies_out():
    """Copies that each need a larger NVLink domain than the replica they would replace cannot stand in for
    it: a pipeline of four tp-2 stages (8 GPUs, domains of 2) against two tp-4 replicas (domains of 4) that
    predict more capacity."""
    narrow_pipeline, big_stage = _priced(2, 12.0, pp=4), _priced(4, 10.0)
    kept, _ = _kept([narrow_pipeline, big_stage])
    assert kept == [narrow_pipeline.template.id, big_stage.template.id]


def test_latency_growth_counts_only_for_min_latency():
    small, large = _priced(4, 6.0, growth=2.0), _priced(8, 10.0, growth=0.5)
    assert _kept([small, large])[0] == [small.template.id]
    assert large.template.id in _kept([small, large], loaded_latency=True)[0]
