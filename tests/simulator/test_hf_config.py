"""Loading HuggingFace config.json files: the mapped Model matches the catalog entry of the same model."""

from __future__ import annotations

import json

import pytest

from simulator.catalog import get_model
from simulator.errors import InputError
from simulator.hf_config import load_hf_config

# Abridged copies of the published config.json files (unused keys such as rope_scaling kept where they test that
# extra keys are ignored).
LLAMA_3_1_70B = {
    "_name_or_path": "meta-llama/Llama-3.1-70B",
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "hidden_act": "silu",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "max_position_embeddings": 131072,
    "model_type": "llama",
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "rope_type": "llama3"},
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mixtral",
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "first_k_dense_replace": 3,
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "tie_word_embeddings": False,
    "v_head_dim": 128,
    "vocab_size": 129280,
}


def write_config(tmp_path, data, folder="model"):
    """Write `data` as `<tmp_path>/<folder>/config.json` and return the path."""
    path = tmp_path / folder / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def assert_same_architecture(loaded, catalog):
    """The loaded model has the catalog entry's parameter counts, KV bytes and layer structure."""
    assert loaded.num_params == catalog.num_params
    assert loaded.num_active_params == catalog.num_active_params
    assert loaded.kv_bytes_per_token("bf16") == catalog.kv_bytes_per_token("bf16")
    assert loaded.num_layers == catalog.num_layers
    assert [loaded.is_moe_layer(i) for i in range(loaded.num_layers)] == [
        catalog.is_moe_layer(i) for i in range(catalog.num_layers)
    ]
    assert loaded.attention == catalog.attention


@pytest.mark.parametrize(
    ("config", "catalog_name"),
    [(LLAMA_3_1_70B, "llama-3.1-70b"), (MIXTRAL_8X7B, "mixtral-8x7b"), (DEEPSEEK_V3, "deepseek-v3")],
)
def test_load_hf_config_matches_catalog_real_configs(tmp_path, config, catalog_name):
    """A real config.json loads into a Model with the same counts, KV bytes and layers as the catalog entry."""
    loaded = load_hf_config(write_config(tmp_path, config))
    assert_same_architecture(loaded, get_model(catalog_name))


def test_load_hf_config_name_from_name_or_path(tmp_path):
    """The model name is the last part of `_name_or_path`, lower-cased, and the source is the file path."""
    path = write_config(tmp_path, LLAMA_3_1_70B)
    model = load_hf_config(path)
    assert model.name == "llama-3.1-70b"
    assert model.source == str(path)


def test_load_hf_config_name_from_folder_without_name_or_path(tmp_path):
    """Without `_name_or_path` the model name is the lower-cased folder holding config.json."""
    model = load_hf_config(write_config(tmp_path, MIXTRAL_8X7B, folder="Mixtral-8x7B-v0.1"))
    assert model.name == "mixtral-8x7b-v0.1"


def test_load_hf_config_model_type_fallback_without_architectures(tmp_path):
    """A config without `architectures` is mapped by its `model_type`."""
    config = {k: v for k, v in LLAMA_3_1_70B.items() if k != "architectures"}
    assert load_hf_config(write_config(tmp_path, config)).num_params == get_model("llama-3.1-70b").num_params


def test_get_model_json_path_uses_hf_loader(tmp_path):
    """The catalog's get_model accepts a path to a config.json."""
    path = write_config(tmp_path, DEEPSEEK_V3)
    assert get_model(str(path)).num_params == get_model("deepseek-v3").num_params


def test_load_hf_config_error_unsupported_architecture(tmp_path):
    """An unknown architecture raises InputError naming the file, `architectures`, the value and the supported list."""
    path = write_config(tmp_path, {**LLAMA_3_1_70B, "architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(InputError) as err:
        load_hf_config(path)
    assert err.value.field == "architectures"
    assert err.value.file == str(path)
    assert "GPT2LMHeadModel" in str(err.value) and "LlamaForCausalLM" in str(err.value)


def test_load_hf_config_error_missing_key(tmp_path):
    """A config missing a required key raises InputError naming that key."""
    config = {k: v for k, v in LLAMA_3_1_70B.items() if k != "intermediate_size"}
    with pytest.raises(InputError) as err:
        load_hf_config(write_config(tmp_path, config))
    assert err.value.field == "intermediate_size"
