"""The math programs of APEX (docs/design.md §4): exact models over aggregates, fed plain data, never the simulator.

Reading guide — open these first:

1. `result.py` — `SolverOptions` (time limit, gap, threads, seed: passed to every solve) and `SolveResult`
   (termination, solution_status, objective, bound, gap, wall_s, log, solution, explanation).
2. `master.py` — the master MILP (pyomo + HiGHS, plus `solve_master_highspy`, a highspy-direct fast path from the
   same `MasterProblem`): replica counts per template, rates per workload class, inventory / domain / budget
   rows; lexicographic, ε-constraint Pareto fronts, next-best via no-good cuts, elastic infeasibility reports.
3. `templates.py` — `Template`, `enumerate_structures` (divisibility + weights-fit pruning),
   `TemplateCoefficients` (what the master reads) and `analytic_capacity` (a first-pass capacity model).

Then `layer_partition.py` (contiguous layer groups → stages: DP reference, pyomo MILP, CP-SAT) and
`placement.py` (replicas → (node group, node, GPU index) at any cluster size: constructive placement, then the
exact aggregate CP-SAT model over templates × domain classes; `placement_*.py` hold the pieces).
`highs_util.py` / `cpsat_util.py` run a model with explicit options and map statuses.

Extension points: new objectives or budget rows go in `master.build_master` *and* `master.solve_master_highspy`
(the agreement test catches a missing one); coefficients come from whatever fills `TemplateCoefficients`
(the planner wires the cost model there); `enumerate_structures(..., uneven_split_fn=...)` swaps the
layer-partition backend.
"""
