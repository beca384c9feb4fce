"""Plan parsing: the shorthand and the full form, checked against the model and the cluster."""

from __future__ import annotations

import pytest

from simulator import catalog
from simulator.errors import InputError
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import even_layer_split, parse_plan


def _cluster(gpus: int = 8, gpu: str = "h100-sxm") -> Cluster:
    return Cluster(node_groups=[NodeGroup(gpu=gpu, nodes=max(1, gpus // 8), gpus_per_node=min(gpus, 8))])


def test_plan_shorthand_expands_to_replicas_and_even_stages():
    """`tp=4,pp=2,dp=2` gives 2 replicas of 2 stages of 4 GPUs covering all layers."""
    model = catalog.get_model("llama-3.1-70b")
    plan = parse_plan("tp=4,pp=2,dp=2", model, _cluster(16))
    (group,) = plan.replicas
    assert group.count == 2
    assert [s.layers for s in group.stages] == [(0, 40), (40, 80)]
    assert all(s.attention.tp == 4 and s.ffn.tp == 4 for s in group.stages)
    assert plan.num_gpus == 16


def test_plan_shorthand_ep_larger_than_tp_uses_attention_dp():
    """`tp=2,ep=8` on an MoE model spans 8 GPUs: attention dp 4 × tp 2, experts over 8."""
    model = catalog.get_model("mixtral-8x7b")
    plan = parse_plan("tp=2,ep=8", model, _cluster(8))
    stage = plan.replicas[0].stages[0]
    assert (stage.attention.tp, stage.attention.dp, stage.ffn.tp, stage.ffn.ep) == (2, 4, 1, 8)
    assert stage.num_gpus == 8


def test_plan_full_form_uneven_layers_and_cells():
    """The full form accepts uneven layer ranges and different attention/FFN splits."""
    model = catalog.get_model("deepseek-v3")
    spec = {
        "replicas": [
            {
                "count": 1,
                "stages": [
                    {"layers": [0, 30], "attention": {"tp": 8}, "ffn": {"ep": 8}},
                    {"layers": [30, 61], "attention": {"tp": 2, "dp": 4}, "ffn": {"tp": 1, "ep": 8}},
                ],
            }
        ]
    }
    plan = parse_plan(spec, model, _cluster(16, "h200-sxm"))
    assert [s.num_layers for s in plan.replicas[0].stages] == [30, 31]
    assert plan.replicas[0].stages[0].ffn.tp == 1


def test_plan_heterogeneous_cluster_needs_gpu_per_stage():
    """On a cluster with two GPU types a stage without `gpu` is rejected, naming the field."""
    model = catalog.get_model("llama-3.1-8b")
    cluster = catalog.get_cluster("hetero-h100-a100")
    with pytest.raises(InputError) as exc:
        parse_plan({"replicas": [{"stages": [{"layers": [0, 32], "tp": 1}]}]}, model, cluster)
    assert exc.value.field == "plan.replicas[0].stages[0].gpu"
    plan = parse_plan(
        {
            "replicas": [
                {
                    "stages": [
                        {"layers": [0, 16], "gpu": "h100-sxm"},
                        {"layers": [16, 32], "gpu": "a100-sxm-80gb"},
                    ]
                }
            ]
        },
        model,
        cluster,
    )
    assert plan.gpus_by_type("") == {"h100-sxm": 1, "a100-sxm-80gb": 1}


def test_even_layer_split_sizes_differ_by_at_most_one():
    """Even splits cover every layer once and differ by at most one layer."""
    for layers in (7, 61, 80, 126):
        for pp in (1, 2, 3, 4, 7):
            bounds = even_layer_split(layers, pp)
            sizes = [b - a for a, b in bounds]
            assert bounds[0][0] == 0 and bounds[-1][1] == layers
            assert max(sizes) - min(sizes) <= 1
            assert all(bounds[i][1] == bounds[i + 1][0] for i in range(pp - 1))


def test_plan_kv_heads_tp_must_divide_or_be_multiple():
    """tp=16 on 8 KV heads is allowed (heads replicated) but tp must divide the query heads."""
    model = catalog.get_model("llama-3.1-70b")
    parse_plan("tp=16", model, _cluster(16))
    with pytest.raises(InputError, match="divide the model's 64 attention heads"):
        parse_plan("tp=128", model, _cluster(128))


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("tp=2,tp=4", "tp is given twice"),
        ("tp=2,pp=2,pp=1", "pp is given twice"),
        ({"replicas": [{"role": "prefill", "stages": [{"layers": [0, 32]}]}]}, "no decode replicas"),
        ({"replicas": [{"role": "decode", "stages": [{"layers": [0, 32]}]}]}, "only decode replicas"),
        ({"replicas": [{"count": "2", "stages": [{"layers": [0, 32]}]}]}, "valid integer"),
        ({"replicas": [{"stages": [{"layers": [0, 32], "tp": True}]}]}, "valid integer"),
    ],
)
def test_plan_refuses_repeated_keys_roles_without_partner_and_coercions(spec, text):
    """A repeated shorthand key, a P/D plan missing one side, strings or booleans for counts."""
    with pytest.raises(InputError, match=text):
        parse_plan(spec, catalog.get_model("llama-3.1-8b"), _cluster())


def test_plan_layers_accept_a_yaml_list():
    plan = parse_plan(
        {"replicas": [{"stages": [{"layers": [0, 32], "tp": 2}]}]},
        catalog.get_model("llama-3.1-8b"),
        _cluster(),
    )
    assert plan.replicas[0].stages[0].layers == (0, 32)
