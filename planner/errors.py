"""Errors of the planning layer. InputError (bad input, exit 2) lives in simulator.errors."""

from simulator.errors import InputError


class NoPlanError(Exception):
    """No plan meets the goals (exit code 1); the message says which goal and by how much."""


class Terminated(BaseException):
    """SIGTERM arrived (the CLI raises it from its signal handler; exit code 143). Like KeyboardInterrupt it is
    not an Exception, so `except Exception` clauses let it through and `finally` blocks still run."""


__all__ = ["InputError", "NoPlanError", "Terminated"]
