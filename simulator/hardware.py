"""Hardware: GPU types, fabrics (links between GPUs) and clusters made of node groups."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# H100 SXM max boost clock (NVIDIA H100 datasheet: 1,980 MHz): the clock NCCL's latency constants and the
# default coefficients refer to.
REFERENCE_CLOCK_GHZ = 1.98
# Lowest SM clock a scenario may lock, as a fraction of the boost clock: the power-vs-clock model
# (simulator/costmodel/clock.py) is fitted on published points down to 0.52 of the top clock.
MIN_CLOCK_FRACTION = 0.5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeakRates(_Strict):
    """Dense (never 2:4-sparse) tensor-core peak, TFLOP/s (TOP/s for int8). None = not supported."""

    fp32: float | None = Field(None, gt=0)
    bf16: float = Field(gt=0)
    fp16: float = Field(gt=0)
    fp8: float | None = Field(None, gt=0)
    int8: float | None = Field(None, gt=0)
    fp4: float | None = Field(None, gt=0)


class GPUEfficiency(_Strict):
    """Achievable fractions of the datasheet peaks, each from a public measurement (see `sources`)."""

    gemm_max: float = Field(0.75, gt=0, le=1, description="best-shape GEMM throughput / dense peak")
    memory_max: float = Field(
        0.85,
        gt=0,
        le=1,
        description="HBM bandwidth memory-bound serving kernels (GEMV, paged decode attention, elementwise) "
        "reach / datasheet; fitted per generation on data/reference/kernels.yaml",
    )
    scale_up_bus_max: float = Field(0.8, gt=0, le=1, description="NCCL bus bandwidth / link bandwidth")
    # ---- cost-model shape and overhead coefficients (simulator/costmodel; `apex calibrate` may refit them) ----
    gemm_tile_m: int = Field(
        128, gt=0, description="GEMM CTA tile rows (CUTLASS/cuBLAS Hopper 128x128/128x256 tiles)"
    )
    gemm_tile_n: int = Field(128, gt=0, description="GEMM CTA tile columns; tiles fill num_sms per wave")
    attention_max: float = Field(
        0.5,
        gt=0,
        le=1,
        description="flash-attention prefill throughput / dense peak (FlashAttention-2 reaches "
        "35-50% of H100 BF16 peak, FlashAttention-3 up to 75%: Shah et al. 2024, arXiv:2407.08608)",
    )
    layer_overhead_eager_s: float = Field(
        60e-6,
        ge=0,
        description="fixed host/launch cost per layer per iteration without CUDA graphs: ~12 kernels x "
        "~5 us launch latency (NVIDIA CUDA C++ Best Practices Guide, kernel launch overhead)",
    )
    layer_overhead_graph_s: float = Field(
        0.0,
        ge=0,
        description="extra fixed cost per layer per iteration replayed from a CUDA graph, beyond each kernel's "
        "kernel_launch_s (0: the per-kernel floors, measured back to back, already hold the inter-kernel gaps)",
    )
    collective_latency_scale: float = Field(
        0.908,
        gt=0,
        description="multiplier on NCCL's own protocol latencies (costmodel/nccl.py) and the p2p latency floor",
    )
    collective_bus_scale: float = Field(
        0.884, gt=0, le=1.5, description="multiplier on the fabric's large-message bus efficiency"
    )
    collective_half_bytes: float = Field(
        6430000.0,
        gt=0,
        description="message size at which the Simple protocol's bus bandwidth is half its maximum (NCCL channel "
        "and pipeline ramp; Hopper fit of data/reference/kernels.yaml; compare nccl-tests on 8xH200, hardware.md: "
        "busbw 40 GB/s at 1 MiB, 107 at 4 MiB, 347 at 64 MiB)",
    )
    # ---- kernel-level coefficients (simulator/costmodel/kernels.py, attention.py, nccl.py) ----------------
    # Defaults are the Hopper fit of `apex calibrate data/reference/kernels.yaml --gpu h100-sxm`; the catalog
    # files carry each generation's own values (configs/hardware/*.yaml, with the fit named in `sources`).
    kernel_launch_s: float = Field(
        2.58e-06,
        ge=0,
        description="fixed cost of one kernel (launch, prologue, epilogue, tail): measured GEMMs rarely run "
        "under 2-3 us (fit on data/reference/kernels.yaml)",
    )
    gemm_fp8_max: float | None = Field(
        None,
        gt=0,
        le=1,
        description="best-shape FP8/INT8 GEMM throughput / dense FP8 peak (None: gemm_max)",
    )
    gemm_split_k_s: float = Field(
        2.52e-06,
        ge=0,
        description="extra fixed cost of a split-K / stream-K decomposition (the partial-sum reduction pass)",
    )
    gemm_min_k_per_split: int = Field(
        256, gt=0, description="shortest K slice a split-K CTA runs (CUTLASS: k-tile 64 x pipeline stages 4)"
    )
    saturating_sm_fraction: float = Field(
        0.106,
        gt=0,
        le=1,
        description="share of the SMs whose CTAs together saturate HBM; a kernel with fewer CTAs streams "
        "proportionally less (small GEMMs without split-K)",
    )
    attention_fill_tokens: float = Field(
        478.0,
        gt=0,
        description="keys per query block at which a flash-attention CTA reaches half its steady throughput "
        "(pipeline fill: eff = max * kv / (kv + fill))",
    )
    attention_head_dim_half: float = Field(
        59.8,
        gt=0,
        description="head dim at which flash-attention efficiency is half its large-head limit "
        "(FlashAttention-3 paper: head dim 64 reaches clearly less than 128 or 256)",
    )
    attention_prefill_floor_s: float = Field(
        1.33e-05,
        ge=0,
        description="fixed cost of one prefill attention call (KV-cache write, metadata, kernel)",
    )
    attention_decode_floor_s: float = Field(
        9.29e-06,
        ge=0,
        description="fixed cost of one decode attention call (KV-cache write, metadata, kernel)",
    )
    attention_decode_cta_s: float = Field(
        2.48e-06,
        ge=0,
        description="latency of one decode CTA (one sequence x KV head): a chain of dependent page loads",
    )
    attention_decode_row_s: float = Field(
        4.53e-07,
        ge=0,
        description="cost per query row (sequence x query head) per SM: softmax and output of each row",
    )
    quant_wave_s: float = Field(
        2.3e-06,
        ge=0,
        description="time of one wave of the activation-quantization kernel's row CTAs (one 1024-thread CTA "
        "per row, two per SM: vLLM scaled_fp8_quant): a CTA launch and a dependent HBM load and store, "
        "at the reference clock",
    )
    moe_imbalance: float = Field(
        1.2,
        ge=1,
        description="tokens on the busiest expert-parallel GPU / mean (DeepSeek-V3 report, EPLB: "
        "~1.1-1.3 after balancing)",
    )
    runtime_reserve_gib: float = Field(
        1.0,
        ge=0,
        description="per-GPU memory outside weights/KV/activations: CUDA context, NCCL buffers, CUDA "
        "graphs (vLLM logs: 'Graph capturing finished ... 0.3-1 GiB'; CUDA context ~0.5 GiB)",
    )


class GPU(_Strict):
    """One GPU type."""

    name: str
    display_name: str | None = None
    vendor: Literal["nvidia", "amd", "intel", "other"] = "nvidia"
    peak_tflops: PeakRates
    memory_gib: float = Field(gt=0, description="HBM capacity, GiB")
    memory_bandwidth_tbps: float = Field(gt=0, description="HBM bandwidth, TB/s")
    scale_up_bandwidth_gbps: float = Field(gt=0, description="NVLink/xGMI/PCIe per GPU, one direction, GB/s")
    scale_up_fabric: str = Field(description="fabric catalog name of the intra-node link in its usual server")
    num_sms: int = Field(gt=0, description="streaming multiprocessors (compute units on AMD)")
    tdp_w: float = Field(gt=0)
    idle_w: float = Field(gt=0)
    price_usd_per_hour: float = Field(gt=0, description="on-demand price of one GPU-hour")
    architecture: Literal["ampere", "ada", "hopper", "blackwell", "cdna3", "other"] = Field(
        "other", description="GPU generation: catalog coefficients are fitted per generation"
    )
    boost_clock_ghz: float | None = Field(
        None, gt=0, description="max boost SM clock, GHz (datasheet); latency-bound kernels scale with it"
    )
    peak_clock_ghz: float | None = Field(
        None,
        gt=0,
        description="SM clock at which the datasheet tensor peaks are quoted (None: the boost clock); a locked "
        "clock below it lowers the peaks in proportion (simulator/costmodel/clock.py)",
    )
    sm_clock_ghz: float | None = Field(
        None,
        gt=0,
        description="SM clock locked below the boost clock (`nvidia-smi -lgc`), set by `at_clock`; "
        "None: the default boost clock",
    )
    efficiency: GPUEfficiency = GPUEfficiency()
    sources: dict[str, str] = Field(default_factory=dict, description="field -> public source")

    @model_validator(mode="after")
    def _check(self):
        if self.idle_w >= self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w}) must be below tdp_w ({self.tdp_w})")
        return self

    @property
    def clock_ghz(self) -> float:
        """SM clock, GHz: the locked clock, else the boost clock, else the Hopper reference clock."""
        return self.sm_clock_ghz or self.boost_clock_ghz or REFERENCE_CLOCK_GHZ

    @property
    def clock_range_mhz(self) -> tuple[int, int] | None:
        """The SM clocks (MHz) it may be locked to, or None when its catalog entry has no boost clock."""
        if self.boost_clock_ghz is None:
            return None
        top = int(round(self.boost_clock_ghz * 1000))
        return int(math.ceil(top * MIN_CLOCK_FRACTION)), top

    def at_clock(self, clock_mhz: int | None) -> GPU:
        """This GPU with its SM clock locked at `clock_mhz` (None: as it is; the boost clock: unlocked). Raises
        ValueError, naming the allowed range, outside it; callers turn it into an InputError naming the field."""
        if clock_mhz is None:
            return self
        span = self.clock_range_mhz
        if span is None:
            raise ValueError(
                f"{self.name} has no boost clock in its catalog entry, so its clock cannot be locked"
            )
        lo, hi = span
        if not lo <= clock_mhz <= hi:
            raise ValueError(
                f"{clock_mhz} MHz is outside {self.name}'s range {lo}-{hi} MHz (its boost clock down to "
                f"{MIN_CLOCK_FRACTION:.0%} of it, where the power model was fitted)"
            )
        return self.model_copy(update={"sm_clock_ghz": None if clock_mhz == hi else clock_mhz / 1000})

    @property
    def compute_clock_scale(self) -> float:
        """Tensor throughput at the locked clock / datasheet peak: clock / peak clock, at most 1 (each SM issues
        a fixed number of FLOPs per cycle)."""
        if self.sm_clock_ghz is None:
            return 1.0
        return min(
            1.0, self.sm_clock_ghz / (self.peak_clock_ghz or self.boost_clock_ghz or REFERENCE_CLOCK_GHZ)
        )

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        return self.memory_bandwidth_tbps * 1e12

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s at `dtype` at the GPU's SM clock (the datasheet peak unless a clock is locked)."""
        return self.datasheet_flops(dtype) * self.compute_clock_scale

    def datasheet_flops(self, dtype: str) -> float:
        """Dense datasheet peak FLOP/s at `dtype`; formats the part lacks fall back to the next wider one it has."""
        order = {
            "fp4": ("fp4", "fp8", "bf16"),
            "fp8": ("fp8", "bf16"),
            "int8": ("int8", "fp8", "bf16"),
            "int4": ("int8", "bf16"),
            "fp16": ("fp16",),
            "bf16": ("bf16",),
            "fp32": ("fp32", "bf16"),
        }
        for candidate in order.get(dtype, ("bf16",)):
            rate = getattr(self.peak_tflops, candidate)
            if rate:
                return rate * 1e12
        return self.peak_tflops.bf16 * 1e12


