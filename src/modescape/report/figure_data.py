"""The numbers behind each figure: a `Table` (written beside the figure as CSV) and, for line and
scatter figures, a `Chart` (the page's interactive twin). Built from the same arrays the figure
function gets, so the CSV holds exactly what is drawn.

CSV headers are snake_case; values are rounded to what they mean (`frac`: 4 decimals for
fractions, `sig`: 4 significant digits for losses, distances, coordinates). Charts keep the
figure's units (accuracy in %), so a hovered value reads like the axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import to_hex

from modescape.report import figures
from modescape.report.base import Chart, ChartKind, Series, Table, frac, sig

# metric -> how a CSV rounds it: fractions to 4 decimals, open-ended scores to 4 digits
ROUND = {"accuracy": frac, "ece": frac, "error": frac, "nll": sig, "brier": sig, "loss": sig}


def color(c: object) -> str:
    """A matplotlib colour as "#rrggbb" for a chart series."""
    return to_hex(c, keep_alpha=False)  # type: ignore[arg-type]


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


def curves_chart(
    family: Sequence[str],
    size: np.ndarray,
    metric: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    styles: Mapping[str, figures.CurveStyle],
    shown: str = "accuracy",
) -> Chart:
    """One metric (accuracy by default) against ensemble size, one series per family in
    `styles` order, ± std as err; in the figure's units (accuracy and ECE in %)."""
    family, metric = np.asarray(family, dtype=str), np.asarray(metric, dtype=str)
    size = np.asarray(size, dtype=int)
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    _, ylabel, scale = figures.METRIC_AXES[shown]
    series = []
    for fam, (c, _, label) in styles.items():
        rows = np.flatnonzero((family == fam) & (metric == shown))
        rows = rows[np.argsort(size[rows])]
        if rows.size == 0:
            continue
        series.append(
            Series(
                label,
                [int(k) for k in size[rows]],
                [sig(v * scale, 5) for v in mean[rows]],
                err=[sig(v * scale, 3) for v in std[rows]],
                color=color(c),
                labels=[f"{fam}, k={int(k)}" for k in size[rows]],
            )
        )
    return Chart(ChartKind.LINE, "ensemble size (models averaged)", ylabel, series)
