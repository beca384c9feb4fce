"""vLLM 0.11 launch scripts: one `vllm serve` per replica (Ray across nodes for multi-node replicas).

How a replica's parallelism maps onto vLLM's flags (planner/emit/flags/vllm-0.11.0.yaml):

* attention tp → `--tensor-parallel-size`; pipeline stages → `--pipeline-parallel-size`, with the plan's exact
  layer split in `VLLM_PP_LAYER_PARTITION` (vLLM's own split differs from APEX's for uneven counts);
* attention dp > 1 (MoE models only) → `--data-parallel-size`; vLLM's MoE layers then span dp × tp GPUs, as
  expert tensor parallelism (ffn tp = dp × tp) or, with `--enable-expert-parallel`, as experts over all of them
  (ffn ep = dp × tp). A split in between (1 < ep < GPUs) has no vLLM expression: exit 2.
* prefix caching → `--enable-prefix-caching` / `--no-enable-prefix-caching`, always explicit (the V1 default is
  on); speculative decoding → `--speculative-config` with method eagle / eagle3 (the head's name decides, as in
  vLLM's own detection) or mtp and num_speculative_tokens; vLLM 0.11 refuses draft-model speculation: exit 2.
* P/D replicas get `--kv-transfer-config` with the NIXL connector (kv_role kv_both, as vLLM's NIXL example).
  vLLM 0.11 ships no P/D proxy, so clients reach P/D plans through the Dynamo graph (dynamo/graph.yaml).
"""

from __future__ import annotations

import json

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
from planner.emit.layout import Layout, ReplicaLayout, Speculation

ENGINE = "vllm"
BLOCK_SIZES = (1, 8, 16, 32, 64, 128)
RAY_PORT = 6380  # + replica port offset, so replicas sharing a head node get their own Ray cluster
NIXL_PORT = 5600  # VLLM_NIXL_SIDE_CHANNEL_PORT of the first P/D replica; each rank uses base + its rank


def engine_options(layout: Layout, replica: ReplicaLayout) -> tuple[list, list, list[str]]:
    """vLLM engine options, environment and warnings of one replica (server address and P/D config excluded).

    Raises Unexpressible when the replica's parallelism or dtypes have no vLLM 0.11 expression.
    """
    sc, knobs = layout.scenario, layout.knobs
    stage = uniform_split(ENGINE, replica)
    a, d, f, e = stage.attention.tp, stage.attention.dp, stage.ffn.tp, stage.ffn.ep
    n = stage.num_gpus
    pp = len(replica.stages)
    warnings = []
    opts: list[tuple[str, str | None]] = [("--tensor-parallel-size", str(a))]
    if pp > 1:
        opts.append(("--pipeline-parallel-size", str(pp)))
    expert_parallel = e > 1
    if expert_parallel and f != 1:
        raise Unexpressible(
            ENGINE,
            f"replica group g{replica.group} splits the FFN/MoE as tp{f} × ep{e}; vLLM's --enable-expert-parallel "
            f"puts experts over all {n} GPUs of a stage (EP = TP × DP) and has no expert-tensor split in between",
        )
    if d > 1:
        if sc.model.moe is None:
            raise Unexpressible(
                ENGINE,
                f"replica group g{replica.group} uses attention dp{d} on the dense model {sc.model.name}; vLLM's "
                "data-parallel ranks of a dense model are independent replicas and cannot share an FFN tensor split",
            )
        if pp > 1:
            raise Unexpressible(
                ENGINE, "vLLM 0.11 documents data-parallel attention for single-stage (pp=1) deployments only"
            )
        if len(replica.nodes) > 1:
            raise Unexpressible(
                ENGINE,
                f"replica {replica.rid} spreads attention dp{d} over {len(replica.nodes)} nodes; APEX emits vLLM "
                "data parallelism within one node",
            )
        opts.append(("--data-parallel-size", str(d)))
    if expert_parallel:
        opts.append(("--enable-expert-parallel", None))
    if len(replica.nodes) > 1:
        opts.append(("--distributed-executor-backend", "ray"))
    opts += dtype_options(
        ENGINE,
        sc.spec.dtype,
        "fp8",
        "auto, bfloat16, fp8, fp8_e4m3, fp8_e5m2, fp8_inc",
        "vLLM 0.11",
        warnings,
    )
    opts += [
        ("--max-model-len", str(layout.max_model_len)),
        ("--max-num-seqs", str(knobs.max_num_seqs)),
        ("--max-num-batched-tokens", str(knobs.max_num_batched_tokens)),
        ("--enable-chunked-prefill" if knobs.enable_chunked_prefill else "--no-enable-chunked-prefill", None),
        ("--gpu-memory-utilization", f"{knobs.gpu_memory_fraction:g}"),
    ]
    if knobs.block_size in BLOCK_SIZES:
        opts.append(("--block-size", str(knobs.block_size)))
    else:
        warnings.append(
            f"vllm: block size {knobs.block_size} is not one of vLLM's {BLOCK_SIZES}; left at default"
        )
    if not knobs.cuda_graphs:
        opts.append(("--enforce-eager", None))
    opts.append(("--enable-prefix-caching" if knobs.prefix_caching else "--no-enable-prefix-caching", None))
    if knobs.speculation is not None:
        opts.append(
            ("--speculative-config", json.dumps(speculative_config(knobs.speculation), separators=(",", ":")))
        )
    if not knobs.enable_chunked_prefill and layout.max_model_len > knobs.max_num_batched_tokens:
        warnings.append(
            f"vllm: chunked prefill is off and --max-model-len {layout.max_model_len} exceeds "
            f"--max-num-batched-tokens {knobs.max_num_batched_tokens}; vLLM refuses that combination at start-up"
        )
    env: list[tuple[str, str]] = []
    if pp > 1:
        env.append(("VLLM_PP_LAYER_PARTITION", ",".join(str(s.num_layers) for s in replica.stages)))
    warning = mixed_gpu_warning(ENGINE, layout, replica)
    if warning:
        warnings.append(warning)
    return opts, env, warnings


