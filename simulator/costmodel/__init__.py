"""The cost model: seconds, bytes and joules of one iteration of one pipeline stage (docs/design.md §3.1).

Reading guide, in order:
1. `interface.py` — the contract: `BatchShape` (batch aggregates), `OpCost`, `StageCost`, `ReplicaCost`.
2. `kernels.py` — GEMM / grouped GEMM / memory-bound kernel prices (launch floor, split-K, FP8 quantization),
   written once over `arrays.py`'s backends: one shape in floats, or many at once in numpy arrays.
3. `attention.py` — flash-attention prefill and paged decode kernels from batch aggregates.
4. `nccl.py` (through `comm.py`) — collectives as the fastest NCCL protocol and algorithm.
5. `ops.py` — operator dataclasses with pure `flops`/`bytes_moved`, and `price_op` / `price_attention`.
6. `build.py` — which ops one stage runs, with per-GPU sizes from its tp/dp/ep split.
7. `host.py` — engine host overheads per step and per running sequence.
8. `memory.py` — weights, workspace, reserve and the KV capacity under each engine's rule.
9. `energy.py` — `P_idle·t + e_flop·FLOPs + e_byte·bytes`, MFU, MBU, $/h.
10. `replica.py` — `build_replica_cost(...)` (and `with_engine`, the same replica under other engine knobs), the concrete StageCost / ReplicaCost with the cached fast path.
11. `kernel_fit.py` — fit kernel coefficients on one GPU, error on the others; `calibration.py` — step fits and
    calibration files (`load_calibration` / `write_calibration`).
Coefficients live on `simulator.hardware.GPUEfficiency` (each with its public source or the fit that made it).
"""

from simulator.costmodel.calibration import (
    Calibration,
    CalibrationResult,
    apply_calibration,
    calibrate,
    load_calibration,
    write_calibration,
)
from simulator.costmodel.interface import BatchShape, OpCost, ReplicaCost, StageCost
from simulator.costmodel.memory import StageMemory, stage_memory
from simulator.costmodel.replica import (
    ReplicaCostModel,
    StageCostModel,
    build_replica_cost,
    build_stage_cost,
    with_engine,
)

__all__ = [
    "BatchShape",
    "OpCost",
    "StageCost",
    "ReplicaCost",
    "build_replica_cost",
    "build_stage_cost",
    "with_engine",
    "StageCostModel",
    "ReplicaCostModel",
    "stage_memory",
    "StageMemory",
    "Calibration",
    "CalibrationResult",
    "calibrate",
    "load_calibration",
    "write_calibration",
    "apply_calibration",
]
