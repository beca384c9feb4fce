"""Public cost functions, in seconds: `from simulator import cost`.

    cost.gemm_time("h100-sxm", m=4096, n=8192, k=8192, dtype="bf16")
    cost.attention_prefill_time("h100-sxm", batch=1, seq_len=2048, cached=0, heads=64, kv_heads=8, head_dim=128)
    cost.attention_decode_time("h100-sxm", batch=32, kv_len=2048, heads=64, kv_heads=8, head_dim=128)
    cost.all_reduce_time("h100-sxm", num_gpus=8, nbytes=16 * 2**20)

`gpu` is a catalog name or a `GPU`; `cluster_or_gpu` a `Cluster`, a `GPU` or a GPU catalog name. Each is one
layer / one call, priced by the same rules the simulator uses (simulator/costmodel).
"""

from __future__ import annotations

from simulator.costmodel import comm
from simulator.costmodel.interface import BatchShape
from simulator.costmodel.kernels import gemm_kernel
from simulator.costmodel.ops import AttentionDecode, AttentionPrefill, price_attention
from simulator.dtypes import bytes_per_element
from simulator.hardware import GPU, Cluster, Fabric

__all__ = ["gemm_time", "attention_prefill_time", "attention_decode_time", "all_reduce_time"]


def _gpu(gpu: str | GPU) -> GPU:
    if isinstance(gpu, GPU):
        return gpu
    from simulator import catalog

    return catalog.get_gpu(gpu)


def gemm_time(gpu: str | GPU, m: int, n: int, k: int, dtype: str = "bf16") -> float:
    """Seconds of one (m x k) @ (k x n) GEMM with weights in `dtype`; an fp8/int8/fp4 GEMM receives bf16
    activations and pays their quantization pass (as vLLM's FP8 linear layers do)."""
    g = _gpu(gpu)
    b = bytes_per_element(dtype)
    act = 2.0 if dtype in ("fp8", "int8", "fp4") else b  # narrow GEMMs quantize bf16 activations first
    return gemm_kernel(g, m, n, k, b, act, dtype).seconds


def attention_prefill_time(
    gpu: str | GPU,
    batch: int,
    seq_len: int,
    cached: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    dtype: str = "bf16",
) -> float:
    """Seconds of one layer's causal attention for `batch` prompts of `seq_len` new tokens after `cached` ones."""
    g = _gpu(gpu)
    b = bytes_per_element(dtype)
    op = AttentionPrefill(1, heads, head_dim, head_dim, 2 * kv_heads * head_dim * b, b, dtype)
    shape = BatchShape.from_requests([seq_len] * batch, [cached] * batch)
    return sum(c.time_s for c in price_attention(op, None, shape, 1.0, g))


def attention_decode_time(
    gpu: str | GPU, batch: int, kv_len: int, heads: int, kv_heads: int, head_dim: int, dtype: str = "bf16"
) -> float:
    """Seconds of one layer's decode attention: `batch` requests each reading `kv_len` cached tokens."""
    g = _gpu(gpu)
    b = bytes_per_element(dtype)
    op = AttentionDecode(
        1, heads, 2 * head_dim, 2 * kv_heads * head_dim * b, kv_heads, 16, 2 * heads * head_dim * b
    )
    shape = BatchShape.from_requests(decode_context=[kv_len] * batch)
    return sum(c.time_s for c in price_attention(None, op, shape, 1.0, g))


def all_reduce_time(
    cluster_or_gpu: Cluster | GPU | str, num_gpus: int, nbytes: float, fabric: Fabric | str | None = None
) -> float:
    """Seconds of an all-reduce of `nbytes` over `num_gpus` GPUs (scale-up fabric if they fit one domain)."""
    from simulator import catalog

    if isinstance(cluster_or_gpu, Cluster):
        group = cluster_or_gpu.node_groups[0]
        g = _gpu(group.gpu)
        intra = group.intra_node or g.scale_up_fabric
        ref = intra if num_gpus <= group.domain_gpus or group.inter_node is None else group.inter_node
    else:
        g = _gpu(cluster_or_gpu)
        ref = g.scale_up_fabric
    f = catalog.get_fabric(fabric or ref)
    return comm.all_reduce_seconds(f, g.efficiency, num_gpus, nbytes, g.clock_ghz)
