"""Tables of documented engine and benchmark flags, one YAML file per tool version (planner/emit/flags/).

Each table names the release it was read from and, per flag, where that release defines it. `check_command`
and `check_yaml_keys` compare what `apex emit` writes with a table, so a flag an engine renamed or never had
fails loudly instead of reaching a launch script.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from planner.emit.commands import Command

KINDS = (
    "int",
    "float",
    "str",
    "json",
    "flag",
    "bool-optional",
    "choice",
    "str-list",
    "csv-int",
    "bool",
    "list",
)


@dataclass(frozen=True)
class FlagSpec:
    """One documented flag (or YAML key): its value kind, allowed choices and where the release defines it."""

    name: str
    kind: str
    choices: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    at: str = ""


@dataclass(frozen=True)
class CommandSpec:
    name: str
    flags: dict[str, FlagSpec]
    inherit: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlagTable:
    """The documented flags of one tool version."""

    tool: str
    version: str
    sources: tuple[str, ...]
    commands: dict[str, CommandSpec]
    env: dict[str, FlagSpec]
    yaml: dict[str, dict[str, FlagSpec]]
    file: str
    meta: dict  # other top-level keys of the table (e.g. the container image a release ships)

    def flags_of(self, command: str, tables: dict[str, FlagTable] | None = None) -> dict[str, FlagSpec]:
        """The flags of `command`, with those of the commands it inherits (looked up in `tables`)."""
        spec = self.commands[command]
        flags = dict(spec.flags)
        for parent in spec.inherit:
            for table in (tables or {}).values():
                if parent in table.commands:
                    flags = {**table.flags_of(parent, tables), **flags}
        return flags


def _flag(name: str, raw: dict, where: str) -> FlagSpec:
    kind = raw.get("type")
    if kind not in KINDS:
        raise ValueError(f"{where}: {name} has type {kind!r}; expected one of {', '.join(KINDS)}")
    return FlagSpec(
        name=name,
        kind=kind,
        choices=tuple(str(c) for c in raw.get("choices", ())),
        keys=tuple(raw.get("keys", ())),
        at=str(raw.get("at", "")),
    )


def _flags_dir() -> Path:
    return Path(str(resources.files("planner.emit").joinpath("flags")))


@cache
def load_table(tool: str) -> FlagTable:
    """The flag table of `tool` shipped in planner/emit/flags/ (exactly one version per tool)."""
    files = sorted(_flags_dir().glob(f"{tool}-[0-9]*.yaml"))
    if len(files) != 1:
        raise ValueError(f"expected one flag table for {tool} in {_flags_dir()}, found {len(files)}")
    path = files[0]
    data = yaml.safe_load(path.read_text())
    where = path.name
    commands = {
        name: CommandSpec(
            name=name,
            flags={f: _flag(f, raw, where) for f, raw in (spec.get("flags") or {}).items()},
            inherit=tuple(spec.get("inherit", ())),
        )
        for name, spec in (data.get("commands") or {}).items()
    }
    return FlagTable(
        tool=data["tool"],
        version=str(data["version"]),
        sources=tuple(data.get("sources", ())),
        commands=commands,
        env={k: _flag(k, raw, where) for k, raw in (data.get("env") or {}).items()},
        yaml={
            doc: {k: _flag(k, raw, where) for k, raw in keys.items()}
            for doc, keys in (data.get("yaml") or {}).items()
        },
        file=where,
        meta={
            k: v
            for k, v in data.items()
            if k not in ("tool", "version", "sources", "commands", "env", "yaml")
        },
    )


TOOLS = ("vllm", "sglang", "trtllm", "dynamo", "genai-perf", "aiperf")


def all_tables() -> dict[str, FlagTable]:
    return {tool: load_table(tool) for tool in TOOLS}


_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def _value_problem(spec: FlagSpec, value) -> str | None:
    if spec.kind in ("flag", "bool-optional"):
        return None if value is None else f"{spec.name} takes no value, got {value!r}"
    if value is None:
        return f"{spec.name} needs a value"
    if isinstance(value, tuple):
        if spec.kind != "str-list":
            return f"{spec.name} takes one {spec.kind} word, got {list(value)}"
        return None
    if spec.kind == "str-list":
        return None
    if _VAR.search(value) and spec.kind != "str":
        return f"{spec.name} takes a {spec.kind}; only str values may name a shell variable, got {value!r}"
    if spec.kind == "int":
        return None if re.fullmatch(r"-?\d+", value) else f"{spec.name} takes an integer, got {value!r}"
    if spec.kind == "float":
        try:
            float(value)
        except ValueError:
            return f"{spec.name} takes a number, got {value!r}"
        return None
    if spec.kind == "choice":
        return None if value in spec.choices else f"{spec.name}={value!r} is not one of {list(spec.choices)}"
    if spec.kind == "json":
        try:
            obj = json.loads(value)
        except json.JSONDecodeError:
            return f"{spec.name} takes JSON, got {value!r}"
        unknown = sorted(set(obj) - set(spec.keys)) if spec.keys and isinstance(obj, dict) else []
        return f"{spec.name} has undocumented keys {unknown}" if unknown else None
    if spec.kind == "csv-int":
        return None if re.fullmatch(r"\d+(,\d+)*", value) else f"{spec.name} takes comma-separated integers"
    return None


def check_command(cmd: Command, tables: dict[str, FlagTable] | None = None) -> list[str]:
    """Problems of one emitted command against its tool's table (empty when every flag is documented)."""
    tables = tables or all_tables()
    table = tables.get(cmd.tool)
    if table is None:
        return [f"no flag table for tool {cmd.tool!r}"]
    if cmd.name not in table.commands:
        return [f"{table.file}: command {cmd.name!r} is not documented"]
    flags = table.flags_of(cmd.name, tables)
    problems = []
    for flag, value in cmd.options:
        spec = flags.get(flag)
        if spec is None and flag.startswith("--no-"):
            positive = flags.get("--" + flag.removeprefix("--no-"))
            if positive is not None and positive.kind == "bool-optional":
                spec = positive
        if spec is None:
            problems.append(f"{table.file}: {cmd.name} has no documented flag {flag}")
            continue
        problem = _value_problem(spec, value)
        if problem:
            problems.append(f"{table.file}: {cmd.name}: {problem}")
    for name, value in cmd.env:
        spec = table.env.get(name)
        if spec is None:
            if name not in UNCHECKED_ENV:
                problems.append(f"{table.file}: environment variable {name} is not documented")
            continue
        problem = _value_problem(spec, value)
        if problem:
            problems.append(f"{table.file}: {problem}")
    return problems


