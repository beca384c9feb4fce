"""NVIDIA Dynamo 0.6.1 deployment graph (DynamoGraphDeployment) with vLLM workers: a frontend and one worker
service per replica group (prefill workers flagged `--is-prefill-worker`, as Dynamo's disagg.yaml example).

Workers take vLLM's engine arguments (planner/emit/vllm.py), so a replica group vLLM cannot express cannot be
a Dynamo worker either. The graph asks Kubernetes for GPUs per worker node; the CP-SAT placement's node choice is
not expressible in the documented graph keys (kubernetes/ has manifests with node affinity for that).
"""

from __future__ import annotations

import re

import yaml

from planner.emit import vllm
from planner.emit.artifacts import EmittedFile, EngineOutput, Unexpressible, YamlDocument
from planner.emit.commands import Command
from planner.emit.flag_table import load_table
from planner.emit.layout import ROUTER_PORT, Layout

ENGINE = "dynamo"
WORKDIR = "/workspace/components/backends/vllm"
SECRET = "hf-token-secret"


def _name(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50] or "apex"


def emit(layout: Layout) -> EngineOutput:
    table = load_table(ENGINE)
    image = table.meta["image"]
    out = EngineOutput(ENGINE, table.version)
    namespace = _name(f"apex-{layout.scenario.name}")
    frontend = Command(
        ENGINE,
        "python3 -m dynamo.frontend",
        ("python3", "-m", "dynamo.frontend"),
        (("--http-port", str(ROUTER_PORT)),),
    )
    services: dict = {
        "Frontend": {
            "dynamoNamespace": namespace,
            "componentType": "frontend",
            "replicas": 1,
            "extraPodSpec": {"mainContainer": _container(image, frontend)},
        }
    }
    out.commands.append(frontend)
    partitions = set()
    for group in layout.groups():
        head = group[0]
        opts, env, warnings = vllm.engine_options(layout, head)
        out.warnings += [
            w.replace("vllm:", "dynamo (vLLM worker):", 1) for w in warnings if w not in out.warnings
        ]
        partitions.add(dict(env).get("VLLM_PP_LAYER_PARTITION"))
        per_node = {len(n.gpus) for r in group for n in r.nodes}
        node_counts = {len(r.nodes) for r in group}
        if len(per_node) != 1 or len(node_counts) != 1:
            raise Unexpressible(
                ENGINE,
                f"the replicas of group g{head.group} use different GPU counts per node; a Dynamo worker service "
                "requests one GPU count per node",
            )
        args = [("--model", layout.model_id), *opts]
        if head.role == "prefill":
            args.append(("--is-prefill-worker", None))
        worker = Command(ENGINE, "python3 -m dynamo.vllm", ("python3", "-m", "dynamo.vllm"), tuple(args))
        out.commands.append(worker)
        role = {"prefill": "Prefill", "decode": "Decode"}.get(head.role, "")
        service = {
            "dynamoNamespace": namespace,
            "envFromSecret": SECRET,
            "componentType": "worker",
        }
        if head.role != "colocated":
            service["subComponentType"] = head.role
        service["replicas"] = len(group)
        service["resources"] = {"limits": {"gpu": str(next(iter(per_node)))}}
        if next(iter(node_counts)) > 1:
            service["multinode"] = {"nodeCount": next(iter(node_counts))}
        service["extraPodSpec"] = {"mainContainer": _container(image, worker)}
        services[f"Vllm{role}WorkerG{head.group}"] = service
    partitions.discard(None)
    graph: dict = {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": namespace},
        "spec": {"services": services},
    }
    if partitions:
        if len(partitions) > 1 or any(len(r.stages) == 1 for r in layout.replicas):
            raise Unexpressible(
                ENGINE,
                "replica groups use different pipeline layer splits; the graph's environment (spec.envs) is shared "
                "by every worker, so only one VLLM_PP_LAYER_PARTITION can be set",
            )
        graph["spec"]["envs"] = [{"name": "VLLM_PP_LAYER_PARTITION", "value": next(iter(partitions))}]
    text = (
        f"# NVIDIA Dynamo {table.version} graph for plan {layout.plan.label()} (vLLM workers).\n"
        f"# Written by `apex emit`; keys and flags checked against planner/emit/flags/{table.file}.\n"
        f"# kubectl create secret generic {SECRET} --from-literal=HF_TOKEN=... && kubectl apply -f graph.yaml\n"
        + yaml.safe_dump(graph, sort_keys=False)
    )
    out.files.append(EmittedFile("dynamo/graph.yaml", text))
    out.documents.append(YamlDocument(ENGINE, "graph", "dynamo/graph.yaml", graph))
    out.warnings.append(
        "dynamo: the graph requests GPUs per worker node and leaves the node choice to Kubernetes; the CP-SAT "
        "placement is expressed in kubernetes/*.yaml (node affinity) instead"
    )
    out.entry = f"http://<dynamo-frontend>:{ROUTER_PORT}"
    return out


def _container(image: str, cmd: Command) -> dict:
    argv = cmd.argv()
    n = len(cmd.program)
    return {"image": image, "workingDir": WORKDIR, "command": argv[:n], "args": argv[n:]}


def graph_sections(graph: dict) -> list[tuple[str, dict]]:
    """The graph split into the parts the flag table's `graph` schema describes (one per service)."""
    top = {k: v for k, v in graph.items() if k != "spec"}
    parts = [("graph", top)]
    if "envs" in graph["spec"]:
        parts.append(("graph", {"spec": {"envs": graph["spec"]["envs"]}}))
    for service in graph["spec"]["services"].values():
        parts.append(("graph", {"service": service}))
    return parts
