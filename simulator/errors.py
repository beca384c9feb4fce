"""Errors that reach the user. The CLI maps InputError to exit code 2 and prints no traceback."""

from __future__ import annotations


class InputError(Exception):
    """A user mistake: names the file, the field, the bad value and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        return f"{where}: {self.detail}" if where else self.detail

    def within(self, file: str | None = None, field_prefix: str | None = None) -> InputError:
        """The same error located inside `file` and under the dotted field `field_prefix`."""
        field = self.field
        if field_prefix:
            field = f"{field_prefix}.{field}" if field else field_prefix
        return InputError(self.detail, file=self.file or file, field=field)


_UNION_TAGS = (
    "str",
    "int",
    "float",
    "bool",
    "list[",
    "dict[",
    "function-",
    "constrained-",
    "Fabric",
    "tagged-",
)


def _field_path(loc, prefix: str | None) -> str:
    """('plan', 'replicas', 0, 'stages') -> 'plan.replicas[0].stages' (pydantic's union-member tags dropped)."""
    path = prefix or ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(_UNION_TAGS):
            continue
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def pydantic_error_to_input_error(exc, *, file: str | None, prefix: str | None = None) -> InputError:
    """Turn a pydantic ValidationError into one InputError naming the first bad field."""
    messages: dict[str, str] = {}
    for err in exc.errors():
        loc = _field_path(err["loc"], prefix)
        msg = err["msg"].removeprefix("Value error, ")
        bad = err.get("input")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the documented fields)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif not isinstance(bad, (dict, list)):
            msg += f" (got {bad!r})"
        messages.setdefault(loc, msg)  # a union reports once per member: keep the first
    first_field, first_msg = next(iter(messages.items()))
    rest = [f"{loc}: {msg}" for loc, msg in list(messages.items())[1:4]]
    return InputError("; ".join([first_msg, *rest]), file=file, field=first_field or None)
