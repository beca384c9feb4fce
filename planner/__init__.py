"""The user-facing layer: the `apex` CLI, the Python API (`planner.api`), plan search, studies and reports.

Open first: `api.py` (every CLI action is a call here), `cli.py` (parse → api → render → exit code),
`render.py` (terminal tables).
"""
