"""Kubernetes manifests per engine and replica group: one Deployment and Service per replica, requesting the
replica's GPUs (`nvidia.com/gpu`) and pinned by node affinity to the node the CP-SAT placement chose.

Nodes are matched by two labels the user puts on them once (`kubectl label node NAME apex.dev/node-group=GROUP
apex.dev/node=INDEX`, listed in the emitted README). The device plugin, not the manifest, picks GPU indices
inside a node. Replicas that span nodes are left out with a warning (they need a multi-pod leader/worker set).
"""

from __future__ import annotations

import re

import yaml

from planner.emit.artifacts import EmittedFile, EngineOutput
from planner.emit.commands import Command
from planner.emit.flag_table import load_table
from planner.emit.layout import Layout, ReplicaLayout

NODE_GROUP_LABEL = "apex.dev/node-group"
NODE_LABEL = "apex.dev/node"
CONFIG_DIR = "/apex/config"


def _name(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63]


def _container_env(cmd: Command) -> list[dict]:
    env = []
    for key, value in cmd.env:
        if key == "CUDA_VISIBLE_DEVICES":
            continue  # the device plugin exposes exactly the requested GPUs
        if "${" in value:  # an address from hosts.env: inside a pod, its own IP
            env.append({"name": key, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        else:
            env.append({"name": key, "value": value})
    return env


def _manifests(
    engine: str, image: str, layout: Layout, replica: ReplicaLayout, out: EngineOutput
) -> list[dict]:
    cmd = out.servers[replica.rid]
    argv = cmd.argv()
    config = out.configs.get(replica.rid)
    name = _name(f"apex-{engine}-{replica.name}")
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": _name(f"apex-{layout.scenario.name}"),
    }
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    docs: list[dict] = []
    if config is not None:
        filename, text = config
        argv = [f"{CONFIG_DIR}/{filename}" if w == filename else w for w in argv]
        docs.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {filename: text}}
        )
        volumes.append({"name": "config", "configMap": {"name": name}})
        mounts.append({"name": "config", "mountPath": CONFIG_DIR})
    node = replica.head
    container = {
        "name": "server",
        "image": image,
        "command": argv,
        "ports": [{"containerPort": replica.port}],
        "resources": {"limits": {"nvidia.com/gpu": replica.num_gpus}},
        "volumeMounts": mounts,
    }
    env = _container_env(cmd)
    if env:
        container["env"] = env
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": NODE_GROUP_LABEL, "operator": "In", "values": [node.node_group]},
                            {"key": NODE_LABEL, "operator": "In", "values": [str(node.node)]},
                        ]
                    }
                ]
            }
        }
    }
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"affinity": affinity, "containers": [container], "volumes": volumes},
                },
            },
        }
    )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"port": replica.port, "targetPort": replica.port}],
            },
        }
    )
    return docs


def emit(layout: Layout, engine_out: EngineOutput) -> tuple[list[EmittedFile], list[str]]:
    """Manifests for the replica groups `engine_out` launched, and warnings for replicas left out."""
    image = load_table(engine_out.engine).meta["image"]
    files, warnings = [], []
    for group in layout.groups():
        head = group[0]
        docs = []
        for replica in group:
            if replica.rid not in engine_out.servers:
                warnings.append(
                    f"kubernetes: replica {replica.rid} spans {len(replica.nodes)} nodes; multi-node replicas "
                    "need a leader/worker pod set, not emitted"
                )
                continue
            docs += _manifests(engine_out.engine, image, layout, replica, engine_out)
        if not docs:
            continue
        path = f"kubernetes/{engine_out.engine}-g{head.group}-{head.role}.yaml"
        header = (
            f"# {engine_out.engine} {engine_out.version} replicas of group g{head.group} ({head.role}) of plan "
            f"{layout.plan.label()}: one Deployment + Service per replica.\n"
            f"# Label the nodes first: kubectl label node NAME {NODE_GROUP_LABEL}=GROUP {NODE_LABEL}=INDEX\n"
        )
        files.append(EmittedFile(path, header + yaml.safe_dump_all(docs, sort_keys=False)))
    return files, warnings
