"""Fit the serving parameters (params.py) that make simulated benchmark runs match the measured ones.

Rows: per run and for TTFT and TPOT (each request's mean inter-token gap, (E2E − TTFT)/(output − 1), which does
not depend on how many tokens a streamed chunk carried), two lower-trimmed means: the mean of the fastest half of
the requests (`m50`) and of the fastest 90 % (`m90`). Statistics per run, not single requests, because a run
without send times is replayed at its rate but not at its instants (replay.py). Means, not percentiles, because a
request's TTFT includes the wait for the engine step in flight, whose phase against the arrivals is reshuffled by
any change of step time (a 0.1 % longer step moved a 40-request run's TTFT p25 by 3 %): a percentile follows one
or two such requests, a mean all of them. The slowest 10 % (queueing tail, and a run's last stragglers) are left
out. Measured on the recovery test (tests/planner/test_calibrate_serving.py, 40 requests per run, three workload
seeds): with p25/p50/p75/p90 rows the fits ended up to 48 % (per-step host time) and 2.1 ms (frontend) from the
truth; with these rows, over four seeds, within 11 % and 0.6 ms.

Residuals: log(simulated / measured) of every row of the fitted runs. `scipy.optimize.least_squares` (trf,
bounded, loss soft_l1 with f_scale 0.1: rows off by more than ~10 % weigh linearly, not quadratically) over the
simulated parameters, with forward differences of a fixed step per parameter (params.py: big enough to move the
rows by a few per cent, well above their jumps; steps relative to a small prior value stall the search). The
frontend cost needs no simulation (the runs are simulated without it and it is added to TTFT; host.py: it is a
translation of the run), so for every trial of the other parameters it is solved exactly by a bounded 1-D
minimization of the same loss (variable projection).

Split: by run, never by request. Runs are ordered by achieved request rate; `alternate` holds out the 2nd, 4th,
… (interpolation), `highest` the highest-load run (extrapolation), `none` fits all. The errors before (the
scenario's own model) and after the fit are reported on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import numpy as np

from planner.calibration.params import NAMES, Prior
from planner.calibration.replay import ReplayRun
from simulator.costmodel.calibration import Calibration, CalibrationRow, report_rows
from simulator.errors import InputError
from simulator.scenario import Scenario
from simulator.simulate import simulate

TRIMS = (50, 90)  # rows: mean of the fastest 50 % and 90 % of the requests
METRICS = ("ttft", "tpot")
HOLD_OUT = ("alternate", "highest", "none")
F_SCALE = 0.1  # soft_l1: residuals (log ratios) beyond ~10 % weigh linearly
MAX_EVALS = 40  # least_squares max_nfev: function evaluations, finite-difference ones not counted
UNSERVED = math.log(10.0)  # residual of a row whose simulated requests did not finish


def split_runs(runs: list[ReplayRun], rule: str) -> list[bool]:
    """True for the runs fitted, False for those held out (see the module docstring)."""
    if rule not in HOLD_OUT:
        raise InputError(f"unknown rule {rule!r}; expected one of: {', '.join(HOLD_OUT)}", field="--hold-out")
    order = sorted(range(len(runs)), key=lambda i: runs[i].achieved_rate)
    held: list[int] = []
    if len(runs) > 1 and rule == "alternate":
        held = order[1::2]
    elif len(runs) > 1 and rule == "highest":
        held = order[-1:]
    return [i not in held for i in range(len(runs))]


def _trimmed_means(values: np.ndarray) -> np.ndarray:
    """The mean of the fastest TRIMS[k] % of `values` (NaN when none is finite)."""
    values = np.sort(values[np.isfinite(values)])
    if not len(values):
        return np.full(len(TRIMS), np.nan)
    return np.array([values[: max(1, round(len(values) * t / 100))].mean() for t in TRIMS])


@dataclass
class _Replayer:
    """Simulates runs under trial parameter values, without the frontend cost (the caller adds it); recent
    simulations are kept for the finite differences and the final before/after rows."""

    scenario: Scenario
    prior: Prior
    cache: dict = field(default_factory=dict)

    def simulated(
        self, run: ReplayRun, index: int, values: dict[str, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(TTFT without the frontend, TPOT) of the run's finished requests under `values`."""
        key = (index, tuple(sorted((k, round(v, 12)) for k, v in values.items() if k != "frontend_s")))
        sim = self.cache.get(key)
        if sim is None:
            calibration = self.prior.calibration(values, frontend=False)
            cols = simulate(self.scenario, requests=run.requests, calibration=calibration).request_columns()
            done = np.isfinite(cols["e2e_s"])
            sim = (cols["ttft_s"][done], cols["tpot_s"][done])
            if len(self.cache) > 256:
                self.cache.clear()
            self.cache[key] = sim
        return sim

    def statistics(self, run: ReplayRun, index: int, values: dict[str, float]) -> dict[str, np.ndarray]:
        """The rows of the run simulated under `values` (frontend included)."""
        ttft, tpot = self.simulated(run, index, values)
        return {"ttft": _trimmed_means(ttft + values["frontend_s"]), "tpot": _trimmed_means(tpot)}


