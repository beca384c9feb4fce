"""SGLang 0.5.3 launch scripts: one `python -m sglang.launch_server` per replica (one per node across nodes),
and for P/D plans the sglang-router 0.2.0 proxy that pairs prefill and decode servers.

How a replica's parallelism maps onto SGLang's flags (planner/emit/flags/sglang-0.5.3.yaml):

* a stage's GPUs → `--tp-size` (SGLang's tp counts every GPU of a stage); attention dp > 1 → `--dp-size` with
  `--enable-dp-attention` (attention tp = tp / dp, sglang/srt/layers/dp_attention.py:191); MoE experts over ep
  GPUs → `--ep-size` (expert tp = tp / ep). Every (attention tp × dp, ffn tp × ep) split of a stage is expressible.
* pipeline stages → `--pp-size`, the plan's exact layer split in `SGLANG_PP_LAYER_PARTITION`;
* a replica over several nodes → `--nnodes`, `--node-rank`, `--dist-init-addr` on each node;
* prefix caching off → `--disable-radix-cache` (on is SGLang's default); speculative decoding →
  `--speculative-algorithm` STANDALONE (draft) / EAGLE or EAGLE3 (eagle) / NEXTN (mtp) with the draft checkpoint
  and a chain of k drafts (`--speculative-num-steps k --speculative-eagle-topk 1 --speculative-num-draft-tokens
  k+1`);
* P/D replicas → `--disaggregation-mode prefill|decode`; prefill servers get their own bootstrap port.
"""

from __future__ import annotations

from planner.emit.artifacts import (
    EngineOutput,
    Unexpressible,
    add_script,
    dtype_options,
    mixed_gpu_warning,
    uniform_split,
)
from planner.emit.commands import Command
from planner.emit.flag_table import load_table
from planner.emit.layout import ROUTER_PORT, Layout, ReplicaLayout, Speculation

ENGINE = "sglang"
SERVER = "python -m sglang.launch_server"
ROUTER = "python -m sglang_router.launch_router"
DIST_PORT = 20000  # --dist-init-addr port of multi-node replica k: DIST_PORT + k
BOOTSTRAP_PORT = 9000  # --disaggregation-bootstrap-port of prefill replica k: BOOTSTRAP_PORT + k
# SGLang's server_args.py help for --enable-dp-attention: "Currently DeepSeek-V2 and Qwen 2/3 MoE models are supported."
DP_ATTENTION_MODELS = ("deepseek", "qwen", "kimi")


def server_options(layout: Layout, replica: ReplicaLayout) -> tuple[list, list, list[str]]:
    sc, knobs = layout.scenario, layout.knobs
    stage = uniform_split(ENGINE, replica)
    n, d, e = stage.num_gpus, stage.attention.dp, stage.ffn.ep
    pp = len(replica.stages)
    warnings = []
    opts: list[tuple[str, str | None]] = [("--tp-size", str(n))]
    if pp > 1:
        opts.append(("--pp-size", str(pp)))
    if d > 1:
        if sc.model.moe is None:
            raise Unexpressible(
                ENGINE,
                f"replica group g{replica.group} uses attention dp{d} on the dense model {sc.model.name}; SGLang "
                "0.5.3 documents --enable-dp-attention for MoE models (DeepSeek-V2/V3, Qwen2/3-MoE) only",
            )
        if not sc.model.name.startswith(DP_ATTENTION_MODELS):
            warnings.append(
                f"sglang: --enable-dp-attention is documented for DeepSeek-V2/V3 and Qwen2/3-MoE; {sc.model.name} "
                "is not on that list"
            )
        opts += [("--dp-size", str(d)), ("--enable-dp-attention", None)]
    if e > 1:
        opts.append(("--ep-size", str(e)))
    opts += dtype_options(
        ENGINE, sc.spec.dtype, "fp8_e4m3", "auto, fp8_e5m2, fp8_e4m3", "SGLang 0.5.3", warnings
    )
    chunk = knobs.max_num_batched_tokens if knobs.enable_chunked_prefill else -1
    opts += [
        ("--context-length", str(layout.max_model_len)),
        ("--max-running-requests", str(knobs.max_num_seqs)),
        ("--max-prefill-tokens", str(knobs.max_num_batched_tokens)),
        ("--chunked-prefill-size", str(chunk)),
        ("--mem-fraction-static", f"{knobs.gpu_memory_fraction:g}"),
    ]
    if not knobs.cuda_graphs:
        opts.append(("--disable-cuda-graph", None))
    if not knobs.prefix_caching:  # the radix cache is on unless disabled (server_args.py:2438)
        opts.append(("--disable-radix-cache", None))
    if knobs.speculation is not None:
        opts += speculative_options(layout, knobs.speculation, d)
    env: list[tuple[str, str]] = []
    if pp > 1:
        env.append(("SGLANG_PP_LAYER_PARTITION", ",".join(str(s.num_layers) for s in replica.stages)))
    warning = mixed_gpu_warning(ENGINE, layout, replica)
    if warning:
        warnings.append(warning)
    return opts, env, warnings


