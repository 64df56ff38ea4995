"""Figures of the loss-landscape study (Fort et al. 2019, the loss-landscape plane): planes
through three weight vectors (one `LandscapePlane` description each, drawing both the PNG/PDF
and the CSV) and linear paths between two (`LinearPaths`: its charts and its CSV). Member i is
always in `member_color(i)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

from modescape.report.base import Chart, ChartKind, LineStyle, Marker, Series, Table
from modescape.report.figures.analysis import (
    SMALL,
    TITLE,
    grid_axes,
    member_color,
    new_figure,
)
from modescape.report.figures.chart import draw_chart, hex_color, legend_handles, points
from modescape.report.wording import frac, sig

PATH_KIND_COLORS = {
    "across members": "#1f3b73",
    "within trajectory": "#d95f02",
    "aligned": "#1b9e77",
    "other": "#666666",  # a path from or to the origin
}


# ---- loss landscape --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PlanePanel:
    """One map of a plane: `what` is "loss" (log colour scale), "acc" (0-100%), "agr" (the
    agreement with anchor `refs[0]`, on `limits`) or "diff" (agreement with `refs[0]` minus
    with `refs[1]`, on the symmetric `limits`)."""

    title: str
    what: str
    colorbar_label: str
    limits: tuple[float, float] | None = None
    refs: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class PlaneTrajectories:
    """Every snapshot projected onto the plane: member, epoch, a, b [snapshots]."""

    member: np.ndarray
    epoch: np.ndarray
    a: np.ndarray
    b: np.ndarray


@dataclass(frozen=True, eq=False)
class LandscapePlane:
    """A plane through three weight vectors as data: grid coordinates a [R], b [R]; test loss,
    accuracy and the agreement with each anchor that has one ([R, R] fractions indexed [b, a]);
    the anchors (names, coords [n, 2] as (a, b), their loss and accuracy when recorded); the
    projected trajectories; the maps drawn (`panels`) and the figure's title."""

    a: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    agreements: dict[str, np.ndarray]
    anchor_names: list[str]
    anchor_coords: np.ndarray
    anchor_loss: list[float | None]
    anchor_accuracy: list[float | None]
    trajectories: PlaneTrajectories | None
    panels: list[PlanePanel]
    title: str = ""

    def values(self, panel: PlanePanel) -> np.ndarray:
        """A panel's map in the units it is drawn in (accuracy and agreements in %)."""
        if panel.what == "loss":
            return self.loss
        if panel.what == "acc":
            return self.accuracy * 100
        if panel.what == "diff":
            first, second = panel.refs
            diff: np.ndarray = self.agreements[first] * 100 - self.agreements[second] * 100
            return diff
        agreement: np.ndarray = self.agreements[panel.refs[0]] * 100
        return agreement

    def figure(self) -> Figure:
        """Filled contours of each panel, the projected trajectories (circle: first snapshot)
        and the anchors (stars) on each."""
        n = len(self.panels)
        ncols = 3 if n in (3, 5, 6) else 2
        rows = -(-n // ncols)
        fig = new_figure(5.0 * ncols, 4.3 * rows + 0.5)
        A, B = np.meshgrid(self.a, self.b)
        for ax, panel in zip(grid_axes(fig, n, ncols), self.panels):
            _plane_panel(fig, ax, A, B, self.values(panel), panel)
            if self.trajectories is not None:
                _draw_trajectories(ax, self.trajectories)
            _draw_anchors(ax, self.anchor_names, self.anchor_coords)
            ax.set_xlim(self.a.min(), self.a.max())
            ax.set_ylim(self.b.min(), self.b.max())
            ax.set_aspect("equal")
            ax.set_title(panel.title, fontsize=TITLE - 1)
            ax.set_xlabel("a (along u)", fontsize=SMALL)
            ax.set_ylabel("b (along v)", fontsize=SMALL)
        if self.title:
            fig.suptitle(self.title, fontsize=TITLE)
        return fig

    def table(self, name: str, caption: str = "") -> Table:
        """Everything drawn, long form: kind "grid" (a, b, loss, accuracy, agreement with each
        anchor, the first two's difference), "anchor" (its coordinates, loss and accuracy) and
        "snapshot" (every projected snapshot, name m<i> e<k>)."""
        names = list(self.agreements)
        header = ["kind", "name", "a", "b", "loss", "accuracy", *(f"agreement_{n}" for n in names)]
        if len(names) >= 2:
            header.append(f"agreement_{names[0]}_minus_{names[1]}")
        rows: list[list[object]] = []
        for j, bj in enumerate(self.b):
            for i, ai in enumerate(self.a):
                agr = [float(self.agreements[n][j, i]) for n in names]
                row: list[object] = ["grid", "", sig(ai), sig(bj), sig(self.loss[j, i]),
                       frac(self.accuracy[j, i]), *(frac(v) for v in agr)]  # fmt: skip
                if len(names) >= 2:
                    row.append(frac(agr[0] - agr[1]))
                rows.append(row)
        blank = [None] * (len(header) - 6)
        for k, n in enumerate(self.anchor_names):
            x, y = self.anchor_coords[k]
            loss, acc = self.anchor_loss[k], self.anchor_accuracy[k]
            rows.append(["anchor", n, sig(x), sig(y), sig(loss), frac(acc), *blank])
        t = self.trajectories
        if t is not None:
            for k in np.lexsort((t.epoch, t.member)):
                rows.append(["snapshot", f"m{t.member[k]} e{t.epoch[k]}", sig(t.a[k]),
                             sig(t.b[k]), None, None, *blank])  # fmt: skip
        return Table(name, header, rows, caption)


def landscape_plane(
    a: np.ndarray,
    b: np.ndarray,
    loss: np.ndarray,
    accuracy: np.ndarray,
    agreements: Mapping[str, np.ndarray],
    anchors: Mapping[str, Any],
    trajectories: Mapping[str, np.ndarray] | None = None,
    *,
    title: str = "",
) -> LandscapePlane:
    """The plane of landscape/<plane>/: loss (log colour scale), accuracy, the difference of
    the agreements with the first two anchors that have them (diverging scale) and each
    agreement (one data-driven range shared by all).

    a [R], b [R]: grid coordinates; loss, accuracy and agreements[name]: [R, R] indexed [b, a].
    anchors: anchors.json (names, coords [n, 2] as (a, b), optionally loss and accuracy).
    trajectories: columns member, epoch, a, b of every snapshot projected onto the plane.
    """
    agr = {n: np.asarray(v, dtype=float) for n, v in agreements.items()}
    panels = [
        PlanePanel("Test loss", "loss", "cross-entropy loss (nats, log scale)"),
        PlanePanel("Test accuracy", "acc", "accuracy (%)"),
    ]
    names = list(agr)
    if len(names) >= 2:
        # The difference is what shows "each valley agrees with its own optimum": two members
        # at ~90% agree on ~87% of points, so side by side on 0-100% the maps look the same.
        first, second = names[:2]
        lim = agreement_difference_limit(agr[first] * 100 - agr[second] * 100)
        label = f"agreement with {first} − with {second}"
        panels.append(PlanePanel(f"Agreement with {first} − with {second}", "diff",
                                 f"{label} (points)", (-lim, lim), (first, second)))  # fmt: skip
    shared = agreement_range([v * 100 for v in agr.values()])
    for name in names:
        panels.append(PlanePanel(f"Agreement with {name}", "agr",
                                 f"agreement with {name} (%)", shared, (name,)))  # fmt: skip
    coords = np.asarray(anchors["coords"], dtype=float).reshape(-1, 2)
    n = len(coords)
    traj = None
    if trajectories is not None:
        traj = PlaneTrajectories(
            np.asarray(trajectories["member"], dtype=int),
            np.asarray(trajectories["epoch"], dtype=int),
            np.asarray(trajectories["a"], dtype=float),
            np.asarray(trajectories["b"], dtype=float),
        )
    return LandscapePlane(
        np.asarray(a, dtype=float),
        np.asarray(b, dtype=float),
        np.asarray(loss, dtype=float),
        np.asarray(accuracy, dtype=float),
        agr,
        list(anchors["names"]),
        coords,
        list(anchors.get("loss", [None] * n)),
        list(anchors.get("accuracy", [None] * n)),
        traj,
        panels,
        title,
    )


def agreement_difference_limit(diff: np.ndarray) -> float:
    """Half-width (points) of the symmetric colour scale of an agreement difference: the largest
    |difference| on the plane, at least 1 point so a flat map is not all noise."""
    finite = np.abs(diff[np.isfinite(diff)])
    return max(float(finite.max()) if finite.size else 1.0, 1.0)


def agreement_range(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """One data-driven range (%) for the agreement maps of a plane, shared by all of them,
    widened to at least 5 points."""
    finite = np.concatenate([m[np.isfinite(m)].ravel() for m in maps]) if maps else np.array([])
    if not finite.size:
        return 0.0, 100.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 5:
        mid = (lo + hi) / 2
        lo, hi = max(0.0, mid - 2.5), min(100.0, mid + 2.5)
    return lo, hi


def _plane_panel(
    fig: Figure, ax: Axes, A: np.ndarray, B: np.ndarray, Z: np.ndarray, panel: PlanePanel
) -> None:
    """Filled contours of one quantity over the plane: loss on a log scale, accuracy on 0-100%,
    agreement on `limits` (data-driven), an agreement difference on a diverging scale."""
    what, limits = panel.what, panel.limits
    norm: Normalize
    if what == "loss":
        finite = Z[np.isfinite(Z) & (Z > 0)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (1e-3, 1.0)
        hi = max(hi, lo * 1.01)
        levels = np.geomspace(lo, hi, 25)
        norm, cmap = LogNorm(lo, hi), "viridis"
        Z = np.clip(Z, lo, hi)
    elif what in ("agr", "diff") and limits is not None:
        lo, hi = limits
        levels, norm = np.linspace(lo, hi, 21), Normalize(lo, hi)
        cmap = "RdBu_r" if what == "diff" else "cividis"
        Z = np.clip(Z, lo, hi)
    else:
        levels, norm = np.linspace(0, 100, 21), Normalize(0, 100)
        cmap = "magma" if what == "acc" else "cividis"
    filled = ax.contourf(A, B, Z, levels=levels, norm=norm, cmap=cmap)
    ax.contour(A, B, Z, levels=levels[::4], colors="white", linewidths=0.4, alpha=0.6)
    cbar = fig.colorbar(filled, ax=ax, shrink=0.9)
    cbar.set_label(panel.colorbar_label, fontsize=SMALL)
    if what in ("agr", "diff"):  # round values, not the contour levels
        cbar.set_ticks(MaxNLocator(6).tick_values(*levels[[0, -1]]))
        cbar.ax.set_ylim(levels[0], levels[-1])
    if what == "loss":  # round values (1-2-5 steps), not the contour levels
        cbar.set_ticks(_log_ticks(levels[0], levels[-1]), labels=None)
        cbar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        cbar.ax.yaxis.set_minor_formatter(NullFormatter())


def _draw_anchors(ax: Axes, names: Sequence[str], coords: np.ndarray) -> None:
    ax.scatter(
        coords[:, 0],
        coords[:, 1],
        s=110,
        marker="*",
        color="white",
        edgecolor="black",
        linewidth=0.8,
        zorder=5,
    )
    for name, (x, y) in zip(names, coords):
        ax.annotate(
            name,
            (x, y),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=SMALL,
            color="black",
            zorder=6,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.75, "lw": 0},
        )


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 × powers of ten within [lo, hi] (at least the two ends when none fall inside)."""
    powers = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    ticks = [m * 10.0**p for p in powers for m in (1, 2, 5) if lo <= m * 10.0**p <= hi]
    return ticks if len(ticks) >= 2 else [lo, hi]


def _draw_trajectories(ax: Axes, t: PlaneTrajectories) -> None:
    for m in np.unique(t.member):
        rows = np.flatnonzero(t.member == m)
        rows = rows[np.argsort(t.epoch[rows], kind="stable")]
        c = member_color(int(m))
        ax.plot(t.a[rows], t.b[rows], "-", color=c, lw=1.4, zorder=3)
        ax.scatter(
            t.a[rows[:1]],
            t.b[rows[:1]],
            s=30,
            marker="o",
            facecolor="white",
            edgecolor=c,
            linewidth=1.5,
            zorder=4,
        )


@dataclass(frozen=True, eq=False)
class LinearPath:
    """One linear path θ(α) = (1−α)θ1 + αθ2: its name, kind ("across members" | "within
    trajectory" | "aligned" | "other"), test error (fraction) and loss at each α [P], and its
    barriers."""

    name: str
    kind: str
    alpha: np.ndarray
    error: np.ndarray
    loss: np.ndarray
    error_barrier: float
    loss_barrier: float

    @classmethod
    def from_mapping(cls, p: Mapping[str, Any]) -> LinearPath:
        """From {"name", "kind", "alpha", "error", "loss", "error_barrier", "loss_barrier"}."""
        return cls(
            str(p["name"]),
            str(p["kind"]),
            np.asarray(p["alpha"], dtype=float),
            np.asarray(p["error"], dtype=float),
            np.asarray(p["loss"], dtype=float),
            float(p["error_barrier"]),
            float(p["loss_barrier"]),
        )


def paths_charts(paths: Sequence[LinearPath | Mapping[str, Any]]) -> list[Chart]:
    """Test error (%) and loss along linear paths, one series per path: coloured by kind, line
    styles cycling within a kind; the names carry the barriers."""
    styles = (LineStyle.SOLID, LineStyle.DASHED, LineStyle.DOTTED)
    seen: dict[str, int] = {}
    error: list[Series] = []
    loss: list[Series] = []
    for i, path in enumerate(paths):
        p = path if isinstance(path, LinearPath) else LinearPath.from_mapping(path)
        c = hex_color(PATH_KIND_COLORS.get(p.kind, member_color(i)))
        ls = styles[seen.get(p.kind, 0) % len(styles)]
        seen[p.kind] = seen.get(p.kind, 0) + 1
        name = (
            f"{p.name} ({p.kind}; error barrier {100 * p.error_barrier:.1f} "
            f"points, loss barrier {p.loss_barrier:.3f})"
        )
        alpha = points(frac(x) for x in p.alpha)
        labels = [f"{p.name} α={x:.2f}" for x in alpha]
        for out, values in (
            (error, points(sig(100 * e, 5) for e in p.error)),
            (loss, points(sig(v, 5) for v in p.loss)),
        ):
            out.append(
                Series(name, alpha, values, color=c, labels=labels, line=ls, marker=Marker.NONE)
            )
    x_label = "α (0 = first endpoint, 1 = second)"
    ends = (0.0, 1.0)
    return [
        Chart(ChartKind.LINE, x_label, "test error (%)", error, title="Error along the path",
              x_range=ends),
        Chart(ChartKind.LINE, x_label, "test loss (nats)", loss, title="Loss along the path",
              x_range=ends),
    ]  # fmt: skip


@dataclass(frozen=True, eq=False)
class LinearPaths:
    """The landscape's linear paths as one figure: error and loss panels (`paths_charts`) and
    the CSV of the same points."""

    paths: list[LinearPath]

    @cached_property
    def _charts(self) -> list[Chart]:
        return paths_charts(self.paths)

    def charts(self) -> list[Chart]:
        return self._charts

    def figure(self) -> Figure:
        return paths_chart_figure(self.charts())

    def table(self, name: str, caption: str = "") -> Table:
        """One row per (path, α): path, kind, alpha and error (4 decimals), loss (4 digits)."""
        rows = [
            [p.name, p.kind, frac(x), frac(e), sig(v)]
            for p in self.paths
            for x, e, v in zip(p.alpha, p.error, p.loss)
        ]
        return Table(name, ["path", "kind", "alpha", "error", "loss"], rows, caption)


def paths_figure(paths: Sequence[LinearPath | Mapping[str, Any]]) -> Figure:
    """`paths_charts` drawn side by side (see there)."""
    return paths_chart_figure(paths_charts(paths))


def paths_chart_figure(charts: Sequence[Chart]) -> Figure:
    """The error and loss charts of linear paths side by side, one legend below."""
    fig = new_figure(12.0, 4.8)
    artists = []
    for ax, chart in zip(fig.subplots(1, len(charts)), charts):
        artists.append(draw_chart(ax, chart, lw=1.7))
        ax.grid(alpha=0.3)
    n = len(charts[0].series)
    fig.legend(
        handles=legend_handles(charts[0], artists[0]),
        loc="outside lower center",
        fontsize=SMALL,
        ncols=1 if n > 3 else 2,
    )
    return fig
