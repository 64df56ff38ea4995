"""Figures of spawned children (instability analysis, Frankle et al. 2020, arXiv:1912.05671):
barrier and disagreement against the spawn point, with the within-trajectory and
across-initialisation levels as reference lines and the onset of stability marked; and the
children's function-space trajectories beside the parent's. Pure functions of arrays returning a
`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from modescape.report.base import Chart, ChartKind, Guide, LineStyle, Marker, Series, symlog
from modescape.report.figures.chart import draw_chart, legend_handles

DPI = 120
LABEL, SMALL = 10, 8
WITHIN_COLOR, ACROSS_COLOR, CHILD_COLOR = "#d95f02", "#1f3b73", "#1b9e77"
# panel key -> (title, y label, scale to drawn units)
PANELS = {
    "error_barrier": ("Error barrier between children", "error barrier (%)", 100.0),
    "disagreement": ("Disagreement between children", "disagreement (% of test points)", 100.0),
}


def instability_charts(
    at: Sequence[float],
    values: Mapping[str, Sequence[float]],
    within: Mapping[str, float] | None,
    across: Mapping[str, float] | None,
    threshold: float = 0.02,
    onset: float | None = None,
) -> list[Chart]:
    """One chart per key of `PANELS` present in `values` ({"error_barrier": [points], ...})
    against the spawn epoch `at`: the children's curve, each quantity's reference levels
    (`within`, `across`: dashed), for the barrier the stability threshold (dotted), and the
    `onset` of stability (an epoch or None) as a vertical guide in every panel.

    The x axis is symmetric-log, so that spawn points at fractions of an epoch stay apart from
    epoch 0; the y axis starts at 0 (or below, for a negative value)."""
    x = [float(v) for v in at]
    x_scale = symlog(_linthresh(np.asarray(x, dtype=float)))
    guides = [] if onset is None else [Guide("x", float(onset), f"stable from epoch {onset:g}")]
    charts = []
    for key in [k for k in PANELS if k in values]:
        title, ylabel, scale = PANELS[key]
        series = [
            Series(
                "children of one spawn point",
                x,
                [scale * float(v) for v in values[key]],
                color=CHILD_COLOR,
                line=LineStyle.SOLID,
                marker=Marker.CIRCLE,
            )
        ]
        for ref, color, name in ((within, WITHIN_COLOR, "within a trajectory"),
                                 (across, ACROSS_COLOR, "across initialisations")):  # fmt: skip
            if ref is not None and key in ref:
                series.append(
                    Series(
                        name,
                        x,
                        [scale * ref[key]] * len(x),
                        color=color,
                        line=LineStyle.DASHED,
                        marker=Marker.NONE,
                    )
                )
        if key == "error_barrier":
            series.append(
                Series(
                    "stable below this",
                    x,
                    [scale * threshold] * len(x),
                    color="#666666",
                    line=LineStyle.DOTTED,
                    marker=Marker.NONE,
                )
            )
        lowest = np.nanmin(series[0].y) if len(x) else 0.0
        charts.append(
            Chart(
                ChartKind.LINE,
                "spawn point (epochs of the parent's training)",
                ylabel,
                series,
                title=title,
                x_scale=x_scale,
                y_range=(min(0.0, float(lowest)), None),
                guides=list(guides),
            )
        )
    return charts


def instability_figure(
    at: Sequence[float],
    values: Mapping[str, Sequence[float]],
    within: Mapping[str, float] | None,
    across: Mapping[str, float] | None,
    onset: float | None,
    threshold: float = 0.02,
) -> Figure:
    """`instability_charts` drawn side by side (see there)."""
    return instability_chart_figure(
        instability_charts(at, values, within, across, threshold, onset)
    )


def instability_chart_figure(charts: Sequence[Chart]) -> Figure:
    """The charts side by side, the legend (series, threshold, onset) in the first panel."""
    fig = Figure(figsize=(5.0 * len(charts), 3.6), dpi=DPI, layout="constrained")
    for i, chart in enumerate(charts):
        ax = fig.add_subplot(1, len(charts), i + 1)
        artists = draw_chart(ax, chart, lw=1.4)
        ax.title.set_fontsize(LABEL + 1)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=SMALL)
        if i == 0:
            ax.legend(handles=legend_handles(chart, artists), fontsize=SMALL, loc="best")
    return fig


def _linthresh(x: np.ndarray) -> float:
    """The linear range of the symlog axis: the smallest positive spawn point (at most 1)."""
    positive = x[x > 0]
    return float(min(1.0, positive.min())) if len(positive) else 1.0


def spawn_trajectories_figure(coords: np.ndarray, index: np.ndarray, method: str = "PCA") -> Figure:
    """The parent's trajectory (black) and every child's (one colour per spawn point) in one
    joint 2-D embedding. `coords[K, 2]`; `index[K, 3]`: spawn point (-1 = parent), child, epoch;
    a circle marks each trajectory's first point, a square its last."""
    coords, index = np.asarray(coords, dtype=float), np.asarray(index, dtype=np.int64)
    fig = Figure(figsize=(5.6, 4.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    points = sorted({int(p) for p in index[:, 0] if p >= 0})
    cmap = colormaps["viridis"]
    for key in sorted({(int(p), int(c)) for p, c in index[:, :2]}):
        rows = np.flatnonzero((index[:, 0] == key[0]) & (index[:, 1] == key[1]))
        rows = rows[np.argsort(index[rows, 2])]
        parent = key[0] < 0
        color = "black" if parent else cmap(points.index(key[0]) / max(1, len(points) - 1))
        label = (
            "parent" if parent else (f"children of spawn point {key[0]}" if key[1] == 0 else None)
        )
        xy = coords[rows]
        ax.plot(xy[:, 0], xy[:, 1], "-", color=color, lw=2.2 if parent else 1.0,
                alpha=0.9 if parent else 0.75, label=label, zorder=3 if parent else 2)  # fmt: skip
        ax.plot(*xy[0], "o", color=color, ms=4)
        ax.plot(*xy[-1], "s", color=color, ms=5)
    ax.set_title(f"Function-space trajectories ({method})", fontsize=LABEL + 1)
    ax.set_xlabel(f"{method} 1", fontsize=LABEL)
    ax.set_ylabel(f"{method} 2", fontsize=LABEL)
    ax.tick_params(labelsize=SMALL)
    ax.legend(fontsize=SMALL, loc="best")
    return fig