def _measured(run: ReplayRun) -> dict[str, np.ndarray]:
    return {"ttft": _trimmed_means(run.measured_ttft_s), "tpot": _trimmed_means(run.measured_tpot_s)}


def _residuals(pred: dict, meas: dict) -> list[float]:
    out = []
    for metric in METRICS:
        for p, m in zip(pred[metric], meas[metric], strict=True):
            if not np.isfinite(m) or m <= 0:
                continue  # no such row measured (e.g. only one-token requests: no TPOT)
            out.append(math.log(p / m) if np.isfinite(p) and p > 0 else UNSERVED)
    return out


def _soft_l1(r: np.ndarray) -> float:
    """least_squares' soft_l1 loss of residuals r with F_SCALE (the cost it minimizes)."""
    z = (np.asarray(r) / F_SCALE) ** 2
    return float(F_SCALE**2 * np.sum(np.sqrt(1 + z) - 1))


@dataclass
class ServingFit:
    """The fitted parameters, the rows before / after on fitted and held-out runs, and how they were obtained."""

    gpu: str
    engine: str
    params: dict[str, float]  # every parameter: fitted ones at their fit, the rest at the prior
    defaults: dict[str, float]  # the prior
    fitted: tuple[str, ...]
    rows: list[CalibrationRow]
    runs: list[ReplayRun]
    fit_runs: list[bool]
    hold_out: str
    method: str
    data: str
    prior: Prior = field(repr=False)
    status: str = ""

    def mdape(self, split: str | None = None, metric: str | None = None, before: bool = False) -> float:
        """Median absolute error (a fraction) over the rows of a split ("fit" / "held-out") and metric."""
        errs = [
            r.error_before if before else r.error
            for r in self.rows
            if (split is None or r.split == split) and (metric is None or r.metric.startswith(metric))
        ]
        return median(errs) if errs else math.nan

    def summary(self) -> dict[str, float]:
        out = {}
        for split in ("fit", "held-out"):
            key = split.replace("-", "_")
            out[f"mdape_{key}_before"] = self.mdape(split, before=True)
            out[f"mdape_{key}"] = self.mdape(split)
            for metric in METRICS:
                out[f"mdape_{metric}_{key}_before"] = self.mdape(split, metric, before=True)
                out[f"mdape_{metric}_{key}"] = self.mdape(split, metric)
        return out

    def to_calibration(self) -> Calibration:
        """The calibration file's content: the prior's overrides with the fitted ones, the host figures."""
        cal = self.prior.calibration(self.params)
        runs = "; ".join(
            f"{r.label} [{'fit' if f else 'held out'}] {Path(r.source).name}: {r.arrivals}; {r.lengths}"
            for r, f in zip(self.runs, self.fit_runs, strict=True)
        )
        rows = report_rows(self.rows)
        summary = {k: round(v, 4) for k, v in self.summary().items() if math.isfinite(v)}
        return Calibration(
            gpu=cal.gpu,
            overrides=cal.overrides,
            method=self.method,
            data=self.data,
            notes=f"fitted: {', '.join(self.fitted)}; runs: {runs}",
            errors=rows,
            summary=summary,
            engine=cal.engine,
            host=cal.host,
        )


