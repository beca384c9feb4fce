"""Transformer architecture (`Model`) and every number derived from it, computed in one place.

Derived numbers: parameter counts (total, active per token, per layer), weight bytes per dtype,
KV-cache bytes per token per layer, and forward FLOPs per token. The cost model, the memory model
and the CLI all read them from here.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.dtypes import bytes_per_element


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLAConfig(_Strict):
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank Q and a compressed, shared KV latent."""

    q_lora_rank: int | None = Field(None, gt=0, description="rank of the Q down-projection; None = full Q")
    kv_lora_rank: int = Field(gt=0, description="width of the cached KV latent")
    qk_nope_head_dim: int = Field(gt=0, description="per-head Q/K width without rotary")
    qk_rope_head_dim: int = Field(gt=0, description="per-head rotary Q/K width (the rotary K is shared)")
    v_head_dim: int = Field(gt=0, description="per-head V width")


class MoEConfig(_Strict):
    """Mixture of experts in the FFN of some layers."""

    num_experts: int = Field(gt=0, description="routed experts per MoE layer")
    top_k: int = Field(gt=0, description="routed experts each token goes to")
    expert_ffn_size: int = Field(gt=0, description="intermediate size of one routed expert")
    num_shared_experts: int = Field(0, ge=0, description="experts every token goes through")
    shared_expert_ffn_size: int | None = Field(
        None, gt=0, description="intermediate size of one shared expert (default: expert_ffn_size)"
    )
    first_dense_layers: int = Field(0, ge=0, description="leading layers with a dense FFN instead of MoE")
    layer_step: int = Field(1, gt=0, description="every layer_step-th layer (after the dense ones) is MoE")

    @model_validator(mode="after")
    def _check(self):
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must be at most num_experts ({self.num_experts})")
        return self


