"""Upper bounds and finiteness of the studies' settings, checked before anything is allocated or
written (a `--grid 100000`, a severity range of a billion or a NaN margin used to exhaust memory
or compute all-NaN results before any check)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modescape.errors import ModescapeError

MAX_GRID = 201  # grid points per axis of a landscape plane (201² = 40,401 evaluations)
MAX_PATH_POINTS = 1001
MAX_COUNT = 1_000_000  # windows, subsets, iterations: far beyond any run, far below a hang


def check_int(what: str, value: Any, lo: int, hi: int = MAX_COUNT) -> None:
    """Raise a ModescapeError naming `what` unless `value` is an integer in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
        raise ModescapeError(f"{what} must be an integer in [{lo}, {hi:,}], got {value!r}")


def check_float(what: str, value: Any, lo: float, hi: float) -> None:
    """Raise a ModescapeError naming `what` unless `value` is a finite number in [lo, hi]
    (NaN and infinities are refused: they silently produce all-NaN results)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not lo <= value <= hi:
        raise ModescapeError(f"{what} must be a finite number in [{lo}, {hi}], got {value!r}")


def check_examples(what: str, value: int | None, available: int) -> None:
    """An example count asked for explicitly must exist in the data (None: all of them)."""
    if value is not None:
        check_int(f"{what} (the run has {available:,} test examples)", value, 1, available)
