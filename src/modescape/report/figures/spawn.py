"""Figures of spawned children (instability analysis, Frankle et al. 2020, arXiv:1912.05671):
barrier and disagreement against the spawn point, with the within-trajectory and
across-initialisation levels as reference lines and the onset of stability marked (an
`Instability` description: its charts and the CSV of every measure); and the
children's function-space trajectories beside the parent's (a `SpawnTrajectories` description
drawing both its PNG/PDF and its CSV).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from modescape.report.base import (
    Chart,
    ChartKind,
    Guide,
    LineStyle,
    Marker,
    Series,
    Table,
    symlog,
)
from modescape.report.figures.chart import draw_chart, legend_handles
from modescape.report.wording import frac, sig
from modescape.results import PairLevel
from modescape.store.schema import InstabilityPoint, InstabilitySummary

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


MEASURES = ("error_barrier", "loss_barrier", "disagreement", "js", "cosine", "l2")


@dataclass(frozen=True, eq=False)
class Instability:
    """The measures between spawned children at each spawn point and the two references (the
    instability summary's levels): the barrier and disagreement panels (`instability_charts`)
    and the CSV of every measure, one row per spawn point then per reference."""

    points: list[InstabilityPoint]
    within: PairLevel | None
    across: PairLevel | None
    threshold: float
    onset: float | None

    @classmethod
    def from_summary(cls, s: InstabilitySummary) -> Instability:
        threshold = float(s.settings.get("threshold", 0.02))
        return cls(list(s.points), s.within, s.across, threshold, s.onset)

    @cached_property
    def _charts(self) -> list[Chart]:
        ref = {
            name: None if lv is None else {"error_barrier": lv.error_barrier,
                                           "disagreement": lv.disagreement}
            for name, lv in (("within", self.within), ("across", self.across))
        }  # fmt: skip
        values = {
            "error_barrier": [p.level.error_barrier for p in self.points],
            "disagreement": [p.level.disagreement for p in self.points],
        }
        at = [p.at for p in self.points]
        return instability_charts(
            at, values, ref["within"], ref["across"], self.threshold, self.onset
        )

    def charts(self) -> list[Chart]:
        return self._charts

    def figure(self) -> Figure:
        return instability_chart_figure(self.charts())

    def table(self, name: str, caption: str = "") -> Table:
        """One row per spawn point, then the references: every measure (fractions to 4
        decimals, L2 to 4 digits), the largest barrier, the pairs and the children's mean
        accuracy."""
        header = ["group", "spawn_epoch", "spawn_step", *MEASURES, "error_barrier_max", "pairs",
                  "mean_child_accuracy"]  # fmt: skip
        groups: list[tuple[str, float | None, int | None, PairLevel | None]] = [
            (f"spawn {p.at:g}", p.at, p.step, p.level) for p in self.points
        ]
        groups += [("within a trajectory", None, None, self.within)]
        groups += [("across initialisations", None, None, self.across)]
        rows: list[list[object]] = []
        for label, at, step, lv in groups:
            if lv is None:
                continue
            numbers = [sig(lv.l2) if k == "l2" else frac(getattr(lv, k)) for k in MEASURES]
            rows.append([label, at, step, *numbers, frac(lv.error_barrier_max), lv.pairs,
                         frac(float(np.mean(lv.accuracy)))])  # fmt: skip
        return Table(name, header, rows, caption)


def _linthresh(x: np.ndarray) -> float:
    """The linear range of the symlog axis: the smallest positive spawn point (at most 1)."""
    positive = x[x > 0]
    return float(min(1.0, positive.min())) if len(positive) else 1.0


@dataclass(frozen=True, eq=False)
class SpawnTrajectories:
    """The parent's trajectory (black) and every child's (one colour per spawn point) in one
    joint 2-D embedding. `coords[K, 2]`; `index[K, 3]`: spawn point (-1 = parent), child, epoch;
    a circle marks each trajectory's first point, a square its last."""

    coords: np.ndarray
    index: np.ndarray
    method: str = "PCA"

    def trajectories(self) -> list[tuple[tuple[int, int], np.ndarray]]:
        """((spawn point, child), rows in epoch order) of each trajectory, the parent first."""
        out = []
        for key in sorted({(int(p), int(c)) for p, c in self.index[:, :2]}):
            rows = np.flatnonzero((self.index[:, 0] == key[0]) & (self.index[:, 1] == key[1]))
            out.append((key, rows[np.argsort(self.index[rows, 2])]))
        return out

    def figure(self) -> Figure:
        fig = Figure(figsize=(5.6, 4.6), dpi=DPI, layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        points = sorted({int(p) for p in self.index[:, 0] if p >= 0})
        cmap = colormaps["viridis"]
        for key, rows in self.trajectories():
            parent = key[0] < 0
            color = "black" if parent else cmap(points.index(key[0]) / max(1, len(points) - 1))
            label = (
                "parent"
                if parent
                else (f"children of spawn point {key[0]}" if key[1] == 0 else None)
            )
            xy = self.coords[rows]
            lw, alpha, z = (2.2, 0.9, 3) if parent else (1.0, 0.75, 2)
            ax.plot(xy[:, 0], xy[:, 1], "-", color=color, lw=lw, alpha=alpha, label=label, zorder=z)
            ax.plot(*xy[0], "o", color=color, ms=4)
            ax.plot(*xy[-1], "s", color=color, ms=5)
        ax.set_title(f"Function-space trajectories ({self.method})", fontsize=LABEL + 1)
        ax.set_xlabel(f"{self.method} 1", fontsize=LABEL)
        ax.set_ylabel(f"{self.method} 2", fontsize=LABEL)
        ax.tick_params(labelsize=SMALL)
        ax.legend(fontsize=SMALL, loc="best")
        return fig

    def table(self, name: str, caption: str = "") -> Table:
        """Every point drawn, trajectory by trajectory in epoch order: the parent's (spawn
        point and child blank), then each child's."""
        rows = []
        for (point, child), idx in self.trajectories():
            parent = point < 0
            for i in idx:
                rows.append([
                    "parent" if parent else "child", None if parent else point,
                    None if parent else child, int(self.index[i, 2]),
                    sig(self.coords[i, 0]), sig(self.coords[i, 1]),
                ])  # fmt: skip
        header = ["trajectory", "spawn_point", "child", "epoch", "x", "y"]
        return Table(name, header, rows, caption)


def spawn_trajectories(
    coords: np.ndarray, index: np.ndarray, method: str = "PCA"
) -> SpawnTrajectories:
    """The trajectories of instability/trajectories.npy and trajectory_index.npy."""
    return SpawnTrajectories(
        np.asarray(coords, dtype=float), np.asarray(index, dtype=np.int64), method
    )
