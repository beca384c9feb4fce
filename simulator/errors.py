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


def pydantic_error_to_input_error(exc, *, file: str | None, prefix: str | None = None) -> InputError:
    """Turn a pydantic ValidationError into one InputError naming the first bad field."""
    lines = []
    first_field = None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        loc = loc.replace(".[", "[")
        if prefix:
            loc = f"{prefix}.{loc}" if loc else prefix
        first_field = first_field or loc
        bad = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the documented fields)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(bad, dict)
            else f" (got {bad!r})"
        )
        lines.append(f"{loc}: {msg}{shown}")
    message = lines[0] if len(lines) == 1 else "; ".join(lines[:5])
    if message.startswith(f"{first_field}: "):
        message = message[len(first_field) + 2 :]
    return InputError(message, file=file, field=first_field)
