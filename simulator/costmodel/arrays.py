"""The array functions the kernel formulas use, on Python floats or on numpy arrays.

Each formula of kernels.py, nccl.py and ops.py is written once against a backend `xp`: with `FLOATS` it prices
one shape at the speed of plain float arithmetic (a per-operator breakdown, an iteration priced once), with
numpy every shape of an array at once (the price tables of replica.py). The two give the same numbers: the same
IEEE operations in the same order (tests/simulator/costmodel/test_vector_pricing.py).
"""

from __future__ import annotations

import math

import numpy as np


class _Floats:
    """numpy's names for the few array functions the formulas use, on Python floats."""

    ceil = staticmethod(math.ceil)
    maximum = staticmethod(max)
    minimum = staticmethod(min)
    frexp = staticmethod(math.frexp)
    ldexp = staticmethod(math.ldexp)
    any = staticmethod(bool)

    @staticmethod
    def where(cond, a, b):
        return a if cond else b


FLOATS = _Floats()


def backend(*values):
    """numpy when any of `values` is an array, else FLOATS."""
    for v in values:
        if isinstance(v, np.ndarray):
            return np
    return FLOATS


def floats(x) -> np.ndarray:
    """`x` (a number or an array) as a float64 array, at least one-dimensional."""
    return np.atleast_1d(np.asarray(x, dtype=float))


def full_like(x, value):
    """`value` where x is a float; an array of x's shape filled with it where x is an array."""
    return np.full(x.shape, value) if isinstance(x, np.ndarray) else value
