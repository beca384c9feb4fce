"""Reading YAML/JSON files with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from simulator.errors import InputError


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) file; missing files and syntax errors become InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}", file=str(path))
    if path.is_dir():
        raise InputError("expected a file, got a directory", file=str(path))
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the file: {exc}", file=str(path)) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=str(path)
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"invalid YAML{where}: {problem}", file=str(path)) from None
