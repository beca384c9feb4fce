"""Routers spread arrivals over the replicas of one role (round-robin, least-outstanding, power-of-two)."""

from __future__ import annotations

import numpy as np


class Router:
    """Picks a replica position given each replica's outstanding (assigned, not yet finished) requests."""

    def __init__(self, kind: str, num_replicas: int, rng: np.random.Generator):
        if kind not in ("round-robin", "least-outstanding", "power-of-two"):
            raise ValueError(f"unknown router {kind!r}")
        self.kind = kind
        self.num_replicas = num_replicas
        self.rng = rng  # its own stream: routing never shifts the workload's random numbers
        self._next = 0

    def choose(self, outstanding: list[int], replicas: list[int]) -> int:
        """A position in `replicas` (indices into `outstanding`, the counts of all replicas)."""
        n = self.num_replicas
        if n == 1:
            return 0
        if self.kind == "round-robin":
            pick = self._next
            self._next = (pick + 1) % n
            return pick
        if self.kind == "least-outstanding":
            return min(range(n), key=lambda i: outstanding[replicas[i]])  # ties go to the lowest position
        a, b = self.rng.choice(n, size=2, replace=False)
        return int(a if outstanding[replicas[a]] <= outstanding[replicas[b]] else b)