def emit(layout: Layout) -> EngineOutput:
    """Launch scripts for every replica of the layout (raises Unexpressible naming the first limitation)."""
    table = load_table(ENGINE)
    out = EngineOutput(ENGINE, table.version)
    nixl_port = NIXL_PORT
    for k, replica in enumerate(layout.replicas):
        opts, env, warnings = engine_options(layout, replica)
        out.warnings += [w for w in warnings if w not in out.warnings]
        server = [("--host", "0.0.0.0"), ("--port", str(replica.port))]
        if replica.role != "colocated":
            server.append(("--kv-transfer-config", json.dumps(_kv_transfer(), separators=(",", ":"))))
            env = env + [
                ("VLLM_NIXL_SIDE_CHANNEL_HOST", replica.head.host),
                ("VLLM_NIXL_SIDE_CHANNEL_PORT", str(nixl_port)),
            ]
            nixl_port += replica.num_gpus
        serve = Command(
            ENGINE,
            "vllm serve",
            ("vllm", "serve", layout.model_id),
            tuple(server + opts),
            tuple([("CUDA_VISIBLE_DEVICES", _devices(replica.head.gpus))] + env)
            if len(replica.nodes) == 1
            else tuple(env),
        )
        title = _title(layout, replica, table.file)
        if len(replica.nodes) == 1:
            out.servers[replica.rid] = serve
            add_script(
                out,
                f"vllm/{replica.name}.sh",
                title + [f"Run on {replica.head.label}."],
                [(serve, "exec", "")],
            )
            continue
        ray_port = str(RAY_PORT + k)
        head = replica.head
        add_script(
            out,
            f"vllm/{replica.name}-ray-head.sh",
            title + [f"Step 1 of 3, on {head.label}: start the replica's Ray head."],
            [
                (
                    Command(
                        ENGINE,
                        "ray start",
                        ("ray", "start"),
                        (("--head", None), ("--port", ray_port)),
                        (("CUDA_VISIBLE_DEVICES", _devices(head.gpus)),),
                    ),
                    "",
                    "",
                )
            ],
        )
        for j, node in enumerate(replica.nodes[1:], start=1):
            add_script(
                out,
                f"vllm/{replica.name}-ray-node{j}.sh",
                title + [f"Step 2 of 3, on {node.label}: join the replica's Ray cluster."],
                [
                    (
                        Command(
                            ENGINE,
                            "ray start",
                            ("ray", "start"),
                            (("--address", f"{head.host}:{ray_port}"), ("--block", None)),
                            (("CUDA_VISIBLE_DEVICES", _devices(node.gpus)),),
                        ),
                        "exec",
                        "",
                    )
                ],
            )
        add_script(
            out,
            f"vllm/{replica.name}.sh",
            title + [f"Step 3 of 3, on {head.label} once every node has joined: serve."],
            [(serve, "exec", "")],
        )
    if layout.disaggregated:
        out.warnings.append(
            "vllm: vLLM 0.11 ships no prefill/decode proxy; front the P/D workers with the Dynamo graph "
            "(dynamo/graph.yaml) or a P/D-aware router"
        )
    return out


def speculative_config(spec: Speculation) -> dict:
    """vLLM 0.11's --speculative-config for the plan's speculative decoding (config/speculative.py:42-53)."""
    if spec.method == "draft":
        raise Unexpressible(
            ENGINE,
            "vLLM 0.11's V1 engine refuses draft-model speculative decoding (engine/arg_utils.py:1486: \"Draft model "
            'speculative decoding is not supported yet"); use method eagle or mtp, or emit SGLang / TensorRT-LLM',
        )
    if spec.method == "mtp":  # the target's own MTP layers: vLLM takes the model from the target (:220-233)
        return {"method": "mtp", "num_speculative_tokens": spec.num_tokens}
    return {
        "method": "eagle3" if spec.eagle3 else "eagle",
        "model": spec.draft_model,
        "num_speculative_tokens": spec.num_tokens,
    }


def _kv_transfer() -> dict:
    return {"kv_connector": "NixlConnector", "kv_role": "kv_both"}


def _devices(gpus: tuple[int, ...]) -> str:
    return ",".join(str(g) for g in gpus)


def _title(layout: Layout, replica: ReplicaLayout, table: str) -> list[str]:
    where = "; ".join(f"{n.label} GPUs {_devices(n.gpus)}" for n in replica.nodes)
    return [
        f"vLLM launch of replica {replica.rid} ({replica.role}) of plan {layout.plan.label()}",
        f"{replica.num_gpus} GPUs: {where}. Serves {replica.url} (OpenAI API).",
        f"Flags: planner/emit/flags/{table}",
    ]