def speculative_options(layout: Layout, spec: Speculation, dp: int) -> list[tuple[str, str | None]]:
    """SGLang 0.5.3's flags for a chain of `num_tokens` drafts: num_steps k, eagle_topk 1 and num_draft_tokens
    k + 1 (with topk 1 SGLang requires num_steps + 1, server_args.py:1110-1116)."""
    if spec.method == "draft" and dp > 1:
        raise Unexpressible(
            ENGINE,
            "SGLang 0.5.3 refuses standalone (draft-model) speculative decoding with dp attention "
            "(server_args.py:1054)",
        )
    algorithm = {"draft": "STANDALONE", "eagle": "EAGLE3" if spec.eagle3 else "EAGLE", "mtp": "NEXTN"}
    # NEXTN reads the MTP layers from the draft path, which SGLang fills with the model path only for the
    # DeepSeek-V3 / GLM-4.5 / Bailing architectures (server_args.py:1073-1086): name the target explicitly.
    draft = layout.model_id if spec.method == "mtp" else spec.draft_model
    return [
        ("--speculative-algorithm", algorithm[spec.method]),
        ("--speculative-draft-model-path", draft),
        ("--speculative-num-steps", str(spec.num_tokens)),
        ("--speculative-eagle-topk", "1"),
        ("--speculative-num-draft-tokens", str(spec.num_tokens + 1)),
    ]


def emit(layout: Layout) -> EngineOutput:
    table = load_table(ENGINE)
    out = EngineOutput(ENGINE, table.version)
    prefill_urls: list[tuple[str, int]] = []
    decode_urls: list[str] = []
    for k, replica in enumerate(layout.replicas):
        opts, env, warnings = server_options(layout, replica)
        out.warnings += [w for w in warnings if w not in out.warnings]
        role: list[tuple[str, str | None]] = []
        if replica.role == "prefill":
            role = [
                ("--disaggregation-mode", "prefill"),
                ("--disaggregation-bootstrap-port", str(BOOTSTRAP_PORT + k)),
            ]
            prefill_urls.append((replica.url, BOOTSTRAP_PORT + k))
        elif replica.role == "decode":
            role = [("--disaggregation-mode", "decode")]
            decode_urls.append(replica.url)
        title = [
            f"SGLang launch of replica {replica.rid} ({replica.role}) of plan {layout.plan.label()}",
            f"{replica.num_gpus} GPUs: "
            + "; ".join(f"{n.label} GPUs {','.join(map(str, n.gpus))}" for n in replica.nodes),
            f"Serves {replica.url} (OpenAI API). Flags: planner/emit/flags/{table.file}",
        ]
        nnodes = len(replica.nodes)
        for rank, node in enumerate(replica.nodes):
            multi = (
                [
                    ("--nnodes", str(nnodes)),
                    ("--node-rank", str(rank)),
                    ("--dist-init-addr", f"{replica.head.host}:{DIST_PORT + k}"),
                ]
                if nnodes > 1
                else []
            )
            cmd = Command(
                ENGINE,
                SERVER,
                ("python", "-m", "sglang.launch_server"),
                tuple(
                    [("--model-path", layout.model_id), ("--host", "0.0.0.0"), ("--port", str(replica.port))]
                    + opts
                    + multi
                    + role
                ),
                tuple([("CUDA_VISIBLE_DEVICES", ",".join(map(str, node.gpus)))] + env),
            )
            if nnodes == 1:
                out.servers[replica.rid] = cmd
            suffix = "" if nnodes == 1 else f"-node{rank}"
            where = f"Run on {node.label}" + ("." if nnodes == 1 else f" (node rank {rank} of {nnodes}).")
            add_script(out, f"sglang/{replica.name}{suffix}.sh", title + [where], [(cmd, "exec", "")])
    if layout.disaggregated:
        options: list[tuple[str, str | None]] = [
            ("--host", "0.0.0.0"),
            ("--port", str(ROUTER_PORT)),
            ("--pd-disaggregation", None),
        ]
        for url, port in prefill_urls:
            options.append(("--prefill", (url, str(port))))
        for url in decode_urls:
            options.append(("--decode", url))
        router = Command(ENGINE, ROUTER, ("python", "-m", "sglang_router.launch_router"), tuple(options))
        add_script(
            out,
            "sglang/router.sh",
            [
                f"sglang-router 0.2.0 P/D proxy for plan {layout.plan.label()}: clients send requests here.",
                f"Run on {layout.replicas[0].head.label}; listens on {layout.router_url}.",
            ],
            [(router, "exec", "")],
        )
        out.entry = layout.router_url
    return out
