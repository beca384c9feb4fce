"""Master MILP: how many replicas of each template, and how much of each workload class each one serves.

Data (plain): `MasterTemplate`s (GPUs per type, NVLink-domain need per type, `TemplateCoefficients`),
`WorkloadClass`es (demand rate, tokens per request), `DomainPool`s (GPUs per type and the node groups' domain
sizes), `Budgets`, a capacity headroom factor and an objective (`formulations.objectives`). Variables:

* `count[t]` ∈ ℤ≥0, replicas of template t (≤ its max_count);
* `rate[c, t]` ≥ 0, class-c demand (requests/s, or any unit of work per second) routed to template t;
* `use[t]` ∈ {0, 1} when `max_templates` is set or the problem has disaggregated templates (count[t] ≤
  max_count · use[t], Σ weight[t] · use[t] ≤ max_templates; weight 1 for a colocated template, ½ for a prefill
  or decode one, so a prefill–decode pair counts as one template);
* `pick[g]` ∈ {0, 1} when templates belong to more than one settings group (count[t] ≤ max_count · pick[g(t)],
  Σ_g pick[g] ≤ 1: a plan's templates share one group, e.g. the engine knobs and dtypes every replica runs);
* `unserved[c]` ≥ 0 when `unserved_allowance` > 0.

Roles: a template is `colocated` (serves requests whole), `prefill` or `decode` (disaggregated serving: a
request's prefill runs on a prefill replica, its KV cache moves to a decode replica, which decodes it). Rates of
colocated and prefill templates serve demand; a decode template's rate is the part of a class it decodes.

Rows (one family per comment in `build_master`):

* demand: Σ_{t entry} rate[c,t] + unserved[c] = demand_c (min_cost / min_energy / min_latency; entry templates
  are the colocated and prefill ones), Σ_c unserved[c] ≤
  unserved_allowance (the demand that may miss its deadlines, e.g. the 1 % a p99 target forgives);
  ≤ demand_c (max_goodput); = share_c · throughput (max_throughput: the largest multiple of the demand mix),
  throughput ≤ throughput_limit;
* flow (disaggregated): Σ_{t prefill} rate[c,t] = Σ_{t decode} rate[c,t] per `paired` class — what the
  prefill pool serves, the decode pool decodes;
* pairing: at most one prefill and one decode template per plan, both or neither (Σ_P use = Σ_D use ≤ 1, and a
  used one has count ≥ 1);
* KV transfer: Σ_c kv_c · rate[c,t] ≤ kv_link[t] · count[t] for each prefill and decode template with a finite
  link (kv_c: the KV a unit of class c's rate moves; kv_link: what one replica's links carry per second);
* capacity: Σ_c rate[c,t] / cap[c,t] ≤ headroom · count[t] (cap: what one replica of t serves of class c);
* routes: rate[c,t] ≤ route_limits[c,t] (the part of class c that t can serve at all, e.g. within a deadline);
* inventory: Σ_t count[t] · gpus[t, τ] ≤ available_τ per GPU type τ; per domain size d:
  Σ_{t: need[t,τ] ≥ d} count[t] · gpus[t, τ] ≤ GPUs of type τ in whole domains of size ≥ d (a stage whose
  TP group needs a domain of d GPUs can only use node groups whose domain holds d);
* budgets: $/h, watts (idle + active), GPU count, J/token (energy per second ≤ J/token · tokens per second);
* templates: at most `max_templates` templates with count > 0 (the plan space's replica groups; a prefill–decode
  pair counts as one), at most one settings group, and at least `min_replicas` replicas in all (a plan is
  never empty).

Objectives (all per hour or per second, so they are linear):

* max_goodput: Σ rate (requests/s served within the SLOs);
* max_throughput: throughput (at the demand's class mix);
* min_cost: Σ count[t] · usd_per_hour[t]  ($/h);
* min_energy: average power in kW = (Σ count[t]·idle_w[t] + Σ rate[c,t]·energy_per_request_j[c,t]) / 1000,
  i.e. kWh per hour (idle_w is a replica's power when idle; energy_per_request_j is the energy a unit of
  demand adds on top of idle);
* min_latency: (Σ rate[c,t] · latency_score[c,t] + Σ_t growth[t] · count[t] · ρ_t²) / Σ_c demand_c, the
  rate-weighted mean latency: the idle-replica score plus its growth with utilisation ρ_t = load_t / count[t]
  (requests at ρ see latency_score + latency_growth_s · ρ; growth[t] = latency_growth_s · the replica's
  capacity for the demand mix). count · ρ² is convex (a perspective), so it is exact as piecewise-linear
  segments: load_t = Σ_k seg[t,k], 0 ≤ seg[t,k] ≤ width_k · count[t], cost slope_k (`LOAD_SEGMENTS`);
* min_gpus: Σ count[t] · GPUs[t];
* max_rate_per_gpu: throughput − q · Σ count[t] · GPUs[t] with q = `rate_per_gpu_q` (linear for a fixed q;
  `solve_max_rate_per_gpu` raises q to the best throughput per GPU, Dinkelbach's method), on the max_throughput
  demand rows.

Extras: no-good cuts (exclude an exact count vector), capacity cuts (a template's capacity corrected down),
objective bounds (ε-constraints, lexicographic steps, an incumbent cutoff), a warm start (initial counts), and
`enumerate_count_vectors` (every count vector the integer rows allow: the plan space, for exhaustive search).
An infeasible solve is re-solved with elastic slack on every row family and reports the rows that need slack,
with amounts.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from formulations.highs_util import silence_highs_banner, solve_pyomo_highs
from formulations.objectives import OBJECTIVES
from formulations.result import SolutionStatus, SolveResult, SolverOptions, Termination, relative_gap
from formulations.templates import TemplateCoefficients

Role = Literal["colocated", "prefill", "decode"]
MasterObjective = Literal[
    "max_goodput", "min_cost", "min_energy", "min_latency", "max_throughput", "max_rate_per_gpu", "min_gpus"
]
OBJECTIVE_SENSE: dict[str, str] = {name: spec.sense for name, spec in OBJECTIVES.items()}
OBJECTIVE_UNIT: dict[str, str] = {name: spec.solver_unit for name, spec in OBJECTIVES.items()}

# Utilisation breakpoints of the min_latency growth term ρ²: ten segments to full capacity, one for headroom
# above it; each segment's slope is ρ²'s chord over it (exact at the breakpoints, above ρ² in between).
SMALL_MATRIX_VALUE = 1e-9  # HiGHS's default small_matrix_value: smaller coefficients are dropped
_LOAD_BREAKS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5)
LOAD_SEGMENTS: tuple[tuple[float, float], ...] = tuple(
    (b - a, a + b) for a, b in zip(_LOAD_BREAKS, _LOAD_BREAKS[1:], strict=False)
)


def load_square(rho: float) -> float:
    """The piecewise-linear ρ² the master's segments represent (ρ ≥ 0; linear beyond the last breakpoint)."""
    total, left = 0.0, max(rho, 0.0)
    for k, (width, slope) in enumerate(LOAD_SEGMENTS):
        part = left if k == len(LOAD_SEGMENTS) - 1 else min(left, width)
        total += part * slope
        left -= part
        if left <= 0:
            break
    return total


