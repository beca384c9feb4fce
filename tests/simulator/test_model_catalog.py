"""The model catalog: every entry validates and its derived numbers match published and hand-computed figures."""

from __future__ import annotations

import pytest

from simulator.catalog import get_model, list_names

REQUIRED_MODELS = {
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
    "llama-3.3-70b", "mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "qwen2.5-72b", "qwen3-32b",
    "qwen3-235b-a22b", "deepseek-v3", "llama-4-maverick", "gpt-j-6b", "falcon-180b", "kimi-k2",
}  # fmt: skip
MODELS = list_names("model")


def test_catalog_models_required_names_present():
    """Every model the foundation catalog promises ships as a YAML file."""
    assert not REQUIRED_MODELS - set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_catalog_validates_each(name):
    """Each catalog model loads, keeps its file stem as its name and cites a source and a published size."""
    model = get_model(name)
    assert model.name == name
    assert model.source and model.published_params and model.published_params_source


@pytest.mark.parametrize("name", MODELS)
def test_model_num_params_within_2pct_of_published(name):
    """The parameter count derived from the architecture is within 2% of the published total."""
    model = get_model(name)
    assert model.num_params == pytest.approx(model.published_params, rel=0.02)


def test_model_num_params_deepseek_v3_671b():
    """DeepSeek-V3 counts 671B parameters (the MTP module excluded, as in the paper)."""
    assert get_model("deepseek-v3").num_params == pytest.approx(671e9, rel=0.02)


def test_model_kv_bytes_per_token_per_layer_llama_3_1_70b():
    """Llama-3.1-70B caches K and V of 8 heads of width 128 in bf16: 2 * 8 * 128 * 2 = 4096 bytes."""
    assert get_model("llama-3.1-70b").kv_bytes_per_token_per_layer("bf16") == 2 * 8 * 128 * 2


def test_model_kv_bytes_per_token_per_layer_deepseek_v3_mla():
    """DeepSeek-V3 caches its 512-wide latent plus the 64-wide rotary key in bf16: (512 + 64) * 2 bytes."""
    assert get_model("deepseek-v3").kv_bytes_per_token_per_layer("bf16") == (512 + 64) * 2


def test_model_active_params_mixtral_8x7b_top2():
    """Mixtral 8x7B uses about 12.9B parameters per token with top-2 routing."""
    assert get_model("mixtral-8x7b").num_active_params == pytest.approx(12.9e9, rel=0.03)


def test_model_active_params_deepseek_v3_top8_plus_shared():
    """DeepSeek-V3 activates about 37B parameters per token (8 routed experts plus 1 shared)."""
    assert get_model("deepseek-v3").num_active_params == pytest.approx(37e9, rel=0.03)


def test_model_layer_structure_deepseek_v3_first_three_dense():
    """DeepSeek-V3's first 3 layers are dense and the other 58 are MoE."""
    model = get_model("deepseek-v3")
    assert [model.is_moe_layer(i) for i in range(4)] == [False, False, False, True]
    assert model.num_moe_layers() == 58


def test_model_layer_structure_llama_4_maverick_alternates():
    """Llama 4 Maverick interleaves dense and MoE layers, odd layers being MoE (24 of 48)."""
    model = get_model("llama-4-maverick")
    assert [model.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    assert model.num_moe_layers() == 24
