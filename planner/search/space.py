"""The plan space and its two master problems (docs/design.md §5.2–§5.4).

A plan of the space is a count vector over the priced templates with at most `max_templates` templates in it,
within the GPU inventory, the NVLink domains and the $/h and GPU budgets (`formulations.master`'s integer
rows). `PlanSpace` builds, over the same templates and rows:

* `bound` — the master whose optimum over the count vectors not yet simulated is a bound the simulator
  cannot beat (its coefficients come from `bounds.py`; the argument per objective is in docs/design.md
  §5.3), with `to_sim_units` converting its value into the simulation's units;
* `predict` — the same rows with the analytic model's predicted coefficients (corrected from simulations),
  used to order candidates where bounds are weak or absent. Never used as a bound.

Units of the bound master: demand is work (the reference "size" u of a request: seconds of a median template's
bottleneck stage) per second of the deadline window, so one capacity row per template says that the work of
the requests that must meet their deadlines fits in the replicas' busy time inside the window.

Disaggregated templates (docs/design.md §5.3): a prefill template's work of a request is its prefill part, a
decode template's its decode part; a request served by a pair meets its deadlines only if the pair's floors
allow it, so each side's route limit uses its own floors and the other side's least ones. KV-transfer rows
(`disaggregation.py`) are in prompt tokens: per class the least prompt tokens per unit of size, per template
its links' tokens/s with its best partner plus one largest prompt per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from formulations.master import (
    Budgets,
    CapacityCut,
    DomainPool,
    MasterProblem,
    MasterSolution,
    MasterTemplate,
    ObjectiveBound,
    WorkloadClass,
    evaluate,
)
from formulations.objectives import objective_spec
from formulations.result import Termination
from formulations.templates import EngineSettings, TemplateCoefficients
from planner.search.bounds import TemplateBound
from planner.search.disaggregation import link_capacity
from planner.search.labels import Proposal
from planner.search.pricing import PricedTemplate
from planner.search.settings import scenario_settings
from planner.search.workload import WorkloadProfile
from simulator.plan import Plan
from simulator.scenario import Scenario

BIG_CAPACITY = 1e12  # capacity of a template for a class with no deadline (work needs no time budget)


@dataclass
class RequestBounds:
    """Per request, what one template can prove (arrays over the workload's requests)."""

    time_work: np.ndarray  # s of bottleneck-stage busy time inside the window (deadline-bound parts only)
    energy: np.ndarray  # J of dynamic energy of the whole request
    ok: np.ndarray  # bool: can meet its deadlines on this template (fits its KV cache, floors within limits)
    latency_floor: np.ndarray  # s: TTFT floor + decode tokens × decode-step floor


@dataclass
class Window:
    """The deadline window [first arrival, end] and what of each request must be done inside it."""

    end_s: float
    length_s: float
    prefill_counted: np.ndarray  # bool per request
    decode_counted: np.ndarray  # bool per request


@dataclass
class PlanSpace:
    scenario: Scenario
    profile: WorkloadProfile
    priced: dict[str, PricedTemplate]
    bounds: dict[str, TemplateBound]
    max_templates: int
    # per template the profile of its feature variant (loop.feature_profiles); `profile` is the weakest one,
    # used where the space does not depend on a template (window, sizes, KV rows)
    profiles: dict[str, WorkloadProfile] = field(default_factory=dict)
    window: Window = field(init=False)
    size: np.ndarray = field(init=False)  # u per request
    requests: dict[str, RequestBounds] = field(init=False)
    makespan_floor_s: float = field(init=False)
    idle_floor_w: float = field(init=False)
    bound: MasterProblem = field(init=False)
    predict: MasterProblem = field(init=False)
    predicted_ratio: dict[str, float] = field(default_factory=dict)  # template -> simulated / analytic

    def __post_init__(self):
        sc = self.scenario
        self.objective = sc.spec.goals.objective
        self.spec = objective_spec(self.objective)
        self.idle_floor_w = sum(sc.gpus[g].idle_w * n for g, n in sc.cluster.gpus_by_type().items())
        self.domain_pools = tuple(
            DomainPool(g.gpu, g.domain_gpus, g.num_gpus // g.domain_gpus, g.name)
            for g in sc.cluster.node_groups
        )
        domain: dict[str, int] = {}
        for g in sc.cluster.node_groups:
            domain[g.gpu] = max(domain.get(g.gpu, 0), g.domain_gpus)
        self.domain_need = {tid: p.template.domain_need_by_type(domain) for tid, p in self.priced.items()}
        self.own_settings = scenario_settings(sc)
        self.role = {tid: p.template.role for tid, p in self.priced.items()}
        self._by_structure = {
            _structure(p.template.replica_group(1), p.template.settings): tid
            for tid, p in self.priced.items()
        }
        b = sc.spec.goals.budget
        self.budgets = Budgets(b.usd_per_hour, None, b.num_gpus, None)
        self._kv_links()
        self._per_request_floors()
        self._choose_window()
        self.requests = {tid: self._request_bounds(tid) for tid in self.priced}
        self._build_bound()
        self._build_predict()

    def profile_of(self, tid: str) -> WorkloadProfile:
        """The workload profile template `tid` is bounded with (its feature variant's)."""
        return self.profiles.get(tid, self.profile)

    # ---- plans and count vectors -------------------------------------------------------------------------
    def plan_of(self, counts: dict[str, int]) -> Proposal:
        """The plan of a count vector with the settings its templates share."""
        used = [t for t, n in sorted(counts.items()) if n > 0]
        groups = [self.priced[t].template.replica_group(counts[t]) for t in used]
        settings = self.priced[used[0]].template.settings if used else self.own_settings
        return Proposal(Plan(replicas=groups), settings)

    def counts_of(self, plan: Proposal | Plan) -> dict[str, int] | None:
        """The count vector of a plan made of this space's templates (None when a group is not one); a bare
        Plan has the scenario's own settings."""
        settings = plan.settings if isinstance(plan, Proposal) else self.own_settings
        groups = plan.plan.replicas if isinstance(plan, Proposal) else plan.replicas
        counts: dict[str, int] = {}
        for g in groups:
            tid = self._by_structure.get(_structure(g, settings))
            if tid is None:
                return None
            counts[tid] = counts.get(tid, 0) + g.count
        return counts

    def makespan_floor(self, plan: Proposal | Plan) -> float:
        """The least makespan the whole workload can take on `plan`: every request finishes no earlier than
        its arrival plus its latency floor on the fastest way through the plan's templates — a colocated one,
        or its prefill template then its decode template (0 for a plan outside the space)."""
        counts = self.counts_of(plan)
        if not counts or self.profile.num_requests == 0:
            return 0.0
        a = self.profile.arrival_s
        paths = [self.floors[t][2] for t in counts if self.role[t] == "colocated"]
        prefill = [t for t in counts if self.role[t] == "prefill"]
        decode = [t for t in counts if self.role[t] == "decode"]
        for p in prefill:
            for d in decode:
                paths.append(self.floors[p][0] + self.profile.decode * self.floors[d][1])
        if not paths:
            return 0.0
        lat = np.min(np.vstack(paths), axis=0)
        return float(np.max(a - a[0] + lat))

    # ---- KV-transfer links (disaggregated templates) ---------------------------------------------------------
    def _kv_links(self) -> None:
        """Per prefill / decode template, prompt tokens/s its links carry with its best partner of the same
        settings (disaggregation.py)."""
        self.link_tokens: dict[str, float] = {}
        by_settings: dict[EngineSettings, dict[str, list[str]]] = {}
        for tid, p in self.priced.items():
            if p.template.role != "colocated":
                by_settings.setdefault(p.template.settings, {}).setdefault(p.template.role, []).append(tid)
        for roles in by_settings.values():
            for tid in roles.get("prefill", []):
                mine = self.priced[tid].cost
                best = max(
                    (link_capacity(mine, self.priced[d].cost, "prefill") for d in roles.get("decode", [])),
                    default=math.inf,
                )
                self.link_tokens[tid] = best / mine.kv_bytes_per_token
            for tid in roles.get("decode", []):
                mine = self.priced[tid].cost
                best = max(
                    (link_capacity(self.priced[q].cost, mine, "decode") for q in roles.get("prefill", [])),
                    default=math.inf,
                )
                self.link_tokens[tid] = best / mine.kv_bytes_per_token

    # ---- request floors and the window ---------------------------------------------------------------------
    def _per_request_floors(self) -> None:
        """Per template (prefill floor, decode-step floor, latency floor) per request. A prefill template's
        decode floor is the least of the decode templates', a decode template's prefill floor the least of the
        prefill templates' (a pair's request passes both)."""
        prof = self.profile
        self.floors = {}
        own = {}
        for tid, tb in self.bounds.items():
            role = self.role.get(tid, "colocated")
            mine = self.profile_of(tid)
            pre = tb.prefill_floor(mine.prefill_tokens) if role != "decode" else None
            dec = None
            if role != "prefill":
                dec = (
                    tb.decode_floor(mine.input_tokens)
                    if not mine.speculative
                    else np.zeros(mine.num_requests)
                )
            own[tid] = (pre, dec)
        n = prof.num_requests

        def least(role: str, k: int) -> np.ndarray:
            values = [own[t][k] for t in own if self.role.get(t) == role]
            return np.min(np.vstack(values), axis=0) if values else np.full(n, np.inf)

        min_pre, min_dec = least("prefill", 0), least("decode", 1)
        for tid, (pre, dec) in own.items():
            if pre is None:
                pre = min_pre
            if dec is None:
                dec = min_dec
            self.floors[tid] = (pre, dec, pre + prof.decode * dec)
        lat = np.min(np.vstack([f[2] for f in self.floors.values()]), axis=0) if self.floors else None
        a = prof.arrival_s
        if lat is None or len(a) == 0:
            self.makespan_floor_s = max(prof.span_s, 1e-9)
        else:
            self.makespan_floor_s = max(float(np.max(a - a[0] + lat)), 1e-9)

    def _reference_rates(self) -> tuple[float, float, float]:
        """Median over templates of (α, β, γ) of the bottleneck stage: the weights of the request size u (α
        over the templates that prefill, β and γ over those that decode; any positive weights are valid)."""
        if not self.bounds:
            return 1.0, 1.0, 0.0
        pre = [tb for t, tb in self.bounds.items() if self.role.get(t) != "decode"] or list(
            self.bounds.values()
        )
        dec = [tb for t, tb in self.bounds.items() if self.role.get(t) != "prefill"] or list(
            self.bounds.values()
        )
        alpha = np.median([np.mean([r.alpha for r in tb.time]) for tb in pre])
        beta = np.median([np.mean([r.beta for r in tb.time]) for tb in dec])
        gamma = np.median([tb.gamma for tb in dec])
        return float(max(alpha, 1e-12)), float(beta), float(gamma)

    def _choose_window(self) -> None:
        prof, dl = self.profile, self.profile.deadlines
        a = prof.arrival_s
        n = len(a)
        if n == 0 or not dl.any:
            self.window = Window(math.inf, math.inf, np.zeros(n, bool), np.zeros(n, bool))
            self.size = np.ones(n)
            return
        pre_dl = a + min(dl.ttft_s, dl.e2e_s)
        dec_dl = a + np.minimum(dl.ttft_s + dl.tpot_s * prof.decode, dl.e2e_s)
        alpha, beta, gamma = self._reference_rates()
        pre_u = alpha * prof.prefill
        dec_u = beta * prof.decode_work + gamma * prof.context_work
        finite = dec_dl[np.isfinite(dec_dl)]
        candidates = {float(np.max(pre_dl))}
        if len(finite):
            candidates |= {float(np.quantile(finite, q)) for q in (0.5, 0.75, 0.9, 0.97, 0.99, 1.0)}
        best = None
        for e in sorted(candidates):
            if e <= a[0]:
                continue
            pc, dc = pre_dl <= e, dec_dl <= e
            u = pre_u * pc + dec_u * dc
            drop = np.sort(u)[::-1][: dl.misses].sum() if dl.misses else 0.0
            score = (u.sum() - drop) / (e - a[0])
            if best is None or score > best[0]:
                best = (score, e, pc, dc, u)
        if best is None:
            self.window = Window(math.inf, math.inf, np.zeros(n, bool), np.zeros(n, bool))
            self.size = np.ones(n)
            return
        _, e, pc, dc, u = best
        self.window = Window(e, e - a[0], pc, dc)
        self.size = u

    def _request_bounds(self, tid: str) -> RequestBounds:
        prof, tb, w = self.profile_of(tid), self.bounds[tid], self.window
        pre, dec, lat = self.floors[tid]
        dl = prof.deadlines
        role = self.role.get(tid, "colocated")
        ok = _fits_kv(tb, prof, role)
        ok &= pre <= min(dl.ttft_s, dl.e2e_s) + 1e-12
        ok &= (prof.decode == 0) | (dec <= dl.tpot_s + 1e-12)
        ok &= lat <= dl.e2e_s + 1e-12
        does_prefill, does_decode = float(role != "decode"), float(role != "prefill")
        work = np.zeros(prof.num_requests)
        energy = np.zeros(prof.num_requests)
        for k in range(len(prof.class_ids)):
            m = prof.members(k)
            r = tb.time[k]
            work[m] = (
                does_prefill * r.alpha * prof.prefill[m] * w.prefill_counted[m]
                + does_decode
                * (r.beta * prof.decode_work[m] + tb.gamma * prof.context_work[m])
                * w.decode_counted[m]
            )
            if tb.energy is not None:
                e = tb.energy[k]
                energy[m] = (
                    does_prefill * e.alpha * prof.prefill[m] + does_decode * e.beta * prof.decode_work[m]
                )
        return RequestBounds(work, energy, ok, lat)

    # ---- the bound master ----------------------------------------------------------------------------------
    def _build_bound(self) -> None:
        prof, obj = self.profile, self.objective
        has_window = math.isfinite(self.window.length_s)
        self.counting = (
            not has_window and obj != "max_throughput"
        )  # no deadline: count requests that must fit
        self.master_size = self._full_size() if obj == "max_throughput" else self.size
        self.horizon_s = self.window.length_s if has_window and obj != "max_throughput" else 1.0
        u = self.master_size
        self.master_classes = self._split_classes(has_window and obj != "max_throughput")
        classes = tuple(
            WorkloadClass(
                mcid,
                float(u[mask].sum()) / self.horizon_s,
                kv_per_unit=self._kv_per_unit(mask, u),
                paired=paired,
            )
            for mcid, _, mask, paired in self.master_classes
        )
        templates, limits = [], {}
        for tid in self.priced:
            t, lim = self._bound_column(tid)
            templates.append(t)
            limits.update(lim)
        dl = prof.deadlines
        allowance = 0.0
        if has_window and dl.misses and obj not in ("max_goodput", "max_throughput"):
            allowance = float(np.sort(u)[::-1][: dl.misses].sum()) / self.horizon_s
        throughput_limit = float(u.sum()) / self.makespan_floor_s if obj == "max_throughput" else None
        self.bound = MasterProblem(
            templates=tuple(templates),
            classes=classes,
            pools=self.domain_pools,
            budgets=self.budgets,
            objective=obj if obj != "min_latency" else "min_cost",
            route_limits=limits,
            unserved_allowance=allowance,
            max_templates=self.max_templates,
            throughput_limit=throughput_limit,
            min_replicas=1,
        )
        self.bound = self.bound.with_(objective_bounds=self._budget_rows())
        if obj == "max_goodput":
            self._goodput_counts = np.cumsum(np.sort(u))

    def _bound_column(self, tid: str) -> tuple[MasterTemplate, dict[tuple[str, str], float]]:
        """One template's bound coefficients (per class: capacity = 1/ρ with ρ the least ratio of its proven
        work to the request size, energy per unit of size, the route limit of the requests it can serve)."""
        obj, u = self.objective, self.master_size
        rb = self.requests[tid]
        work = self._full_work(tid) if obj == "max_throughput" else rb.time_work
        caps, energy, limits = {}, {}, {}
        for cid, _, m, paired in self.master_classes:
            if not paired and self.role[tid] == "decode":
                continue  # its decode work is outside the window: no decode template needs to carry it
            ok = m if obj == "max_throughput" else m & rb.ok
            if self.counting:
                caps[cid] = BIG_CAPACITY
                limits[(cid, tid)] = float(u[ok].sum()) / self.horizon_s
                energy[cid] = float(rb.energy[ok].min()) if ok.any() else 0.0
                continue
            sel = ok & (u > 0)
            if not sel.any():
                if obj != "max_throughput":
                    limits[(cid, tid)] = 0.0
                continue
            rho = float(np.min(work[sel] / u[sel]))
            caps[cid] = 1.0 / rho if rho > 0 else BIG_CAPACITY
            if obj != "max_throughput":
                limits[(cid, tid)] = float(u[sel].sum()) / self.horizon_s
            energy[cid] = float(np.min(rb.energy[sel] / u[sel]))
        p = self.priced[tid]
        coeffs = TemplateCoefficients(
            capacity_rps=caps, energy_per_request_j=energy, idle_w=0.0, usd_per_hour=p.analytic.usd_per_hour
        )
        return self._column(tid, coeffs, self._bound_link(tid)), limits

    def _split_classes(self, by_window: bool) -> list[tuple[str, int, np.ndarray, bool]]:
        """The bound master's classes: (id, workload class, members, paired). With a deadline window, the
        requests of a class whose prefill counts but whose decode does not (its decode deadline is after the
        window) form a class of their own that prefill templates serve without a decode template (their decode
        work is not in the window); the others keep the class's id and pair prefill with decode."""
        prof, w = self.profile, self.window
        out = []
        for k, cid in enumerate(prof.class_ids):
            m = prof.members(k)
            if not by_window:
                out.append((cid, k, m, True))
                continue
            prefill_only = m & w.prefill_counted & ~w.decode_counted
            out.append((cid, k, m & ~prefill_only, True))
            if prefill_only.any():
                out.append((f"{cid} (prefill in window)", k, prefill_only, False))
        return out

    def _column(self, tid: str, coeffs: TemplateCoefficients, link: float) -> MasterTemplate:
        t = self.priced[tid].template
        return MasterTemplate(
            tid,
            t.gpus_by_type,
            coeffs,
            self.domain_need[tid],
            role=t.role,
            group=t.settings.key,
            kv_link=link,
        )

    def _kv_per_unit(self, members: np.ndarray, size: np.ndarray) -> float:
        """The least prompt tokens per unit of size over a class's requests (the KV a unit moves, at least)."""
        sel = members & (size > 0)
        if not sel.any():
            return 0.0
        return float(np.min(self.profile.prefill[sel] / size[sel]))

    def _bound_link(self, tid: str) -> float:
        """A disaggregated template's KV row coefficient in prompt tokens per second of the master's horizon:
        its links' rate plus one largest prompt per horizon (the check's allowance, disaggregation.py); no row
        without a time scale (no deadlines: capacities are not rates)."""
        if self.role[tid] == "colocated" or self.counting or not math.isfinite(self.horizon_s):
            return math.inf
        largest = float(self.profile.prefill.max()) if self.profile.num_requests else 0.0
        horizon = self.makespan_floor_s if self.objective == "max_throughput" else self.horizon_s
        return self.link_tokens.get(tid, math.inf) + largest / max(horizon, 1e-12)

    def refresh(self, tid: str) -> None:
        """Rebuild one template's bound column after its bounds were refined (the sizes u stay: any positive
        size is valid)."""
        self.requests[tid] = self._request_bounds(tid)
        column, limits = self._bound_column(tid)
        templates = tuple(column if t.id == tid else t for t in self.bound.templates)
        route = {k: v for k, v in self.bound.route_limits.items() if k[1] != tid}
        route.update(limits)
        self.bound = self.bound.with_(templates=templates, route_limits=route)

    def _full_size(self) -> np.ndarray:
        alpha, beta, gamma = self._reference_rates()
        prof = self.profile
        return alpha * prof.prefill + beta * prof.decode_work + gamma * prof.context_work

    def _full_work(self, tid: str) -> np.ndarray:
        """Per request the proven busy time of the whole request on the template (its role's part of it)."""
        prof, tb = self.profile_of(tid), self.bounds[tid]
        role = self.role.get(tid, "colocated")
        does_prefill, does_decode = float(role != "decode"), float(role != "prefill")
        out = np.zeros(prof.num_requests)
        for k in range(len(prof.class_ids)):
            m = prof.members(k)
            r = tb.time[k]
            out[m] = does_prefill * r.alpha * prof.prefill[m] + does_decode * (
                r.beta * prof.decode_work[m] + tb.gamma * prof.context_work[m]
            )
        return out

    def _budget_rows(self) -> tuple[ObjectiveBound, ...]:
        """The J/token budget as a bound on the master's dynamic power (docs/design.md §5.3)."""
        b = self.scenario.spec.goals.budget
        if b.joules_per_token is None or not math.isfinite(self.horizon_s):
            return ()
        n_out = float(self.profile.output_tokens.sum())
        kw = (b.joules_per_token * n_out - self.idle_floor_w * self.makespan_floor_s) / (
            1000.0 * self.horizon_s
        )
        return (ObjectiveBound("min_energy", kw),)

    def remaining_bound(self, res) -> float | None:
        """What a bound-master solve proves about the unsimulated vectors, in simulation units: None when it
        proved none is feasible; its proven bound otherwise; and where it stopped (time limit) without one, the
        weakest value (−inf for a minimised objective, +inf for a maximised one), so that no gap is claimed. A
        solve that ran out of time is never read as "nothing left"."""
        if not res.has_solution and res.termination is Termination.INFEASIBLE:
            return None
        if res.bound is not None and math.isfinite(res.bound):
            value = res.bound
        elif res.has_solution and res.termination is Termination.OPTIMAL:
            value = res.objective
        else:
            value = None
        proven = self.to_sim_units(value)
        if proven is None:
            return math.inf if self.spec.sense == "max" else -math.inf
        return proven

    def to_sim_units(self, value: float | None) -> float | None:
        """A bound-master objective value in the simulation's units (None when there is no bound)."""
        if value is None or not math.isfinite(value) or self.spec.bound == "none":
            return None
        o = self.objective
        n_out = float(self.profile.output_tokens.sum())
        if o == "min_energy":
            joules = self.idle_floor_w * self.makespan_floor_s + 1000.0 * value * self.horizon_s
            return joules / max(n_out, 1.0)
        if o == "max_throughput":
            return value * n_out / max(float(self.master_size.sum()), 1e-300)
        if o == "max_goodput":
            passing = value * self.horizon_s
            count = int(np.searchsorted(self._goodput_counts, passing * (1 + 1e-9), side="right"))
            return min(count, self.profile.num_requests) / self.makespan_floor_s
        return value

    def from_sim_units(self, value: float) -> float:
        """The inverse of `to_sim_units` (the bound-master value a simulated value corresponds to)."""
        o = self.objective
        n_out = float(self.profile.output_tokens.sum())
        if o == "min_energy":
            return (value * n_out - self.idle_floor_w * self.makespan_floor_s) / (1000.0 * self.horizon_s)
        if o == "max_throughput":
            return value * float(self.master_size.sum()) / max(n_out, 1.0)
        if o == "max_goodput":
            count = math.ceil(value * self.makespan_floor_s - 1e-9)
            if count <= 0:
                return 0.0
            count = min(count, len(self._goodput_counts))
            return float(self._goodput_counts[count - 1]) / self.horizon_s
        return value

    # ---- the predictive master -----------------------------------------------------------------------------
    def _build_predict(self) -> None:
        old = getattr(self, "predict", None)
        self.predict = self._predict_problem(self.ratio_of)
        if old is not None:
            self.predict = self.predict.with_(no_good=old.no_good, capacity_cuts=old.capacity_cuts)

    def _predict_problem(self, ratio_of) -> MasterProblem:
        """The predictive master with each template's analytic energy and latency scaled by `ratio_of(tid)`."""
        prof = self.profile
        n = max(prof.num_requests, 1)
        classes = []
        for k, cid in enumerate(prof.class_ids):
            m = prof.members(k)
            mean_in = float(prof.prefill[m].mean()) if m.any() else 0.0
            classes.append(
                WorkloadClass(cid, prof.stats.demand_rps * float(m.sum()) / n, 1.0, kv_per_unit=mean_in)
            )
        templates = []
        for tid, p in self.priced.items():
            c = p.analytic
            r = ratio_of(tid)
            # idle_w 0: the simulator charges every GPU of the cluster its idle power whether a plan uses it
            # or not (a constant, added by `predicted_value`), so a plan's own idle power must not make the
            # master prefer plans with fewer GPUs
            coeffs = replace(
                c,
                idle_w=0.0,
                energy_per_request_j={k: v * r for k, v in c.energy_per_request_j.items()},
                latency_score={k: v * r for k, v in c.latency_score.items()},
                latency_growth_s=c.latency_growth_s * r,
            )
            link = self.link_tokens.get(tid, math.inf) if p.template.role != "colocated" else math.inf
            templates.append(self._column(tid, coeffs, link))
        return MasterProblem(
            templates=tuple(templates),
            classes=tuple(classes),
            pools=self.domain_pools,
            budgets=self.budgets,
            objective=self.objective,
            max_templates=self.max_templates,
            min_replicas=1,
        )

    def ratio_group(self, tid: str) -> tuple:
        """Templates whose analytic predictions err alike: the same role, pipeline depth, GPU types and clock,
        and whether a stage spans nodes (the analytic model's batch — and so its energy and latency per token —
        is furthest off for deep pipelines and cross-node stages, whose slow steps let batches grow)."""
        p = self.priced[tid]
        t = p.template
        return (t.role, len(t.stages), tuple(sorted(t.gpus_by_type)), t.sm_clock_mhz, "cross-node" in p.kinds)

    def ratio_of(self, tid: str) -> float:
        """The simulated / analytic ratio the predictive master applies to a template: its own, learned from
        its simulations; else the median of its group's (`ratio_group`); else, for a group never simulated,
        the least ratio learned so far — optimistic, so that each kind of structure is simulated once before
        its prediction is trusted at the others' ratio (1 before any simulation)."""
        own = self.predicted_ratio.get(tid)
        if own is not None:
            return own
        if not self.predicted_ratio:
            return 1.0
        group = self.ratio_group(tid)
        peers = [r for t, r in self.predicted_ratio.items() if self.ratio_group(t) == group]
        return float(np.median(peers)) if peers else min(self.predicted_ratio.values())

    def predicted_value(self, solution) -> float:
        """A predictive-master solution's objective in the simulation's units."""
        o = self.objective
        st = self.profile.stats
        m = solution.metrics
        if o == "min_energy":
            watts = 1000.0 * m["min_energy"] + self.idle_floor_w  # the master's power is dynamic only
            return watts / max(st.demand_rps * st.mean_output, 1e-12)
        if o == "max_throughput":
            return m["max_throughput"] * st.mean_output
        return m[o]

    def predicted_solution(self, counts: dict[str, int]):
        """The predictive master's metrics for a count vector, its demand routed in proportion to predicted
        capacity (a prediction, as the master would route it)."""
        return self._routed(self.predict, counts)

    def _routed(self, problem: MasterProblem, counts: dict[str, int]) -> MasterSolution:
        """`problem`'s metrics for a count vector routed by the predictive master's capacities."""
        routing = self.predict
        by_id = {t.id: t for t in problem.templates}
        rates = {}
        for c in routing.classes:
            caps = {
                t: n * routing.capacity(by_id[t], c.id)
                for t, n in counts.items()
                if t in by_id and by_id[t].entry
            }
            total = sum(caps.values())
            if total <= 0:
                continue
            for t, cap in caps.items():
                if cap > 0:
                    rates[(c.id, t)] = c.demand_rps * cap / total
            handed = sum(r for (c2, t), r in rates.items() if c2 == c.id and by_id[t].role == "prefill")
            decode = {
                t: n * routing.capacity(by_id[t], c.id)
                for t, n in counts.items()
                if t in by_id and by_id[t].role == "decode"
            }
            d_total = sum(decode.values())
            for t, cap in decode.items():
                if cap > 0 and handed > 0:
                    rates[(c.id, t)] = handed * cap / d_total
        return MasterSolution(dict(counts), rates, evaluate(problem, counts, rates))

    def learn(
        self, counts: dict[str, int], predicted: float, simulated: float, slo_missed: bool, rates
    ) -> None:
        """Correct the predictive master from one simulation: the objective ratio of its templates, and a
        capacity cut on each template of a plan that missed an SLO (it served less than was routed to it)."""
        if math.isfinite(simulated) and self.objective in ("min_energy", "min_latency"):
            ratio = self._observed_ratio(counts, simulated)
            if ratio is not None:
                for t in counts:
                    self.predicted_ratio[t] = ratio
        cuts = list(self.predict.capacity_cuts)
        if slo_missed:
            for t, n in counts.items():
                for (c, t2), r in rates.items():
                    if t2 == t and n > 0:
                        cuts.append(CapacityCut(t, c, 0.95 * r / n))
        self._build_predict()
        self.predict = self.predict.with_(capacity_cuts=tuple(cuts))

    def _observed_ratio(self, counts: dict[str, int], simulated: float) -> float | None:
        """The ratio r that, applied to the analytic energy (latency) of the plan's templates, makes the
        prediction equal the simulation: the prediction is affine in r (idle power does not scale), so
        r = (simulated − prediction at r=0) / (prediction at r=1 − prediction at r=0). Floored at 1 %: a
        simulation below the unscaled part (a shorter makespan than predicted) says the part that scales is
        small, not negative."""
        at = {}
        for r in (0.0, 1.0):
            problem = self._predict_problem(lambda _t, r=r: r)
            at[r] = self.predicted_value(self._routed(problem, counts))
        scale = at[1.0] - at[0.0]
        if not (math.isfinite(scale) and scale > 0):
            return None
        return max((simulated - at[0.0]) / scale, 0.01)

    def predict_within(self, ids: set[str]) -> MasterProblem:
        """The predictive master restricted to the templates `ids` (its cuts whose support lies in them)."""
        p = self.predict
        return p.with_(
            templates=tuple(t for t in p.templates if t.id in ids),
            route_limits={k: v for k, v in p.route_limits.items() if k[1] in ids},
            no_good=tuple(c for c in p.no_good if all(t in ids for t, n in c.items() if n > 0)),
        )

    def exclude(self, counts: dict[str, int]) -> None:
        """A simulated count vector is never proposed again (and no longer counts towards the bound: its
        simulated value does)."""
        full = {t: counts.get(t, 0) for t in self.priced}
        if full not in self.bound.no_good:
            self.bound = self.bound.with_(no_good=self.bound.no_good + (full,))
            self.predict = self.predict.with_(no_good=self.predict.no_good + (full,))


def _structure(group, settings: EngineSettings) -> str:
    return (
        "|".join(
            f"{s.layers[0]}-{s.layers[1]}:{s.gpu}:{s.attention.model_dump_json()}:{s.ffn.model_dump_json()}"
            for s in group.stages
        )
        + f"/{group.role}/{settings.key}/{group.sm_clock_mhz}"
    )


def _fits_kv(tb: TemplateBound, prof: WorkloadProfile, role: str = "colocated") -> np.ndarray:
    """Requests a replica can ever run (the scheduler's `can_ever_fit`): the tokens it holds in its KV cache —
    the whole length; on a prefill replica the prompt and its first token — and, when prompts cannot be
    chunked, the prompt within the token budget (a decode replica receives it computed)."""
    lim = tb.limits
    block = max(lim.block_size, 1)
    held = prof.input_tokens + (1 if role == "prefill" else prof.output_tokens)
    blocks = -(-held // block)
    ok = blocks <= lim.kv_tokens // block
    if not lim.chunked_prefill and role != "decode":
        ok &= prof.input_tokens <= lim.max_tokens
    return ok
