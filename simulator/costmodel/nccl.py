"""Collectives as NCCL runs them: the fastest of its protocols and algorithms (docs/design.md §3.1).

For each protocol p (LL, LL128, Simple) and algorithm (ring; NVLS where the fabric has NVSwitch reduction and
more than 4 ranks take part):

    t = latency_p + wire_bytes / (busbw_p(s))
    latency_p = collective_latency_scale x (base_p + steps x hop_p) x (1.98 GHz / GPU clock)
    busbw_p(s) = link bandwidth x fabric.bus_efficiency_max x collective_bus_scale x ratio_p x ramp_p(s)

`base`, `hop` and `ratio` are NCCL's own tuning model (NVIDIA/nccl src/graph/tuning.cc, NCCL 2.2x: baseLat
ring {LL 6.6, LL128 14.0, Simple 8.4} us; hwLat NVLink ring {0.6, 1.9, 3.4}, PCI {1.0, 2.5, 5.7}, NET
{2.7, 4.0, 14.0} us per step; NVLS 25 us; LL moves 8-byte lines with 4 bytes of data (ratio 0.5), LL128 120 of
128 bytes (0.92), Simple the full link). The ring runs 2(n-1) steps for an all-reduce and n-1 for an
all-gather or reduce-scatter, so latency grows with the number of ranks. NCCL's latencies are kernel-side
(flag polling, fences) and scale with the SM clock. The bus bandwidth ramps with the message size
(`ramp_p(s) = s / (s + half_p)`: NCCL runs fewer channels and a partly filled pipeline on small messages;
Simple's half size is the fitted `collective_half_bytes`, LL and LL128 saturate sooner, at
`LL_HALF_BYTES` / `LL128_HALF_BYTES`). NVLS reaches `NVLS_BUS_GAIN` times the ring's bus bandwidth.
`*_seconds` price one size in floats, `*_times` an array of sizes (one formula on two backends, arrays.py).
"""

from __future__ import annotations

import numpy as np

from simulator.costmodel.arrays import FLOATS, floats
from simulator.hardware import REFERENCE_CLOCK_GHZ, Fabric, GPUEfficiency

PROTOCOLS = ("LL", "LL128", "Simple")
BASE_US = {"LL": 6.6, "LL128": 14.0, "Simple": 8.4}  # tuning.cc baseLat, ring
HOP_US = {  # tuning.cc hwLat per ring step, by link class
    "nvlink": {"LL": 0.6, "LL128": 1.9, "Simple": 3.4},
    "pci": {"LL": 1.0, "LL128": 2.5, "Simple": 5.7},
    "net": {"LL": 2.7, "LL128": 4.0, "Simple": 14.0},
}
BW_RATIO = {"LL": 0.5, "LL128": 0.92, "Simple": 1.0}  # tuning.cc: LL busBw * .5, LL128 * 0.92
NVLS_LATENCY_US = 25.0  # tuning.cc hwLat NVLink NVLS Simple
# NVLS all-reduce busbw ~480 GB/s vs ring ~367 GB/s on 8xH100/H200 (data/reference/hardware.md, nccl-tests).
NVLS_BUS_GAIN = 480.0 / 367.0
NVLS_MIN_GPUS = 5  # NCCL enables NVLS only above 4 GPUs (data/reference/hardware.md)
# Message sizes at which LL / LL128 reach half their bus bandwidth: they need far less data in flight than
# Simple's 512 KiB-per-channel pipeline, so they saturate one to two orders of magnitude sooner (assumed).
LL_HALF_BYTES = 64e3
LL128_HALF_BYTES = 1e6
LINK_CLASS = {
    "nvlink": "nvlink",
    "nvswitch": "nvlink",
    "xgmi": "nvlink",
    "pcie": "pci",
    "infiniband": "net",
    "roce": "net",
    "ethernet": "net",
}


def _half(protocol: str, eff: GPUEfficiency) -> float:
    return {"LL": LL_HALF_BYTES, "LL128": LL128_HALF_BYTES, "Simple": eff.collective_half_bytes}[protocol]


def _ramp(protocol: str, eff: GPUEfficiency, nbytes: float) -> float:
    return nbytes / (nbytes + _half(protocol, eff))


def _bus(fabric: Fabric, eff: GPUEfficiency) -> float:
    return fabric.bandwidth_gbps * 1e9 * fabric.bus_efficiency_max * eff.collective_bus_scale


def _latency(eff: GPUEfficiency, us: float, clock_ghz: float | None) -> float:
    return (
        eff.collective_latency_scale * us * 1e-6 * (REFERENCE_CLOCK_GHZ / (clock_ghz or REFERENCE_CLOCK_GHZ))
    )


# (fabric, eff, clock, ring steps) -> ((latency, bus bandwidth, half size) per protocol): the collectives of a
# stage are priced once per iteration shape, so their size-independent parts are computed once. Keyed by the
# objects' ids and checked by identity (fabrics and efficiencies are immutable).
_RINGS: dict[tuple, tuple] = {}


