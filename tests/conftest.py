"""Test helpers: paths to the repo, its reference data (data/), the examples, and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
EXAMPLES = REPO / "configs" / "examples"

# A scenario that simulates in a blink: 30 short requests on one H100 (CLI input and output tests).
SMALL = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 1},
    "workload": {
        "requests": 30,
        "arrival": {"process": "poisson", "rate": 20.0},
        "input_tokens": {"dist": "fixed", "value": 256},
        "output_tokens": {"dist": "fixed", "value": 4},
        "seed": 1,
    },
    "plan": "tp=1",
}


@pytest.fixture
def run_cli(capsys):
    """Run `apex ARGS...` in-process; returns (exit_code, stdout, stderr)."""
    from planner.cli import main

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