@dataclass(frozen=True, slots=True)
class MasterTemplate:
    """One column of the master: a replica structure with its coefficients."""

    id: str
    gpus_by_type: Mapping[str, int]
    coefficients: TemplateCoefficients
    domain_need_by_type: Mapping[str, int] = field(default_factory=dict)  # GPUs that must share one domain
    max_count: int | None = None
    role: Role = "colocated"  # colocated, prefill or decode (disaggregated serving)
    group: str = ""  # settings group: templates of different groups never share a plan
    kv_link: float = (
        math.inf
    )  # prefill / decode: KV one replica's links carry per second (unit of kv_per_unit)

    @property
    def entry(self) -> bool:
        """Whether the template takes requests in (colocated or prefill): its rates serve demand."""
        return self.role != "decode"

    @property
    def weight(self) -> float:
        """How much of `max_templates` the template uses (a prefill–decode pair counts as one template)."""
        return 1.0 if self.role == "colocated" else 0.5


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    id: str
    demand_rps: float
    tokens_per_request: float = 1.0  # input + output, for the J/token budget
    kv_per_unit: float = 0.0  # KV a disaggregated request moves per unit of demand (e.g. prompt tokens)
    paired: bool = True  # the prefill pool's rate of this class must be decoded by the decode pool


@dataclass(frozen=True, slots=True)
class DomainPool:
    """`num_domains` NVLink domains of `domain_gpus` available GPUs of `gpu_type` (one node group)."""

    gpu_type: str
    domain_gpus: int
    num_domains: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class Budgets:
    usd_per_hour: float | None = None
    watts: float | None = None
    num_gpus: int | None = None
    joules_per_token: float | None = None


@dataclass(frozen=True, slots=True)
class ObjectiveBound:
    """Constrain another objective: value ≤ limit for a min objective, ≥ limit for a max one."""

    objective: str
    limit: float


@dataclass(frozen=True, slots=True)
class CapacityCut:
    """Template `template_id` serves at most `capacity_rps` of class `class_id` per replica."""

    template_id: str
    class_id: str
    capacity_rps: float


