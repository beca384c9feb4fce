"""The cost model: seconds, bytes and joules of one iteration of one pipeline stage (docs/design.md §3.1).

Reading guide, in order:
1. `interface.py` — the contract: `BatchShape` (batch aggregates), `OpCost`, `StageCost`, `ReplicaCost`.
2. `roofline.py` — the one pricing rule `max(flops/(peak·eff), bytes/(bw·eff)) + overhead` and the efficiency
   curves (GEMM tile/wave quantization, size-dependent HBM efficiency).
3. `ops.py` — operator dataclasses (`Gemm`, `MoEExperts`, `Memory`, `Collective`, `AttentionPrefill`,
   `AttentionDecode`) with pure `flops`/`bytes_moved`, and `price_op` / `price_attention`.
4. `build.py` — which ops one stage runs, with per-GPU sizes from its tp/dp/ep split.
5. `comm.py` — α–β collectives (ring vs NVLS all-reduce, all-to-all, send/recv).
6. `memory.py` — weights, workspace, reserve and the KV capacity under each engine's rule.
7. `energy.py` — `P_idle·t + e_flop·FLOPs + e_byte·bytes`, MFU, MBU, $/h.
8. `replica.py` — `build_replica_cost(...)`, the concrete StageCost / ReplicaCost with the cached fast path.
9. `calibration.py` — fit global coefficients to measured points; `load_calibration` / `write_calibration`.
Coefficients live on `simulator.hardware.GPUEfficiency` (each with its public source).
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
from simulator.costmodel.replica import ReplicaCostModel, StageCostModel, build_replica_cost, build_stage_cost

__all__ = [
    "BatchShape",
    "OpCost",
    "StageCost",
    "ReplicaCost",
    "build_replica_cost",
    "build_stage_cost",
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
