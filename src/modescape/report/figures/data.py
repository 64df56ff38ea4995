"""The numbers behind each chart figure: a `Table` (written beside the figure as CSV), built
from the same arrays as its `Chart`. Figures that are not charts carry their own `table()`
(`figures/described.py`).

CSV headers are snake_case; values are rounded to what they mean (`frac`: 4 decimals for
fractions, `sig`: 4 significant digits for losses, distances, coordinates). Charts keep the
figure's units (accuracy in %), so a hovered value reads like the axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from modescape.report.base import Table
from modescape.report.wording import frac, sig
from modescape.store.schema import ReferenceCurves

# metric -> how a CSV rounds it: fractions to 4 decimals, open-ended scores to 4 digits
ROUND = {
    "accuracy": frac,
    "ece": frac,
    "error": frac,
    "nll": sig,
    "brier": sig,
    "loss": sig,
}


def rounded(metric: str, value: object) -> float | None:
    return ROUND.get(metric, sig)(value)


def curves_table(
    name: str,
    family: Sequence[str],
    size: np.ndarray,
    metric: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    caption: str,
) -> Table:
    """Metrics against ensemble size, one row per (family, size, metric), long form."""
    rows = [
        [str(f), int(k), str(mt), rounded(str(mt), mu), rounded(str(mt), sd)]
        for f, k, mt, mu, sd in zip(family, size, metric, mean, std)
    ]
    return Table(name, ["family", "ensemble_size", "metric", "mean", "std"], rows, caption)


# ---- per-snapshot curves ----------------------------------------------------------------
def per_member_lines(
    name: str,
    members: Sequence[int],
    epochs: Sequence[int],
    columns: Mapping[str, np.ndarray],
    caption: str,
    round_fn=sig,
) -> Table:
    """One row per (member, epoch) with the named columns [M, E] (e.g. distance_from_init)."""
    rows = []
    for i, m in enumerate(members):
        for j, e in enumerate(epochs):
            rows.append([int(m), int(e), *(round_fn(c[i][j]) for c in columns.values())])
    return Table(name, ["member", "epoch", *columns], rows, caption)


# ---- training ----------------------------------------------------------------------------
def training_table(
    member: np.ndarray, epoch: np.ndarray, curves: Mapping[str, np.ndarray], caption: str
) -> Table:
    """Per-epoch training curves: (member, epoch, <split>_<loss|acc>...)."""
    member, epoch = np.asarray(member, dtype=int), np.asarray(epoch, dtype=int)
    keys = list(curves)
    order = np.lexsort((epoch, member))
    rows = [
        [int(member[i]), int(epoch[i]),
         *((frac if k.endswith("_acc") else sig)(curves[k][i]) for k in keys)]
        for i in order
    ]  # fmt: skip
    return Table("training_curves", ["member", "epoch", *keys], rows, caption)


# ---- loss landscape ---------------------------------------------------------------------------
def paths_table(paths: Sequence[Mapping[str, object]], caption: str) -> Table:
    """Linear paths: one row per (path, alpha): kind, error, loss."""
    rows = []
    for p in paths:
        alpha = np.asarray(p["alpha"], dtype=float)
        error = np.asarray(p["error"], dtype=float)
        loss = np.asarray(p["loss"], dtype=float)
        rows += [
            [p["name"], p["kind"], frac(x), frac(e), sig(v)] for x, e, v in zip(alpha, error, loss)
        ]
    return Table("landscape_paths", ["path", "kind", "alpha", "error", "loss"], rows, caption)


# ---- subspace sampling ----------------------------------------------------------------------
def plane_points_table(
    plane: Mapping[str, np.ndarray], curves: ReferenceCurves | None, caption: str
) -> Table:
    """The diversity–accuracy plane: every point of subspace/plane.csv and the reference curves
    (kind "upper_curve" / "lower_curve")."""
    kind, method = np.asarray(plane["kind"], dtype=str), np.asarray(plane["method"], dtype=str)
    member = np.asarray(plane["member"], dtype=int)
    acc = np.asarray(plane["accuracy"], dtype=float)
    div = np.asarray(plane["norm_diversity"], dtype=float)
    sample = np.asarray(plane["sample"]) if "sample" in plane else np.full(len(kind), np.nan)
    rows: list[list[object]] = [
        [
            str(kind[i]),
            str(method[i]),
            int(member[i]),
            _int_or_none(sample[i]),
            frac(acc[i]),
            frac(div[i]),
        ]
        for i in range(len(kind))
    ]
    if curves is not None and len(curves.accuracy):
        grid = np.asarray(curves.accuracy, dtype=float)
        for name, curve in (("upper", curves.upper), ("lower", curves.lower)):
            values = np.asarray(curve, dtype=float)
            rows += [
                [f"{name}_curve", "", None, None, frac(a), frac(v)] for a, v in zip(grid, values)
            ]
    header = ["kind", "method", "member", "sample", "accuracy", "norm_diversity"]
    return Table("subspace_plane", header, rows, caption)


def _int_or_none(x: object) -> int | None:
    v = float(x)  # type: ignore[arg-type]
    return None if not np.isfinite(v) else int(v)
