"""The per-request engine the aggregate engine replaced (simulator/engine as of commit 4be8317), kept only as
the reference of the equivalence tests (tests/simulator/engine/test_equivalence.py).

It schedules and samples request by request on numpy columns and prices every iteration with
`StageCost.iteration_time` / `energy` / `flops`; `simulate_reference(scenario)` runs a Scenario through it the
way `simulator.simulate.simulate` runs the aggregate engine. Do not extend it: it is the yardstick. One deliberate fix against 4be8317: a request counts as in flight
while *any* micro-batch holding one of its prefill chunks is unfinished (it was a flag that the first of two
pipelined chunks cleared, which let the second chunk's request be preempted mid-flight and then sample a
token while queued).
"""
