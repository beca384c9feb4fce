"""Benchmark (not a test): templates + master MILP for llama-3.1-70b on 4×8 h100-sxm and kimi-k2 on 64×8 h200-sxm
plus a b200 node group (mixed GPU types). Targets: ≤ 10 s and ≤ 60 s. Run: python bench/bench_formulations.py

Coefficients come from `analytic_capacity` with the bench's stand-in step time (a roofline from Model numbers and
GPU peaks, *not* the cost model): per stage max(2·active_params·tokens / (peak·0.7·g), (weights + KV read) bytes /
(bw·0.85·g)), summed over the replica's stages.
"""

from __future__ import annotations

import time

from formulations.master import (
    Budgets,
    DomainPool,
    MasterProblem,
    MasterTemplate,
    WorkloadClass,
    solve_master,
)
from formulations.result import SolverOptions
from formulations.templates import (
    EngineSettings,
    TemplateCoefficients,
    analytic_capacity,
    enumerate_structures,
    stage_weight_bytes_per_gpu,
)
from simulator import catalog
from simulator.hardware import GPU, Cluster, NodeGroup, PeakRates

CLASSES = (("chat", 1024, 256, 2.0, 0.05), ("summarize", 4096, 128, 4.0, 0.08))  # id, in, out, ttft_s, tpot_s


def get_gpu(name: str) -> GPU:
    try:
        return catalog.get_gpu(name)
    except Exception:  # the hardware catalog may not exist yet: datasheet stand-ins
        spec = {
            "h100-sxm": (989, 1979, 80, 3.35, 700, 3.0),
            "h200-sxm": (989, 1979, 141, 4.8, 700, 3.8),
            "b200": (2250, 4500, 180, 8.0, 1000, 6.0),
        }[name]
        return GPU(
            name=name,
            peak_tflops=PeakRates(bf16=spec[0], fp16=spec[0], fp8=spec[1]),
            memory_gib=spec[2],
            memory_bandwidth_tbps=spec[3],
            scale_up_bandwidth_gbps=450,
            scale_up_fabric="nvlink4-nvswitch",
            num_sms=132,
            tdp_w=spec[4],
            idle_w=spec[4] * 0.15,
            price_usd_per_hour=spec[5],
        )


def coefficients(model, template, gpus, dtype="bf16") -> TemplateCoefficients:
    stages = template.stages
    weights = [
        stage_weight_bytes_per_gpu(model, s, i == 0, i == len(stages) - 1, dtype)
        for i, s in enumerate(stages)
    ]
    kv_per_token = [
        s.num_layers * model.kv_bytes_per_token_per_layer(dtype) / min(s.attention.tp, model.num_kv_heads)
        for s in stages
    ]
    kv_tokens = min(
        (gpus[s.gpu].memory_bytes * 0.9 - w) / kv
        for s, w, kv in zip(stages, weights, kv_per_token, strict=True)
    )
    kv_tokens *= min(s.attention.dp for s in stages)

    def step(prefill_tokens, num_decode, context):
        total = 0.0
        for s, w, kv in zip(stages, weights, kv_per_token, strict=True):
            g = gpus[s.gpu]
            active = sum(model.layer_active_params(i) for i in range(*s.layers))
            flops = 2.0 * active * (prefill_tokens + num_decode) / s.num_gpus
            bytes_ = w + kv * context / s.num_gpus * s.attention.tp
            total += max(
                flops / (g.peak_flops(dtype) * 0.7), bytes_ / (g.memory_bandwidth_bytes_per_s * 0.85)
            )
        return total

    caps, energy, latency = {}, {}, {}
    power = sum(gpus[s.gpu].tdp_w * s.num_gpus for s in stages)
    for cid, n_in, n_out, ttft, tpot in CLASSES:
        est = analytic_capacity(step, kv_tokens, n_in, n_out, ttft, tpot, template.max_num_seqs)
        if est.requests_per_s > 0:
            caps[cid] = est.requests_per_s
            energy[cid] = power * 0.85 / est.requests_per_s  # active share of TDP per request at capacity
            latency[cid] = est.ttft_s + n_out * est.step_time_s
    idle = sum(gpus[s.gpu].idle_w * s.num_gpus for s in stages)
    usd = sum(gpus[s.gpu].price_usd_per_hour * s.num_gpus for s in stages)
    return TemplateCoefficients(caps, energy, idle, usd, latency)


def run(name, model, cluster, demand, objective, **enum_kw):
    gpus = {g.gpu: get_gpu(g.gpu) for g in cluster.node_groups}
    t0 = time.perf_counter()
    templates = enumerate_structures(model, cluster, gpus, **enum_kw)
    domain = {g.gpu: g.domain_gpus for g in cluster.node_groups}
    columns = []
    for t in templates:
        c = coefficients(model, t, gpus)
        if c.capacity_rps:
            columns.append(MasterTemplate(t.id, t.gpus_by_type, c, t.domain_need_by_type(domain)))
    t_enum = time.perf_counter() - t0
    pools = tuple(
        DomainPool(g.gpu, g.domain_gpus, g.num_gpus // g.domain_gpus, g.name) for g in cluster.node_groups
    )
    classes = tuple(WorkloadClass(cid, demand[cid], n_in + n_out) for cid, n_in, n_out, _, _ in CLASSES)
    problem = MasterProblem(tuple(columns), classes, pools, Budgets(), objective, headroom=0.9)
    options = SolverOptions(time_limit_s=55, mip_rel_gap=1e-4, threads=4, seed=0)
    result = solve_master(problem, options, explain_infeasible=False)
    print(
        f"{name}: {len(templates)} structures, {len(columns)} columns with capacity; enumerate+coefficients "
        f"{t_enum:.2f} s; master {result.wall_s:.2f} s, {result.termination}, objective {result.objective}, "
        f"bound {result.bound}, gap {result.gap}; total {t_enum + result.wall_s:.2f} s"
    )
    if result.has_solution:
        for tid, n in result.solution.counts.items():
            print(f"    {n} x {tid}")


def main():
    llama = catalog.get_model("llama-3.1-70b")
    cluster = Cluster(name="4x8-h100", node_groups=[NodeGroup(gpu="h100-sxm", nodes=4, gpus_per_node=8)])
    grid = tuple(EngineSettings(seqs, tokens) for seqs, tokens in ((128, 8192), (256, 8192), (512, 16384)))
    run(
        "llama-3.1-70b / 4x8 h100-sxm (max_goodput)",
        llama,
        cluster,
        {"chat": 40.0, "summarize": 10.0},
        "max_goodput",
        max_pp=4,
        settings=grid,
    )
    run(
        "llama-3.1-70b / 4x8 h100-sxm (min_cost)",
        llama,
        cluster,
        {"chat": 10.0, "summarize": 2.0},
        "min_cost",
        max_pp=4,
        settings=grid,
    )
    kimi = catalog.get_model("kimi-k2")
    mixed = Cluster(
        name="64x8-h200+16x8-b200",
        node_groups=[
            NodeGroup(name="h200", gpu="h200-sxm", nodes=64),
            NodeGroup(name="b200", gpu="b200", nodes=16),
        ],
    )
    run(
        "kimi-k2 / 64x8 h200-sxm + 16x8 b200 (max_goodput, mixed)",
        kimi,
        mixed,
        {"chat": 200.0, "summarize": 50.0},
        "max_goodput",
        max_pp=8,
        allow_mixed_gpus=True,
        settings=grid,
    )


if __name__ == "__main__":
    main()
