"""The dependency direction planner → formulations → simulator holds in every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "simulator": ("planner", "formulations"),
    "formulations": ("planner",),
    "configs": ("simulator", "formulations", "planner"),
}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_architecture_imports_point_downward(package):
    """No module of a lower layer imports a higher one."""
    offenders = []
    for path in (REPO / package).rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, offenders
