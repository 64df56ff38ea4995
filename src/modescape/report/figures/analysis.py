"""The analysis study's chart builders (ensemble curves, training curves, distance from
initialisation, agreement with the final predictions: `Chart`s, which the descriptions of
`figures/curves.py` hold with their CSVs), and the styles and rendering every figure of the
report shares (`member_color`, font sizes, `new_figure`, `render_figure`). The heatmaps are
`figures/heatmap.py`, the reliability diagrams `figures/reliability.py`, the trajectories
`figures/embedding.py`.

Figures are built with `matplotlib.figure.Figure` directly, never `pyplot`: no global state, no
GUI backend, so they can be drawn from any thread on a headless machine. Nothing here reads
files; the report's sections load the study results and pass arrays in. `save_figure` writes PNG and
PDF atomically.

Colours: member i is always `member_color(i)` (tab10, cycling after 10), in every figure.
Ensemble families have their own fixed colours (`FAMILY_COLORS`), so they are never confused
with members.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from modescape.errors import choice_error
from modescape.report.base import MPL_LINES, Chart, ChartKind, LineStyle, Marker, Series
from modescape.report.figures.chart import draw_chart, hex_color, legend_handles, points
from modescape.report.wording import sig
from modescape.store.files import atomic_write_bytes

DPI = 120
TITLE = 12  # font sizes in points
LABEL = 10
SMALL = 8

FAMILY_COLORS = {"deep": "#1f3b73", "snapshot": "#d95f02", "weight_average": "#7a7a7a"}
FAMILY_LABELS = {
    "deep": "deep ensemble (independent members)",
    "snapshot": "snapshot ensemble (last k of one trajectory)",
    "weight_average": "ensemble of weight averages",
}
CurveStyle = tuple[object, str, str]  # (matplotlib colour, line style, legend label)
# metric -> (panel title, y label, scale applied to the values)
METRIC_AXES = {
    "accuracy": ("Accuracy", "accuracy (%)", 100.0),
    "nll": ("Negative log-likelihood", "NLL (nats per example)", 1.0),
    "brier": ("Brier score", "Brier score (range 0-2)", 1.0),
    "ece": ("Expected calibration error", "ECE (%, 15 bins)", 100.0),
}


# metric -> the values it can take, in the units drawn (METRIC_AXES scale): a ± std band or an
# axis must not run past them (an ECE axis at -10% reads as a bug)
METRIC_DOMAIN = {
    "accuracy": (0.0, 100.0),
    "nll": (0.0, np.inf),
    "brier": (0.0, 2.0),
    "ece": (0.0, 100.0),
}


def clip_to_domain(metric: str, values: np.ndarray) -> np.ndarray:
    """`values` (in drawn units) clipped to what `metric` can take; unknown metrics unchanged."""
    lo, hi = METRIC_DOMAIN.get(metric, (-np.inf, np.inf))
    clipped: np.ndarray = np.clip(np.asarray(values, dtype=float), lo, hi)
    return clipped


def member_color(member: int) -> tuple[float, float, float, float]:
    """The colour of member `member` in every figure (tab10, cycling)."""
    r, g, b, a = colormaps["tab10"](member % 10)
    return (r, g, b, a)


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def grid_axes(fig: Figure, n: int, ncols: int) -> list[Axes]:
    """Exactly n axes in rows of `ncols` (no empty axes left over)."""
    rows = -(-n // ncols)
    return [fig.add_subplot(rows, ncols, i + 1) for i in range(n)]


def trajectory_chart(
    member: np.ndarray, epoch: np.ndarray, x: np.ndarray, y: np.ndarray, *, method: str = "t-SNE"
) -> Chart:
    """Function-space trajectories: one line per member through its snapshots in epoch order
    (dots at the snapshots), then the starts (open circles) and ends (stars) in member colours.

    member, epoch, x, y: [points], as in trajectories/tsne.csv and pca.csv.
    """
    member, epoch = np.asarray(member, dtype=int), np.asarray(epoch, dtype=int)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.lexsort((epoch, member))
    series, starts, ends = [], [], []
    for m in np.unique(member):
        idx = [i for i in order if member[i] == m]
        series.append(
            Series(
                f"member {m}",
                points(sig(x[i]) for i in idx),
                points(sig(y[i]) for i in idx),
                color=hex_color(member_color(int(m))),
                labels=[f"m{m} e{epoch[i]}" for i in idx],
                line=LineStyle.SOLID,
                marker=Marker.DOT,
            )
        )
        starts.append((idx[0], m))
        ends.append((idx[-1], m))
    for name, marker, marks, filled in (
        (f"start (epoch {epoch.min()})", Marker.CIRCLE, starts, False),
        (f"end (epoch {epoch.max()})", Marker.STAR, ends, True),
    ):
        series.append(
            Series(
                name,
                points(sig(x[i]) for i, _ in marks),
                points(sig(y[i]) for i, _ in marks),
                labels=[f"m{m} e{epoch[i]}" for i, m in marks],
                line=LineStyle.NONE,
                marker=marker,
                point_colors=[hex_color(member_color(int(m))) for _, m in marks],
                filled=filled,
            )
        )
    return Chart(
        ChartKind.SCATTER,
        f"{method} dimension 1",
        f"{method} dimension 2",
        series,
        title=f"Trajectories in function space ({method} of predictions)",
    )


def chart_figure(chart: Chart, size: tuple[float, float], *, legend_cols: int = 1) -> Figure:
    """A one-panel figure of `chart`: its series, axis labels, title and legend (inside)."""
    fig = new_figure(*size)
    ax = fig.add_subplot()
    artists = draw_chart(ax, chart)
    if all(float(v).is_integer() for s in chart.series for v in s.x):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    handles = legend_handles(chart, artists)
    if handles:
        ax.legend(handles=handles, fontsize=SMALL, loc="best", framealpha=0.85, ncols=legend_cols)
    return fig


def family_styles(family: Sequence[str] | np.ndarray) -> dict[str, CurveStyle]:
    """The default (colour, line style, label) of each ensemble family present in `family`:
    deep, snapshot, weight_average in their `FAMILY_COLORS`, then others in member colours."""
    present = set(np.asarray(family, dtype=str).tolist())
    order = [f for f in FAMILY_COLORS if f in present] + sorted(present - set(FAMILY_COLORS))
    return {
        fam: (FAMILY_COLORS.get(fam, member_color(i)), "-", FAMILY_LABELS.get(fam, fam))
        for i, fam in enumerate(order)
    }


def ensemble_curves_charts(
    family: Sequence[str] | np.ndarray,
    size: np.ndarray,
    metric: Sequence[str] | np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    styles: Mapping[str, CurveStyle] | None = None,
) -> list[Chart]:
    """Accuracy, NLL, Brier and ECE against ensemble size (one chart each, in `METRIC_AXES`
    order), one series per family with its ± std band, in the drawn units (accuracy in %).

    The arguments are the columns of ensembles/curves.csv (one row per family, size, metric).
    `styles` maps family -> (colour, line style, legend label) and fixes the drawing order;
    families it leaves out are not drawn. Default: `family_styles`.
    """
    family, metric = np.asarray(family, dtype=str), np.asarray(metric, dtype=str)
    size = np.asarray(size, dtype=int)
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    if styles is None:
        styles = family_styles(family)
    charts = []
    for name, (panel, ylabel, scale) in METRIC_AXES.items():
        series = []
        for fam, (c, ls, label) in styles.items():
            rows = np.flatnonzero((family == fam) & (metric == name))
            rows = rows[np.argsort(size[rows], kind="stable")]
            if rows.size:
                series.append(
                    Series(
                        label,
                        [int(k) for k in size[rows]],
                        points(sig(v * scale, 5) for v in mean[rows]),
                        err=points(sig(v * scale, 3) for v in std[rows]),
                        color=hex_color(c),
                        labels=[f"{fam}, k={int(k)}" for k in size[rows]],
                        line=LineStyle(MPL_LINES.get(ls, ls)),
                        marker=Marker.CIRCLE,
                    )
                )
        charts.append(
            Chart(
                ChartKind.LINE,
                "ensemble size (models averaged)",
                ylabel,
                series,
                y_clip=METRIC_DOMAIN[name],
                title=panel,
                x_range=(0.8, None),  # size 1 clear of the frame
            )
        )
    return charts


def ensemble_curves_figure(
    family: Sequence[str],
    size: np.ndarray,
    metric: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    *,
    styles: Mapping[str, CurveStyle] | None = None,
    title: str = "Ensembles: metrics against ensemble size (mean ± std over subsets)",
) -> Figure:
    """`ensemble_curves_charts` drawn as 2 × 2 panels (see there)."""
    charts = ensemble_curves_charts(family, size, metric, mean, std, styles)
    return curves_figure(charts, title)


def curves_figure(
    charts: Sequence[Chart], title: str, size: tuple[float, float] = (10.0, 7.4)
) -> Figure:
    """Metric charts against ensemble size as 2 × 2 panels, ± std bands clipped to each metric's
    range; the legend is the first chart's (in its first panel, or below all panels when the
    chart has compact `keys`)."""
    fig = new_figure(*size)
    axes = fig.subplots(2, 2).ravel()
    for ax, chart in zip(axes, charts):
        artists = draw_chart(ax, chart, lw=1.8)
        if ax is axes[0]:
            handles = legend_handles(chart, artists)
            if chart.keys:
                fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=SMALL)
            else:
                ax.legend(handles=handles, fontsize=SMALL, loc="lower right")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=TITLE)
    return fig


SPLIT_LINES = {"train": LineStyle.SOLID, "val": LineStyle.DOTTED, "test": LineStyle.DASHED}


def training_curves_charts(
    member: np.ndarray, epoch: np.ndarray, curves: Mapping[str, np.ndarray]
) -> list[Chart]:
    """Loss and accuracy (%) against epoch: one series per member and split, in the member's
    colour and the split's line style (train solid, val dotted, test dashed); the legend keys
    name the members' colours and the splits' styles.

    member, epoch: [rows]; curves: e.g. {"train_loss": [rows], "test_acc": [rows], ...} with NaN
    where a value does not exist (epoch 0 has no training loss).
    """
    member, epoch = np.asarray(member, dtype=int), np.asarray(epoch, dtype=int)
    members = np.unique(member)
    present = [s for s in SPLIT_LINES if any(f"{s}_{k}" in curves for k in ("loss", "acc"))]
    keys = [
        Series(f"member {m}", [], [], color=hex_color(member_color(int(m))), marker=Marker.NONE)
        for m in members
    ]
    keys += [
        Series(s, [], [], color="#000000", line=SPLIT_LINES[s], marker=Marker.NONE) for s in present
    ]
    charts = []
    for kind, title, ylabel, scale in (
        ("loss", "Loss", "cross-entropy loss (nats)", 1.0),
        ("acc", "Accuracy", "accuracy (%)", 100.0),
    ):
        series = []
        for split in present:
            values = curves.get(f"{split}_{kind}")
            if values is None:
                continue
            v = np.asarray(values, dtype=float) * scale
            for m in members:
                rows = np.flatnonzero(member == m)
                rows = rows[np.argsort(epoch[rows], kind="stable")]
                rows = rows[np.isfinite(v[rows])]
                if rows.size:
                    series.append(
                        Series(
                            f"member {m} {split}",
                            [int(e) for e in epoch[rows]],
                            points(sig(x, 5) if scale != 1 else sig(x) for x in v[rows]),
                            color=hex_color(member_color(int(m))),
                            labels=[f"m{m} e{e} {split}" for e in epoch[rows]],
                            line=SPLIT_LINES[split],
                            marker=Marker.NONE,
                        )
                    )
        charts.append(Chart(ChartKind.LINE, "epoch", ylabel, series, keys=keys, title=title))
    return charts


def training_curves_figure(
    member: np.ndarray,
    epoch: np.ndarray,
    curves: Mapping[str, np.ndarray],
) -> Figure:
    """`training_curves_charts` drawn side by side (see there)."""
    return training_figure(training_curves_charts(member, epoch, curves))


def training_figure(charts: Sequence[Chart]) -> Figure:
    """Loss and accuracy panels side by side, one legend (members' colours, splits' styles)."""
    fig = new_figure(11.0, 4.6)
    axes = fig.subplots(1, len(charts))
    for ax, chart in zip(np.atleast_1d(axes), charts):
        draw_chart(ax, chart, lw=1.4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = legend_handles(charts[0], [])
    fig.legend(handles=handles, loc="outside right center", fontsize=SMALL)
    return fig


def member_series(
    members: Sequence[int],
    epochs: Sequence[int],
    values: np.ndarray,
    *,
    suffix: str = "",
    scale: float = 1.0,
    line: LineStyle = LineStyle.SOLID,
    marker: Marker = Marker.CIRCLE,
) -> list[Series]:
    """values [M, E] against epoch, one series per member in its member colour."""
    return [
        Series(
            f"member {m}{suffix}",
            [int(e) for e in epochs],
            points(sig(v * scale, 5) for v in values[i]),
            color=hex_color(member_color(int(m))),
            labels=[f"m{m} e{e}" for e in epochs],
            line=line,
            marker=marker,
        )
        for i, m in enumerate(members)
    ]


def distance_from_init(
    distance: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> np.ndarray:
    """[M, E]: the L2 distance of every snapshot from its own member's first snapshot.

    distance: [M·E, M·E] (weights/distance.npy), rows ordered member-major.
    """
    distance = np.asarray(distance, dtype=float)
    M, E = len(members), len(epochs)
    if distance.shape != (M * E, M * E):
        raise ValueError(f"distance has shape {distance.shape}, expected {(M * E, M * E)}")
    # row i·E: member i's first snapshot against its own trajectory
    return np.array([distance[i * E, i * E : (i + 1) * E] for i in range(M)])


def distance_lines_chart(
    from_init: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> Chart:
    """`from_init` [M, E] (`distance_from_init`) against epoch, one line per member."""
    return Chart(
        ChartKind.LINE,
        "epoch",
        f"L2 distance from epoch-{epochs[0]} weights",
        member_series(members, epochs, from_init),
        title="Distance travelled from initialisation",
    )


def distance_from_init_chart(
    distance: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> Chart:
    """L2 distance of every snapshot from its own member's first snapshot, against epoch.

    distance: [M·E, M·E] (weights/distance.npy), rows ordered member-major.
    """
    return distance_lines_chart(distance_from_init(distance, members, epochs), members, epochs)


def distance_from_init_figure(
    distance: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> Figure:
    """`distance_from_init_chart` drawn (see there)."""
    chart = distance_from_init_chart(distance, members, epochs)
    return chart_figure(chart, (7.0, 4.6), legend_cols=2 if len(members) > 5 else 1)


def agreement_lines(
    agreement: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Along each trajectory: the agreement [M, E] with its own member's final predictions and
    the mean agreement [M, E] with the other members' (None with one member).

    agreement: [M·E, M] (functions/agreement_with_final.npy), rows ordered member-major.
    """
    agreement = np.asarray(agreement, dtype=float)
    M, E = len(members), len(epochs)
    if agreement.shape != (M * E, M):
        raise ValueError(f"agreement has shape {agreement.shape}, expected {(M * E, M)}")
    blocks = [agreement[i * E : (i + 1) * E] for i in range(M)]
    own = np.array([b[:, i] for i, b in enumerate(blocks)])
    if M < 2:
        return own, None
    others = np.array([np.delete(b, i, axis=1).mean(axis=1) for i, b in enumerate(blocks)])
    return own, others


