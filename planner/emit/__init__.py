"""`apex emit`: launch files, Kubernetes manifests and benchmark scripts for a placed plan (docs/design.md §5.1).

Entry point: `planner.emit.emitter.emit_plan`. One module per engine (vllm, sglang, trtllm, dynamo), plus
kubernetes and bench; every flag they write is checked against the per-version tables in flags/.
"""

ENGINES = (
    "vllm",
    "sglang",
    "trtllm",
    "dynamo",
)  # here, not in emitter.py, so `apex --help` need not import it
