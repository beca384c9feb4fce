"""Disaggregated serving in the search: the KV-cache stream between the prefill and the decode pool
(docs/design.md §5.3).

The simulator moves each request's KV cache from its prefill replica to its decode replica after
`ReplicaCost.kv_transfer_time` (the pair's link: the scale-up fabric when both replicas fit in one NVLink
domain, the scale-out fabric otherwise) and does not make transfers queue behind one another. A plan whose KV
stream is more than its links carry would not run as simulated, so the planner adds the links' capacity as a
condition of the plan, the same in the master (a row) and on a simulated plan (a check):

* `link_capacity(cost, partner)` — bytes/s one replica's links carry towards / from a replica priced `partner`:
  every GPU of a replica has its own link (a NIC per GPU on the scale-out fabric, its NVLink ports inside a
  domain), each at the per-stream rate the cost model gives a long transfer on that pair's fabric;
* the check (`kv_stream`, on a simulation): over every prefix of time, the KV bytes of the requests handed off
  by time t (transfer start = end of prefill) are at most capacity × (t − first arrival) plus one largest
  request per replica — on the prefill pool's links and on the decode pool's. A plan that fails it misses its
  goals (`kv_transfer`);
* the master's row (space.py): at the window end e, the requests that meet their deadlines were handed off by
  e, so Σ_c kv_c · rate[c, t] ≤ count[t] · (capacity[t] + largest / window) — implied by the check, so the
  bound stays valid over the plans that pass it. The master takes each template's best partner (the scale-up
  fabric when some partner of the space fits in a domain with it); the check the actual pair.
"""

from __future__ import annotations

import numpy as np

from simulator.plan import Plan

PROBE_TOKENS = 1_000_000  # a long transfer: the per-stream rate without the latency floor


def link_capacity(prefill_cost, decode_cost, side: str) -> float:
    """Bytes/s the links of one replica of `side` ("prefill" or "decode") carry in a pair of replicas priced
    `prefill_cost` → `decode_cost` (the simulator prices the transfer on the prefill replica's side)."""
    t = prefill_cost.kv_transfer_time(PROBE_TOKENS, decode_cost)
    if t <= 0:
        return float("inf")
    streams = min(prefill_cost.num_gpus, decode_cost.num_gpus)
    per_stream = PROBE_TOKENS * prefill_cost.kv_bytes_per_token / (t * streams)
    gpus = prefill_cost.num_gpus if side == "prefill" else decode_cost.num_gpus
    return gpus * per_stream


def pools(plan: Plan) -> tuple[list[int], list[int], list[int], list[int]]:
    """(group indices of prefill groups, of decode groups, the first replica index of each group, replicas
    per group) — replicas are numbered group by group as the simulator builds them."""
    starts, counts, index = [], [], 0
    for g in plan.replicas:
        starts.append(index)
        counts.append(g.count)
        index += g.count
    prefill = [i for i, g in enumerate(plan.replicas) if g.role == "prefill"]
    decode = [i for i, g in enumerate(plan.replicas) if g.role == "decode"]
    return prefill, decode, starts, counts


def kv_stream(plan: Plan, costs: list, records, frontend_s: float = 0.0) -> dict | None:
    """The KV-stream check of a simulated disaggregated plan (module docstring), as the `kv_transfer` block of
        its metrics; None for a plan without prefill replicas. `costs`: one ReplicaCost per replica group (a plan
    of the search has one prefill and one decode group)."""
    prefill, decode, starts, counts = pools(plan)
    if not prefill or not decode:
        return None
    replica = np.asarray(records.replica)
    handed = np.zeros(len(replica), dtype=bool)
    for g in decode:
        handed |= (replica >= starts[g]) & (replica < starts[g] + counts[g])
    kv_per_token = costs[prefill[0]].kv_bytes_per_token
    bytes_ = np.asarray(records.input_tokens, dtype=float)[handed] * kv_per_token
    start = np.asarray(records.first_token_s, dtype=float)[handed] - frontend_s
    t0 = float(np.min(records.arrival_s)) if len(records.arrival_s) else 0.0
    largest = float(bytes_.max()) if len(bytes_) else 0.0
    sides = {}
    p_cost, d_cost = costs[prefill[0]], costs[decode[0]]
    for name, mine in (("prefill", prefill), ("decode", decode)):
        capacity = sum(counts[g] for g in mine) * link_capacity(p_cost, d_cost, name)
        sides[name] = (capacity, sum(counts[g] for g in mine))
    order = np.argsort(start, kind="stable")
    cum = np.cumsum(bytes_[order])
    out = {"requests": int(handed.sum()), "bytes": float(bytes_.sum()), "keeps_up": True}
    for name, (capacity, replicas) in sides.items():
        backlog = float(np.max(cum - capacity * (start[order] - t0))) if len(cum) else 0.0
        allowed = replicas * largest
        out[name] = {
            "capacity_bytes_per_s": capacity,
            "backlog_bytes": max(backlog, 0.0),
            "allowed_backlog_bytes": allowed,
        }
        if backlog > allowed * (1 + 1e-9):
            out["keeps_up"] = False
    return out


def simulate_with_kv_stream(scenario) -> dict:
    """`simulate(scenario).to_json()` plus, for a disaggregated plan, its `kv_transfer` block (`kv_stream`)."""
    from simulator.costmodel.calibration import host_overhead, load_calibration
    from simulator.simulate import replica_specs, simulate

    result = simulate(scenario)
    metrics = result.to_json()
    plan = scenario.plan
    if plan is not None and any(g.role == "prefill" for g in plan.replicas):
        spec = scenario.spec
        calibration = load_calibration(spec.calibration) if spec.calibration else None
        frontend = host_overhead(spec.engine.kind, calibration).frontend_s
        specs = replica_specs(scenario, calibration)
        block = kv_stream(plan, [s.cost for s in specs], result.records, frontend)
        if block is not None:
            metrics["kv_transfer"] = block
    return metrics
