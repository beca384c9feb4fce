"""`emit_plan`: a placed plan → launch files for vLLM / SGLang / TensorRT-LLM / Dynamo, Kubernetes manifests,
benchmark scripts, hosts.env, plan.yaml, a README and the apex-emit.json manifest, written into one directory.

Per engine, a plan the engine cannot express raises `Unexpressible`: with one engine asked for, that is an
InputError naming the limitation (exit 2); with `all`, the engine is skipped and the manifest and README say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from planner.emit import ENGINES, bench, dynamo, guide, kubernetes, sglang, trtllm, vllm
from planner.emit.artifacts import EmittedFile, EngineOutput, Unexpressible
from planner.emit.layout import Layout, deployment_layout, host_var, model_id_of, speculation_of
from planner.emit.writer import check_out_dir, write_files
from simulator.errors import InputError
from simulator.plan import Plan
from simulator.scenario import Scenario, load_scenario
from simulator.workload import generate

EMITTERS = {"vllm": vllm.emit, "sglang": sglang.emit, "trtllm": trtllm.emit, "dynamo": dynamo.emit}
KUBERNETES_ENGINES = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class EmitResult:
    """What was written: the directory, the engines emitted and skipped (with reasons), warnings, files."""

    directory: Path
    engines: dict[str, EngineOutput]
    skipped: dict[str, str]
    warnings: tuple[str, ...]
    files: tuple[Path, ...]
    endpoints: tuple[str, ...]


def parse_engines(text: str, *, flag: str = "--engine") -> tuple[str, ...]:
    """'vllm,sglang' or 'all' → engine names (InputError naming the flag for anything else)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return ENGINES
    bad = [n for n in names if n not in ENGINES]
    if bad or not names:
        raise InputError(
            f"unknown engine {', '.join(bad) or repr(text)}; expected one or more of {', '.join(ENGINES)} or all",
            field=flag,
        )
    return tuple(dict.fromkeys(names))


def preflight(scenario: str | Path, out_dir: str | Path, *, flag: str) -> None:
    """The checks `apex plan --emit DIR` runs before its search: DIR is writable and the model has a checkpoint."""
    check_out_dir(out_dir, flag=flag)
    sc = load_scenario(scenario)
    speculation_of(sc)  # a draft / EAGLE checkpoint the launch files need is named before the search
    try:
        model_id_of(sc, None)
    except InputError as exc:
        raise InputError(
            f"{exc.detail.split('; pass')[0]}; run `apex plan` with --report DIR, then "
            "`apex emit DIR/plan.yaml --model-id ID`",
            file=sc.file,
            field=flag,
        ) from None


def _plan_yaml(scenario: Scenario, plan: Plan) -> str:
    data = scenario.spec.model_dump(mode="json", exclude_none=True)
    data["plan"] = plan.model_dump(mode="json", exclude_none=True)
    trace = data.get("workload", {}).get("trace")
    if scenario.file and isinstance(trace, str) and not Path(trace).is_absolute():
        data["workload"]["trace"] = str((Path(scenario.file).parent / trace).resolve())
    if isinstance(data.get("calibration"), str):
        data["calibration"] = str(Path(data["calibration"]).resolve())
    return f"# The scenario and plan `apex emit` wrote launch files for: {plan.label()}\n" + yaml.safe_dump(
        data, sort_keys=False
    )


def _clock_warnings(scenario, plan) -> list[str]:
    """The plan was simulated with locked SM clocks, which no engine sets and these files do not either: say
    which clock, and the command that locks it."""
    out = []
    setting = scenario.spec.sm_clock_mhz
    if setting is not None and setting != "auto":  # auto: the replica groups carry the clocks
        clocks = setting if isinstance(setting, dict) else {"every GPU": setting}
        for name, mhz in clocks.items():
            out.append(
                f"the scenario locks the SM clock of {name} at {mhz} MHz; no engine sets it and these files do "
                f"not: run `sudo nvidia-smi -lgc {mhz}` on those GPUs before starting the engines"
            )
    for gi, group in enumerate(plan.replicas):
        if group.sm_clock_mhz is not None:
            out.append(
                f"replica group {gi} was planned with its GPUs' SM clock locked at {group.sm_clock_mhz} MHz; no "
                f"engine sets it and these files do not: run `sudo nvidia-smi -lgc {group.sm_clock_mhz}` on its "
                "GPUs before starting it"
            )
    return out


