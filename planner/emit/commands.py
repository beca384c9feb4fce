"""A command line as data (`Command`) and its rendering as a bash line that tests can parse back.

Every command written into a script is preceded by a marker comment `# apex:command TOOL :: NAME`, so
`parse_script` finds each one again and the flag tables can check exactly what a user would run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

MARKER = "# apex:command "


@dataclass(frozen=True)
class Command:
    """One process to start: `program` words (positionals included), options (flag, value or None for a bare
    flag) and environment variables; `tool` and `name` select the flag table and command that document it."""

    tool: str
    name: str
    program: tuple[str, ...]
    options: tuple[tuple[str, str | tuple[str, ...] | None], ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def argv(self) -> list[str]:
        words = list(self.program)
        for flag, value in self.options:
            words.append(flag)
            if isinstance(value, tuple):
                words += list(value)
            elif value is not None:
                words.append(value)
        return words

    def option(self, flag: str):
        """The value of `flag` (None when absent or bare; a tuple for a flag taking several words)."""
        return next((v for f, v in self.options if f == flag), None)

    def has(self, flag: str) -> bool:
        return any(f == flag for f, _ in self.options)

    def to_json(self) -> dict:
        return {
            "tool": self.tool,
            "name": self.name,
            "argv": self.argv(),
            "program": list(self.program),
            "options": [[f, list(v) if isinstance(v, tuple) else v] for f, v in self.options],
            "env": dict(self.env),
        }

    @staticmethod
    def from_json(data: dict) -> Command:
        return Command(
            tool=data["tool"],
            name=data["name"],
            program=tuple(data["program"]),
            options=tuple((f, tuple(v) if isinstance(v, list) else v) for f, v in data["options"]),
            env=tuple(data["env"].items()),
        )


_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def quote(word: str) -> str:
    """Shell-quote a word; `${VAR}` references stay expandable (double quotes)."""
    if _VAR.search(word):
        if re.search(r'["\\`]', word) or "$(" in word:
            raise ValueError(f"cannot quote {word!r}: it mixes a variable with shell metacharacters")
        return f'"{word}"'
    return shlex.quote(word)


def render(cmd: Command, *, prefix: str = "", suffix: str = "", indent: str = "") -> str:
    """The marker comment and the command as one bash logical line, one option per continuation line;
    `prefix` (e.g. `exec`) goes before it and `suffix` (e.g. `&`) after it."""
    head = [prefix] if prefix else []
    if cmd.env:
        head += ["env", *(f"{k}={quote(v)}" for k, v in cmd.env)]
    head += [quote(w) for w in cmd.program]
    lines = [f"{indent}{MARKER}{cmd.tool} :: {cmd.name}", indent + " ".join(head)]
    for flag, value in cmd.options:
        words = [] if value is None else list(value) if isinstance(value, tuple) else [value]
        lines.append(f"{indent}    " + " ".join([flag, *(quote(w) for w in words)]))
    return lines[0] + "\n" + " \\\n".join(lines[1:]) + (f" {suffix}" if suffix else "") + "\n"


def parse_script(text: str) -> list[tuple[str, str, list[str], dict[str, str]]]:
    """(tool, name, argv, env) of every marked command in a script, with `${VAR}` left unexpanded."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(MARKER):
            tool, _, name = stripped[len(MARKER) :].partition(" :: ")
            logical = ""
            i += 1
            while i < len(lines):
                part = lines[i].rstrip()
                if part.endswith("\\"):
                    logical += part[:-1] + " "
                    i += 1
                    continue
                logical += part
                break
            words = shlex.split(logical)
            if words and words[0] in ("exec",):
                words = words[1:]
            env: dict[str, str] = {}
            if words and words[0] == "env":
                words = words[1:]
                while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                    key, _, value = words.pop(0).partition("=")
                    env[key] = value
            while words and words[-1] in ("&",):
                words.pop()
            found.append((tool, name, words, env))
        i += 1
    return found
