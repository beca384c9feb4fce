"""TensorRT-LLM 1.0 launch scripts: one `trtllm-serve` (PyTorch backend) per replica with its LLM-API options
YAML, and for P/D plans the `trtllm-serve disaggregated` proxy with its server list.

How a replica maps onto TensorRT-LLM (planner/emit/flags/trtllm-1.0.0.yaml):

* a stage's GPUs → `--tp_size`; experts over ep GPUs → `--ep_size` (expert tp = tp / ep); pipeline stages →
  `--pp_size`. TensorRT-LLM documents no per-stage layer split, so only plans whose stages hold equal layer
  counts are expressed; an uneven split exits 2 naming it.
* attention dp: TensorRT-LLM's `enable_attention_dp` replicates attention on every rank (attention dp = tp_size,
  attention tp = 1); a stage with 1 < attention tp < GPUs exits 2.
* a replica spanning nodes exits 2: multi-node TensorRT-LLM instances are started under MPI / Slurm
  (trtllm-llmapi-launch), which APEX does not emit.
* prefix caching → `kv_cache_config.enable_block_reuse` (always explicit); speculative decoding →
  `speculative_config` (decoding_type DraftTarget / Eagle / MTP);
* weights are quantized in the checkpoint (ModelOpt), so fp8/int8/int4/fp4 plans carry a warning to pick one.
"""

from __future__ import annotations

import yaml

from planner.emit.artifacts import (
    EmittedFile,
    EngineOutput,
    Unexpressible,
    YamlDocument,
    add_script,
    is_even_split,
    layer_counts,
    mixed_gpu_warning,
    quantized_checkpoint_warning,
    script,
    uniform_split,
)
from planner.emit.commands import Command, render
from planner.emit.flag_table import load_table
from planner.emit.layout import ROUTER_PORT, Layout, ReplicaLayout, Speculation

ENGINE = "trtllm"


def llm_api_options(layout: Layout, replica: ReplicaLayout) -> tuple[list, dict, list[str]]:
    """Command-line options, the --extra_llm_api_options document and warnings of one replica."""
    sc, knobs = layout.scenario, layout.knobs
    stage = uniform_split(ENGINE, replica)
    n, a, d, e = stage.num_gpus, stage.attention.tp, stage.attention.dp, stage.ffn.ep
    pp = len(replica.stages)
    if len(replica.nodes) > 1:
        raise Unexpressible(
            ENGINE,
            f"replica {replica.rid} spans {len(replica.nodes)} nodes; multi-node TensorRT-LLM instances run under "
            "MPI/Slurm (trtllm-llmapi-launch), which APEX does not emit — only single-node trtllm-serve launches",
        )
    if pp > 1 and not is_even_split(replica):
        raise Unexpressible(
            ENGINE,
            f"replica group g{replica.group} splits layers unevenly over its pipeline stages "
            f"({layer_counts(replica)}); TensorRT-LLM 1.0 documents no per-stage layer split",
        )
    if d > 1 and sc.model.moe is None:
        raise Unexpressible(
            ENGINE,
            f"replica group g{replica.group} uses attention dp{d} on the dense model {sc.model.name}; TensorRT-LLM "
            "documents enable_attention_dp for MoE models (attention data-parallel, experts across ranks)",
        )
    if d > 1 and a != 1:
        raise Unexpressible(
            ENGINE,
            f"replica group g{replica.group} uses attention tp{a} × dp{d}; TensorRT-LLM's enable_attention_dp "
            f"replicates attention on every rank (attention dp = tp_size = {n}, attention tp = 1)",
        )
    warnings = []
    dt = sc.spec.dtype
    if dt.weights not in ("bf16", "fp16"):
        warnings.append(quantized_checkpoint_warning(ENGINE, dt.weights))
    extra: dict = {"enable_chunked_prefill": knobs.enable_chunked_prefill}
    if d > 1:
        extra["enable_attention_dp"] = True
    kv: dict = {"free_gpu_memory_fraction": knobs.gpu_memory_fraction}
    if dt.kv_cache == "fp8":
        kv["dtype"] = "fp8"
    elif dt.kv_cache != dt.activations:
        raise Unexpressible(
            ENGINE,
            f"the plan keeps the KV cache in {dt.kv_cache}; TensorRT-LLM 1.0 stores it in the model dtype or fp8 "
            "(kv_cache_config.dtype: auto, fp8)",
        )
    kv["enable_block_reuse"] = knobs.prefix_caching
    extra["kv_cache_config"] = kv
    if knobs.speculation is not None:
        extra["speculative_config"] = speculative_config(knobs.speculation, warnings)
        if knobs.speculation.method == "draft":
            # the docs' draft/target example runs without the overlap scheduler (features/speculative-decoding.md)
            extra["disable_overlap_scheduler"] = True
    if replica.role != "colocated":
        extra["cache_transceiver_config"] = {"backend": "DEFAULT"}
    if replica.role == "prefill":
        # disagg-serving.md: the overlap scheduler is disabled on context-only servers
        extra["disable_overlap_scheduler"] = True
    if not knobs.cuda_graphs:
        warnings.append(
            "trtllm: the plan runs without CUDA graphs; that setting is not expressed (engine default)"
        )
    opts: list[tuple[str, str | None]] = [
        ("--backend", "pytorch"),
        ("--tp_size", str(n)),
        ("--pp_size", str(pp)),
    ]
    if e > 1:
        opts.append(("--ep_size", str(e)))
    opts += [
        ("--max_batch_size", str(knobs.max_num_seqs)),
        ("--max_num_tokens", str(knobs.max_num_batched_tokens)),
        ("--max_seq_len", str(layout.max_model_len)),
        ("--kv_cache_free_gpu_memory_fraction", f"{knobs.gpu_memory_fraction:g}"),
    ]
    warning = mixed_gpu_warning(ENGINE, layout, replica)
    if warning:
        warnings.append(warning)
    return opts, extra, warnings


