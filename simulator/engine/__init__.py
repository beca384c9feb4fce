"""The iteration-level serving simulator (docs/design.md §3.2).

Read first: `schedulers/common.py` (the token-budget model and the schedule() / update_from_output()
contract), `replica.py` (a replica's pipeline of stages) and `cluster.py` (routing, arrivals,
disaggregation handoffs, on the event kernel in `loop.py`). Extension points: a new engine is a file in
`schedulers/` plus an entry in `SCHEDULERS`; a new router is a branch of `router.Router`; metrics are
computed after the run in `metrics.py` from the columns of `request.RequestTable`.
"""
