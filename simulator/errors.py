"""Errors and warnings that reach the user. The CLI maps InputError to exit code 2 and prints no traceback;
InputWarning (input that runs, but not all of it: e.g. requests that can never be served) is printed as one
`warning:` line on stderr."""

from __future__ import annotations

import types
import typing

import annotated_types


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


class InputWarning(UserWarning):
    """Input that is accepted but partly cannot be used as written (the message says what and how much)."""


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


_RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number")


def _models_in(annotation) -> list[type]:
    """The pydantic model classes an annotation can hold (`A | None`, `list[A]`, `dict[str, A]` → [A])."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def allowed_range(model: type | None, loc: tuple) -> str | None:
    """The bounds declared on the field at `loc` of pydantic `model`, as text: '> 0 and <= 1e+06'."""
    field = None
    classes = [model] if model is not None else []
    for part in loc:
        if isinstance(part, int):
            continue
        nxt = [c.model_fields[part] for c in classes if part in getattr(c, "model_fields", {})]
        if not nxt:
            return None
        field = nxt[0]
        classes = _models_in(field.annotation)
    if field is None:
        return None
    symbols = {
        annotated_types.Gt: (">", "gt"),
        annotated_types.Ge: (">=", "ge"),
        annotated_types.Lt: ("<", "lt"),
        annotated_types.Le: ("<=", "le"),
    }
    parts = []
    for meta in field.metadata:
        for cls, (symbol, attr) in symbols.items():
            if isinstance(meta, cls):
                bound = getattr(meta, attr)
                parts.append(f"{symbol} {bound:g}" if isinstance(bound, float) else f"{symbol} {bound:,}")
    return " and ".join(parts) or None


def pydantic_error_to_input_error(
    exc, *, file: str | None, prefix: str | None = None, model: type | None = None
) -> InputError:
    """Turn a pydantic ValidationError into one InputError naming the first bad field.

    With `model` (the validated class), a value out of range is reported with the field's whole allowed range.
    """
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
        if err["type"] in _RANGE_ERRORS:
            bounds = allowed_range(model, tuple(p for p in err["loc"] if not str(p).startswith(_UNION_TAGS)))
            if bounds:
                msg += f"; allowed: {bounds}"
        messages.setdefault(loc, msg)  # a union reports once per member: keep the first
    first_field, first_msg = next(iter(messages.items()))
    rest = [f"{loc}: {msg}" for loc, msg in list(messages.items())[1:4]]
    return InputError("; ".join([first_msg, *rest]), file=file, field=first_field or None)
