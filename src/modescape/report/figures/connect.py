"""Figures of the connector study (Garipov et al. 2018; Fort, Hu & Lakshminarayanan 2019 v1):
the curve against the straight line along t, the plane the curve lies in, and the ensembles of
one connected region. Each is one typed description built from the study's files, from which
the PNG/PDF (`figure()`) and the CSV (`table()`) are both drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from modescape.report.base import Table
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


PROFILE_COLUMNS = ("t", "test_error", "train_loss", "agreement_end0", "agreement_end1")


def _round4(values: Sequence[float]) -> list[float]:
    return [round(float(v), 4) for v in values]


@dataclass(frozen=True, eq=False)
class PathProfile:
    """One path's values along t [T]: test error, training loss, agreement with each end
    (fractions), as in connect/profile.csv and line.csv."""

    t: np.ndarray
    test_error: np.ndarray
    train_loss: np.ndarray
    agreement_end0: np.ndarray
    agreement_end1: np.ndarray

    @classmethod
    def from_columns(cls, cols: Mapping[str, np.ndarray]) -> PathProfile:
        return cls(*(np.asarray(cols[n], dtype=float) for n in PROFILE_COLUMNS))

    def rows(self, name: str) -> list[list[Any]]:
        columns = [_round4(getattr(self, n)) for n in PROFILE_COLUMNS]
        return [[name, *r] for r in zip(*columns)]


@dataclass(frozen=True, eq=False)
class ConnectProfile:
    """The curve (solid) against the straight line (dashed) along t: test error, training loss
    and agreement with each end."""

    curve: PathProfile
    line: PathProfile

    def figure(self) -> Figure:
        fig = new_figure(13, 3.8)
        ax_err, ax_loss, ax_agr = grid_axes(fig, 3, 3)
        for p, style, name in ((self.curve, "-", "curve"), (self.line, "--", "straight line")):
            color = CURVE if name == "curve" else LINE
            ax_err.plot(p.t, 100 * p.test_error, style, color=color, label=name)
            ax_loss.plot(p.t, p.train_loss, style, color=color, label=name)
            for k, (end, agr) in enumerate((("end0", p.agreement_end0),
                                            ("end1", p.agreement_end1))):  # fmt: skip
                ax_agr.plot(p.t, 100 * agr, style, color=END_COLORS[k],
                            label=f"{name}: with {end}")  # fmt: skip
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

    def table(self, name: str, caption: str = "") -> Table:
        """One row per (path, t), rounded to 4 decimals."""
        rows = self.curve.rows("curve") + self.line.rows("line")
        return Table(name, ["path", *PROFILE_COLUMNS], rows, caption)


def connect_profile(
    curve: Mapping[str, np.ndarray], line: Mapping[str, np.ndarray]
) -> ConnectProfile:
    """The profile of connect/profile.csv (the curve) and line.csv (the straight line)."""
    return ConnectProfile(PathProfile.from_columns(curve), PathProfile.from_columns(line))


@dataclass(frozen=True, eq=False)
class PlaneMap:
    """One map over the curve's plane: [b, a] values (a fraction, or the loss), its panel
    title and its CSV column."""

    title: str
    column: str
    values: np.ndarray


@dataclass(frozen=True, eq=False)
class CurvePlane:
    """Maps over the plane of the curve (loss on a log scale, the rest in %) with the curve
    (solid) and the straight line (dashed) drawn on each; stars: θ₀, θ₁ and the third anchor
    (`third`: its label)."""

    a: np.ndarray
    b: np.ndarray
    maps: list[PlaneMap]
    anchor_coords: np.ndarray
    curve_ab: np.ndarray
    line_ab: np.ndarray
    third: str = "bend"

    def figure(self) -> Figure:
        fig = new_figure(4.2 * len(self.maps), 4.0)
        for ax, m in zip(grid_axes(fig, len(self.maps), len(self.maps)), self.maps):
            v = m.values
            if m.title.lower().endswith("loss"):
                positive = v[v > 0]
                lo = positive.min() if positive.size else 1e-3
                hi = max(float(v.max()), lo * 1.01)
                cs = ax.contourf(self.a, self.b, np.clip(v, lo, hi),
                                 levels=np.geomspace(lo, hi, 21), cmap="viridis_r",
                                 norm=LogNorm(lo, hi))  # fmt: skip
            else:
                cs = ax.contourf(self.a, self.b, 100 * v, levels=20, cmap="viridis")
            fig.colorbar(cs, ax=ax, shrink=0.85).ax.tick_params(labelsize=SMALL)
            self._draw_paths(ax)
            ax.set_title(m.title, fontsize=LABEL)
            ax.set_aspect("equal", adjustable="box")
            ax.tick_params(labelsize=SMALL)
        return fig

    def _draw_paths(self, ax: Axes) -> None:
        curve, line, coords = self.curve_ab, self.line_ab, self.anchor_coords
        ax.plot(curve[:, 0], curve[:, 1], "-", color="white", lw=2.2)
        ax.plot(curve[:, 0], curve[:, 1], "-", color="black", lw=1.2, label="curve")
        ax.plot(line[:, 0], line[:, 1], "--", color="red", lw=1.2, label="line")
        ax.scatter(coords[:, 0], coords[:, 1], marker="*", s=140, c="white", edgecolors="black",
                   zorder=5)  # fmt: skip
        for (x, y), name in zip(coords, ("θ₀", "θ₁", self.third)):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=SMALL)

    def table(self, name: str, caption: str = "") -> Table:
        """One row per grid point (b outer, a inner): a, b and every map, rounded to 4
        decimals."""
        rows = [[round(float(self.a[j]), 4), round(float(self.b[i]), 4)]
                + [round(float(m.values[i, j]), 4) for m in self.maps]
                for i in range(len(self.b)) for j in range(len(self.a))]  # fmt: skip
        return Table(name, ["a", "b", *(m.column for m in self.maps)], rows, caption)


def curve_plane(
    a: np.ndarray,
    b: np.ndarray,
    maps: Mapping[str, np.ndarray],
    anchor_coords: Any,
    curve_ab: np.ndarray,
    line_ab: np.ndarray,
    *,
    third: str = "bend",
) -> CurvePlane:
    """The plane of connect/plane/: `maps` is CSV column -> [b, a] array, in the files' names
    (test_loss, test_accuracy, agreement_end0, agreement_end1)."""
    titles = {
        "test_loss": "Test loss",
        "test_accuracy": "Test accuracy (%)",
        "agreement_end0": "Agreement with end 0 (%)",
        "agreement_end1": "Agreement with end 1 (%)",
    }
    return CurvePlane(
        np.asarray(a, dtype=float),
        np.asarray(b, dtype=float),
        [PlaneMap(titles.get(c, c), c, np.asarray(v, dtype=float)) for c, v in maps.items()],
        np.asarray(anchor_coords, dtype=float).reshape(-1, 2),
        np.asarray(curve_ab, dtype=float),
        np.asarray(line_ab, dtype=float),
        third,
    )


@dataclass(frozen=True, eq=False)
class ConnectEnsembles:
    """Left: ensemble test accuracy against size for each family (`curves[name] = (sizes,
    accuracy)`). Right: the diversity–accuracy plane (`points[name] = (accuracy, D / (1 −
    accuracy))`), with the independent-errors reference curve `upper = (a, d)` when given."""

    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    points: dict[str, tuple[np.ndarray, np.ndarray]]
    upper: tuple[np.ndarray, np.ndarray] | None = None

    def figure(self) -> Figure:
        fig = new_figure(11, 4.2)
        ax_curve, ax_plane = grid_axes(fig, 2, 2)
        for name, (sizes, acc) in self.curves.items():
            ax_curve.plot(sizes, 100 * np.asarray(acc), "o-", ms=3, label=name,
                          color=FAMILY_COLORS.get(name))  # fmt: skip
        ax_curve.set_xlabel("ensemble size", fontsize=LABEL)
        ax_curve.set_ylabel("test accuracy (%)", fontsize=LABEL)
        for name, (acc, div) in self.points.items():
            ax_plane.scatter(100 * np.asarray(acc), div, s=14, label=name,
                             color=FAMILY_COLORS.get(name))  # fmt: skip
        if self.upper is not None:
            a, d = self.upper
            ax_plane.plot(100 * a, d, ":", color="gray", label="independent errors")
        ax_plane.set_xlabel("test accuracy (%)", fontsize=LABEL)
        ax_plane.set_ylabel("disagreement / own error", fontsize=LABEL)
        for ax in (ax_curve, ax_plane):
            ax.tick_params(labelsize=SMALL)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=SMALL)
        return fig

    def table(self, name: str, caption: str = "") -> Table:
        """The accuracy curves: one row per (family, size)."""
        rows = [[family, int(k), round(float(a), 4)] for family, (ks, acc) in self.curves.items()
                for k, a in zip(ks, acc)]  # fmt: skip
        return Table(name, ["family", "size", "accuracy"], rows, caption)
