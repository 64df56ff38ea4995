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


# ---- matrices and per-snapshot curves -------------------------------------------------------
def snapshot_names(members: Sequence[int], epochs: Sequence[int]) -> list[str]:
    """Column names of a (members·epochs)² matrix, member-major: m0_e0, m0_e1, ..."""
    return [f"m{m}_e{e}" for m in members for e in epochs]


def matrix_table(
    name: str,
    matrix: np.ndarray,
    index: Mapping[str, Sequence[object]],
    columns: Sequence[str],
    caption: str,
    *,
    quantity: str,
) -> Table:
    """A heatmap's matrix, one CSV row per matrix row: the `index` columns (e.g. member,
    epoch) then one column per matrix column. Cosine keeps 6 decimals (late snapshots differ
    from 1 in the 4th), disagreement 4 (a fraction of at most 10,000 points), distances 4
    significant digits."""
    matrix = np.asarray(matrix, dtype=float)
    keys = list(index)
    if quantity == "cosine":
        cells = [[frac(v, 6) for v in row] for row in matrix]
    elif quantity == "disagreement":
        cells = [[frac(v) for v in row] for row in matrix]
    else:
        cells = [[sig(v) for v in row] for row in matrix]
    rows = [[index[k][i] for k in keys] + cells[i] for i in range(len(matrix))]
    return Table(name, [*keys, *columns], rows, caption)


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


def member_chart(
    members: Sequence[int],
    epochs: Sequence[int],
    values: np.ndarray,
    x_label: str,
    y_label: str,
    *,
    suffix: str = "",
    scale: float = 1.0,
    kind: ChartKind = ChartKind.LINE,
    extra: Sequence[Series] = (),
) -> Chart:
    """values [M, E] against epoch, one series per member in its member colour."""
    series = [
        Series(
            f"member {m}{suffix}",
            [int(e) for e in epochs],
            [sig(v * scale, 5) for v in values[i]],
            color=color(figures.member_color(int(m))),
            labels=[f"m{m} e{e}" for e in epochs],
        )
        for i, m in enumerate(members)
    ]
    return Chart(kind, x_label, y_label, [*series, *extra])


# ---- trajectories, reliability, training ----------------------------------------------------
def embedding_data(
    name: str, member: np.ndarray, epoch: np.ndarray, x: np.ndarray, y: np.ndarray, method: str
) -> tuple[Table, Chart]:
    """A joint embedding of every snapshot: the table (member, epoch, x, y) and a scatter chart
    with one series per member in epoch order, points labelled "m0 e12"."""
    member, epoch = np.asarray(member, dtype=int), np.asarray(epoch, dtype=int)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.lexsort((epoch, member))
    rows = [[int(member[i]), int(epoch[i]), sig(x[i]), sig(y[i])] for i in order]
    table = Table(name, ["member", "epoch", "x", "y"], rows, f"{method} coordinates.")
    series = []
    for m in np.unique(member):
        idx = [i for i in order if member[i] == m]
        series.append(
            Series(
                f"member {m}",
                [sig(x[i]) for i in idx],
                [sig(y[i]) for i in idx],
                color=color(figures.member_color(int(m))),
                labels=[f"m{m} e{epoch[i]}" for i in idx],
            )
        )
    chart = Chart(ChartKind.SCATTER, f"{method} dimension 1", f"{method} dimension 2", series)
    return table, chart


def reliability_table(name: str, diagrams: Mapping[str, Mapping[str, np.ndarray]]) -> Table:
    """One row per (diagram, confidence bin): its edges, example count, accuracy, confidence."""
    rows = []
    for title, d in diagrams.items():
        edges = np.asarray(d["edges"], dtype=float)
        for b, count in enumerate(np.asarray(d["counts"])):
            rows.append(
                [
                    title, frac(edges[b]), frac(edges[b + 1]), int(count),
                    frac(d["accuracy"][b]), frac(d["confidence"][b]),
                ]
            )  # fmt: skip
    header = ["model", "bin_lower", "bin_upper", "examples", "accuracy", "mean_confidence"]
    return Table(name, header, rows, "Reliability diagram bins (blank: empty bin).")


def training_data(
    member: np.ndarray, epoch: np.ndarray, curves: Mapping[str, np.ndarray], caption: str
) -> tuple[Table, Chart]:
    """Per-epoch training curves: table (member, epoch, <split>_<loss|acc>...) and a chart of
    accuracy (%) against epoch, one series per member and split."""
    member, epoch = np.asarray(member, dtype=int), np.asarray(epoch, dtype=int)
    keys = list(curves)
    order = np.lexsort((epoch, member))
    rows = [
        [int(member[i]), int(epoch[i]),
         *((frac if k.endswith("_acc") else sig)(curves[k][i]) for k in keys)]
        for i in order
    ]  # fmt: skip
    table = Table("training_curves", ["member", "epoch", *keys], rows, caption)
    series = []
    for split in ("train", "val", "test"):
        key = f"{split}_acc"
        if key not in curves:
            continue
        for m in np.unique(member):
            idx = [i for i in order if member[i] == m and np.isfinite(curves[key][i])]
            if idx:
                series.append(
                    Series(
                        f"member {m} {split}",
                        [int(epoch[i]) for i in idx],
                        [sig(100 * curves[key][i], 5) for i in idx],
                        color=color(figures.member_color(int(m))),
                        labels=[f"m{m} e{epoch[i]} {split}" for i in idx],
                    )
                )
    return table, Chart(ChartKind.LINE, "epoch", "accuracy (%)", series)