def fit_serving(
    scenario: Scenario,
    runs: list[ReplayRun],
    prior: Prior,
    fit: tuple[str, ...],
    hold_out: str = "alternate",
    data: str = "",
) -> ServingFit:
    """Fit the parameters `fit` to the runs chosen by `hold_out`; rows before / after on every run."""
    from scipy.optimize import least_squares, minimize_scalar

    params = prior.params(fit)
    simulated = [p for p in params if p.name != "frontend_s"]  # those the simulator needs
    frontend = next((p for p in params if p.name == "frontend_s"), None)
    fit_runs = split_runs(runs, hold_out)
    replayer = _Replayer(scenario, prior)
    measured = [_measured(r) for r in runs]
    defaults = {name: prior.start(name) for name in NAMES}
    fitted_runs = [i for i, f in enumerate(fit_runs) if f]

    def rows(values: dict[str, float]) -> np.ndarray:
        out = []
        for i in fitted_runs:
            out += _residuals(replayer.statistics(runs[i], i, values), measured[i])
        return np.asarray(out)

    def with_frontend(values: dict[str, float]) -> dict[str, float]:
        """`values` with the frontend cost that fits them best (variable projection; no simulation)."""
        if frontend is None:
            return values
        best = minimize_scalar(
            lambda f: _soft_l1(rows(values | {"frontend_s": f})),
            bounds=(frontend.lower, frontend.upper),
            method="bounded",
            options={"xatol": 1e-6},
        )
        return values | {"frontend_s": float(best.x)}

    if len(rows(defaults)) < len(params):
        raise InputError(
            f"the fitted runs give {len(rows(defaults))} rows for {len(params)} parameters; add runs or fit "
            "fewer parameters (--fit)",
            field="--fit",
        )
    fitted, status = with_frontend(dict(defaults)), "frontend only: solved exactly"
    if simulated:
        lo, hi = zip(*(p.bounds_x() for p in simulated), strict=True)
        x0 = [min(max(p.to_x(defaults[p.name]), a), b) for p, a, b in zip(simulated, lo, hi, strict=True)]

        def at(x) -> dict[str, float]:
            return with_frontend(defaults | {p.name: p.from_x(v) for p, v in zip(simulated, x, strict=True)})

        def jacobian(x) -> np.ndarray:
            """Forward differences with each parameter's own step (backward at its upper bound)."""
            base = rows(at(x))
            cols = []
            for j, p in enumerate(simulated):
                h = p.to_x(p.step) if x[j] + p.to_x(p.step) <= hi[j] else -p.to_x(p.step)
                moved = np.array(x, dtype=float)
                moved[j] += h
                cols.append((rows(at(moved)) - base) / h)
            return np.column_stack(cols)

        sol = least_squares(
            lambda x: rows(at(x)),
            x0,
            jac=jacobian,
            bounds=(lo, hi),
            method="trf",
            loss="soft_l1",
            f_scale=F_SCALE,
            x_scale=1.0,
            max_nfev=MAX_EVALS,
        )
        fitted, status = at(sol.x), f"{sol.message} ({sol.nfev} evaluations)"
    table = []
    for i, run in enumerate(runs):
        before, after = replayer.statistics(run, i, defaults), replayer.statistics(run, i, fitted)
        for metric in METRICS:
            for q, m, b, a in zip(TRIMS, measured[i][metric], before[metric], after[metric], strict=True):
                if np.isfinite(m) and m > 0:
                    table.append(
                        CalibrationRow(
                            id=f"{run.label} {metric} m{q}",
                            metric=f"{metric}_m{q}",
                            description=Path(run.source).name,
                            measured=float(m),
                            predicted_before=float(b),
                            predicted=float(a),
                            split="fit" if fit_runs[i] else "held-out",
                        )
                    )
    method = (
        "scipy.optimize.least_squares (trf, bounded, soft_l1 f_scale 0.1, 10% finite-difference steps) on "
        "log(simulated/measured) of the means of the fastest 50% and 90% of TTFT and TPOT of each fitted run, "
        "forward differences of fixed steps, the frontend cost "
        f"solved exactly for each trial (variable projection); runs split by achieved request rate ({hold_out})"
    )
    return ServingFit(
        gpu=prior.gpu.name,
        engine=prior.engine,
        params={k: fitted[k] for k in NAMES},
        defaults=defaults,
        fitted=tuple(fit),
        rows=table,
        runs=runs,
        fit_runs=fit_runs,
        hold_out=hold_out,
        method=method,
        data=data,
        prior=prior,
        status=status,
    )
