"""Reading a HuggingFace `config.json` from disk into a `Model` (no network access).

`load_hf_config(path)` picks a family from `architectures[0]` (or `model_type` when `architectures` is absent)
and hands the raw dict to that family's mapping function. To support a new family, write one `_family(cfg)`
function returning `Model` fields and add its architecture and model_type names to `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simulator.errors import InputError, pydantic_error_to_input_error
from simulator.model import Model
from simulator.yamlio import read_yaml

_MISSING = object()


class _Config:
    """The raw config dict with lookups that turn a missing key into an InputError naming it."""

    def __init__(self, data: dict[str, Any], file: str):
        self.data = data
        self.file = file

    def get(self, *keys: str, default: Any = _MISSING) -> Any:
        """The first of `keys` present with a non-null value; `default` if none, else InputError on the first key."""
        for key in keys:
            if self.data.get(key) is not None:
                return self.data[key]
        if default is _MISSING:
            raise InputError("required key is missing", file=self.file, field=keys[0])
        return default

    def _present(self, keys: tuple[str, ...]) -> str | None:
        return next((k for k in keys if self.data.get(k) is not None), None)

    def count(self, *keys: str, default: Any = _MISSING, minimum: int = 1) -> Any:
        """Like `get`, for a whole number of at least `minimum` (a JSON string, bool or fraction is an error)."""
        key = self._present(keys)
        if key is None:
            return self.get(*keys, default=default)
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(
                f"expected a whole number, got {value!r} ({type(value).__name__})", file=self.file, field=key
            )
        if value < minimum:
            raise InputError(
                f"expected a whole number of at least {minimum}, got {value}", file=self.file, field=key
            )
        return value

    def flag(self, *keys: str, default: bool) -> bool:
        """Like `get`, for true/false (a JSON string or number is an error)."""
        key = self._present(keys)
        if key is None:
            return default
        if not isinstance(self.data[key], bool):
            raise InputError(f"expected true or false, got {self.data[key]!r}", file=self.file, field=key)
        return self.data[key]

    def head_dim(self, hidden: int, heads: int) -> int:
        """`head_dim` when given, else hidden / heads, which must then divide evenly."""
        if self.data.get("head_dim") is not None:
            return self.count("head_dim")
        if hidden % heads:
            head_key = self._present(("num_attention_heads", "n_head")) or "num_attention_heads"
            raise InputError(
                f"{heads} attention heads do not divide the hidden size {hidden}; give head_dim explicitly "
                "if the model's heads are not hidden_size / num_attention_heads wide",
                file=self.file,
                field=head_key,
            )
        return hidden // heads


def _attention_kind(num_heads: int, num_kv_heads: int) -> str:
    if num_kv_heads == num_heads:
        return "mha"
    return "mqa" if num_kv_heads == 1 else "gqa"


def _llama(cfg: _Config, *, qkv_bias: bool | None = None) -> dict[str, Any]:
    """Llama-style decoder (RMSNorm, SwiGLU, rotary, optional GQA): Llama, Mistral, Qwen2, Qwen3."""
    hidden = cfg.count("hidden_size")
    heads = cfg.count("num_attention_heads")
    kv_heads = cfg.count("num_key_value_heads", default=heads)
    return {
        "num_layers": cfg.count("num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": cfg.head_dim(hidden, heads),
        "ffn_size": cfg.count("intermediate_size"),
        "vocab_size": cfg.count("vocab_size"),
        "tied_embeddings": cfg.flag("tie_word_embeddings", default=False),
        "max_context": cfg.count("max_position_embeddings", default=4096),
        "attention": _attention_kind(heads, kv_heads),
        "qkv_bias": cfg.flag("attention_bias", default=False) if qkv_bias is None else qkv_bias,
    }


def _qwen2(cfg: _Config) -> dict[str, Any]:
    """Qwen2/Qwen2.5: Llama-style with a bias on the Q, K and V projections."""
    return _llama(cfg, qkv_bias=True)


def _mixtral(cfg: _Config) -> dict[str, Any]:
    """Mixtral: Llama-style attention, every FFN an MoE of `num_local_experts` SwiGLU experts."""
    moe = {
        "num_experts": cfg.count("num_local_experts"),
        "top_k": cfg.count("num_experts_per_tok"),
        "expert_ffn_size": cfg.count("intermediate_size"),
    }
    return {**_llama(cfg), "moe": moe}


def _qwen3_moe(cfg: _Config) -> dict[str, Any]:
    """Qwen3-MoE: Llama-style attention, MoE in every `decoder_sparse_step`-th layer."""
    if cfg.get("mlp_only_layers", default=[]):
        raise InputError(
            "dense-only layers inside an MoE stack are not supported", file=cfg.file, field="mlp_only_layers"
        )
    moe = {
        "num_experts": cfg.count("num_experts"),
        "top_k": cfg.count("num_experts_per_tok"),
        "expert_ffn_size": cfg.count("moe_intermediate_size"),
        "layer_step": cfg.count("decoder_sparse_step", default=1),
    }
    return {**_llama(cfg), "moe": moe}


def _deepseek_v3(cfg: _Config) -> dict[str, Any]:
    """DeepSeek-V3 and Kimi K2: multi-head latent attention, shared plus routed experts after dense layers."""
    heads = cfg.count("num_attention_heads")
    mla = {
        "q_lora_rank": cfg.count("q_lora_rank", default=None),
        "kv_lora_rank": cfg.count("kv_lora_rank"),
        "qk_nope_head_dim": cfg.count("qk_nope_head_dim", minimum=0),
        "qk_rope_head_dim": cfg.count("qk_rope_head_dim"),
        "v_head_dim": cfg.count("v_head_dim"),
    }
    moe = {
        "num_experts": cfg.count("n_routed_experts"),
        "top_k": cfg.count("num_experts_per_tok"),
        "expert_ffn_size": cfg.count("moe_intermediate_size"),
        "num_shared_experts": cfg.count("n_shared_experts", default=0, minimum=0),
        "first_dense_layers": cfg.count("first_k_dense_replace", default=0, minimum=0),
        "layer_step": cfg.count("moe_layer_freq", default=1),
    }
    return {
        "num_layers": cfg.count("num_hidden_layers"),
        "hidden_size": cfg.count("hidden_size"),
        "num_heads": heads,
        "num_kv_heads": cfg.count("num_key_value_heads", default=heads),
        "head_dim": mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"],
        "ffn_size": cfg.count("intermediate_size"),
        "vocab_size": cfg.count("vocab_size"),
        "tied_embeddings": cfg.flag("tie_word_embeddings", default=False),
        "max_context": cfg.count("max_position_embeddings", default=4096),
        "attention": "mla",
        "mla": mla,
        "moe": moe,
    }


def _gptj(cfg: _Config) -> dict[str, Any]:
    """GPT-J: multi-head attention and a 2-matrix GELU FFN of width `n_inner` (default 4 x hidden)."""
    hidden = cfg.count("n_embd", "hidden_size")
    heads = cfg.count("n_head", "num_attention_heads")
    return {
        "num_layers": cfg.count("n_layer", "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": cfg.head_dim(hidden, heads),
        "ffn_size": cfg.count("n_inner", default=4 * hidden),
        "ffn_gated": False,
        "vocab_size": cfg.count("vocab_size"),
        "tied_embeddings": cfg.flag("tie_word_embeddings", default=False),
        "max_context": cfg.count("n_positions", "max_position_embeddings", default=2048),
        "attention": "mha",
    }


def _falcon(cfg: _Config) -> dict[str, Any]:
    """Falcon: 2-matrix GELU FFN; multi-query (7B) or grouped KV heads (`new_decoder_architecture`, 40B/180B)."""
    hidden = cfg.count("hidden_size")
    heads = cfg.count("num_attention_heads", "n_head")
    if cfg.flag("new_decoder_architecture", default=False):
        kv_heads = cfg.count("num_kv_heads", "n_head_kv", default=heads)
    else:
        kv_heads = 1 if cfg.flag("multi_query", default=True) else heads
    return {
        "num_layers": cfg.count("num_hidden_layers", "n_layer"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": cfg.head_dim(hidden, heads),
        "ffn_size": cfg.count("ffn_hidden_size", default=4 * hidden),
        "ffn_gated": False,
        "vocab_size": cfg.count("vocab_size"),
        "tied_embeddings": cfg.flag("tie_word_embeddings", default=True),
        "max_context": cfg.count("max_position_embeddings", default=2048),
        "attention": _attention_kind(heads, kv_heads),
        "qkv_bias": cfg.flag("bias", default=False),
    }


# Architecture names (config `architectures[0]`) and model_type names -> mapping function.
FAMILIES: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "LlamaForCausalLM": _llama,
    "MistralForCausalLM": _llama,
    "MixtralForCausalLM": _mixtral,
    "Qwen2ForCausalLM": _qwen2,
    "Qwen3ForCausalLM": _llama,
    "Qwen3MoeForCausalLM": _qwen3_moe,
    "DeepseekV3ForCausalLM": _deepseek_v3,
    "GPTJForCausalLM": _gptj,
    "FalconForCausalLM": _falcon,
    "RWForCausalLM": _falcon,
    "llama": _llama,
    "mistral": _llama,
    "mixtral": _mixtral,
    "qwen2": _qwen2,
    "qwen3": _llama,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v3": _deepseek_v3,
    "kimi_k2": _deepseek_v3,
    "gptj": _gptj,
    "falcon": _falcon,
}


def _family(cfg: _Config) -> Callable[[_Config], dict[str, Any]]:
    """The mapping function for `architectures[0]`, or for `model_type` when `architectures` is absent."""
    supported = ", ".join(FAMILIES)
    architectures = cfg.data.get("architectures")
    if architectures:
        arch = architectures[0] if isinstance(architectures, list) else architectures
        if arch not in FAMILIES:
            raise InputError(
                f"unsupported architecture {arch!r}; expected one of: {supported}",
                file=cfg.file,
                field="architectures",
            )
        return FAMILIES[arch]
    model_type = cfg.get("model_type")
    if model_type not in FAMILIES:
        raise InputError(
            f"unsupported model_type {model_type!r}; expected one of: {supported}",
            file=cfg.file,
            field="model_type",
        )
    return FAMILIES[model_type]


def _model_name(data: dict[str, Any], path: Path) -> str:
    """Last part of `_name_or_path` (a hub id or a local folder), else the folder holding the file; lower-case."""
    name_or_path = str(data.get("_name_or_path") or "").strip().rstrip("/")
    name = name_or_path.rsplit("/", 1)[-1] or path.resolve().parent.name
    return name.lower()


def load_hf_config(path: str | Path) -> Model:
    """A `Model` from a HuggingFace `config.json` on disk; unknown architectures and missing keys raise InputError."""
    path = Path(path)
    file = str(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", file=file)
    cfg = _Config(data, file)
    fields = _family(cfg)(cfg)
    fields.update(name=_model_name(data, path), source=file)
    try:
        return Model.model_validate(fields)
    except ValidationError as exc:
        raise pydantic_error_to_input_error(exc, file=file, model=Model) from None
