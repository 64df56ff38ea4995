"""The one exception type a user is meant to see.

Anything raised as `ModescapeError` is bad input or an impossible setting: the CLI prints its
message on one line and exits with status 2, without a traceback. Every other exception is a bug.
"""

from __future__ import annotations


class ModescapeError(Exception):
    """Bad input, named clearly: what is wrong and what is allowed."""


def choice_error(what: str, value: object, allowed: list[str] | tuple[str, ...]) -> ModescapeError:
    """The standard message for an unknown name: `unknown dataset 'x' (allowed: a, b)`."""
    return ModescapeError(f"unknown {what} {value!r} (allowed: {', '.join(map(str, allowed))})")
