"""The iteration-level serving simulator (docs/design.md §3.2).

Read first: `schedulers/common.py` (the token-budget model, the schedule() / update_from_output() contract and
the aggregate state it keeps), `cohort.py` (running decoders as aggregates: a steady decode step is O(1)),
`replica.py` (a replica's pipeline of stages) and `cluster.py` (routing, arrivals, disaggregation handoffs, on
the event kernel in `loop.py`). Extension points: a new engine is a file in `schedulers/` plus an entry in
`SCHEDULERS`; a new router is a branch of `router.Router`; metrics are computed after the run in `metrics.py`
from `request.RequestRecords`. The per-request engine this one replaced is kept, as the reference of the
equivalence tests, in tests/simulator/engine/reference_engine/.
"""