def _ring_protocols(fabric: Fabric, eff: GPUEfficiency, steps: int, clock_ghz) -> tuple:
    key = (id(fabric), id(eff), clock_ghz, steps)
    hit = _RINGS.get(key)
    if hit is not None and hit[0] is fabric and hit[1] is eff:
        return hit[2]
    if len(_RINGS) > 4096:
        _RINGS.clear()
    hop = HOP_US[LINK_CLASS[fabric.kind]]
    bus = _bus(fabric, eff)
    protos = tuple(
        (_latency(eff, BASE_US[p] + steps * hop[p], clock_ghz), bus * BW_RATIO[p], _half(p, eff))
        for p in PROTOCOLS
    )
    _RINGS[key] = (fabric, eff, protos)
    return protos


def _ring(xp, fabric, eff, steps: int, wire, nbytes, clock_ghz):
    best = float("inf")
    for lat, bus, half in _ring_protocols(fabric, eff, steps, clock_ghz):
        best = xp.minimum(best, lat + wire * (nbytes + half) / (bus * nbytes))
    return best


def _all_reduce(xp, fabric: Fabric, eff: GPUEfficiency, n: int, nbytes, clock_ghz):
    """The all-reduce formula on backend xp (arrays.py), for n > 1 and positive sizes."""
    wire = 2.0 * (n - 1) / n * nbytes
    t = _ring(xp, fabric, eff, 2 * (n - 1), wire, nbytes, clock_ghz)
    if fabric.nvls and n >= NVLS_MIN_GPUS:
        bus = _bus(fabric, eff) * NVLS_BUS_GAIN * _ramp("Simple", eff, nbytes)
        t = xp.minimum(t, _latency(eff, NVLS_LATENCY_US, clock_ghz) + wire / bus)
    return t


def all_reduce_seconds(
    fabric: Fabric, eff: GPUEfficiency, n: int, nbytes: float, clock_ghz: float | None = None
) -> float:
    """All-reduce of an `nbytes` buffer over `n` GPUs (0 for n <= 1)."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return _all_reduce(FLOATS, fabric, eff, n, float(nbytes), clock_ghz)


def all_reduce_times(fabric: Fabric, eff: GPUEfficiency, n: int, nbytes, clock_ghz: float | None = None):
    """`all_reduce_seconds` of every size of an array."""
    return _on_array(_all_reduce, fabric, eff, n, nbytes, clock_ghz)


def _on_array(formula, fabric, eff, n: int, nbytes, clock_ghz) -> np.ndarray:
    """`formula` (a collective on backend xp) on every size of an array: 0 where n <= 1 or the size is not
    positive."""
    size = floats(nbytes)
    live = size > 0
    if n <= 1 or not live.any():
        return np.zeros(size.shape)
    return np.where(live, formula(np, fabric, eff, n, np.where(live, size, 1.0), clock_ghz), 0.0)


def all_gather_seconds(
    fabric: Fabric, eff: GPUEfficiency, n: int, nbytes: float, clock_ghz: float | None = None
) -> float:
    """All-gather (or reduce-scatter) whose full buffer is `nbytes`: n-1 ring steps of nbytes/n each."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return _ring(FLOATS, fabric, eff, n - 1, (n - 1) / n * nbytes, nbytes, clock_ghz)


reduce_scatter_seconds = all_gather_seconds


def _all_to_all(xp, fabric: Fabric, eff: GPUEfficiency, n: int, nbytes_per_gpu, clock_ghz):
    """The all-to-all formula on backend xp, for n > 1 and positive sizes."""
    wire = (n - 1) / n * nbytes_per_gpu
    hop = HOP_US[LINK_CLASS[fabric.kind]]["Simple"]
    bus = _bus(fabric, eff) * _ramp("Simple", eff, nbytes_per_gpu)
    return _latency(eff, BASE_US["Simple"] + hop, clock_ghz) + wire / bus


def all_to_all_seconds(
    fabric: Fabric, eff: GPUEfficiency, n: int, nbytes_per_gpu: float, clock_ghz: float | None = None
) -> float:
    """All-to-all where each GPU sends `nbytes_per_gpu` in total, (n-1)/n of it to the other GPUs: NCCL runs it
    as concurrent send/recv pairs, one step of Simple-protocol latency."""
    if n <= 1 or nbytes_per_gpu <= 0:
        return 0.0
    return _all_to_all(FLOATS, fabric, eff, n, float(nbytes_per_gpu), clock_ghz)


def all_to_all_times(
    fabric: Fabric, eff: GPUEfficiency, n: int, nbytes_per_gpu, clock_ghz: float | None = None
):
    """`all_to_all_seconds` of every size of an array."""
    return _on_array(_all_to_all, fabric, eff, n, nbytes_per_gpu, clock_ghz)


def send_seconds(fabric: Fabric, eff: GPUEfficiency, nbytes: float, streams: int = 1) -> float:
    """Point-to-point transfer of `nbytes` split over `streams` GPU pairs in parallel (fabric latency floor)."""
    if nbytes <= 0:
        return 0.0
    per = nbytes / max(streams, 1)
    bus = _bus(fabric, eff) * _ramp("Simple", eff, per)
    return fabric.latency_us * 1e-6 * eff.collective_latency_scale + per / bus
