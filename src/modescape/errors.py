"""The one exception type a user is meant to see.

Anything raised as `ModescapeError` is bad input or an impossible setting: the CLI prints its
message on one line and exits with status 2, without a traceback. Every other exception is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class ModescapeError(Exception):
    """Bad input, named clearly: what is wrong and what is allowed."""


def choice_error(what: str, value: object, allowed: Iterable[object]) -> ModescapeError:
    """The standard message for an unknown name: `unknown dataset 'x' (allowed: a, b)`.

    `allowed` is a sequence of names or an option enum class (`modescape.options`)."""
    names = [str(getattr(a, "value", a)) for a in allowed]
    return ModescapeError(f"unknown {what} {value!r} (allowed: {', '.join(names)})")


def check_choice(what: str, value: object, allowed: type[StrEnum] | Iterable[str]) -> str:
    """`value` as a plain string if it is one of `allowed`, else the standard ModescapeError."""
    names = [str(getattr(a, "value", a)) for a in allowed]
    if value not in names:
        raise choice_error(what, value, names)
    return str(value)
