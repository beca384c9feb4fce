"""Plain data of the placement problem and its answer (re-exported by `formulations.placement`)."""

from __future__ import annotations

from dataclasses import dataclass

GpuSlot = tuple[str, int, int]  # (node group, node, gpu index)

# How a placement was found (`Placement.method`).
AGGREGATE = "aggregate"  # CP-SAT over replica templates × domain classes (identical nodes interchangeable)
DIRECT = "direct"  # CP-SAT with one variable per stage and domain
CONSTRUCTIVE = "constructive"  # greedy: longest same-domain runs, best-fit decreasing into domains


@dataclass(frozen=True, slots=True)
class PlacementStage:
    num_gpus: int
    gpu_type: str


@dataclass(frozen=True, slots=True)
class PlacementReplica:
    id: str
    stages: tuple[PlacementStage, ...]


@dataclass(frozen=True, slots=True)
class PlacementNodeGroup:
    """`nodes` identical nodes of `gpus_per_node` GPUs; `domain_gpus` GPUs share one NVLink domain (None: one
    node; 72 on GB200 NVL72). A domain is `domain_gpus // gpus_per_node` consecutive nodes."""

    name: str
    gpu_type: str
    nodes: int
    gpus_per_node: int
    domain_gpus: int | None = None

    @property
    def nodes_per_domain(self) -> int:
        return max(1, (self.domain_gpus or self.gpus_per_node) // self.gpus_per_node)

    @property
    def domain_size(self) -> int:
        """GPUs of one domain (a whole number of nodes)."""
        return self.nodes_per_domain * self.gpus_per_node


@dataclass(frozen=True, slots=True)
class Placement:
    """replica id -> stage -> GPUs, with the quality of the answer.

    `cross_domain_boundaries` is what the placement minimises (pipeline neighbours in different scale-up
    domains; equal to `cross_node_boundaries` when every domain is one node); `lower_bound` is a proven lower
    bound on it, `optimal` says whether the count is proven minimal, `method` how it was found, `note` why a
    fallback was used (empty otherwise).
    """

    gpus: dict[str, list[list[GpuSlot]]]
    cross_node_boundaries: int
    cross_domain_boundaries: int
    method: str
    optimal: bool
    lower_bound: int
    note: str = ""
