"""Everything that predicts: the domain objects, the cost model and the iteration-level simulator.

Open first:
* `scenario.py` — the scenario file (model, cluster, workload, engine, plan, goals) validated into objects;
* `model.py` — the transformer architecture and every number derived from it (params, KV bytes, FLOPs);
* `costmodel/` — operator-level time, memory and energy of one iteration of one pipeline stage;
* `engine/` and `simulate.py` — the iteration-level serving simulator.

This package imports neither `formulations` nor `planner`.
"""
