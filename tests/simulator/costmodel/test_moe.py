"""MoE pricing: the routed experts are one grouped GEMM, so TP and EP plans of a fine-grained MoE agree."""

from __future__ import annotations

import pytest

from simulator import catalog
from simulator.costmodel import BatchShape, build_stage_cost
from simulator.hardware import Cluster, NodeGroup
from simulator.plan import Stage
from simulator.scenario import DTypes, Engine

BATCHES = (1, 8, 32, 128)


def _expert_times(model_name: str, gpu: str, dtype: str, **cells) -> list[float]:
    model = catalog.get_model(model_name)
    g = catalog.get_gpu(gpu)
    cluster = Cluster(node_groups=[NodeGroup(gpu=gpu, nodes=1, gpus_per_node=8)])
    stage = Stage(layers=(0, model.num_layers), **cells)
    dtypes = DTypes(weights=dtype, kv_cache=dtype)
    cost = build_stage_cost(model, stage, g, cluster, dtypes, Engine(), first=True, last=True)
    out = []
    for b in BATCHES:
        ops = {c.name: c for c in cost.breakdown(BatchShape.from_requests(decode_context=[2048] * b))}
        out.append(ops["moe_experts"].time_s)
    return out


@pytest.mark.parametrize(
    ("model", "gpu", "dtype"), [("deepseek-v3", "h200-sxm", "fp8"), ("qwen3-235b-a22b", "h100-sxm", "bf16")]
)
def test_moe_decode_tp8_vs_ep8_expert_time_scales_with_batch_within_2x(model, gpu, dtype):
    """Decode at batch 1..128: expert time grows with the batch (more experts touched) under both FFN tensor
    parallelism (tp=8) and expert parallelism (tp=1, ep=8), and the two plans stay within 2x of each other."""
    tp = _expert_times(model, gpu, dtype, tp=8)
    ep = _expert_times(model, gpu, dtype, tp=1, ep=8)
    for times in (tp, ep):
        assert all(b > a for a, b in zip(times, times[1:], strict=False))
        assert times[-1] > 3 * times[0]
    for a, b in zip(tp, ep, strict=True):
        assert 0.5 < a / b < 2.0
