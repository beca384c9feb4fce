"""Capacity of a plan (`apex capacity`, docs/design.md §5.6): the highest arrival rate it sustains within the
SLOs in steady state, bracketed by the analytic model and bisected with the simulator. One job per module:

* `load` — the scenario's workload at any rate, with common random numbers per seed;
* `bracket` — the proven upper bound and the analytic prediction;
* `search` — the per-seed bisection and the confirmation (`capacity_of`);
* `result` — `CapacityResult` and its JSON.
"""

from planner.capacity.result import CapacityResult, SeedCapacity
from planner.capacity.search import CapacityOptions, capacity_of

__all__ = ["CapacityOptions", "CapacityResult", "SeedCapacity", "capacity_of"]
