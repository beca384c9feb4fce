"""Collectives and point-to-point transfers, α–β per fabric.

`t = α + bytes_on_wire / (bandwidth * eff(s))` with
* α, the latency floor: `fabric.latency_us * collective_latency_scale` per hop; all-reduce takes
  `2 * ceil(log2 n)` hops (NCCL's tree/LL latency model: reduce then broadcast), all-to-all and send/recv one hop;
* bytes on the wire per GPU: ring all-reduce `2 (n-1)/n * s`; NVLS (NVSwitch in-network reduction, only when
  `fabric.nvls` and n > 4) the same traffic at a higher bus rate (`NVLS_BUS_GAIN`);
* eff(s) = `fabric.bus_efficiency_max * collective_bus_scale * s / (s + collective_half_bytes)`, the saturating
  bus efficiency of nccl-tests.
"""

from __future__ import annotations

import math

from simulator.hardware import Fabric, GPUEfficiency

# NVLS all-reduce busbw ~480 GB/s vs ring ~367 GB/s on 8xH100/H200 (hardware.md, ml-engineering network/README.md).
NVLS_BUS_GAIN = 480.0 / 367.0
NVLS_MIN_GPUS = 5  # NCCL enables NVLS only above 4 GPUs (hardware.md)


def _bus_rate(fabric: Fabric, eff: GPUEfficiency, nbytes: float) -> float:
    top = min(fabric.bus_efficiency_max * eff.collective_bus_scale, 1.0)
    return fabric.bandwidth_gbps * 1e9 * top * nbytes / (nbytes + eff.collective_half_bytes)


def _alpha(fabric: Fabric, eff: GPUEfficiency, hops: float) -> float:
    return fabric.latency_us * 1e-6 * eff.collective_latency_scale * hops


def all_reduce_seconds(fabric: Fabric, eff: GPUEfficiency, n: int, nbytes: float) -> float:
    """All-reduce of an `nbytes` buffer over `n` GPUs (0 for n <= 1)."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    wire = 2.0 * (n - 1) / n * nbytes
    rate = _bus_rate(fabric, eff, nbytes)
    if fabric.nvls and n >= NVLS_MIN_GPUS:
        rate *= NVLS_BUS_GAIN
    return _alpha(fabric, eff, 2 * math.ceil(math.log2(n))) + wire / rate


def all_to_all_seconds(fabric: Fabric, eff: GPUEfficiency, n: int, nbytes_per_gpu: float) -> float:
    """All-to-all where each GPU sends `nbytes_per_gpu` in total, (n-1)/n of it to the other GPUs."""
    if n <= 1 or nbytes_per_gpu <= 0:
        return 0.0
    wire = (n - 1) / n * nbytes_per_gpu
    return _alpha(fabric, eff, 1) + wire / _bus_rate(fabric, eff, nbytes_per_gpu)


def send_seconds(fabric: Fabric, eff: GPUEfficiency, nbytes: float, streams: int = 1) -> float:
    """Point-to-point transfer of `nbytes` split over `streams` GPU pairs in parallel."""
    if nbytes <= 0:
        return 0.0
    per = nbytes / max(streams, 1)
    return _alpha(fabric, eff, 1) + per / _bus_rate(fabric, eff, per)
