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

from modescape.report.base import Chart, ChartKind, Series, Table
from modescape.report.figures import analysis as figures
from modescape.report.figures import landscape as landscape_figures
from modescape.report.figures import studies as study_figures
from modescape.report.wording import frac, sig

# metric -> how a CSV rounds it: fractions to 4 decimals, open-ended scores to 4 digits
ROUND = {
    "accuracy": frac,
    "ece": frac,
    "error": frac,
    "nll": sig,
    "brier": sig,
    "loss": sig,
}


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


# ---- loss landscape ---------------------------------------------------------------------------
def plane_table(
    name: str,
    a: np.ndarray,
    b: np.ndarray,
    loss: np.ndarray,
    accuracy: np.ndarray,
    agreements: Mapping[str, np.ndarray],
    anchors: Mapping[str, object],
    trajectories: Mapping[str, np.ndarray] | None,
    caption: str,
) -> Table:
    """Everything drawn on one plane, long form: kind "grid" (a, b, loss, accuracy, agreement
    with each reference), "anchor" (its coordinates and loss, accuracy) and "snapshot" (every
    snapshot projected onto the plane, name m<i> e<k>)."""
    names = list(agreements)
    header = ["kind", "name", "a", "b", "loss", "accuracy", *(f"agreement_{n}" for n in names)]
    if len(names) >= 2:
        header.append(f"agreement_{names[0]}_minus_{names[1]}")
    rows: list[list[object]] = []
    for j, bj in enumerate(np.asarray(b, dtype=float)):
        for i, ai in enumerate(np.asarray(a, dtype=float)):
            agr = [float(agreements[n][j, i]) for n in names]
            row = [
                "grid",
                "",
                sig(ai),
                sig(bj),
                sig(loss[j, i]),
                frac(accuracy[j, i]),
            ]
            row += [frac(v) for v in agr]
            if len(names) >= 2:
                row.append(frac(agr[0] - agr[1]))
            rows.append(row)
    blank = [None] * (len(header) - 6)
    coords = np.asarray(anchors["coords"], dtype=float).reshape(-1, 2)  # type: ignore[arg-type]
    for k, n in enumerate(anchors["names"]):  # type: ignore[arg-type]
        loss_k = anchors.get("loss", [None] * len(coords))[k]  # type: ignore[attr-defined,index]
        acc_k = anchors.get("accuracy", [None] * len(coords))[k]  # type: ignore[attr-defined,index]
        rows.append(
            [
                "anchor",
                n,
                sig(coords[k, 0]),
                sig(coords[k, 1]),
                sig(loss_k),
                frac(acc_k),
            ]
        )
        rows[-1] += blank
    if trajectories is not None:
        member = np.asarray(trajectories["member"], dtype=int)
        epoch = np.asarray(trajectories["epoch"], dtype=int)
        for k in np.lexsort((epoch, member)):
            rows.append(
                ["snapshot", f"m{member[k]} e{epoch[k]}", sig(trajectories["a"][k]),
                 sig(trajectories["b"][k]), None, None, *blank]
            )  # fmt: skip
    return Table(name, header, rows, caption)


def paths_data(paths: Sequence[Mapping[str, object]], caption: str) -> tuple[Table, Chart]:
    """Linear paths: table (path, kind, alpha, error, loss) and a chart of error (%) vs alpha."""
    rows, series = [], []
    for i, p in enumerate(paths):
        alpha = np.asarray(p["alpha"], dtype=float)
        error = np.asarray(p["error"], dtype=float)
        loss = np.asarray(p["loss"], dtype=float)
        rows += [
            [p["name"], p["kind"], frac(x), frac(e), sig(v)] for x, e, v in zip(alpha, error, loss)
        ]
        c = study_path_color(str(p["kind"]), i)
        series.append(
            Series(
                f"{p['name']} ({p['kind']})",
                [frac(x) for x in alpha],
                [sig(100 * e, 5) for e in error],
                color=color(c),
                labels=[f"{p['name']} α={x:.2f}" for x in alpha],
            )
        )
    table = Table("landscape_paths", ["path", "kind", "alpha", "error", "loss"], rows, caption)
    chart = Chart(ChartKind.LINE, "α (0 = first endpoint, 1 = second)", "test error (%)", series)
    return table, chart


def study_path_color(kind: str, i: int) -> object:
    return landscape_figures.PATH_KIND_COLORS.get(kind, figures.member_color(i))


# ---- subspace sampling ----------------------------------------------------------------------
def plane_points_data(
    plane: Mapping[str, np.ndarray], curves: Mapping[str, Sequence[float]] | None, caption: str
) -> tuple[Table, Chart]:
    """The diversity–accuracy plane: every point of subspace/plane.csv and the reference curves
    (kind "upper_curve" / "lower_curve"); chart: one scatter series per sampler, the members,
    and the curves, accuracy in %."""
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
    series = []
    for i, m in enumerate(dict.fromkeys(method[kind == "sample"])):
        sel = np.flatnonzero((kind == "sample") & (method == m))
        series.append(
            Series(
                f"{study_figures.method_label(m)} samples",
                [sig(100 * acc[j], 5) for j in sel],
                [frac(div[j]) for j in sel],
                color=color(study_figures.method_color(m, i)),
                labels=[f"{m} around m{member[j]}, sample {_int_or_none(sample[j])}" for j in sel],
            )
        )
    others = np.flatnonzero(kind == "member")
    if others.size:
        series.append(
            Series(
                "independent members",
                [sig(100 * acc[j], 5) for j in others],
                [frac(div[j]) for j in others],
                color="#555555",
                labels=[f"m{member[j]}" for j in others],
            )
        )
    if curves and len(curves.get("accuracy", [])):
        grid = np.asarray(curves["accuracy"], dtype=float)
        for name, label in (("upper", "independent errors"), ("lower", "perturbed reference")):
            values = np.asarray(curves[name], dtype=float)
            rows += [
                [f"{name}_curve", "", None, None, frac(a), frac(v)] for a, v in zip(grid, values)
            ]
            series.append(
                Series(
                    f"reference curve: {label}",
                    [sig(100 * a, 5) for a in grid],
                    [frac(v) for v in values],
                    color="#000000",
                )
            )
    header = ["kind", "method", "member", "sample", "accuracy", "norm_diversity"]
    table = Table("subspace_plane", header, rows, caption)
    chart = Chart(
        ChartKind.SCATTER,
        "accuracy (%)",
        "disagreement with reference / (1 − accuracy)",
        series,
    )
    return table, chart


def _int_or_none(x: object) -> int | None:
    v = float(x)  # type: ignore[arg-type]
    return None if not np.isfinite(v) else int(v)


def tsne_panels_table(panels: Mapping[str, Mapping[str, np.ndarray]], caption: str) -> Table:
    """Every point of every sampler's joint t-SNE: method, kind, member, index, x, y."""
    rows = []
    for m, cols in panels.items():
        for k, mem, i, x, y in zip(
            cols["kind"], cols["member"], cols["index"], cols["x"], cols["y"]
        ):
            rows.append([m, str(k), int(mem), int(i), sig(x), sig(y)])
    return Table("subspace_tsne", ["method", "kind", "member", "index", "x", "y"], rows, caption)


def js_table(name: str, values: Mapping[str, float], caption: str) -> Table:
    rows = [[label, sig(v)] for label, v in values.items()]
    return Table(name, ["family", "js_diversity_nats"], rows, caption)