class Model(_Strict):
    """A decoder-only transformer, as the catalog YAML or a HuggingFace config.json describes it."""

    name: str = Field(description="catalog name, lower-case with hyphens")
    display_name: str | None = None
    source: str = Field(description="where the architecture numbers come from (a public URL)")
    published_params: float | None = Field(None, gt=0, description="total parameters as published")
    published_params_source: str | None = None
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0, description="query heads")
    num_kv_heads: int = Field(gt=0, description="key/value heads (== num_heads for MHA, 1 for MQA)")
    head_dim: int = Field(gt=0)
    ffn_size: int = Field(gt=0, description="intermediate size of the dense FFN")
    ffn_gated: bool = Field(True, description="SwiGLU-style FFN with 3 matrices; False = 2 matrices (GELU)")
    vocab_size: int = Field(gt=0)
    tied_embeddings: bool = False
    max_context: int = Field(4096, gt=0)
    attention: Literal["mha", "gqa", "mqa", "mla"] = "gqa"
    mla: MLAConfig | None = None
    moe: MoEConfig | None = None
    qkv_bias: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.attention == "mla" and self.mla is None:
            raise ValueError("attention 'mla' needs an 'mla' block")
        if self.moe and self.moe.first_dense_layers > self.num_layers:
            raise ValueError("moe.first_dense_layers exceeds num_layers")
        return self

    # ---- layer structure -------------------------------------------------------------------------------

    def is_moe_layer(self, layer: int) -> bool:
        """Whether layer `layer` (0-based) has an MoE FFN."""
        if self.moe is None or layer < self.moe.first_dense_layers:
            return False
        return (layer - self.moe.first_dense_layers) % self.moe.layer_step == self.moe.layer_step - 1

    def num_moe_layers(self, start: int = 0, stop: int | None = None) -> int:
        """MoE layers within [start, stop)."""
        stop = self.num_layers if stop is None else stop
        return sum(self.is_moe_layer(i) for i in range(start, stop))

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    # ---- parameter counts ------------------------------------------------------------------------------

    @cached_property
    def attention_params(self) -> int:
        """Weights of one attention block (projections only)."""
        h = self.hidden_size
        if self.attention == "mla":
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * self.num_heads * qk
            else:
                q = h * self.num_heads * qk
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
            kv += m.kv_lora_rank * self.num_heads * (m.qk_nope_head_dim + m.v_head_dim)
            out = self.num_heads * m.v_head_dim * h
            return q + kv + out
        q = h * self.num_heads * self.head_dim
        kv = 2 * h * self.num_kv_heads * self.head_dim
        out = self.num_heads * self.head_dim * h
        bias = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim if self.qkv_bias else 0
        return q + kv + out + bias

    def _ffn_params(self, intermediate: int) -> int:
        return (3 if self.ffn_gated else 2) * self.hidden_size * intermediate

    @cached_property
    def dense_ffn_params(self) -> int:
        return self._ffn_params(self.ffn_size)

    @cached_property
    def expert_params(self) -> int:
        """Weights of one routed expert."""
        return self._ffn_params(self.moe.expert_ffn_size) if self.moe else 0

    @cached_property
    def shared_expert_params(self) -> int:
        """Weights of all shared experts of one MoE layer."""
        if not self.moe or not self.moe.num_shared_experts:
            return 0
        size = self.moe.shared_expert_ffn_size or self.moe.expert_ffn_size
        return self.moe.num_shared_experts * self._ffn_params(size)

    @cached_property
    def router_params(self) -> int:
        return self.hidden_size * self.moe.num_experts if self.moe else 0

    def layer_params(self, layer: int) -> int:
        """All weights of layer `layer`, norms included."""
        norms = 2 * self.hidden_size
        if self.is_moe_layer(layer):
            ffn = self.moe.num_experts * self.expert_params + self.shared_expert_params + self.router_params
        else:
            ffn = self.dense_ffn_params
        return self.attention_params + ffn + norms

    def layer_active_params(self, layer: int) -> int:
        """Weights one token touches in layer `layer`."""
        norms = 2 * self.hidden_size
        if self.is_moe_layer(layer):
            ffn = self.moe.top_k * self.expert_params + self.shared_expert_params + self.router_params
        else:
            ffn = self.dense_ffn_params
        return self.attention_params + ffn + norms

    @cached_property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @cached_property
    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    @cached_property
    def num_params(self) -> int:
        """Total parameters (embedding, all layers, final norm, LM head)."""
        layers = sum(self.layer_params(i) for i in range(self.num_layers))
        return self.embedding_params + layers + self.hidden_size + self.lm_head_params

    @cached_property
    def num_active_params(self) -> int:
        """Parameters one token uses in a forward pass (routed experts: top-k only)."""
        layers = sum(self.layer_active_params(i) for i in range(self.num_layers))
        return self.embedding_params + layers + self.hidden_size + self.lm_head_params

    def weight_bytes(self, dtype: str) -> float:
        """Bytes of all weights stored in `dtype`."""
        return self.num_params * bytes_per_element(dtype)

    # ---- KV cache --------------------------------------------------------------------------------------

    @cached_property
    def kv_elements_per_token_per_layer(self) -> int:
        """Cached elements per token per layer: K and V of every KV head, or MLA's latent plus rotary key."""
        if self.attention == "mla":
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token_per_layer(self, dtype: str) -> float:
        return self.kv_elements_per_token_per_layer * bytes_per_element(dtype)

    def kv_bytes_per_token(self, dtype: str) -> float:
        """KV-cache bytes one token occupies across all layers."""
        return self.num_layers * self.kv_bytes_per_token_per_layer(dtype)

    # ---- FLOPs -----------------------------------------------------------------------------------------

    @cached_property
    def flops_per_token(self) -> float:
        """Forward GEMM FLOPs per token (2 per active weight, embeddings lookup excluded), without attention."""
        return 2.0 * (self.num_active_params - self.embedding_params)

    def attention_flops_per_token(self, context: int) -> float:
        """Attention score and value FLOPs of one token attending to `context` tokens, all layers."""
        if self.attention == "mla":
            m = self.mla
            qk, v = m.qk_nope_head_dim + m.qk_rope_head_dim, m.v_head_dim
        else:
            qk = v = self.head_dim
        return 2.0 * self.num_layers * self.num_heads * (qk + v) * context

    def summary(self) -> dict[str, float | int | str]:
        """Architecture and derived numbers, for `apex show model`."""
        return {
            "parameters": self.num_params,
            "active parameters per token": self.num_active_params,
            "published parameters": self.published_params or "-",
            "weights bf16 GiB": self.weight_bytes("bf16") / 2**30,
            "weights fp8 GiB": self.weight_bytes("fp8") / 2**30,
            "KV bytes per token (bf16, all layers)": self.kv_bytes_per_token("bf16"),
            "KV bytes per token per layer (bf16)": self.kv_bytes_per_token_per_layer("bf16"),
            "GEMM FLOPs per token": self.flops_per_token,
        }
