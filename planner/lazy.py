"""`lazy_module(name)`: a module imported on its first attribute access, for the CLI's start-up time.

`apex --help` needs typer and the commands' signatures, not the planner, the solvers or numpy; a module bound
with `lazy_module` loads when a command first touches it (importlib's LazyLoader, the standard recipe).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module `name`, loaded on first attribute access (an already imported one as it is)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
