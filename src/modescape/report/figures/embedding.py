"""Embeddings of predictions in two dimensions (t-SNE, PCA): the members' function-space
trajectories (Fort et al. 2019, Figure 2 right) and the samplers' samples beside them (the
subspace and SWAG studies). Each is one typed description, parsed once from the study's CSV,
from which the PNG/PDF, the CSV and (for the trajectories) the page's chart are drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from modescape.report.base import Chart, Table
from modescape.report.figures.analysis import (
    SMALL,
    TITLE,
    chart_figure,
    grid_axes,
    member_color,
    new_figure,
    trajectory_chart,
)
from modescape.report.figures.studies import lighter, method_label
from modescape.report.wording import sig


@dataclass(frozen=True, eq=False)
class Trajectories:
    """Every snapshot of every member in one joint embedding: member, epoch, x, y [points];
    `method` names the embedding ("t-SNE", "PCA")."""

    member: np.ndarray
    epoch: np.ndarray
    x: np.ndarray
    y: np.ndarray
    method: str

    @classmethod
    def from_columns(cls, cols: Mapping[str, np.ndarray], method: str) -> Trajectories:
        """From the columns of analysis/trajectories/<method>.csv (member, epoch, x, y)."""
        return cls(
            np.asarray(cols["member"], dtype=int),
            np.asarray(cols["epoch"], dtype=int),
            np.asarray(cols["x"], dtype=float),
            np.asarray(cols["y"], dtype=float),
            method,
        )

    @cached_property
    def chart(self) -> Chart:
        """The page's chart (and the PNG's series): one line per member (`trajectory_chart`)."""
        return trajectory_chart(self.member, self.epoch, self.x, self.y, method=self.method)

    def figure(self) -> Figure:
        return chart_figure(self.chart, (7.2, 6.0))

    def table(self, name: str, caption: str = "") -> Table:
        """(member, epoch, x, y) in member, epoch order."""
        order = np.lexsort((self.epoch, self.member))
        rows = [
            [int(self.member[i]), int(self.epoch[i]), sig(self.x[i]), sig(self.y[i])] for i in order
        ]
        return Table(name, ["member", "epoch", "x", "y"], rows, caption)


@dataclass(frozen=True, eq=False)
class EmbeddingPanel:
    """One sampler's joint embedding: kind ("trajectory" | "sample"), member, index (epoch
    order or sample number), x, y, each [points]."""

    method: str
    kind: np.ndarray
    member: np.ndarray
    index: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def from_columns(cls, method: str, cols: Mapping[str, np.ndarray]) -> EmbeddingPanel:
        return cls(
            method,
            np.asarray(cols["kind"], dtype=str),
            np.asarray(cols["member"], dtype=int),
            np.asarray(cols["index"], dtype=int),
            np.asarray(cols["x"], dtype=float),
            np.asarray(cols["y"], dtype=float),
        )

    def final_snapshots(self) -> dict[int, np.ndarray]:
        """member -> (x, y) of its trajectory's last point."""
        ends = {}
        traj = self.kind == "trajectory"
        for k in np.unique(self.member[traj]):
            rows = np.flatnonzero(traj & (self.member == k))
            last = rows[np.argmax(self.index[rows])]
            ends[int(k)] = np.array([self.x[last], self.y[last]])
        return ends


@dataclass(frozen=True, eq=False)
class SampleEmbedding:
    """Trajectories with samples around them, one panel per sampler (one embedding each, or one
    joint embedding shown one sampler per panel)."""

    panels: list[EmbeddingPanel]
    title: str = "Trajectories and subspace samples in function space (one t-SNE per sampler)"

    def figure(self) -> Figure:
        """Trajectories as lines (circle = first snapshot, star = final snapshot), samples as a
        lighter cloud of squares in the same member's colour."""
        n = len(self.panels)
        ncols = min(n, 3)
        fig = new_figure(4.0 * ncols + 0.4, 3.9 * (-(-n // ncols)) + 0.6)
        members: set[int] = set()
        for ax, p in zip(grid_axes(fig, n, ncols), self.panels):
            for k in np.unique(p.member):
                members.add(int(k))
                _draw_member(ax, p, int(k))
            ax.set_title(method_label(p.method), fontsize=TITLE - 1)
            ax.set_xticks([])
            ax.set_yticks([])
        handles = _legend(sorted(members))
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=SMALL
        )
        fig.suptitle(self.title, fontsize=TITLE)
        return fig

    def table(self, name: str, caption: str = "") -> Table:
        """Every point of every panel: method, kind, member, index, x, y."""
        rows = []
        for p in self.panels:
            for k, mem, i, x, y in zip(p.kind, p.member, p.index, p.x, p.y):
                rows.append([p.method, str(k), int(mem), int(i), sig(x), sig(y)])
        return Table(name, ["method", "kind", "member", "index", "x", "y"], rows, caption)


def _draw_member(ax: Axes, p: EmbeddingPanel, k: int) -> None:
    c = member_color(k)
    x, y = p.x, p.y
    cloud = (p.kind == "sample") & (p.member == k)
    # the samples as a cloud: translucent squares in a lighter shade, edged in the member's
    # colour so overlapping clouds of two members stay apart
    ax.scatter(
        x[cloud], y[cloud], s=22, marker="s", color=lighter(c), edgecolor=c,
        linewidth=0.5, alpha=0.8, zorder=1,
    )  # fmt: skip
    rows = np.flatnonzero((p.kind == "trajectory") & (p.member == k))
    rows = rows[np.argsort(p.index[rows], kind="stable")]
    ax.plot(x[rows], y[rows], "-", color=c, lw=1.3, zorder=2)
    if rows.size:
        ax.scatter(x[rows[:1]], y[rows[:1]], s=36, marker="o", facecolor="white", edgecolor=c,
                   linewidth=1.6, zorder=3)  # fmt: skip
        ax.scatter(
            x[rows[-1:]], y[rows[-1:]], s=150, marker="*", color=c, edgecolor="black",
            linewidth=0.6, zorder=4,
        )  # fmt: skip


def _legend(members: list[int]) -> list[Line2D]:
    return [
        *(Line2D([], [], color=member_color(k), lw=2, label=f"member {k}") for k in members),
        Line2D(
            [], [], ls="", marker="o", mfc="white", mec="black", mew=1.6, label="first snapshot"
        ),
        Line2D([], [], ls="", marker="*", ms=11, color="black", label="final snapshot"),
        Line2D(
            [], [], ls="", marker="s", mfc=lighter("black"), mec="black", mew=0.5,
            label="samples around the final snapshot",
        ),
    ]  # fmt: skip


def sampler_embeddings(panels: Mapping[str, Mapping[str, np.ndarray]]) -> SampleEmbedding:
    """One panel per sampler from its own CSV (subspace/tsne_<method>.csv: kind, member, index,
    x, y)."""
    return SampleEmbedding([EmbeddingPanel.from_columns(m, c) for m, c in panels.items()])


def joint_embedding(cols: Mapping[str, np.ndarray]) -> SampleEmbedding | None:
    """One joint embedding of every trajectory and every method's samples (swag/tsne.csv:
    kind, method, member, index, x, y), shown one method per panel with all trajectories; None
    when no method has samples."""
    kind, method = np.asarray(cols["kind"], dtype=str), np.asarray(cols["method"], dtype=str)
    traj = kind == "trajectory"
    panels = []
    for m in dict.fromkeys(method[~traj]):
        keep = traj | (method == m)
        panels.append(
            EmbeddingPanel.from_columns(m, {k: np.asarray(v)[keep] for k, v in cols.items()})
        )
    return SampleEmbedding(panels) if panels else None
