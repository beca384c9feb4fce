"""Test helpers: paths to the repo, its reference data (data/), the examples, and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
EXAMPLES = REPO / "configs" / "examples"


@pytest.fixture
def run_cli(capsys):
    """Run `apex ARGS...` in-process; returns (exit_code, stdout, stderr)."""
    from planner.cli import main

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
