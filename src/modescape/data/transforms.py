"""User input transforms: the Python API's hook into a run's preprocessing.

A transform is a deterministic function `fn(x) -> x` of a batch of scaled float inputs
`[N, C, ...]` returning a batch of the same shape, applied after the pixel scaling wherever a
run's inputs are made (training, every study, `modescape import`). It is named in the run's
config (`data.transform`), so the run records it and reopening the run finds it again: a name
given to `register_transform` from Python, or an import path "package.module:function" that
works from the command line too. Random augmentation stays with `train.augment`: a transform is
part of what the inputs *are*, applied identically to every split.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from modescape.errors import ModescapeError

Transform = Callable[[torch.Tensor], torch.Tensor]
_TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str, fn: Transform, *, replace: bool = False) -> None:
    """Make `fn` available as `data.transform=name` (see the module docstring)."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ModescapeError(f"a transform name is a non-empty string without ':', got {name!r}")
    if not callable(fn):
        raise ModescapeError(f"transform {name!r} must be callable, got {type(fn).__name__}")
    if name in _TRANSFORMS and _TRANSFORMS[name] is not fn and not replace:
        raise ModescapeError(f"transform {name!r} is already registered (pass replace=True)")
    _TRANSFORMS[name] = fn


def resolve_transform(name: str) -> Transform:
    """The function a `data.transform` names; one ModescapeError saying what is allowed."""
    if name in _TRANSFORMS:
        return _TRANSFORMS[name]
    module, sep, attr = name.partition(":")
    if not sep:
        known = ", ".join(sorted(_TRANSFORMS)) or "none registered"
        raise ModescapeError(
            f"unknown data.transform {name!r}: give a name passed to register_transform "
            f"({known}) or an import path 'package.module:function'"
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ModescapeError(f"cannot import data.transform {name!r}: {e}") from None
    if not callable(fn):
        raise ModescapeError(f"data.transform {name!r} is not callable")
    return fn


def apply_transform(name: str | None, x: torch.Tensor) -> torch.Tensor:
    """`x` through the transform `name` (None: unchanged), checked to keep the batch's shape."""
    if not name:
        return x
    out = resolve_transform(name)(x)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModescapeError(
            f"data.transform {name!r} must return a tensor of its input's shape "
            f"{tuple(x.shape)}, got {got}"
        )
    return out.float()
