"""The one JSON <-> dataclass codec: run configs (strict) and the records a run stores (lenient).

`encode` turns a dataclass into the JSON object it is written as; `decode` reads one back by the
dataclass's type hints (nested dataclasses, lists, tuples, dicts, optionals). Two modes:

- strict (configs, which a user writes): an unknown key is a ModescapeError naming the allowed
  ones, and `coerce(cls, name, value)` checks every plain value against its field;
- lenient (what a run wrote: summaries, member.json, the manifest's data record): keys a newer
  version added are ignored and missing ones take the field's default, so older runs still read.

A field's JSON key is its name, or `metadata["key"]` (for names Python reserves: "from"); a field
with `metadata["omit_none"]` is left out of the object while it is None (a key some writers never
set, e.g. member.json's "host" in an imported run).
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, Union

from modescape.errors import ModescapeError, choice_error

T = TypeVar("T")
R = TypeVar("R", bound="Record")

OMIT_NONE: dict[str, bool] = {"omit_none": True}  # field(metadata=OMIT_NONE)

Coerce = Callable[[type, str, Any], Any]


def json_key(f: dataclasses.Field[Any]) -> str:
    """The JSON key of dataclass field `f`."""
    return str(f.metadata.get("key", f.name))


def encode(obj: Any) -> Any:
    """`obj` as JSON values: dataclasses become objects (keys as `json_key`), recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[json_key(f)] = encode(value)
        return out
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    return obj


def decode(
    cls: type[T],
    data: Any,
    *,
    strict: bool = False,
    what: str = "record",
    where: str = "",
    coerce: Coerce | None = None,
) -> T:
    """The dataclass `cls` read from JSON object `data` (see the module docstring for the modes;
    `what` names the kind of object in messages: "config section", "record")."""
    if not isinstance(data, dict):
        raise ModescapeError(
            f"{what} {where or 'root'!r} must be an object, got {reprlib.repr(data)}"
        )
    fields = {json_key(f): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if strict and unknown:
        raise choice_error(
            f"config key{'' if not where else ' in ' + where!s}", unknown[0], sorted(fields)
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        f = fields.get(key)
        if f is None:
            continue
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            inner = f"{where}.{key}".strip(".")
            kwargs[f.name] = decode(
                hint, value, strict=strict, what=what, where=inner, coerce=coerce
            )
        elif coerce is not None:
            kwargs[f.name] = coerce(cls, f.name, value)
        else:
            kwargs[f.name] = _load(hint, value, what)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ModescapeError(f"bad {what} {where or 'root'!r}: {e}") from None


def _load(hint: Any, value: Any, what: str) -> Any:
    """`value` read as type `hint` (lists back to the tuples they were written from)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _load(inner[0], value, what) if len(inner) == 1 else value
    if origin in (list, tuple) and isinstance(value, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis] or [Any]
        items = [_load(args[0], v, what) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict and len(typing.get_args(hint)) == 2 and isinstance(value, dict):
        item = typing.get_args(hint)[1]
        return {k: _load(item, v, what) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return decode(hint, value, what=what)
    return value


class Record:
    """to_dict()/from_dict() of a dataclass through this codec (lenient): the base of every
    record a run stores (`store.schema`, `store.records`) and of the analysis results stored
    as they are (`modescape.results`)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = encode(self)
        return out

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        return decode(cls, data)