class Fabric(_Strict):
    """A link class between GPUs: bandwidth per GPU (one direction), latency, kind."""

    name: str
    kind: Literal["nvlink", "nvswitch", "pcie", "infiniband", "roce", "ethernet", "xgmi"]
    bandwidth_gbps: float = Field(gt=0, description="per GPU, one direction, GB/s")
    latency_us: float = Field(ge=0, description="per-hop/per-message latency floor, microseconds")
    bus_efficiency_max: float = Field(0.8, gt=0, le=1, description="large-message NCCL busbw / bandwidth")
    nvls: bool = Field(False, description="NVSwitch in-network reduction (NVLS) available")
    source: str = ""


class NodeGroup(_Strict):
    """`nodes` identical nodes of `gpus_per_node` GPUs of one type."""

    name: str = "main"
    gpu: str = Field(description="GPU catalog name")
    nodes: int = Field(1, gt=0)
    gpus_per_node: int = Field(8, gt=0)
    scale_up_domain: int | None = Field(
        None, gt=0, description="GPUs sharing one NVLink domain (default: one node; 72 for GB200 NVL72)"
    )
    intra_node: str | Fabric | None = Field(None, description="fabric catalog name or inline fabric")
    inter_node: str | Fabric | None = Field("ib-ndr-400", description="fabric catalog name or inline fabric")

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def domain_gpus(self) -> int:
        return self.scale_up_domain or self.gpus_per_node


class Cluster(_Strict):
    """One or more node groups; heterogeneous clusters have several."""

    name: str = "custom"
    description: str = ""
    node_groups: list[NodeGroup] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        names = [g.name for g in self.node_groups]
        if len(set(names)) != len(names):
            raise ValueError(f"node group names must be unique, got {names}")
        return self

    @property
    def num_gpus(self) -> int:
        return sum(g.num_gpus for g in self.node_groups)

    def gpus_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for g in self.node_groups:
            counts[g.gpu] = counts.get(g.gpu, 0) + g.num_gpus
        return counts
