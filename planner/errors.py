"""Errors of the planning layer. InputError (bad input, exit 2) lives in simulator.errors."""

from simulator.errors import InputError


class NoPlanError(Exception):
    """No plan meets the goals (exit code 1); the message says which goal and by how much."""


__all__ = ["InputError", "NoPlanError"]
