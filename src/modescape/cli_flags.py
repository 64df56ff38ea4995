"""Command-line flags read from a config dataclass, so that defaults and types live in one place.

`add_dataclass_flags(parser, AnalysisConfig, {...})` adds one flag per field: `--late` for `late`
(or the name a `Flag` gives), typed and defaulted from the field, with the choices of the field's
option enum. Scalar fields (int, float, str, bool, optionally None) need no entry; tuple fields
need a `Flag` with a `parse` function, or they stay config-only. `config_from_args` builds the
dataclass back from the parsed namespace and names the flag in every error.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import types
import typing
from enum import StrEnum
from typing import Any

from modescape.errors import ModescapeError
from modescape.options import (
    AlignMethod,
    BNPolicy,
    CurveRecipe,
    CurveShape,
    ParamSelection,
    Split,
    SubsetMode,
    values,
)
from modescape.registry import Flag

# The option enum behind each str field that names a choice (same field name in every study).
FIELD_CHOICES: dict[str, type[StrEnum]] = {
    "split": Split,
    "params": ParamSelection,
    "tsne_subset": SubsetMode,
    "bn_policy": BNPolicy,
    "align_method": AlignMethod,  # landscape
    "shape": CurveShape,  # connect
    "recipe": CurveRecipe,  # connect
}


def nonempty(text: str) -> str:
    """An argparse type for names and paths: '' is refused, not read as "the default" (`--out ''`
    used to write runs/<default>, `--arch ''` to train the default architecture)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _scalar_type(hint: Any) -> type | None:
    """int/float/str/bool for `int`, `int | None`, ...; None for anything else (tuples)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) and len(args) == 1:
        hint = args[0]
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return str  # its choices come from the enum (`_choices`)
    return hint if hint in (int, float, str, bool) else None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _enum_of(hint: Any) -> type[enum.StrEnum] | None:
    """The str enum a field is typed with (its values are the flag's choices), else None."""
    return hint if isinstance(hint, type) and issubclass(hint, enum.StrEnum) else None


def _flag_name(field: str, flag: Flag) -> str:
    return flag.name or "--" + field.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return "none" if value is None else str(value)


def add_dataclass_flags(
    parser: argparse.ArgumentParser, cls: type, flags: dict[str, Flag]
) -> argparse.ArgumentParser:
    """One flag per field of `cls` (see the module docstring); dest = the field's name."""
    hints = typing.get_type_hints(cls)
    stale = sorted(set(flags) - set(hints))
    if stale:  # a renamed field would otherwise lose its flag name silently
        raise TypeError(f"flags for {cls.__name__} name no field: {', '.join(stale)}")
    g = parser.add_argument_group(f"settings ({cls.__name__})")
    for f in dataclasses.fields(cls):
        flag = flags.get(f.name, Flag())
        name, default = _flag_name(f.name, flag), _default(f)
        kind = _scalar_type(hints[f.name])
        text = flag.help or f"{cls.__name__}.{f.name}"
        shown = flag.default or _shown(default)
        metavar = flag.metavar or {int: "N", float: "X"}.get(kind)  # type: ignore[arg-type]
        if flag.parse is not None:
            action = "append" if flag.append else "store"
            g.add_argument(
                name, dest=f.name, action=action, default=[] if flag.append else None,
                metavar=metavar, help=f"{text} (default: {shown})",
            )  # fmt: skip
        elif kind is bool:
            # A True default is switched off with --no-<name>, a False one on with --<name>.
            flag_text = name if not default else "--no-" + name.removeprefix("--")
            action = "store_false" if default else "store_true"
            g.add_argument(flag_text, dest=f.name, action=action, help=text)
        elif kind is not None:
            options = FIELD_CHOICES.get(f.name) or _enum_of(hints[f.name])
            g.add_argument(
                name, dest=f.name, type=kind, default=default, metavar=metavar,
                choices=values(options) if options else None, help=f"{text} (default: {shown})",
            )  # fmt: skip
    return parser


def config_from_args(cls: type, args: argparse.Namespace, flags: dict[str, Flag]) -> Any:
    """The `cls` instance the parsed flags describe; a bad value is a ModescapeError naming the
    flag. Every count and seed in a study config is >= 0 and every float finite."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not hasattr(args, f.name):
            continue  # a tuple field without a flag: the dataclass default
        flag = flags.get(f.name, Flag())
        value = getattr(args, f.name)
        if flag.parse is not None:
            if value is None or value == []:
                continue
            value = flag.parse(value)
        name = _flag_name(f.name, flag)
        if isinstance(value, float) and not math.isfinite(value):
            raise ModescapeError(f"{name} must be a finite number, got {value}")
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ModescapeError(f"{name} must be >= 0, got {value}")
        kwargs[f.name] = value
    return cls(**kwargs)


def slurm_config(args: argparse.Namespace) -> Any:
    """The SlurmConfig the SLURM flags of `train` and `spawn` describe."""
    from modescape.training.slurm import SlurmConfig

    extra = {}
    for item in args.slurm_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ModescapeError(f"--slurm-option expects KEY=VALUE, got {item!r}")
        extra[key] = value
    return SlurmConfig(
        partition=args.partition,
        time=args.time,
        cpus_per_task=args.cpus_per_task,
        gpus_per_node=args.gpus_per_node,
        mem_gb=args.mem_gb,
        array_parallelism=args.max_running,
        extra=extra,
    )
