"""Numeric formats: storage bytes per element and the tensor-core rate each one uses."""

from __future__ import annotations

from typing import Literal

DType = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}

# Weight-only formats (int4 here) dequantize to the activation type before the tensor cores,
# so they save bytes but run GEMMs at the activation dtype's rate.
WEIGHT_ONLY = frozenset({"int4"})


def bytes_per_element(dtype: str) -> float:
    """Storage bytes of one element of `dtype`."""
    return BYTES_PER_ELEMENT[dtype]


def compute_dtype(weights: str, activations: str) -> str:
    """The dtype whose tensor-core rate a GEMM of these weights and activations runs at."""
    if weights in WEIGHT_ONLY:
        return activations
    # The GEMM runs in the narrower of the two formats when the hardware supports it (fp8 x fp8, fp4 x fp4).
    return weights if BYTES_PER_ELEMENT[weights] <= BYTES_PER_ELEMENT[activations] else activations
