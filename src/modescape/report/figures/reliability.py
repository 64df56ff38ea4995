"""Reliability diagrams (accuracy against confidence; Guo et al. 2017): one `Reliability`
description built from the analysis study's ensembles/reliability.json, from which the PNG/PDF
and the CSV are both drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from modescape.report.base import Table
from modescape.report.figures.analysis import LABEL, SMALL, TITLE, new_figure
from modescape.report.wording import frac


@dataclass(frozen=True, eq=False)
class ReliabilityPanel:
    """One model's diagram: bin `edges` [B+1], `counts` [B], `accuracy` [B] (NaN for empty
    bins) and mean `confidence` [B]."""

    title: str
    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error recomputed from the bins (the count-weighted gap)."""
        full = self.counts > 0
        weights = self.counts[full] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[full] - self.confidence[full])))


@dataclass(frozen=True, eq=False)
class Reliability:
    """Reliability diagrams side by side, one panel per model."""

    panels: list[ReliabilityPanel]

    def figure(self) -> Figure:
        """Top: accuracy per confidence bin against the diagonal; bottom: how many examples
        fall in each bin."""
        n = len(self.panels)
        fig = new_figure(4.6 * n + 0.4, 5.6)
        grid = fig.add_gridspec(2, n, height_ratios=[3, 1])
        for col, p in enumerate(self.panels):
            full = p.counts > 0
            width, left = np.diff(p.edges), p.edges[:-1]
            top = fig.add_subplot(grid[0, col])
            bottom = fig.add_subplot(grid[1, col], sharex=top)
            top.bar(left, np.where(full, p.accuracy, 0.0), width=width, align="edge",
                    color="#4c72b0", edgecolor="white", label="accuracy in bin")  # fmt: skip
            top.plot([0, 1], [0, 1], "--", color="black", lw=1, label="perfect calibration")
            top.scatter(p.confidence[full], p.accuracy[full], s=12, color="#c44e52", zorder=3,
                        label="(mean confidence, accuracy)")  # fmt: skip
            top.set_xlim(0, 1)
            top.set_ylim(0, 1)
            top.set_ylabel("accuracy in bin", fontsize=LABEL)
            top.set_title(f"{p.title}\nECE {p.ece:.1%} (15 equal-width bins)", fontsize=TITLE - 1)
            top.tick_params(labelbottom=False)
            top.legend(fontsize=SMALL, loc="upper left")
            bottom.bar(left, p.counts, width=width, align="edge", color="#8c8c8c",
                       edgecolor="white")  # fmt: skip
            bottom.set_xlabel("confidence (max softmax probability)", fontsize=LABEL)
            bottom.set_ylabel("examples", fontsize=LABEL)
            bottom.yaxis.set_major_locator(MaxNLocator(3, integer=True))
        return fig

    def table(self, name: str, caption: str = "") -> Table:
        """One row per (model, confidence bin): its edges, example count, accuracy (blank: an
        empty bin) and mean confidence."""
        rows = []
        for p in self.panels:
            for b, count in enumerate(p.counts):
                rows.append(
                    [
                        p.title, frac(p.edges[b]), frac(p.edges[b + 1]), int(count),
                        frac(p.accuracy[b]), frac(p.confidence[b]),
                    ]
                )  # fmt: skip
        header = ["model", "bin_lower", "bin_upper", "examples", "accuracy", "mean_confidence"]
        return Table(name, header, rows, caption or "Reliability diagram bins (blank: empty bin).")


def model_title(key: str) -> str:
    """A model's name in reliability.json ("single_member_0", "deep_ensemble_5") in words."""
    head, _, num = key.rpartition("_")
    if head == "single_member" and num.isdigit():
        return f"Single member (m{num})"
    if head == "deep_ensemble" and num.isdigit():
        return f"Deep ensemble of {num} members"
    return key.replace("_", " ")


def reliability_diagrams(reliability: Mapping[str, Mapping[str, object]]) -> Reliability:
    """The diagrams of ensembles/reliability.json (model -> edges, counts, accuracy,
    confidence): the single member first, then the ensembles, whatever order the keys come in."""
    order = sorted(reliability, key=lambda key: (not key.startswith("single"), key))
    return Reliability([_panel(model_title(k), reliability[k]) for k in order])


def _panel(title: str, d: Mapping[str, object]) -> ReliabilityPanel:
    def floats(key: str) -> np.ndarray:
        return np.asarray(d[key], dtype=float)

    return ReliabilityPanel(
        title, floats("edges"), floats("counts"), floats("accuracy"), floats("confidence")
    )