# Set by the launch scripts for the process, not read by the engine's argument parser.
UNCHECKED_ENV = frozenset({"CUDA_VISIBLE_DEVICES"})


def flatten_yaml(data, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are leaves."""
    out: dict[str, object] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten_yaml(value, path))
        else:
            out[path] = value
    return out


def check_yaml_keys(
    tool: str, document: str, data: dict, tables: dict[str, FlagTable] | None = None
) -> list[str]:
    """Problems of an emitted YAML document (flattened keys and scalar values) against the table's schema."""
    tables = tables or all_tables()
    table = tables[tool]
    schema = table.yaml.get(document)
    if schema is None:
        return [f"{table.file}: no schema for YAML document {document!r}"]
    problems = []
    for key, value in flatten_yaml(data).items():
        spec = schema.get(key)
        if spec is None:
            problems.append(f"{table.file}: {document} has no documented key {key}")
            continue
        if spec.kind == "bool":
            ok = isinstance(value, bool)
        elif spec.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif spec.kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif spec.kind == "str-list":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif spec.kind == "list":
            ok = isinstance(value, list)
        elif spec.kind == "choice":
            ok = str(value) in spec.choices
        else:
            ok = isinstance(value, str)
        if not ok:
            problems.append(f"{table.file}: {document}.{key}={value!r} is not a valid {spec.kind}")
    return problems
