"""Reading fields out of a result file with errors that name the file, the field and what was expected."""

from __future__ import annotations

import json
import math
from pathlib import Path

from simulator.errors import InputError


def read_text(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError("no such result file", file=str(path))
    try:
        return p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read as text ({exc})", file=str(path)) from None


def parse_json(text: str, *, file: str, where: str | None = None) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"is not valid JSON ({exc.msg} at char {exc.pos})", file=file, field=where) from None


def mapping(value, *, file: str, field: str | None) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {type(value).__name__}", file=file, field=field)
    return value


def require(data: dict, key: str, *, file: str, prefix: str = "", hint: str = ""):
    if key not in data:
        extra = f"; {hint}" if hint else ""
        raise InputError(f"required field is missing{extra}", file=file, field=f"{prefix}{key}")
    return data[key]


def seq(value, *, file: str, field: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"expected a list, got {type(value).__name__}", file=file, field=field)
    return value


def number(value, *, file: str, field: str, minimum: float = 0.0) -> float:
    """A finite number ≥ minimum (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value!r}", file=file, field=field)
    if value < minimum:
        raise InputError(f"expected a number >= {minimum:g}, got {value!r}", file=file, field=field)
    return float(value)


def integer(value, *, file: str, field: str, minimum: int = 0) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        and not (isinstance(value, float) and value.is_integer())
    ):
        raise InputError(f"expected an integer, got {value!r}", file=file, field=field)
    if value < minimum:
        raise InputError(f"expected an integer >= {minimum}, got {value!r}", file=file, field=field)
    return int(value)


def rate(value, *, file: str, field: str) -> float | None:
    """A request rate as the tools write it: a number, "inf" / Infinity (all at once), or null."""
    if value is None:
        return None
    if value in ("inf", "Infinity") or (isinstance(value, float) and math.isinf(value) and value > 0):
        return math.inf
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InputError(
                f"expected a request rate (a number or 'inf'), got {value!r}", file=file, field=field
            ) from None
    return number(value, file=file, field=field)


def optional_int(value, *, file: str, field: str) -> int | None:
    return None if value is None else integer(value, file=file, field=field, minimum=1)
