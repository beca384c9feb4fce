"""Collectives and point-to-point transfers: the public entry points (prices in `nccl.py`).

Kept as the stable import path of the cost model's users (`comm.all_reduce_seconds(fabric, eff, n, bytes)`);
`clock_ghz` (the GPU's boost clock) scales NCCL's kernel-side latencies, see `nccl.py`.
"""

from __future__ import annotations

from simulator.costmodel.nccl import (
    all_gather_seconds,
    all_reduce_seconds,
    all_reduce_times,
    all_to_all_seconds,
    all_to_all_times,
    reduce_scatter_seconds,
    send_seconds,
)

__all__ = [
    "all_reduce_seconds",
    "all_reduce_times",
    "all_to_all_times",
    "all_gather_seconds",
    "reduce_scatter_seconds",
    "all_to_all_seconds",
    "send_seconds",
]
