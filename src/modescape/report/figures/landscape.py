"""Figures of the loss-landscape study (Fort et al. 2019, the loss-landscape plane): planes
through three weight vectors and linear paths between two. Same rules as `report.figures.analysis`:
pure functions of arrays returning a `matplotlib.figure.Figure`, member i always in
`member_color(i)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

from modescape.report.base import Chart, ChartKind, LineStyle, Marker, Series
from modescape.report.figures.analysis import (
    SMALL,
    TITLE,
    grid_axes,
    member_color,
    new_figure,
)
from modescape.report.figures.chart import draw_chart, hex_color, legend_handles
from modescape.report.wording import frac, sig

PATH_KIND_COLORS = {
    "across members": "#1f3b73",
    "within trajectory": "#d95f02",
    "aligned": "#1b9e77",
    "other": "#666666",  # a path from or to the origin
}


# ---- loss landscape --------------------------------------------------------------------------
def landscape_plane_figure(
    a: np.ndarray,
    b: np.ndarray,
    loss: np.ndarray,
    accuracy: np.ndarray,
    agreements: Mapping[str, np.ndarray],
    anchor_names: Sequence[str],
    anchor_coords: np.ndarray,
    trajectories: Mapping[str, np.ndarray] | None = None,
    *,
    title: str = "",
) -> Figure:
    """Loss (log colour scale), accuracy, the difference of the agreements with the first two
    anchors that have them (diverging scale) and each agreement (shared data-driven range).

    a [R], b [R]: grid coordinates; loss, accuracy and agreements[name]: [R, R] indexed [b, a].
    anchor_coords: [3, 2] (a, b) of `anchor_names`. trajectories: columns member, epoch, a, b of
    every snapshot projected onto the plane, drawn as lines in member colours (circle = first).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    loss, accuracy = np.asarray(loss, dtype=float), np.asarray(accuracy, dtype=float)
    coords = np.asarray(anchor_coords, dtype=float).reshape(-1, 2)
    panels: list[tuple[str, np.ndarray, str, str, tuple[float, float] | None]] = [
        ("Test loss", loss, "cross-entropy loss (nats, log scale)", "loss", None),
        ("Test accuracy", accuracy * 100, "accuracy (%)", "acc", None),
    ]
    agr = {n: np.asarray(v, dtype=float) * 100 for n, v in agreements.items()}
    names = list(agr)
    if len(names) >= 2:
        # The difference is what shows "each valley agrees with its own optimum": two members
        # at ~90% agree on ~87% of points, so side by side on 0-100% the maps look the same.
        first, second = names[:2]
        diff = agr[first] - agr[second]
        lim = agreement_difference_limit(diff)
        panels.append(
            (
                f"Agreement with {first} − with {second}",
                diff,
                f"agreement with {first} − with {second} (points)",
                "diff",
                (-lim, lim),
            )
        )
    shared = agreement_range(list(agr.values()))
    for name, values in agr.items():
        panels.append(
            (f"Agreement with {name}", values, f"agreement with {name} (%)", "agr", shared)
        )
    n = len(panels)
    ncols = 3 if n in (3, 5, 6) else 2
    rows = -(-n // ncols)
    fig = new_figure(5.0 * ncols, 4.3 * rows + 0.5)
    axes = grid_axes(fig, n, ncols)
    A, B = np.meshgrid(a, b)
    for ax, (panel, Z, cbar_label, what, limits) in zip(axes, panels):
        _plane_panel(fig, ax, A, B, Z, cbar_label, what, limits)
        if trajectories is not None:
            _draw_trajectories(ax, trajectories)
        _draw_anchors(ax, anchor_names, coords)
        ax.set_xlim(a.min(), a.max())
        ax.set_ylim(b.min(), b.max())
        ax.set_aspect("equal")
        ax.set_title(panel, fontsize=TITLE - 1)
        ax.set_xlabel("a (along u)", fontsize=SMALL)
        ax.set_ylabel("b (along v)", fontsize=SMALL)
    if title:
        fig.suptitle(title, fontsize=TITLE)
    return fig


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
    fig: Figure,
    ax,
    A,
    B,
    Z: np.ndarray,
    cbar_label: str,
    what: str,
    limits: tuple[float, float] | None = None,
) -> None:
    """Filled contours of one quantity over the plane: loss on a log scale, accuracy on 0-100%,
    agreement on `limits` (data-driven), an agreement difference on a diverging scale."""
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
    cbar.set_label(cbar_label, fontsize=SMALL)
    if what in ("agr", "diff"):  # round values, not the contour levels
        cbar.set_ticks(MaxNLocator(6).tick_values(*levels[[0, -1]]))
        cbar.ax.set_ylim(levels[0], levels[-1])
    if what == "loss":  # round values (1-2-5 steps), not the contour levels
        cbar.set_ticks(_log_ticks(levels[0], levels[-1]), labels=None)
        cbar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        cbar.ax.yaxis.set_minor_formatter(NullFormatter())


def _draw_anchors(ax, names: Sequence[str], coords: np.ndarray) -> None:
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


def _draw_trajectories(ax, t: Mapping[str, np.ndarray]) -> None:
    member, epoch = np.asarray(t["member"], dtype=int), np.asarray(t["epoch"], dtype=int)
    x, y = np.asarray(t["a"], dtype=float), np.asarray(t["b"], dtype=float)
    for m in np.unique(member):
        rows = np.flatnonzero(member == m)
        rows = rows[np.argsort(epoch[rows], kind="stable")]
        c = member_color(int(m))
        ax.plot(x[rows], y[rows], "-", color=c, lw=1.4, zorder=3)
        ax.scatter(
            x[rows[:1]],
            y[rows[:1]],
            s=30,
            marker="o",
            facecolor="white",
            edgecolor=c,
            linewidth=1.5,
            zorder=4,
        )


def paths_charts(paths: Sequence[Mapping[str, object]]) -> list[Chart]:
    """Test error (%) and loss along linear paths θ(α) = (1−α)θ1 + αθ2, one series per path:
    coloured by kind, line styles cycling within a kind; the names carry the barriers.

    Each path: name, kind ("across members" | "within trajectory" | "aligned"), alpha [P],
    error [P] (fraction), loss [P], error_barrier, loss_barrier.
    """
    styles = (LineStyle.SOLID, LineStyle.DASHED, LineStyle.DOTTED)
    seen: dict[str, int] = {}
    error, loss = [], []
    for i, p in enumerate(paths):
        kind = str(p["kind"])
        c = hex_color(PATH_KIND_COLORS.get(kind, member_color(i)))
        ls = styles[seen.get(kind, 0) % len(styles)]
        seen[kind] = seen.get(kind, 0) + 1
        name = (
            f"{p['name']} ({kind}; error barrier {100 * float(p['error_barrier']):.1f} "  # type: ignore[arg-type]
            f"points, loss barrier {float(p['loss_barrier']):.3f})"  # type: ignore[arg-type]
        )
        alpha = [frac(x) for x in np.asarray(p["alpha"], dtype=float)]
        labels = [f"{p['name']} α={x:.2f}" for x in alpha]
        for out, values in (
            (error, [sig(100 * e, 5) for e in np.asarray(p["error"], float)]),
            (loss, [sig(v, 5) for v in np.asarray(p["loss"], float)]),
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


def paths_figure(paths: Sequence[Mapping[str, object]]) -> Figure:
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
