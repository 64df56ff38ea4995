"""The weight- and function-space heatmaps (Fort et al. 2019, Figures 2 and 3): one `Heatmap`
description per figure, built once from the analysis study's matrices, from which the PNG/PDF
(`Heatmap.figure`) and the CSV (`Heatmap.table`) are both drawn.

Three builders: `full_heatmap` (every snapshot of every member), `across_members_heatmap`
(the members' final snapshots) and `within_trajectory_heatmap` (one member's snapshots). Heatmaps
a reader compares side by side share one colour scale (`shared_limits`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from modescape.errors import choice_error
from modescape.report.base import Table
from modescape.report.figures.analysis import LABEL, SMALL, TITLE, new_figure
from modescape.report.wording import frac, sig

# quantity -> (colour-bar label, colour map). Cosine uses a fixed [0, 1]-ish range (see _limits).
QUANTITIES = {
    "cosine": ("cosine similarity of weights", "viridis"),
    "disagreement": ("disagreement (fraction of test points)", "magma"),
    "distance": ("L2 distance between weights", "cividis"),
}
NAMES = {"cosine": "Cosine similarity", "disagreement": "Disagreement", "distance": "L2 distance"}


@dataclass(frozen=True, eq=False)
class Heatmap:
    """One heatmap as data: the matrix [rows, cols] drawn as it is, its colour scale and labels,
    and the CSV's row index (`index`: column name -> one value per row) and column names.

    `ticks`/`tick_labels`: positions and labels on both axes; `blocks` > 0: white lines every
    `blocks` cells (between members), ticks without marks; `annotate`: each cell's value
    printed in it."""

    matrix: np.ndarray
    quantity: str
    title: str
    x_label: str
    y_label: str
    ticks: np.ndarray
    tick_labels: list[str]
    limits: tuple[float, float]
    size: tuple[float, float]
    index: Mapping[str, Sequence[object]]
    columns: list[str]
    annotate: bool = False
    blocks: int = 0

    @property
    def colorbar_label(self) -> str:
        return QUANTITIES[self.quantity][0]

    @property
    def cmap(self) -> str:
        return QUANTITIES[self.quantity][1]

    def figure(self) -> Figure:
        """The heatmap drawn with matplotlib (PNG/PDF)."""
        fig = new_figure(*self.size)
        ax = fig.add_subplot()
        vmin, vmax = self.limits
        image = ax.imshow(
            self.matrix, cmap=self.cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
        )
        fig.colorbar(image, ax=ax, shrink=0.85).set_label(self.colorbar_label, fontsize=LABEL)
        for b in range(1, len(self.matrix) // self.blocks if self.blocks else 0):
            ax.axhline(b * self.blocks - 0.5, color="white", lw=1.2)
            ax.axvline(b * self.blocks - 0.5, color="white", lw=1.2)
        ax.set_xticks(self.ticks, self.tick_labels)
        ax.set_yticks(self.ticks, self.tick_labels)
        if self.blocks:
            ax.tick_params(length=0)
        ax.set_xlabel(self.x_label, fontsize=LABEL)
        ax.set_ylabel(self.y_label, fontsize=LABEL)
        ax.set_title(self.title, fontsize=TITLE)
        if self.annotate:
            self._annotate(ax)
        return fig

    def _annotate(self, ax: Axes) -> None:
        vmin, vmax = self.limits
        n, m = self.matrix.shape
        for i in range(n):
            for j in range(m):
                dark = (self.matrix[i, j] - vmin) / (vmax - vmin) < 0.6
                ax.text(
                    j,
                    i,
                    f"{self.matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=SMALL,
                    color="white" if dark else "black",
                )

    def table(self, name: str, caption: str = "") -> Table:
        """The matrix as CSV, one row per matrix row: the `index` columns (e.g. member, epoch)
        then one column per matrix column. Cosine keeps 6 decimals (late snapshots differ from
        1 in the 4th), disagreement 4 (a fraction of at most 10,000 points), distances 4
        significant digits."""
        keys = list(self.index)
        if self.quantity == "cosine":
            cells = [[frac(v, 6) for v in row] for row in self.matrix]
        elif self.quantity == "disagreement":
            cells = [[frac(v) for v in row] for row in self.matrix]
        else:
            cells = [[sig(v) for v in row] for row in self.matrix]
        rows = [[self.index[k][i] for k in keys] + cells[i] for i in range(len(self.matrix))]
        return Table(name, [*keys, *self.columns], rows, caption)


def _tick_positions(n: int, max_ticks: int = 12) -> np.ndarray:
    """Indices of at most ~max_ticks evenly spaced ticks over n cells, always including the last."""
    step = max(1, int(np.ceil(n / max_ticks)))
    ticks = np.arange(0, n, step)
    if ticks[-1] != n - 1 and n - 1 - ticks[-1] >= step / 2:
        ticks = np.append(ticks, n - 1)
    return ticks


def _limits(quantity: str, matrix: np.ndarray) -> tuple[float, float]:
    finite = matrix[np.isfinite(matrix)]
    top = float(finite.max()) if finite.size else 1.0
    if quantity == "cosine":  # cosine can be negative, but trained weights rarely are
        return min(0.0, float(finite.min()) if finite.size else 0.0), 1.0
    return 0.0, top if top > 0 else 1.0


def shared_limits(quantity: str, *matrices: np.ndarray) -> tuple[float, float]:
    """One (vmin, vmax) for heatmaps a reader compares side by side, so that one colour means
    one value in all of them (0.10 is never orange in one and black in another)."""
    flat = [np.asarray(m, dtype=float).ravel() for m in matrices]
    return _limits(quantity, np.concatenate(flat) if flat else np.array([]))


def _matrix(quantity: str, matrix: np.ndarray) -> np.ndarray:
    if quantity not in QUANTITIES:
        raise choice_error("heatmap quantity", quantity, tuple(QUANTITIES))
    return np.asarray(matrix, dtype=float)


def within_trajectory_heatmap(
    matrix: np.ndarray,
    epochs: Sequence[int],
    quantity: str,
    *,
    member: int = 0,
    limits: tuple[float, float] | None = None,
) -> Heatmap:
    """Snapshot-vs-snapshot matrix [E, E] of one member's trajectory; ticks are epochs.
    `limits`: (vmin, vmax) shared with the heatmaps it is compared with (`shared_limits`)."""
    matrix = _matrix(quantity, matrix)
    labels = [str(e) for e in epochs]
    ticks = _tick_positions(len(epochs))
    return Heatmap(
        matrix,
        quantity,
        f"{NAMES[quantity]} within the trajectory of member {member}",
        "epoch",
        "epoch",
        ticks,
        [labels[t] for t in ticks],
        limits or _limits(quantity, matrix),
        (6.6, 5.6),
        {"epoch": list(epochs)},
        [f"e{e}" for e in epochs],
    )


def across_members_heatmap(
    matrix: np.ndarray,
    members: Sequence[int],
    quantity: str,
    *,
    annotate_max: int = 10,
    limits: tuple[float, float] | None = None,
) -> Heatmap:
    """Final-snapshot matrix [M, M] across members; cells are annotated when M <= annotate_max."""
    matrix = _matrix(quantity, matrix)
    n = len(members)
    size = max(3.8, min(5.6, 0.6 * n + 2.5))
    names = [f"m{m}" for m in members]
    return Heatmap(
        matrix,
        quantity,
        f"{NAMES[quantity]} of final snapshots across members",
        "member",
        "member",
        np.arange(n),
        names,
        limits or _limits(quantity, matrix),
        (size + 1.0, size),
        {"member": list(members)},
        names,
        annotate=n <= annotate_max,
    )


def full_heatmap(
    matrix: np.ndarray,
    members: Sequence[int],
    epochs: Sequence[int],
    quantity: str,
    *,
    limits: tuple[float, float] | None = None,
) -> Heatmap:
    """The (members·epochs)² matrix, rows ordered member-major; lines separate the members,
    ticks sit at block centres (`m<i>`); CSV columns are the snapshots (m0_e0, m0_e1, ...)."""
    matrix = _matrix(quantity, matrix)
    M, E = len(members), len(epochs)
    if matrix.shape != (M * E, M * E):
        raise ValueError(f"matrix has shape {matrix.shape}, expected {(M * E, M * E)}")
    return Heatmap(
        matrix,
        quantity,
        f"{NAMES[quantity]} between all snapshots of all members",
        f"member (each block: epochs {epochs[0]}-{epochs[-1]} in order)",
        "member",
        np.arange(M) * E + (E - 1) / 2,
        [f"m{m}" for m in members],
        limits or _limits(quantity, matrix),
        (7.4, 6.4),
        {
            "member": [m for m in members for _ in epochs],
            "epoch": [e for _ in members for e in epochs],
        },
        [f"m{m}_e{e}" for m in members for e in epochs],
        blocks=E,
    )
