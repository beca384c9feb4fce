"""The hardware catalog: GPUs, fabrics and clusters validate, cross-reference each other and cite sources."""

from __future__ import annotations

import pytest

from simulator.catalog import get_cluster, get_fabric, get_gpu, list_names
from simulator.hardware import GPU, Fabric

REQUIRED = {
    "gpu": {"a100-sxm-80gb", "a100-sxm-40gb", "h100-sxm", "h100-pcie", "h200-sxm", "gh200", "b200", "gb200",
            "l40s", "mi300x"},
    "fabric": {"nvlink3-nvswitch", "nvlink4-nvswitch", "nvlink5-nvswitch", "nvlink5-nvl72", "pcie4", "pcie5",
               "xgmi-mi300x", "ib-ndr-400", "ib-hdr-200", "roce-400"},
    "cluster": {"dgx-a100", "dgx-h100", "dgx-h200", "hgx-b200", "h100-sxm-4node", "h100-sxm-16node",
                "h200-sxm-64node", "pcie-l40s-8", "h100-pcie-4", "gb200-nvl72", "mi300x-8", "hetero-h100-a100"},
}  # fmt: skip
# GPU fields holding numbers (directly or nested); each one needs an entry in `sources`.
GPU_NUMERIC_FIELDS = [
    f
    for f in GPU.model_fields
    # sm_clock_ghz is state (a locked clock, set by GPU.at_clock), not a catalog figure
    if f
    not in {"name", "display_name", "vendor", "scale_up_fabric", "sources", "architecture", "sm_clock_ghz"}
]
OPTIONAL_FIGURES = {"peak_clock_ghz"}  # cited where given; absent means "the boost clock"


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_hardware_catalog_required_names_present(kind):
    """Every GPU, fabric and cluster the foundation catalog promises ships as a YAML file."""
    assert not REQUIRED[kind] - set(list_names(kind))


@pytest.mark.parametrize("name", list_names("gpu"))
def test_gpu_catalog_validates_and_resolves_fabric(name):
    """Each GPU loads under its file name and its scale_up_fabric names a catalog fabric."""
    gpu = get_gpu(name)
    assert gpu.name == name
    assert get_fabric(gpu.scale_up_fabric).name == gpu.scale_up_fabric


@pytest.mark.parametrize("name", list_names("gpu"))
def test_gpu_sources_cover_every_numeric_field(name):
    """Each GPU cites a public source for every numeric field."""
    gpu = get_gpu(name)
    sources = gpu.sources
    missing = [
        f
        for f in GPU_NUMERIC_FIELDS
        if not sources.get(f) and not (f in OPTIONAL_FIGURES and getattr(gpu, f) is None)
    ]
    assert not missing, f"{name}: no source for {missing}"


@pytest.mark.parametrize("name", list_names("fabric"))
def test_fabric_catalog_validates_with_source(name):
    """Each fabric loads under its file name and cites a source."""
    fabric = get_fabric(name)
    assert isinstance(fabric, Fabric) and fabric.name == name
    assert fabric.source


@pytest.mark.parametrize("name", list_names("cluster"))
def test_cluster_catalog_names_resolve(name):
    """Each cluster loads, describes itself, and every GPU and fabric name in it resolves in the catalog."""
    cluster = get_cluster(name)
    assert cluster.name == name and cluster.description
    for group in cluster.node_groups:
        get_gpu(group.gpu)
        for fabric in (group.intra_node, group.inter_node):
            if fabric is not None:
                get_fabric(fabric)


def test_cluster_gb200_nvl72_one_72_gpu_domain():
    """GB200 NVL72 is 18 trays of 4 GPUs in one 72-GPU NVLink domain."""
    (group,) = get_cluster("gb200-nvl72").node_groups
    assert group.num_gpus == 72 and group.domain_gpus == 72


def test_cluster_hetero_h100_a100_gpu_counts():
    """The heterogeneous cluster holds 16 H100 and 16 A100 GPUs in two named groups."""
    cluster = get_cluster("hetero-h100-a100")
    assert [g.name for g in cluster.node_groups] == ["h100", "a100"]
    assert cluster.gpus_by_type() == {"h100-sxm": 16, "a100-sxm-80gb": 16}
