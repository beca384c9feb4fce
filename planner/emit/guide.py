"""The README.md written into an emit directory: the plan, where each replica runs, how to launch it per
engine, what was skipped and why, and how to benchmark it."""

from __future__ import annotations

from planner.emit.artifacts import EmittedFile, EngineOutput
from planner.emit.kubernetes import NODE_GROUP_LABEL, NODE_LABEL
from planner.emit.layout import Layout

TITLES = {
    "vllm": "vLLM",
    "sglang": "SGLang",
    "trtllm": "TensorRT-LLM",
    "dynamo": "NVIDIA Dynamo (Kubernetes graph, vLLM workers)",
}


def readme(
    layout: Layout,
    outputs: dict[str, EngineOutput],
    skipped: dict[str, str],
    warnings: list[str],
    endpoints: list[str],
    files: list[EmittedFile],
) -> str:
    sc = layout.scenario
    lines = [
        f"# Deployment of `{layout.plan.label()}` for {sc.name}",
        "",
        f"Model `{layout.model_id}` ({sc.model.name}), {layout.plan.num_gpus} GPUs, engine settings as simulated "
        f"(kind {layout.knobs.kind}: max_num_seqs {layout.knobs.max_num_seqs}, max_num_batched_tokens "
        f"{layout.knobs.max_num_batched_tokens}, chunked prefill {'on' if layout.knobs.enable_chunked_prefill else 'off'}, "
        f"memory fraction {layout.knobs.gpu_memory_fraction:g}); `plan.yaml` re-simulates it with `apex simulate`.",
        "",
        "Written by `apex emit`. Every flag was checked against the documented flags of the engine version named "
        "below (tables in `planner/emit/flags/`). Node addresses come from `hosts.env`.",
        "",
        "## Replicas",
        "",
        "| replica | role | GPUs | where (node: GPU indices) | serves |",
        "|---|---|---|---|---|",
    ]
    for r in layout.replicas:
        where = "; ".join(f"{n.label}: {','.join(map(str, n.gpus))}" for n in r.nodes)
        lines.append(f"| {r.rid} | {r.role} | {r.num_gpus} | {where} | port {r.port} on {r.head.label} |")
    lines += ["", "## Launch", ""]
    paths = {f.path for f in files}
    for name, out in outputs.items():
        lines.append(f"### {TITLES[name]} {out.version}")
        lines.append("")
        own = [f.path for f in out.files]
        if name == "dynamo":
            lines.append(
                "`kubectl apply -f dynamo/graph.yaml` (after creating the `hf-token-secret` secret); the"
            )
            lines.append(f"frontend serves the OpenAI API on port {8000}.")
        else:
            lines.append(
                "Run each script on the node its header names (multi-node replicas: the steps in order):"
            )
            lines.append("")
            lines += [f"* `{p}`" for p in own if p.endswith(".sh")]
            manifests = sorted(p for p in paths if p.startswith(f"kubernetes/{name}-"))
            if manifests:
                lines.append("")
                lines.append(
                    f"Kubernetes: `kubectl apply -f` {', '.join(f'`{m}`' for m in manifests)} after labelling the "
                    f"nodes (`kubectl label node NAME {NODE_GROUP_LABEL}=GROUP {NODE_LABEL}=INDEX`)."
                )
        if out.entry:
            lines.append("")
            lines.append(f"Clients send requests to {out.entry}.")
        lines.append("")
    if skipped:
        lines += ["## Not emitted", ""]
        lines += [f"* **{TITLES[name]}**: {reason}" for name, reason in skipped.items()]
        lines.append("")
    if warnings:
        lines += ["## Warnings", ""]
        lines += [f"* {w}" for w in warnings]
        lines.append("")
    lines += [
        "## Benchmark",
        "",
        f"The {len(endpoints)} endpoint(s) "
        + " ".join(f"`{e}`" for e in endpoints)
        + " receive the scenario's "
        "requests (request i → endpoint i mod E):",
        "",
        "* `bench/aiperf.sh` — exact replay of each request's arrival time and lengths (`bench/workload-ep*.jsonl`)",
        "* `bench/vllm-bench.sh` — `vllm bench serve`, same arrival process, uniform lengths around the mean",
        "* `bench/genai-perf.sh` — `genai-perf profile`, mean rate, normal lengths",
        "",
        "`bench/requests.jsonl` lists the requests (arrival_s, input_tokens, output_tokens); results go to "
        "`bench/results/`. `apex ingest FILE` reads them into per-request records.",
        "",
    ]
    return "\n".join(lines)
