"""Per-request SLO attainment and the goals' verdict on stated statistics (docs/design.md §3.2)."""

from __future__ import annotations

import numpy as np

from simulator.results import STATS, Distribution


def slo_pass(ttft: np.ndarray, tpot: np.ndarray, e2e: np.ndarray, slo) -> np.ndarray:
    """Per request: at or under every stated threshold of every metric (NaN TPOT passes, NaN else fails)."""
    ok = np.isfinite(e2e)
    for name, values in (("ttft_s", ttft), ("tpot_s", tpot), ("e2e_s", e2e)):
        target = getattr(slo, name) if slo is not None else None
        if target is None:
            continue
        limits = [v for v in (getattr(target, k) for k in STATS) if v is not None]
        if limits:
            passes = values <= min(limits)
            ok &= (passes | np.isnan(values)) if name == "tpot_s" else passes
    return ok


def slo_met(stats: dict[str, Distribution], slo) -> bool:
    """Every stated statistic of every metric at or under its threshold (an undefined one is not)."""
    if slo is None:
        return True
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        target = getattr(slo, name)
        if target is None:
            continue
        for key in STATS:
            limit = getattr(target, key)
            value = getattr(stats[name], key)
            if limit is not None and (value is None or not value <= limit):
                return False
    return True
