"""Figures of the connector study (Garipov et al. 2018; Fort, Hu & Lakshminarayanan 2019 v1):
the curve against the straight line along t, the plane the curve lies in, and the ensembles of
one connected region. Pure functions of arrays returning a `matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from modescape.report.figures.analysis import LABEL, SMALL, TITLE, grid_axes, new_figure

CURVE, LINE = "#1f3b73", "#d95f02"
END_COLORS = ("#1b9e77", "#7570b3")
FAMILY_COLORS = {
    "deep ensemble": "#1f3b73",
    "snapshot ensemble": "#d95f02",
    "curve ensemble": "#1b9e77",
    "FGE": "#e7298a",
    "curve points": "#1b9e77",
    "independent members": "#1f3b73",
}


def profile_figure(curve: Mapping[str, np.ndarray], line: Mapping[str, np.ndarray]) -> Figure:
    """Along t: test error, training loss, and agreement with each end, curve (solid) against
    the straight line (dashed). `curve`, `line`: the profile columns (t, test_error,
    train_loss, agreement_end0, agreement_end1)."""
    fig = new_figure(13, 3.8)
    ax_err, ax_loss, ax_agr = grid_axes(fig, 3, 3)
    for cols, style, name in ((curve, "-", "curve"), (line, "--", "straight line")):
        t = np.asarray(cols["t"], dtype=float)
        color = CURVE if name == "curve" else LINE
        ax_err.plot(t, 100 * np.asarray(cols["test_error"]), style, color=color, label=name)
        ax_loss.plot(t, np.asarray(cols["train_loss"]), style, color=color, label=name)
        for k, end in enumerate(("end0", "end1")):
            ax_agr.plot(t, 100 * np.asarray(cols[f"agreement_{end}"]), style,
                        color=END_COLORS[k], label=f"{name}: with {end}")  # fmt: skip
    ax_loss.set_yscale("log")
    labels = (("test error (%)", ax_err), ("training loss (nats, log)", ax_loss))
    for label, ax in (*labels, ("agreement with each end (%)", ax_agr)):
        ax.set_xlabel("t along the path", fontsize=LABEL)
        ax.set_ylabel(label, fontsize=LABEL)
        ax.tick_params(labelsize=SMALL)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=SMALL)
    ax_err.set_title("Error: connected in loss", fontsize=TITLE)
    ax_agr.set_title("Predictions: apart in function", fontsize=TITLE)
    return fig


def curve_plane_figure(
    a: np.ndarray,
    b: np.ndarray,
    maps: Mapping[str, np.ndarray],
    anchor_coords: np.ndarray,
    curve_ab: np.ndarray,
    line_ab: np.ndarray,
    *,
    third: str = "",
) -> Figure:
    """Maps over the plane (`maps`: title → [b, a] array; "Test loss" on a log scale, the rest
    in %) with the curve (solid) and the straight line (dashed) drawn on each; stars: θ₀, θ₁ and
    the third anchor."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    coords = np.asarray(anchor_coords, dtype=float).reshape(-1, 2)
    fig = new_figure(4.2 * len(maps), 4.0)
    for ax, (title, values) in zip(grid_axes(fig, len(maps), len(maps)), maps.items()):
        v = np.asarray(values, dtype=float)
        if title.lower().endswith("loss"):
            positive = v[v > 0]
            lo = positive.min() if positive.size else 1e-3
            hi = max(float(v.max()), lo * 1.01)
            cs = ax.contourf(a, b, np.clip(v, lo, hi), levels=np.geomspace(lo, hi, 21),
                             cmap="viridis_r", norm=LogNorm(lo, hi))  # fmt: skip
        else:
            cs = ax.contourf(a, b, 100 * v, levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, shrink=0.85).ax.tick_params(labelsize=SMALL)
        ax.plot(curve_ab[:, 0], curve_ab[:, 1], "-", color="white", lw=2.2)
        ax.plot(curve_ab[:, 0], curve_ab[:, 1], "-", color="black", lw=1.2, label="curve")
        ax.plot(line_ab[:, 0], line_ab[:, 1], "--", color="red", lw=1.2, label="line")
        ax.scatter(coords[:, 0], coords[:, 1], marker="*", s=140, c="white", edgecolors="black",
                   zorder=5)  # fmt: skip
        for (x, y), name in zip(coords, ("θ₀", "θ₁", third or "bend")):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=SMALL)
        ax.set_title(title, fontsize=LABEL)
        ax.set_aspect("equal", adjustable="box")
        ax.tick_params(labelsize=SMALL)
    return fig


def ensembles_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    points: Mapping[str, tuple[np.ndarray, np.ndarray]],
    upper: tuple[np.ndarray, np.ndarray] | None = None,
) -> Figure:
    """Left: ensemble test accuracy against size for each family (`curves[name] = (sizes,
    accuracy)`). Right: the diversity–accuracy plane (`points[name] = (accuracy, D / (1 −
    accuracy))`), with the independent-errors reference curve `upper = (a, d)` when given."""
    fig = new_figure(11, 4.2)
    ax_curve, ax_plane = grid_axes(fig, 2, 2)
    for name, (sizes, acc) in curves.items():
        ax_curve.plot(sizes, 100 * np.asarray(acc), "o-", ms=3, label=name,
                      color=FAMILY_COLORS.get(name))  # fmt: skip
    ax_curve.set_xlabel("ensemble size", fontsize=LABEL)
    ax_curve.set_ylabel("test accuracy (%)", fontsize=LABEL)
    for name, (acc, div) in points.items():
        ax_plane.scatter(100 * np.asarray(acc), div, s=14, label=name,
                         color=FAMILY_COLORS.get(name))  # fmt: skip
    if upper is not None:
        ax_plane.plot(100 * upper[0], upper[1], ":", color="gray", label="independent errors")
    ax_plane.set_xlabel("test accuracy (%)", fontsize=LABEL)
    ax_plane.set_ylabel("disagreement / own error", fontsize=LABEL)
    for ax in (ax_curve, ax_plane):
        ax.tick_params(labelsize=SMALL)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=SMALL)
    return fig
