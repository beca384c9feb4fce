"""The work-rate LP: per-token rates that no sequence of iterations can beat (docs/design.md §5.3).

Data: a partition of a stage's iteration space (prefill tokens p, decode tokens d) into cells
[p_lo, p_hi] × [d_lo, d_hi] and, for each cell, a cost at its lower corner `cost_lo` (seconds or joules) that
lower-bounds the cost of every iteration in the cell (the cost is non-decreasing in p and d). Find rates
α (per prefill token), β (per decode token) and, when a TPOT limit τ binds the decode tokens, a multiplier
μ ≥ 0, maximising α·P + β·D for a workload with P prefill and D decode tokens, subject to, for every cell,

    α·p_hi + β·d_hi + μ·(τ·d_hi − d_lo·cost_lo) ≤ cost_lo.

Then any sequence of iterations that processes the workload costs at least α·P + β·D: each iteration's cost
c_k ≥ α p_k + β d_k − μ(d_k c_k − τ d_k) by its cell's row, and summing, Σ_k c_k ≥ α P + β D + μ(τ D −
Σ_k d_k c_k) ≥ α P + β D because the TPOT limit means Σ_k d_k c_k ≤ τ·D (every decode token waited for its
iteration, and each request's decode iterations together take at most τ per token). Any feasible (α, β, μ)
is a valid bound; the LP picks the best one for the given mix (P, D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import highspy
import numpy as np

from formulations.highs_util import silence_highs_banner
from formulations.result import SolverOptions

# HiGHS shares one thread pool per process: every solve asks for the threads every other solve does
_OPTIONS = SolverOptions()
MAX_RATE = 1e6  # per-token rates above this mean "cannot be done" (the LP would be unbounded)


@dataclass(frozen=True, slots=True)
class WorkRates:
    """α (per prefill token), β (per decode token), μ (TPOT multiplier) and the value α·P + β·D."""

    alpha: float
    beta: float
    mu: float
    value: float


def solve_work_rates(
    cells: np.ndarray,
    prefill_tokens: float,
    decode_tokens: float,
    tpot_s: float | None = None,
) -> tuple[WorkRates, np.ndarray]:
    """The best rates for the mix (P, D) and each cell's slack (its row's right side minus left side).

    `cells`: an (n, 5) array of p_lo, p_hi, d_lo, d_hi, cost_lo. `tpot_s`: the limit on each decode token's
    mean wait (None: no TPOT row, μ = 0; use it only for costs in seconds)."""
    p_lo, p_hi, d_lo, d_hi, cost = (cells[:, k] for k in range(5))
    del p_lo
    use_mu = tpot_s is not None and math.isfinite(tpot_s) and decode_tokens > 0
    cols = [p_hi, d_hi] + ([tpot_s * d_hi - d_lo * cost] if use_mu else [])
    a_ub = np.column_stack(cols)
    objective = [prefill_tokens, decode_tokens] + ([0.0] if use_mu else [])
    x = _maximise(a_ub, cost, objective, [MAX_RATE, MAX_RATE] + ([highspy.kHighsInf] if use_mu else []))
    lhs = a_ub @ x
    # the solver's tolerance may leave a row violated by ~1e-9 relative: scale the rates down until every
    # row holds exactly (rows with lhs ≤ 0 stay satisfied under scaling)
    over = lhs > cost
    if over.any():
        x = x * float(np.min(cost[over] / lhs[over])) * (1.0 - 1e-12)
        lhs = a_ub @ x
    slack = cost - lhs
    alpha, beta = float(x[0]), float(x[1])
    mu = float(x[2]) if use_mu else 0.0
    return WorkRates(alpha, beta, mu, alpha * prefill_tokens + beta * decode_tokens), slack


def _maximise(a_ub: np.ndarray, b_ub: np.ndarray, objective: list[float], upper: list[float]) -> np.ndarray:
    """max objective·x subject to a_ub·x ≤ b_ub and 0 ≤ x ≤ upper, with HiGHS (built directly: the planner
    solves hundreds of these small LPs, and a generic wrapper's option checks cost more than the solve).
    x = 0 is always feasible, so on a solver failure the trivial bound x = 0 is returned."""
    rows, n = a_ub.shape
    silence_highs_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", _OPTIONS.threads)
    h.setOptionValue("random_seed", _OPTIONS.seed)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, rows
    lp.col_cost_ = -np.asarray(objective, dtype=float)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.asarray(upper, dtype=float)
    lp.row_lower_ = np.full(rows, -highspy.kHighsInf)
    lp.row_upper_ = np.asarray(b_ub, dtype=float)
    # column-wise sparse matrix of the non-zero entries (explicit zeros would draw HiGHS warnings)
    live = a_ub.T != 0.0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate(([0], np.cumsum(live.sum(axis=1)))).astype(np.int32)
    lp.a_matrix_.index_ = np.nonzero(live)[1].astype(np.int32)
    lp.a_matrix_.value_ = a_ub.T[live]
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return np.zeros(n)
    return np.maximum(np.asarray(h.getSolution().col_value, dtype=float), 0.0)
