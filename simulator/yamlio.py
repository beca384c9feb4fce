"""Reading YAML/JSON files with errors that name the file and the line.

Every YAML or JSON file APEX reads goes through `read_yaml`: a key written twice in one mapping is an error
(plain `yaml.safe_load` and `json.loads` silently keep the last one), the text must be UTF-8, and JSON's
non-standard `NaN` / `Infinity` constants are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from simulator.errors import InputError


class DuplicateKeyError(yaml.YAMLError):
    """A mapping key written twice (raised by `UniqueKeyLoader`)."""

    def __init__(self, key: Any, line: int, first_line: int):
        self.key, self.line, self.first_line = key, line, first_line
        super().__init__(f"key {key!r} at line {line} repeats the key at line {first_line}")


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            # keys merged in with `<<` may be overridden; only the keys written in this mapping must be unique
            own = [k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
            seen: dict[Any, int] = {}
            for key_node in own:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, line, seen[key])
                    seen[key] = line
                except TypeError:  # an unhashable key: the base class reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, *, file: str | None = None) -> Any:
    """Parse YAML text with `UniqueKeyLoader`; errors become InputError naming `file` and the line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKeyError as exc:
        raise InputError(
            f"key {exc.key!r} is written twice (lines {exc.first_line} and {exc.line}); keep one",
            file=file,
            field=_key_path(text, exc.key, exc.line) or str(exc.key),
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"invalid YAML{where}: {problem}", file=file) from None


def _key_path(text: str, key: Any, line: int) -> str | None:
    """The dotted path (`workload.seed`, `plan.replicas[0].count`) of mapping key `key` written at `line`."""

    def walk(node, path: str) -> str | None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                here = f"{path}.{key_node.value}" if path else str(key_node.value)
                if key_node.start_mark.line + 1 == line and key_node.value == str(key):
                    return here
                found = walk(value_node, here)
                if found:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                found = walk(item, f"{path}[{i}]")
                if found:
                    return found
        return None

    try:
        return walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    except yaml.YAMLError:
        return None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is written twice in one object; keep one")
        out[key] = value
    return out


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (write a finite number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} overflows to infinity (write a finite number)")
    return value


def parse_json(text: str, *, file: str | None = None, where: str = "", finite: bool = True) -> Any:
    """Parse JSON text refusing repeated keys and (with `finite`) NaN/Infinity; errors name `file` (and
    `where`, e.g. a line). `finite=False` lets NaN/Infinity through for a caller that names the field."""
    hooks = {"parse_constant": _no_constant, "parse_float": _finite_float} if finite else {}
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs, **hooks)
    except json.JSONDecodeError as exc:
        at = where or f"line {exc.lineno}, column {exc.colno}"
        raise InputError(f"invalid JSON at {at}: {exc.msg}", file=file) from None
    except ValueError as exc:
        raise InputError(f"invalid JSON{' at ' + where if where else ''}: {exc}", file=file) from None


def read_text(path: str | Path) -> str:
    """A file's UTF-8 text; a missing file, a directory or bytes that are not UTF-8 become InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}", file=str(path))
    if path.is_dir():
        raise InputError("expected a file, got a directory", file=str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc}", file=str(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"line {line}: byte {raw[exc.start]:#04x} is not UTF-8 text (save the file as UTF-8)",
            file=str(path),
        ) from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML (or, by suffix, JSON) file; missing files, bad bytes, syntax errors and repeated keys
    become InputError."""
    text = read_text(path)
    if Path(path).suffix == ".json":
        return parse_json(text, file=str(path))
    return parse_yaml(text, file=str(path))