def _hosts_env(layout: Layout) -> str:
    nodes = layout.node_slots()
    single = len(nodes) == 1
    lines = [
        "# Addresses of the nodes the plan's placement uses, read by every launch and benchmark script.",
        "# A value already set in the environment wins. Written by `apex emit`.",
    ]
    if not single:
        lines.append("# The plan spans several nodes: set each address below before launching.")
    for n in nodes:
        var = host_var(n.node_group, n.node)
        if single:
            lines.append(f': "${{{var}:=127.0.0.1}}"  # {n.label}')
        else:
            lines.append(f': "${{{var}:?set {var} to the address of {n.label} (environment or hosts.env)}}"')
        lines.append(f"export {var}")
    return "\n".join(lines) + "\n"


def emit_plan(
    scenario: Scenario,
    plan: Plan,
    placement,
    *,
    engines: tuple[str, ...],
    out_dir: str | Path,
    model_id: str | None = None,
    flag: str = "--out",
) -> EmitResult:
    """Write the launch, benchmark and manifest files of `plan` (placed by `placement`) into `out_dir`."""
    check_out_dir(out_dir, flag=flag)
    requests = generate(scenario.spec.workload, file=scenario.file)
    longest = int((requests.input_tokens + requests.output_tokens).max()) if len(requests) else 1
    layout = deployment_layout(
        scenario,
        plan,
        placement,
        model_id=model_id_of(scenario, model_id),
        max_model_len=min(longest, scenario.model.max_context or longest),
    )
    outputs: dict[str, EngineOutput] = {}
    skipped: dict[str, str] = {}
    for name in engines:
        try:
            outputs[name] = EMITTERS[name](layout)
        except Unexpressible as exc:
            if len(engines) == 1:
                raise InputError(f"{name} cannot express this plan: {exc.reason}", field="--engine") from None
            skipped[name] = exc.reason
    if not outputs:
        raise InputError(
            "no engine can express this plan: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
            field="--engine",
        )
    files: list[EmittedFile] = []
    warnings: list[str] = []
    for name, out in outputs.items():
        files += out.files
        warnings += out.warnings
        if name in KUBERNETES_ENGINES:
            k8s, k8s_warnings = kubernetes.emit(layout, out)
            files += k8s
            warnings += [w for w in k8s_warnings if w not in warnings]
    warnings += _clock_warnings(scenario, plan)
    endpoints = [layout.router_url] if layout.disaggregated else [r.url for r in layout.replicas]
    bench_out = bench.emit(layout, requests, endpoints)
    files += bench_out.files
    warnings += bench_out.warnings
    files.append(EmittedFile("hosts.env", _hosts_env(layout)))
    files.append(EmittedFile("plan.yaml", _plan_yaml(scenario, plan)))
    files.append(EmittedFile("README.md", guide.readme(layout, outputs, skipped, warnings, endpoints, files)))
    manifest = {
        "written_by": "apex emit",
        "scenario": scenario.name,
        "plan": plan.label(),
        "model_id": layout.model_id,
        "engines": {
            name: {
                "version": out.version,
                "files": [f.path for f in out.files],
                "entry": out.entry,
            }
            for name, out in outputs.items()
        },
        "skipped": skipped,
        "warnings": warnings,
        "endpoints": endpoints,
        "replicas": [
            {
                "id": r.rid,
                "role": r.role,
                "port": r.port,
                "gpus": r.num_gpus,
                "nodes": [{"node": n.label, "gpus": list(n.gpus)} for n in r.nodes],
            }
            for r in layout.replicas
        ],
        "benchmark": bench.lengths_summary(requests),
        "commands": [c.to_json() for out in [*outputs.values(), bench_out] for c in out.commands],
        "documents": [
            {"tool": d.tool, "schema": d.schema, "path": d.path, "data": d.data}
            for out in outputs.values()
            for d in out.documents
        ],
    }
    written = write_files(out_dir, files, manifest, flag=flag)
    return EmitResult(
        directory=Path(out_dir),
        engines=outputs,
        skipped=skipped,
        warnings=tuple(warnings),
        files=tuple(written),
        endpoints=tuple(endpoints),
    )