def speculative_config(spec: Speculation, warnings: list[str]) -> dict:
    """TensorRT-LLM 1.0's speculative_config (llm_args.py DecodingBaseConfig.from_dict picks the class by
    decoding_type): DraftTarget / Eagle with max_draft_len and speculative_model_dir, MTP with
    num_nextn_predict_layers (MTPDecodingConfig)."""
    if spec.method == "mtp":
        return {"decoding_type": "MTP", "num_nextn_predict_layers": spec.num_tokens}
    if spec.method == "eagle" and not spec.eagle3:
        warnings.append(
            f"trtllm: TensorRT-LLM 1.0's PyTorch backend documents EAGLE-3 draft heads; {spec.draft_model} is not "
            "named as an EAGLE-3 checkpoint"
        )
    return {
        "decoding_type": "DraftTarget" if spec.method == "draft" else "Eagle",
        "max_draft_len": spec.num_tokens,
        "speculative_model_dir": spec.draft_model,
    }


def emit(layout: Layout) -> EngineOutput:
    table = load_table(ENGINE)
    out = EngineOutput(ENGINE, table.version)
    ctx, gen = [], []
    for replica in layout.replicas:
        opts, extra, warnings = llm_api_options(layout, replica)
        out.warnings += [w for w in warnings if w not in out.warnings]
        extra_path = f"trtllm/{replica.name}.extra-llm-api.yaml"
        out.files.append(EmittedFile(extra_path, yaml.safe_dump(extra, sort_keys=False)))
        out.documents.append(YamlDocument(ENGINE, "extra_llm_api_options", extra_path, extra))
        cmd = Command(
            ENGINE,
            "trtllm-serve",
            ("trtllm-serve", layout.model_id),
            tuple(
                [("--host", "0.0.0.0"), ("--port", str(replica.port))]
                + opts
                + [("--extra_llm_api_options", extra_path.removeprefix("trtllm/"))]
            ),
            (("CUDA_VISIBLE_DEVICES", ",".join(map(str, replica.head.gpus))),),
        )
        out.servers[replica.rid] = cmd
        out.configs[replica.rid] = (
            extra_path.removeprefix("trtllm/"),
            yaml.safe_dump(extra, sort_keys=False),
        )
        add_script(
            out,
            f"trtllm/{replica.name}.sh",
            [
                f"TensorRT-LLM launch of replica {replica.rid} ({replica.role}) of plan {layout.plan.label()}",
                f"{replica.num_gpus} GPUs on {replica.head.label} (GPUs {','.join(map(str, replica.head.gpus))}); "
                f"serves {replica.url}.",
                f"Flags: planner/emit/flags/{table.file}; LLM-API options in {extra_path}",
            ],
            [(cmd, "exec", "")],
        )
        if replica.role == "prefill":
            ctx.append(f"{replica.head.host}:{replica.port}")
        elif replica.role == "decode":
            gen.append(f"{replica.head.host}:{replica.port}")
    if layout.disaggregated:
        config = {
            "hostname": "0.0.0.0",
            "port": ROUTER_PORT,
            "backend": "pytorch",
            "context_servers": {"num_instances": len(ctx), "urls": ctx},
            "generation_servers": {"num_instances": len(gen), "urls": gen},
        }
        out.documents.append(YamlDocument(ENGINE, "disaggregated_config", "trtllm/disaggregated.sh", config))
        serve = Command(
            ENGINE,
            "trtllm-serve disaggregated",
            ("trtllm-serve", "disaggregated"),
            (("--config_file", "${CONFIG}"),),
        )
        text = yaml.safe_dump(config, sort_keys=False)
        body = [
            'CONFIG="$(mktemp -t apex-trtllm-disagg.XXXXXX.yaml)"\n',
            "# the server list, with this deployment's node addresses from hosts.env filled in\n",
            f'cat > "$CONFIG" <<EOF\n{text}EOF\n',
        ]
        body.append(render(serve, prefix="exec"))
        out.commands.append(serve)
        out.files.append(
            EmittedFile(
                "trtllm/disaggregated.sh",
                script(
                    [
                        f"TensorRT-LLM P/D proxy for plan {layout.plan.label()}: clients send requests here.",
                        f"Run on {layout.replicas[0].head.label}; listens on {layout.router_url}.",
                    ],
                    body,
                ),
                executable=True,
            )
        )
        out.entry = layout.router_url
    return out
