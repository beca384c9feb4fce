"""The catalog commands list every required entry and `apex show` prints the derived numbers."""

from __future__ import annotations

import re

import pytest

REQUIRED_MODELS = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
    "llama-3.3-70b", "mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "qwen2.5-72b", "qwen3-32b",
    "qwen3-235b-a22b", "deepseek-v3", "llama-4-maverick", "gpt-j-6b", "falcon-180b", "kimi-k2",
]  # fmt: skip
REQUIRED_GPUS = ["a100-sxm-80gb", "a100-sxm-40gb", "h100-sxm", "h100-pcie", "h200-sxm", "gh200", "b200", "gb200",
                 "l40s", "mi300x"]  # fmt: skip


@pytest.mark.parametrize(("command", "names"), [("models", REQUIRED_MODELS), ("gpus", REQUIRED_GPUS)])
def test_catalog_listing_names_every_required_entry(run_cli, command, names):
    """`apex models` / `apex gpus` list every name the catalog must have."""
    code, out, _ = run_cli(command)
    assert code == 0
    missing = [n for n in names if n not in out]
    assert not missing


def test_clusters_listing_includes_nvl72_and_heterogeneous(run_cli):
    """`apex clusters` shows the GB200 NVL72 rack and a heterogeneous preset."""
    code, out, _ = run_cli("clusters")
    assert code == 0
    assert "gb200-nvl72" in out and "hetero-h100-a100" in out


def test_show_deepseek_prints_parameter_count_and_kv_bytes(run_cli):
    """`apex show model deepseek-v3` prints ~671B parameters and MLA's KV bytes per token."""
    code, out, _ = run_cli("show", "model", "deepseek-v3")
    assert code == 0
    line = next(row for row in out.splitlines() if "│ parameters " in row)
    params = int(re.search(r"([\d,]{10,})", line).group(1).replace(",", ""))
    assert abs(params / 671e9 - 1) < 0.02
    kv = next(row for row in out.splitlines() if "KV bytes per token (bf16, all layers)" in row)
    assert "70,272" in kv  # 61 layers x (512 latent + 64 rotary) x 2 bytes


def test_show_gpu_and_cluster_print_sources(run_cli):
    """`apex show gpu` prints the datasheet numbers with their sources; clusters print their GPU total."""
    code, out, _ = run_cli("show", "gpu", "h100-sxm")
    assert code == 0 and "989" in out and "3.35" in out
    code, out, _ = run_cli("show", "cluster", "h100-sxm-4node")
    assert code == 0 and "total GPUs" in out and "32" in out


def test_show_unknown_kind_exits_2(run_cli):
    """An unknown catalog kind is rejected with the list of kinds."""
    code, _, err = run_cli("show", "router", "x")
    assert code == 2 and "model, gpu, cluster" in err