def agreement_lines_chart(
    own: np.ndarray, others: np.ndarray | None, members: Sequence[int], epochs: Sequence[int]
) -> Chart:
    """`agreement_lines` drawn in %: own final solid, the other members' (mean) dashed."""
    series = member_series(
        members, epochs, own, suffix=": own final", scale=100.0, marker=Marker.NONE
    )
    if others is not None:
        series += member_series(
            members,
            epochs,
            others,
            suffix=": other members' finals (mean)",
            scale=100.0,
            line=LineStyle.DASHED,
            marker=Marker.NONE,
        )
    return Chart(
        ChartKind.LINE,
        "epoch",
        "agreement with final predictions (%)",
        series,
        title="Where each trajectory goes in function space",
    )


def agreement_with_final_chart(
    agreement: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> Chart:
    """Along each trajectory: agreement (%) with its own final prediction (solid) and the mean
    agreement with the other members' final predictions (dashed), against epoch.

    agreement: [M·E, M] (functions/agreement_with_final.npy), rows ordered member-major.
    """
    return agreement_lines_chart(*agreement_lines(agreement, members, epochs), members, epochs)


def agreement_with_final_figure(
    agreement: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> Figure:
    """`agreement_with_final_chart` drawn (see there)."""
    chart = agreement_with_final_chart(agreement, members, epochs)
    return chart_figure(chart, (7.0, 4.6), legend_cols=2 if len(members) > 2 else 1)


def figure_bytes(fig: Figure, fmt: str, scale: float = 1) -> bytes:
    """Render `fig` as "png" (at `scale` × DPI: 2 for high-density screens) or "pdf"; returns the
    file's bytes."""
    if fmt not in ("png", "pdf"):
        raise choice_error("figure format", fmt, ("png", "pdf"))
    buf = io.BytesIO()
    # Fixed metadata keeps PDFs byte-identical across runs (no creation date).
    meta = {"Software": None} if fmt == "png" else {"CreationDate": None, "Producer": None}
    fig.savefig(buf, format=fmt, dpi=DPI * scale, metadata=meta)
    return buf.getvalue()


def render_figure(fig: Figure, scale: float = 1) -> dict[str, bytes]:
    """{"png": ..., "pdf": ...} of `fig` (the PNG at `scale` × DPI); the PDF reuses the layout
    computed for the PNG.

    Constrained layout is about half the cost of a figure, and repeating it can move artists by
    a hair, so the layout is frozen after the first render: both files show the same layout.
    """
    png = figure_bytes(fig, "png", scale)
    fig.set_layout_engine("none")
    return {"png": png, "pdf": figure_bytes(fig, "pdf")}


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write `<stem>.png` and `<stem>.pdf` atomically; return both paths."""
    stem = Path(stem)
    paths = []
    for fmt, data in render_figure(fig).items():
        path = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write_bytes(path, data)
        paths.append(path)
    return paths


__all__ = [
    "METRIC_DOMAIN",
    "agreement_with_final_chart",
    "chart_figure",
    "clip_to_domain",
    "curves_figure",
    "distance_from_init_chart",
    "distance_from_init_figure",
    "ensemble_curves_charts",
    "ensemble_curves_figure",
    "family_styles",
    "figure_bytes",
    "grid_axes",
    "member_color",
    "member_series",
    "render_figure",
    "save_figure",
    "training_curves_charts",
    "training_curves_figure",
    "training_figure",
    "trajectory_chart",
]