@dataclass(frozen=True)
class MasterProblem:
    templates: tuple[MasterTemplate, ...]
    classes: tuple[WorkloadClass, ...]
    pools: tuple[DomainPool, ...]
    budgets: Budgets = Budgets()
    objective: str = "max_goodput"
    headroom: float = 1.0
    no_good: tuple[Mapping[str, int], ...] = ()
    capacity_cuts: tuple[CapacityCut, ...] = ()
    objective_bounds: tuple[ObjectiveBound, ...] = ()
    route_limits: Mapping[tuple[str, str], float] = field(
        default_factory=dict
    )  # (class, template) -> max rate
    unserved_allowance: float = 0.0  # demand (summed over classes) that min objectives may leave unserved
    max_templates: int | None = None  # at most this many templates with count > 0
    throughput_limit: float | None = None  # max_throughput: throughput ≤ this
    rows_of: str | None = None  # whose demand rows to build (default: the objective's; see pareto_front)
    min_replicas: int = 0  # Σ count ≥ this (a plan has at least one replica)
    rate_per_gpu_q: float = 0.0  # max_rate_per_gpu: the ratio q of throughput − q · GPUs

    def __post_init__(self):
        if self.objective not in OBJECTIVE_SENSE:
            raise ValueError(
                f"unknown objective {self.objective!r}; expected one of {sorted(OBJECTIVE_SENSE)}"
            )
        if not 0 < self.headroom <= 1.5:
            raise ValueError(f"headroom must be in (0, 1.5], got {self.headroom}")
        ids = [t.id for t in self.templates]
        if len(set(ids)) != len(ids):
            raise ValueError("template ids must be unique")
        if self.unserved_allowance < 0 or (self.max_templates is not None and self.max_templates < 1):
            raise ValueError("unserved_allowance must be ≥ 0 and max_templates ≥ 1")

    def with_(self, **changes) -> MasterProblem:
        return replace(self, **changes)

    @property
    def demand_rows(self) -> str:
        """The objective whose demand rows the model has: ≤ demand (max_goodput), = a multiple of the mix
        (max_throughput) or = demand (the min objectives)."""
        return self.rows_of or _DEMAND_ROWS.get(self.objective, self.objective)

    # ---- derived coefficients (read by every builder) ----

    def gpu_types(self) -> list[str]:
        types = {p.gpu_type for p in self.pools}
        for t in self.templates:
            types.update(t.gpus_by_type)
        return sorted(types)

    def available(self, gpu_type: str) -> int:
        return sum(p.domain_gpus * p.num_domains for p in self.pools if p.gpu_type == gpu_type)

    def domain_rows(self) -> list[tuple[str, int, int]]:
        """(gpu type, domain size d, GPUs usable by stages needing ≥ d) for each distinct need d > 1."""
        rows = []
        for gpu_type in self.gpu_types():
            needs = sorted(
                {t.domain_need_by_type.get(gpu_type, 1) for t in self.templates if gpu_type in t.gpus_by_type}
                - {1}
            )
            for d in needs:
                usable = sum(
                    (p.domain_gpus // d) * d * p.num_domains
                    for p in self.pools
                    if p.gpu_type == gpu_type and p.domain_gpus >= d
                )
                rows.append((gpu_type, d, usable))
        return rows

    def capacity(self, t: MasterTemplate, class_id: str) -> float:
        """Requests/s one replica of t serves of class c (0 = cannot serve it), after capacity cuts."""
        cap = t.coefficients.capacity_rps.get(class_id, 0.0)
        for cut in self.capacity_cuts:
            if cut.template_id == t.id and cut.class_id == class_id:
                cap = min(cap, cut.capacity_rps)
        return max(cap, 0.0)

    def max_count(self, t: MasterTemplate) -> int:
        """Upper bound on count[t]: its own max_count and what the inventory / GPU budget allows."""
        limit = t.max_count if t.max_count is not None else 10**6
        for gpu_type, n in t.gpus_by_type.items():
            if n > 0:
                limit = min(limit, self.available(gpu_type) // n)
        total = sum(t.gpus_by_type.values())
        if self.budgets.num_gpus is not None and total > 0:
            limit = min(limit, self.budgets.num_gpus // total)
        return max(limit, 0)

    def routes(self) -> list[tuple[str, str]]:
        """(class, template) pairs with positive capacity and route limit: the only rate variables created."""
        return [
            (c.id, t.id)
            for c in self.classes
            for t in self.templates
            if self.capacity(t, c.id) > 0 and self.route_limits.get((c.id, t.id), math.inf) > 0
        ]

    def route_limit(self, class_id: str, template_id: str) -> float:
        return self.route_limits.get((class_id, template_id), math.inf)

    def latency_growth(self, t: MasterTemplate) -> float:
        """growth[t] of the min_latency term: latency_growth_s × requests/s one replica of t serves of the
        demand mix at full capacity (the harmonic mean of its class capacities, weighted by demand)."""
        g = t.coefficients.latency_growth_s
        if g <= 0:
            return 0.0
        share = {c.id: c.demand_rps for c in self.classes if self.capacity(t, c.id) > 0}
        total = sum(share.values())
        if total <= 0:
            return 0.0
        load_per_request = sum(w / total / self.capacity(t, cid) for cid, w in share.items())
        return g / load_per_request

    def uses_latency(self) -> bool:
        return self.objective == "min_latency" or any(
            b.objective == "min_latency" for b in self.objective_bounds
        )

    # ---- roles and groups ----

    def role_ids(self, role: str) -> list[str]:
        return [t.id for t in self.templates if t.role == role]

    @property
    def disaggregated(self) -> bool:
        """Whether some template is a prefill or decode template (the flow and pairing rows exist)."""
        return any(t.role != "colocated" for t in self.templates)

    def groups(self) -> list[str]:
        """The settings groups of the templates (the pick rows exist when there are two or more)."""
        return sorted({t.group for t in self.templates})

    def needs_use(self) -> bool:
        """Whether the model has use[t] binaries (a template limit, or prefill–decode pairing)."""
        limited = self.max_templates is not None and self.max_templates < sum(
            t.weight for t in self.templates
        )
        return limited or self.disaggregated


@dataclass(frozen=True, slots=True)
class MasterSolution:
    counts: dict[str, int]  # template id -> replicas (zeros omitted)
    rates: dict[tuple[str, str], float]  # (class id, template id) -> requests/s (zeros omitted)
    metrics: dict[str, float]  # every objective's value plus gpus and watts


@dataclass(frozen=True, slots=True)
class RowSlack:
    """One row family that needs slack to become feasible."""

    row: str
    amount: float
    unit: str
    message: str


# ---- evaluation shared by every builder and the brute-force tests -----------------------------------------


def evaluate(
    problem: MasterProblem, counts: Mapping[str, int], rates: Mapping[tuple[str, str], float]
) -> dict:
    """Every objective's value, GPU count and watts of a (counts, rates) point."""
    by_id = {t.id: t for t in problem.templates}
    entry = {t.id for t in problem.templates if t.entry}
    served = sum(r for (_, t), r in rates.items() if t in entry)
    demand = sum(c.demand_rps for c in problem.classes)
    cost = sum(n * by_id[t].coefficients.usd_per_hour for t, n in counts.items())
    idle = sum(n * by_id[t].coefficients.idle_w for t, n in counts.items())
    active = sum(r * by_id[t].coefficients.energy_j(c) for (c, t), r in rates.items())
    latency = sum(r * by_id[t].coefficients.latency(c) for (c, t), r in rates.items())
    for t, n in counts.items():
        growth = problem.latency_growth(by_id[t])
        if growth and n > 0:
            load = sum(r / problem.capacity(by_id[t], c) for (c, t2), r in rates.items() if t2 == t)
            latency += growth * n * load_square(load / n)
    latency /= max(demand, 1e-12)
    gpus = sum(n * sum(by_id[t].gpus_by_type.values()) for t, n in counts.items())
    throughput = (
        min(
            (
                sum(r for (c2, t), r in rates.items() if c2 == c.id and t in entry) / c.demand_rps
                for c in problem.classes
                if c.demand_rps > 0
            ),
            default=0.0,
        )
        * demand
    )
    return {
        "max_goodput": served,
        "max_throughput": throughput,
        "min_cost": cost,
        "min_energy": (idle + active) / 1000.0,
        "min_latency": latency,
        "min_gpus": gpus,
        "max_rate_per_gpu": throughput - problem.rate_per_gpu_q * gpus,
        "rate_per_gpu": throughput / gpus if gpus else 0.0,
        "num_gpus": gpus,
        "watts": idle + active,
    }


# ---- the pyomo builder -------------------------------------------------------------------------------------


def build_master(problem: MasterProblem, *, elastic: bool = False):
    """The pyomo model of `problem`. With `elastic`, every row family gets non-negative slack (`slack_*`) and
    the objective becomes the total relative slack (used to explain infeasibility)."""
    import pyomo.environ as pyo

    m = pyo.ConcreteModel(name="apex_master")
    templates = {t.id: t for t in problem.templates}
    classes = {c.id: c for c in problem.classes}
    routes = problem.routes()
    m.T = pyo.Set(initialize=list(templates), ordered=True)
    m.R = pyo.Set(initialize=routes, dimen=2, ordered=True)
    m.count = pyo.Var(
        m.T, domain=pyo.NonNegativeIntegers, bounds=lambda m, t: (0, problem.max_count(templates[t]))
    )
    m.rate = pyo.Var(
        m.R, domain=pyo.NonNegativeReals, bounds=lambda m, c, t: (0, _finite(problem.route_limit(c, t)))
    )
    m.throughput = pyo.Var(domain=pyo.NonNegativeReals, bounds=(0, _finite(problem.throughput_limit)))
    slacks = []

    def slack(name):
        if not elastic:
            return 0
        v = pyo.Var(domain=pyo.NonNegativeReals)
        m.add_component(f"slack_{name}", v)
        slacks.append(name)
        return v

    def served(c):
        return sum(m.rate[c, t] for (c2, t) in routes if c2 == c and templates[t].entry)

    # Demand: Σ_{t entry} rate[c,t] + unserved[c] = demand_c (≤ for max_goodput; = share_c·throughput for
    # max_throughput); Σ_c unserved[c] ≤ unserved_allowance.
    total_demand = sum(c.demand_rps for c in problem.classes)
    allowance = problem.unserved_allowance if problem.demand_rows not in _MAX_DEMAND_ROWS else 0.0
    if allowance > 0:
        m.unserved = pyo.Var(list(classes), domain=pyo.NonNegativeReals)
        m.unserved_allowance = pyo.Constraint(expr=sum(m.unserved[c] for c in classes) <= allowance)
    for cid, c in classes.items():
        if problem.demand_rows == "max_goodput":
            if not isinstance(served(cid), int):  # a class no template serves has nothing to bound
                m.add_component(f"demand_{cid}", pyo.Constraint(expr=served(cid) <= c.demand_rps))
        elif problem.demand_rows == "max_throughput":
            share = c.demand_rps / total_demand if total_demand > 0 else 0.0
            m.add_component(f"demand_{cid}", pyo.Constraint(expr=served(cid) == share * m.throughput))
        else:
            unserved = m.unserved[cid] if allowance > 0 else 0
            row = served(cid) + unserved + slack(f"demand_{cid}") == c.demand_rps
            if isinstance(row, bool):  # no template serves the class: the row is trivially met or violated
                row = pyo.Constraint.Feasible if row else pyo.Constraint.Infeasible
            m.add_component(f"demand_{cid}", pyo.Constraint(expr=row))
    # Templates: count[t] ≤ max_count[t] · use[t], Σ_t weight[t] · use[t] ≤ max_templates.
    if problem.needs_use():
        m.use = pyo.Var(m.T, domain=pyo.Binary)
        m.use_link = pyo.Constraint(
            m.T, rule=lambda m, t: m.count[t] <= problem.max_count(templates[t]) * m.use[t]
        )
        if problem.max_templates is not None:
            m.max_templates = pyo.Constraint(
                expr=sum(templates[t].weight * m.use[t] for t in m.T) <= problem.max_templates
            )
    # Flow and pairing (disaggregated): per class the prefill pool's rate = the decode pool's; at most one
    # prefill and one decode template, both or neither, each used one with a replica.
    if problem.disaggregated:
        prefill, decode = problem.role_ids("prefill"), problem.role_ids("decode")
        for cid in (c for c, cls in classes.items() if cls.paired):
            p_rate = sum(m.rate[c, t] for (c, t) in routes if c == cid and t in prefill)
            d_rate = sum(m.rate[c, t] for (c, t) in routes if c == cid and t in decode)
            if not (isinstance(p_rate, int) and isinstance(d_rate, int)):
                m.add_component(f"flow_{cid}", pyo.Constraint(expr=p_rate == d_rate))
        m.pair = pyo.Constraint(expr=sum(m.use[t] for t in prefill) == sum(m.use[t] for t in decode))
        m.one_prefill = pyo.Constraint(expr=sum(m.use[t] for t in prefill) <= 1)
        m.one_decode = pyo.Constraint(expr=sum(m.use[t] for t in decode) <= 1)
        m.used_has_replica = pyo.Constraint(prefill + decode, rule=lambda m, t: m.count[t] >= m.use[t])
        # KV transfer: Σ_c kv_c · rate[c,t] ≤ kv_link[t] · count[t]
        for tid in prefill + decode:
            link = templates[tid].kv_link
            moved = sum(
                classes[c].kv_per_unit * m.rate[c, t]
                for (c, t) in routes
                if t == tid and classes[c].kv_per_unit > 0
            )
            if math.isfinite(link) and not isinstance(moved, (int, float)):
                m.add_component(f"kv_link_{tid}", pyo.Constraint(expr=moved <= link * m.count[tid]))
    # Settings groups: the templates of a plan share one group.
    groups = problem.groups()
    if len(groups) > 1:
        m.G = pyo.Set(initialize=groups, ordered=True)
        m.pick = pyo.Var(m.G, domain=pyo.Binary)
        m.one_group = pyo.Constraint(expr=sum(m.pick[g] for g in m.G) <= 1)
        m.group_link = pyo.Constraint(
            m.T,
            rule=lambda m, t: m.count[t] <= problem.max_count(templates[t]) * m.pick[templates[t].group],
        )
    # At least min_replicas replicas in all (a plan is never empty).
    if problem.min_replicas > 0:
        m.min_replicas = pyo.Constraint(expr=sum(m.count[t] for t in m.T) >= problem.min_replicas)
    # Capacity: Σ_c rate[c,t] / cap[c,t] ≤ headroom · count[t].
    for tid, t in templates.items():
        load = sum(m.rate[c, t2] / problem.capacity(t, c) for (c, t2) in routes if t2 == tid)
        if not isinstance(load, int):
            m.add_component(f"capacity_{tid}", pyo.Constraint(expr=load <= problem.headroom * m.count[tid]))
    # Inventory per GPU type: Σ_t count[t]·gpus[t,τ] ≤ available_τ.
    for gpu_type in problem.gpu_types():
        used = sum(m.count[t.id] * t.gpus_by_type.get(gpu_type, 0) for t in problem.templates)
        if not isinstance(used, int):
            m.add_component(
                f"inventory_{gpu_type}",
                pyo.Constraint(expr=used <= problem.available(gpu_type) + slack(f"inventory_{gpu_type}")),
            )
    # Domains: stages needing ≥ d GPUs in one NVLink domain use only node groups whose domains hold d.
    for gpu_type, d, usable in problem.domain_rows():
        used = sum(
            m.count[t.id] * t.gpus_by_type.get(gpu_type, 0)
            for t in problem.templates
            if t.domain_need_by_type.get(gpu_type, 1) >= d
        )
        m.add_component(
            f"domain_{gpu_type}_ge{d}",
            pyo.Constraint(expr=used <= usable + slack(f"domain_{gpu_type}_ge{d}")),
        )
    b = problem.budgets
    cost = sum(m.count[t.id] * t.coefficients.usd_per_hour for t in problem.templates)
    idle_w = sum(m.count[t.id] * t.coefficients.idle_w for t in problem.templates)
    active_w = sum(m.rate[c, t] * templates[t].coefficients.energy_j(c) for (c, t) in routes)
    gpus = sum(m.count[t.id] * sum(t.gpus_by_type.values()) for t in problem.templates)
    tokens_per_s = sum(
        m.rate[c, t] * classes[c].tokens_per_request for (c, t) in routes if templates[t].entry
    )
    # Budgets: $/h, watts (idle + active), GPUs, and J/token as energy/s ≤ J/token · tokens/s.
    if b.usd_per_hour is not None:
        m.budget_usd_per_hour = pyo.Constraint(expr=cost <= b.usd_per_hour + slack("budget_usd_per_hour"))
    if b.watts is not None:
        m.budget_watts = pyo.Constraint(expr=idle_w + active_w <= b.watts + slack("budget_watts"))
    if b.num_gpus is not None:
        m.budget_num_gpus = pyo.Constraint(expr=gpus <= b.num_gpus + slack("budget_num_gpus"))
    if b.joules_per_token is not None:
        m.budget_joules_per_token = pyo.Constraint(
            expr=idle_w + active_w <= b.joules_per_token * tokens_per_s + slack("budget_joules_per_token")
        )
    # min_latency growth: load_t = Σ_k seg[t,k], seg[t,k] ≤ width_k · count[t] (see the module docstring).
    growth_terms = 0
    for tid, t in templates.items():
        growth = problem.latency_growth(t) if problem.uses_latency() else 0.0
        load = sum(m.rate[c, t2] / problem.capacity(t, c) for (c, t2) in routes if t2 == tid)
        if growth <= 0 or isinstance(load, int):
            continue
        ks = range(len(LOAD_SEGMENTS))
        seg = pyo.Var(ks, domain=pyo.NonNegativeReals)
        m.add_component(f"load_segment_{tid}", seg)
        m.add_component(f"load_split_{tid}", pyo.Constraint(expr=sum(seg[k] for k in ks) == load))
        for k, (width, _) in enumerate(LOAD_SEGMENTS[:-1]):
            m.add_component(f"load_width_{tid}_{k}", pyo.Constraint(expr=seg[k] <= width * m.count[tid]))
        growth_terms += growth * sum(slope * seg[k] for k, (_, slope) in enumerate(LOAD_SEGMENTS))
    expressions = {
        "max_goodput": sum(m.rate[r] for r in routes if templates[r[1]].entry),
        "max_throughput": m.throughput,
        "min_cost": cost,
        "min_energy": (idle_w + active_w) / 1000.0,
        "min_latency": (
            sum(m.rate[c, t] * templates[t].coefficients.latency(c) for (c, t) in routes) + growth_terms
        )
        / max(total_demand, 1e-12),
        "min_gpus": gpus,
        "max_rate_per_gpu": m.throughput - problem.rate_per_gpu_q * gpus,
    }
    # Objective bounds (ε-constraints, lexicographic steps): value ≤ limit (min) or ≥ limit (max).
    for i, ob in enumerate(problem.objective_bounds):
        expr = expressions[ob.objective]
        row = expr <= ob.limit if OBJECTIVE_SENSE[ob.objective] == "min" else expr >= ob.limit
        m.add_component(f"objective_bound_{i}_{ob.objective}", pyo.Constraint(expr=row))
    _add_no_good_cuts(m, problem, templates)
    if elastic:
        scale = {
            "budget_usd_per_hour": b.usd_per_hour,
            "budget_watts": b.watts,
            "budget_num_gpus": b.num_gpus,
            "budget_joules_per_token": b.joules_per_token,
        }
        m.obj = pyo.Objective(
            expr=sum(getattr(m, f"slack_{s}") / max(scale.get(s) or 1.0, 1e-9) for s in slacks),
            sense=pyo.minimize,
        )
        m.slack_names = slacks
    else:
        sense = pyo.maximize if OBJECTIVE_SENSE[problem.objective] == "max" else pyo.minimize
        m.obj = pyo.Objective(expr=expressions[problem.objective], sense=sense)
    return m


_MAX_DEMAND_ROWS = ("max_goodput", "max_throughput")
_DEMAND_ROWS = {"max_rate_per_gpu": "max_throughput"}  # objectives that use another objective's demand rows


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _add_no_good_cuts(m, problem: MasterProblem, templates: dict[str, MasterTemplate]) -> None:
    """Exclude count vectors exactly: for each cut n*, some t of its support has count[t] ≥ n*_t + 1
    (above[t]) or count[t] ≤ n*_t − 1 (below[t]), or some template outside the support is used (other:
    Σ_{t ∉ support} count[t] ≥ other); Σ above + below + other ≥ 1. Binaries grow with the support, not with
    the number of templates."""
    import pyomo.environ as pyo

    for k, cut in enumerate(problem.no_good):
        terms = []
        support = {tid for tid in templates if int(cut.get(tid, 0)) > 0}
        for tid in sorted(support):
            target, upper = int(cut[tid]), problem.max_count(templates[tid])
            if target + 1 <= upper:
                above = pyo.Var(domain=pyo.Binary)
                m.add_component(f"nogood_{k}_above_{tid}", above)
                # count[t] ≥ (n*_t + 1) · above[t]
                m.add_component(
                    f"nogood_{k}_above_row_{tid}", pyo.Constraint(expr=m.count[tid] >= (target + 1) * above)
                )
                terms.append(above)
            below = pyo.Var(domain=pyo.Binary)
            m.add_component(f"nogood_{k}_below_{tid}", below)
            # count[t] ≤ n*_t − 1 + (upper − n*_t + 1) · (1 − below[t])
            m.add_component(
                f"nogood_{k}_below_row_{tid}",
                pyo.Constraint(expr=m.count[tid] <= target - 1 + (upper - target + 1) * (1 - below)),
            )
            terms.append(below)
        others = [tid for tid, t in templates.items() if tid not in support and problem.max_count(t) >= 1]
        if others:
            other = pyo.Var(domain=pyo.Binary)
            m.add_component(f"nogood_{k}_other", other)
            m.add_component(
                f"nogood_{k}_other_row", pyo.Constraint(expr=sum(m.count[t] for t in others) >= other)
            )
            terms.append(other)
        # At least one template moves away from n* (no terms: the cut excludes everything).
        if terms:
            m.add_component(f"nogood_{k}", pyo.Constraint(expr=sum(terms) >= 1))
        else:
            m.add_component(f"nogood_{k}", pyo.Constraint(rule=lambda m: pyo.Constraint.Infeasible))


# ---- the plan space: every count vector the integer rows allow ---------------------------------------------


class SpaceTooLarge(Exception):
    """`enumerate_count_vectors` found more vectors than its limit (`.limit`)."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} count vectors")
        self.limit = limit


def count_vector_fits(problem: MasterProblem, counts: Mapping[str, int]) -> bool:
    """Whether a count vector meets the rows that involve only counts: inventory, domains, $/h and GPU
    budgets, max_templates (capacity, demand and objective rows are not checked)."""
    by_id = {t.id: t for t in problem.templates}
    used = {t: n for t, n in counts.items() if n > 0}
    if not used or any(t not in by_id or n > problem.max_count(by_id[t]) for t, n in used.items()):
        return False
    if not combination_fits(problem, [by_id[t] for t in used]):
        return False
    for gpu_type in problem.gpu_types():
        if sum(n * by_id[t].gpus_by_type.get(gpu_type, 0) for t, n in used.items()) > problem.available(
            gpu_type
        ):
            return False
    for gpu_type, d, usable in problem.domain_rows():
        need = sum(
            n * by_id[t].gpus_by_type.get(gpu_type, 0)
            for t, n in used.items()
            if by_id[t].domain_need_by_type.get(gpu_type, 1) >= d
        )
        if need > usable:
            return False
    b = problem.budgets
    if b.usd_per_hour is not None:
        cost = sum(n * by_id[t].coefficients.usd_per_hour for t, n in used.items())
        if cost > b.usd_per_hour * (1 + 1e-9):
            return False
    gpus = sum(n * sum(by_id[t].gpus_by_type.values()) for t, n in used.items())
    return b.num_gpus is None or gpus <= b.num_gpus


def combination_fits(problem: MasterProblem, used: Sequence[MasterTemplate]) -> bool:
    """Whether templates may share a plan: one settings group, at most one prefill and one decode template
    (both or neither), and their weights within max_templates (a prefill–decode pair counts as one)."""
    if len({t.group for t in used}) > 1:
        return False
    roles = [t.role for t in used]
    prefill, decode = roles.count("prefill"), roles.count("decode")
    if prefill > 1 or decode > 1 or prefill != decode:
        return False
    weight = sum(t.weight for t in used)
    return problem.max_templates is None or weight <= problem.max_templates + 1e-9


def template_combinations(problem: MasterProblem):
    """Every set of templates `combination_fits` accepts, as tuples in problem order: per settings group,
    colocated templates by number (1, 2, ... up to max_templates) and then, for each colocated set that leaves
    room, with each prefill–decode pair."""
    limit = problem.max_templates if problem.max_templates is not None else len(problem.templates)
    order = {t.id: i for i, t in enumerate(problem.templates)}
    for group in problem.groups():
        members = [t for t in problem.templates if t.group == group and problem.max_count(t) >= 1]
        colocated = [t for t in members if t.role == "colocated"]
        pairs = [(p, d) for p in members if p.role == "prefill" for d in members if d.role == "decode"]
        for k in range(0, min(int(limit), len(colocated)) + 1):
            for combo in itertools.combinations(colocated, k):
                if k:
                    yield combo
                if k + 1 <= limit:
                    for pair in pairs:
                        yield tuple(sorted(combo + pair, key=lambda t: order[t.id]))


def enumerate_count_vectors(problem: MasterProblem, limit: int) -> list[dict[str, int]]:
    """Every non-zero count vector that `count_vector_fits` accepts, zeros omitted: per settings group, by
    number of colocated templates used (1, 2, ... up to max_templates, each also with every prefill–decode
    pair that fits), then template combination in problem order, then counts. Raises SpaceTooLarge past
    `limit` vectors."""
    out: list[dict[str, int]] = []
    for combo in template_combinations(problem):
        for counts in _counts_within_inventory(problem, combo):
            if count_vector_fits(problem, counts):
                out.append(counts)
                if len(out) > limit:
                    raise SpaceTooLarge(limit)
    return out


def _counts_within_inventory(problem: MasterProblem, combo) -> list[dict[str, int]]:
    """Count assignments ≥ 1 to every template of `combo` that fit the GPU inventory per type."""
    left = {g: problem.available(g) for g in problem.gpu_types()}
    out: list[dict[str, int]] = []

    def assign(i: int, counts: dict[str, int]) -> None:
        if i == len(combo):
            out.append(dict(counts))
            return
        t = combo[i]
        for n in range(1, problem.max_count(t) + 1):
            if any(g * n > left.get(name, 0) for name, g in t.gpus_by_type.items()):
                break
            for name, g in t.gpus_by_type.items():
                left[name] -= g * n
            counts[t.id] = n
            assign(i + 1, counts)
            del counts[t.id]
            for name, g in t.gpus_by_type.items():
                left[name] += g * n

    assign(0, {})
    return out


# ---- solve / extract ---------------------------------------------------------------------------------------


def _extract(problem: MasterProblem, m) -> MasterSolution:
    counts = {t: round(m.count[t].value or 0) for t in m.count}
    rates = {r: max(m.rate[r].value or 0.0, 0.0) for r in m.rate}
    counts = {t: n for t, n in counts.items() if n > 0}
    rates = {r: v for r, v in rates.items() if v > 1e-9}
    return MasterSolution(counts, rates, evaluate(problem, counts, rates))


def _set_warm_start(problem: MasterProblem, m, counts: Mapping[str, int], options: SolverOptions) -> None:
    """Set count values to the hint and complete the rates by an LP with the counts fixed, so HiGHS gets
    a full MIP start. If the hint is infeasible the rates stay unset (HiGHS then gets the counts only)."""
    for t in m.count:
        m.count[t].fix(int(counts.get(t, 0)))
    try:
        run = solve_pyomo_highs(m, options)
    finally:
        for t in m.count:
            m.count[t].unfix()
    if not run.has_incumbent:
        for r in m.rate:
            m.rate[r].set_value(None)
    for t in m.count:
        m.count[t].set_value(int(counts.get(t, 0)))


def solve_master(
    problem: MasterProblem,
    options: SolverOptions,
    *,
    warm_start: Mapping[str, int] | None = None,
    explain_infeasible: bool = True,
) -> SolveResult[MasterSolution]:
    """Build, solve (pyomo + HiGHS) and extract. Objective and bound are in the objective's own units."""
    t0 = time.perf_counter()
    m = build_master(problem)
    if warm_start is not None:
        _set_warm_start(problem, m, warm_start, options)
    run = solve_pyomo_highs(m, options, warmstart=warm_start is not None)
    wall = time.perf_counter() - t0
    if not run.has_incumbent:
        reasons: tuple[str, ...] = ()
        if run.termination == Termination.INFEASIBLE and explain_infeasible:
            reasons = tuple(s.message for s in explain_master_infeasibility(problem, options))
        bound = run.bound if run.bound is not None and math.isfinite(run.bound) else None
        return SolveResult(
            run.termination, SolutionStatus.NO_SOLUTION, None, bound, None, wall, run.log, None, reasons
        )
    solution = _extract(problem, m)
    status = SolutionStatus.OPTIMAL if run.termination == Termination.OPTIMAL else SolutionStatus.FEASIBLE
    return SolveResult(
        run.termination,
        status,
        run.objective,
        run.bound,
        relative_gap(run.objective, run.bound),
        wall,
        run.log,
        solution,
    )


def explain_master_infeasibility(problem: MasterProblem, options: SolverOptions) -> list[RowSlack]:
    """Re-solve with elastic slack on every demand, inventory, domain and budget row (minimizing total
    relative slack) and report the rows that need slack, largest first. Objective bounds and no-good cuts
    stay hard; when only they conflict, say so."""
    m = build_master(problem, elastic=True)
    run = solve_pyomo_highs(m, options)
    if not run.has_incumbent:
        return [
            RowSlack(
                "cuts",
                math.inf,
                "",
                "infeasible even with elastic rows: the no-good cuts or objective "
                "bounds exclude every solution",
            )
        ]
    units = {
        "budget_usd_per_hour": "$/h",
        "budget_watts": "W",
        "budget_num_gpus": "GPUs",
        "budget_joules_per_token": "W at the served token rate",
    }
    out = []
    for name in m.slack_names:
        amount = getattr(m, f"slack_{name}").value or 0.0
        if amount <= 1e-6:
            continue
        if name.startswith("demand_"):
            unit, msg = "req/s", f"demand of class {name[7:]}: {amount:.4g} req/s cannot be served"
        elif name.startswith("inventory_"):
            unit, msg = "GPUs", f"inventory of {name[10:]}: {amount:.4g} more GPUs would be needed"
        elif name.startswith("domain_"):
            unit, msg = (
                "GPUs",
                f"NVLink domains ({name[7:]}): {amount:.4g} more GPUs in large enough domains needed",
            )
        else:
            unit = units.get(name, "")
            limit = getattr(problem.budgets, name.removeprefix("budget_"))
            msg = f"budget {name.removeprefix('budget_')} ({limit:g}) is exceeded by {amount:.4g} {unit}"
        out.append(RowSlack(name, amount, unit, msg))
    return sorted(out, key=lambda s: -s.amount) or [
        RowSlack(
            "cuts", 0.0, "", "the elastic rows need no slack: the no-good cuts or objective bounds conflict"
        )
    ]


# ---- multi-objective and next-best -------------------------------------------------------------------------


def solve_lexicographic(
    problem: MasterProblem, objectives: Sequence[str], options: SolverOptions, *, tolerance: float = 0.01
) -> SolveResult[MasterSolution]:
    """Optimize `objectives` in order; each later stage keeps the earlier ones within `tolerance` (relative)
    of their optimum, e.g. ("max_goodput", "min_cost") = min cost among plans with ≥ 99% of max goodput."""
    current = problem
    result = None
    for i, name in enumerate(objectives):
        result = solve_master(current.with_(objective=name), options)
        if not result.has_solution or i == len(objectives) - 1:
            return result
        value = result.objective
        slack = tolerance * abs(value)
        limit = value - slack if OBJECTIVE_SENSE[name] == "max" else value + slack
        current = current.with_(objective_bounds=current.objective_bounds + (ObjectiveBound(name, limit),))
    return result


def solve_max_rate_per_gpu(
    problem: MasterProblem, options: SolverOptions, *, tolerance: float = 1e-9, max_iterations: int = 30
) -> tuple[SolveResult[MasterSolution], float]:
    """The count vector with the most throughput per GPU, and then the most throughput at that ratio.

    Dinkelbach's method on the ratio T/G (T: throughput on the max_throughput demand rows, G: GPUs): solve
    F(q) = max T − q·G over the count vectors (at least one replica), set q to the ratio of the solution, repeat;
    F(q) = 0 certifies q optimal (F(q) ≥ 0 always, since the last solution gives 0). Then the most throughput
    among count vectors at ratio ≥ q (a plan that fills the cluster at the best ratio, not one replica of it).
    Returns (that solve, q); q = 0 when no count vector is feasible."""
    base = problem.with_(objective="max_rate_per_gpu", min_replicas=max(1, problem.min_replicas))
    q = 0.0
    result = solve_master_highspy(base.with_(rate_per_gpu_q=q), options)
    for _ in range(max_iterations):
        if not result.has_solution:
            return result, q
        ratio = result.solution.metrics["rate_per_gpu"]
        if result.objective <= tolerance * max(1.0, ratio * result.solution.metrics["num_gpus"]) and q > 0:
            break
        q = ratio
        result = solve_master_highspy(base.with_(rate_per_gpu_q=q), options)
    at_ratio = base.with_(
        objective="max_throughput",
        rate_per_gpu_q=q,
        objective_bounds=base.objective_bounds
        + (ObjectiveBound("max_rate_per_gpu", -tolerance * max(q, 1.0)),),
    )
    filled = solve_master_highspy(at_ratio, options)
    return (filled if filled.has_solution else result), q


@dataclass(frozen=True, slots=True)
class ParetoPoint:
    epsilon: float
    objective: float
    other: float
    solution: MasterSolution
    gap: float | None


def pareto_front(
    problem: MasterProblem, other: str, options: SolverOptions, *, num_points: int = 8
) -> list[ParetoPoint]:
    """ε-constraint sweep: optimize `problem.objective` subject to `other` ≤ ε (min) / ≥ ε (max), ε evenly
    spread between `other`'s value at the primary optimum and `other`'s own optimum. Returns the
    non-dominated points sorted by `other`."""
    primary = problem.objective
    first = solve_master(problem, options, explain_infeasible=False)
    # `other`'s own optimum over the same rows as the primary (e.g. the least cost of any goodput, not the
    # least cost of serving all demand)
    best_other = solve_master(
        problem.with_(objective=other, rows_of=problem.demand_rows), options, explain_infeasible=False
    )
    if not first.has_solution or not best_other.has_solution:
        return []
    lo, hi = sorted((first.solution.metrics[other], best_other.objective))
    eps_values = [lo + (hi - lo) * k / max(num_points - 1, 1) for k in range(num_points)]
    points = []
    for eps in eps_values:
        bounded = problem.with_(objective_bounds=problem.objective_bounds + (ObjectiveBound(other, eps),))
        res = solve_master(bounded, options, explain_infeasible=False)
        if res.has_solution:
            points.append(ParetoPoint(eps, res.objective, res.solution.metrics[other], res.solution, res.gap))
    sign_p = 1 if OBJECTIVE_SENSE[primary] == "min" else -1
    sign_o = 1 if OBJECTIVE_SENSE[other] == "min" else -1
    front = []
    for p in points:
        dominated = any(
            sign_p * q.objective <= sign_p * p.objective + 1e-9
            and sign_o * q.other <= sign_o * p.other + 1e-9
            and (
                sign_p * q.objective < sign_p * p.objective - 1e-9
                or sign_o * q.other < sign_o * p.other - 1e-9
            )
            for q in points
        )
        if not dominated and all(
            abs(f.objective - p.objective) > 1e-9 or abs(f.other - p.other) > 1e-9 for f in front
        ):
            front.append(p)
    return sorted(front, key=lambda p: p.other)


def top_k_solutions(
    problem: MasterProblem, k: int, options: SolverOptions
) -> list[SolveResult[MasterSolution]]:
    """The k best distinct count vectors: solve, add a no-good cut on the counts found, repeat. Objectives
    are non-increasing (max) / non-decreasing (min) along the list, up to the solver gap."""
    out: list[SolveResult[MasterSolution]] = []
    current = problem
    for _ in range(k):
        res = solve_master(current, options, explain_infeasible=False)
        if not res.has_solution:
            break
        out.append(res)
        counts = {t.id: res.solution.counts.get(t.id, 0) for t in problem.templates}
        current = current.with_(no_good=current.no_good + (counts,))
    return out


# ---- highspy fast path -------------------------------------------------------------------------------------


def solve_master_highspy(
    problem: MasterProblem, options: SolverOptions, *, warm_start: Mapping[str, int] | None = None
) -> SolveResult[MasterSolution]:
    """The same model built directly in highspy (no pyomo expression overhead), for large template sets.
    Same data, rows and objective as `build_master` (not elastic); `tests/formulations` checks they agree."""
    import highspy
    import numpy as np

    t0 = time.perf_counter()
    silence_highs_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", options.time_limit_s)
    h.setOptionValue("mip_rel_gap", options.mip_rel_gap)
    h.setOptionValue("mip_abs_gap", 1e-9)
    h.setOptionValue("threads", options.threads)
    h.setOptionValue("random_seed", options.seed)
    templates = {t.id: t for t in problem.templates}
    if not templates:
        return SolveResult.infeasible(time.perf_counter() - t0, "the master has no templates")
    classes = {c.id: c for c in problem.classes}
    routes = problem.routes()
    inf = highspy.kHighsInf
    count = {
        tid: h.addIntegral(lb=0, ub=problem.max_count(t), name=f"count_{tid}") for tid, t in templates.items()
    }
    rate = {
        r: h.addVariable(lb=0, ub=_finite(problem.route_limit(*r)) or inf, name=f"rate_{r[0]}_{r[1]}")
        for r in routes
    }
    throughput = h.addVariable(lb=0, ub=_finite(problem.throughput_limit) or inf, name="throughput")
    total_demand = sum(c.demand_rps for c in problem.classes)
    allowance = problem.unserved_allowance if problem.demand_rows not in _MAX_DEMAND_ROWS else 0.0
    unserved = (
        {cid: h.addVariable(lb=0, ub=inf, name=f"unserved_{cid}") for cid in classes} if allowance else {}
    )

    def qsum(terms):
        terms = list(terms)
        return h.qsum(terms) if terms else None

    if unserved:
        h.addConstr(h.qsum(list(unserved.values())) <= allowance, name="unserved_allowance")
    for cid, c in classes.items():
        served = qsum(
            [rate[r] for r in routes if r[0] == cid and templates[r[1]].entry]
            + ([unserved[cid]] if unserved else [])
        )
        if served is None:
            if problem.demand_rows not in _MAX_DEMAND_ROWS and c.demand_rps > 0:
                return SolveResult.infeasible(time.perf_counter() - t0, f"no template serves class {cid}")
            continue
        if problem.demand_rows == "max_goodput":
            h.addConstr(served <= c.demand_rps, name=f"demand_{cid}")
        elif problem.demand_rows == "max_throughput":
            h.addConstr(served - (c.demand_rps / total_demand) * throughput == 0, name=f"demand_{cid}")
        else:
            h.addConstr(served == c.demand_rps, name=f"demand_{cid}")
    if problem.needs_use():
        use = {tid: h.addBinary(name=f"use_{tid}") for tid in templates}
        for tid, t in templates.items():
            h.addConstr(count[tid] - problem.max_count(t) * use[tid] <= 0, name=f"use_{tid}")
        if problem.max_templates is not None:
            h.addConstr(
                h.qsum([templates[t].weight * use[t] for t in templates]) <= problem.max_templates,
                name="max_templates",
            )
    if problem.disaggregated:
        prefill, decode = problem.role_ids("prefill"), problem.role_ids("decode")
        for cid in (c for c, cls in classes.items() if cls.paired):
            p_rate = [rate[r] for r in routes if r[0] == cid and r[1] in prefill]
            d_rate = [rate[r] for r in routes if r[0] == cid and r[1] in decode]
            if p_rate or d_rate:
                terms = p_rate + [-1.0 * v for v in d_rate]
                h.addConstr(h.qsum(terms) == 0, name=f"flow_{cid}")
        h.addConstr(h.qsum([use[t] for t in prefill] + [-1.0 * use[t] for t in decode]) == 0, name="pair")
        h.addConstr(h.qsum([use[t] for t in prefill]) <= 1, name="one_prefill")
        h.addConstr(h.qsum([use[t] for t in decode]) <= 1, name="one_decode")
        for tid in prefill + decode:
            h.addConstr(count[tid] - use[tid] >= 0, name=f"used_{tid}")
            link = templates[tid].kv_link
            moved = [
                classes[c].kv_per_unit * rate[(c, t)]
                for (c, t) in routes
                if t == tid and classes[c].kv_per_unit > 0
            ]
            if math.isfinite(link) and moved:
                h.addConstr(h.qsum(moved) - link * count[tid] <= 0, name=f"kv_link_{tid}")
    groups = problem.groups()
    if len(groups) > 1:
        pick = {g: h.addBinary(name=f"pick_{g}") for g in groups}
        h.addConstr(h.qsum(list(pick.values())) <= 1, name="one_group")
        for tid, t in templates.items():
            h.addConstr(count[tid] - problem.max_count(t) * pick[t.group] <= 0, name=f"group_{tid}")
    if problem.min_replicas > 0:
        h.addConstr(h.qsum(list(count.values())) >= problem.min_replicas, name="min_replicas")
    for tid, t in templates.items():
        # a load coefficient below HiGHS's small_matrix_value (1e-9) is one HiGHS would drop with a warning that
        # highspy raises on (a template that proves no work for a class: capacity BIG): leave it out
        load = qsum(
            (1.0 / problem.capacity(t, c)) * rate[(c, t2)]
            for (c, t2) in routes
            if t2 == tid and 1.0 / problem.capacity(t, c) >= SMALL_MATRIX_VALUE
        )
        if load is not None:
            h.addConstr(load - problem.headroom * count[tid] <= 0, name=f"capacity_{tid}")
    for gpu_type in problem.gpu_types():
        used = qsum(
            t.gpus_by_type[gpu_type] * count[t.id]
            for t in problem.templates
            if t.gpus_by_type.get(gpu_type, 0)
        )
        if used is not None:
            h.addConstr(used <= problem.available(gpu_type), name=f"inventory_{gpu_type}")
    for gpu_type, d, usable in problem.domain_rows():
        used = qsum(
            t.gpus_by_type[gpu_type] * count[t.id]
            for t in problem.templates
            if t.gpus_by_type.get(gpu_type, 0) and t.domain_need_by_type.get(gpu_type, 1) >= d
        )
        h.addConstr(used <= usable, name=f"domain_{gpu_type}_ge{d}")
    cost = qsum(t.coefficients.usd_per_hour * count[t.id] for t in problem.templates)
    power = qsum(
        [t.coefficients.idle_w * count[t.id] for t in problem.templates]
        + [templates[t].coefficients.energy_j(c) * rate[(c, t)] for (c, t) in routes]
    )
    gpus = qsum(sum(t.gpus_by_type.values()) * count[t.id] for t in problem.templates)
    tokens = qsum(classes[c].tokens_per_request * rate[(c, t)] for (c, t) in routes if templates[t].entry)
    entry_rates = qsum(v for r, v in rate.items() if templates[r[1]].entry)
    b = problem.budgets
    if b.usd_per_hour is not None:
        h.addConstr(cost <= b.usd_per_hour, name="budget_usd_per_hour")
    if b.watts is not None:
        h.addConstr(power <= b.watts, name="budget_watts")
    if b.num_gpus is not None:
        h.addConstr(gpus <= b.num_gpus, name="budget_num_gpus")
    if b.joules_per_token is not None and tokens is not None:
        h.addConstr(power - b.joules_per_token * tokens <= 0, name="budget_joules_per_token")
    latency_terms = [
        (templates[t].coefficients.latency(c) / max(total_demand, 1e-12)) * rate[(c, t)] for (c, t) in routes
    ]
    for tid, t in templates.items():  # the min_latency growth segments (see the module docstring)
        growth = problem.latency_growth(t) if problem.uses_latency() else 0.0
        load = qsum((1.0 / problem.capacity(t, c)) * rate[(c, t2)] for (c, t2) in routes if t2 == tid)
        if growth <= 0 or load is None:
            continue
        seg = [h.addVariable(lb=0, ub=inf, name=f"load_segment_{tid}_{k}") for k in range(len(LOAD_SEGMENTS))]
        h.addConstr(h.qsum(seg) - load == 0, name=f"load_split_{tid}")
        for k, (width, _) in enumerate(LOAD_SEGMENTS[:-1]):
            h.addConstr(seg[k] - width * count[tid] <= 0, name=f"load_width_{tid}_{k}")
        scale = growth / max(total_demand, 1e-12)
        latency_terms += [(scale * slope) * seg[k] for k, (_, slope) in enumerate(LOAD_SEGMENTS)]
    expressions = {
        "max_goodput": entry_rates if entry_rates is not None else 0 * throughput,
        "max_throughput": 1.0 * throughput,
        "min_cost": cost,
        "min_energy": (1 / 1000.0) * power,
        "min_latency": qsum(latency_terms) if latency_terms else 0 * throughput,
        "min_gpus": gpus if gpus is not None else 0 * throughput,
        "max_rate_per_gpu": 1.0 * throughput - problem.rate_per_gpu_q * gpus
        if gpus is not None
        else 1.0 * throughput,
    }
    for i, ob in enumerate(problem.objective_bounds):
        expr = expressions[ob.objective]
        h.addConstr(
            expr <= ob.limit if OBJECTIVE_SENSE[ob.objective] == "min" else expr >= ob.limit,
            name=f"objective_bound_{i}",
        )
    for k, cut in enumerate(problem.no_good):
        terms = []
        support = {tid for tid in templates if int(cut.get(tid, 0)) > 0}
        for tid in sorted(support):
            target, upper = int(cut[tid]), problem.max_count(templates[tid])
            if target + 1 <= upper:
                above = h.addBinary(name=f"nogood_{k}_above_{tid}")
                h.addConstr(count[tid] - (target + 1) * above >= 0)
                terms.append(above)
            below = h.addBinary(name=f"nogood_{k}_below_{tid}")
            h.addConstr(count[tid] + (upper - target + 1) * below <= upper)
            terms.append(below)
        others = [tid for tid, t in templates.items() if tid not in support and problem.max_count(t) >= 1]
        if others:
            other = h.addBinary(name=f"nogood_{k}_other")
            h.addConstr(h.qsum([count[t] for t in others]) - other >= 0)
            terms.append(other)
        if not terms:
            return SolveResult.infeasible(
                time.perf_counter() - t0, "a no-good cut excludes every count vector"
            )
        h.addConstr(h.qsum(terms) >= 1, name=f"nogood_{k}")
    objective = expressions[problem.objective]
    if OBJECTIVE_SENSE[problem.objective] == "max":
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    else:
        h.changeObjectiveSense(highspy.ObjSense.kMinimize)
    h.setObjective(objective)
    if warm_start is not None:
        idx = np.array([count[t].index for t in templates], dtype=np.int32)
        vals = np.array([float(warm_start.get(t, 0)) for t in templates])
        h.setSolution(len(idx), idx, vals)
    h.run()
    wall = time.perf_counter() - t0
    status = h.getModelStatus()
    info = h.getInfo()
    ms = highspy.HighsModelStatus
    termination = {
        ms.kOptimal: Termination.OPTIMAL,
        ms.kInfeasible: Termination.INFEASIBLE,
        ms.kUnboundedOrInfeasible: Termination.INFEASIBLE,
        ms.kUnbounded: Termination.UNBOUNDED,
        ms.kTimeLimit: Termination.TIME_LIMIT,
    }.get(status, Termination.UNKNOWN)
    if info.primal_solution_status != 2:  # 2 = feasible
        # stopped (time limit) before a solution: the dual bound it proved still bounds the optimum
        dual = info.mip_dual_bound if termination is Termination.TIME_LIMIT else math.nan
        bound = dual if math.isfinite(dual) else None
        return SolveResult(termination, SolutionStatus.NO_SOLUTION, None, bound, None, wall, "", None)
    values = h.getSolution().col_value
    counts = {tid: round(values[v.index]) for tid, v in count.items()}
    counts = {t: n for t, n in counts.items() if n > 0}
    rates = {r: max(values[v.index], 0.0) for r, v in rate.items()}
    rates = {r: v for r, v in rates.items() if v > 1e-9}
    obj = info.objective_function_value
    bound = info.mip_dual_bound if info.mip_node_count >= 0 else obj
    solution = MasterSolution(counts, rates, evaluate(problem, counts, rates))
    sol_status = SolutionStatus.OPTIMAL if termination == Termination.OPTIMAL else SolutionStatus.FEASIBLE
    return SolveResult(termination, sol_status, obj, bound, relative_gap(obj, bound), wall, "", solution)
