"""Figures of the dataset-shift study that are not line charts: box plots over corruptions
(Ovadia et al. 2019) and one example under each corruption. Each is one typed description
built from the study's files (shift/metrics.csv, shift/examples.npy), from which the PNG/PDF
and the CSV are both drawn. The diversity-under-shift chart is `studies.shift_diversity_chart`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from modescape.report.base import Table
from modescape.report.figures.analysis import LABEL, METRIC_AXES, SMALL, TITLE, new_figure
from modescape.report.figures.data import rounded
from modescape.report.wording import sig

FamilyStyle = tuple[object, str]  # (matplotlib colour, legend label)


@dataclass(frozen=True, eq=False)
class ShiftBoxes:
    """One panel per metric, one group of boxes per severity (0 = clean), one box per family in
    `styles` (family -> (colour, label), in drawing order) spread over the corruptions.

    corruption, severity, family, size, metric, value: [rows], one row per (corruption,
    severity, family, metric) drawn, as in shift/metrics.csv (value: its `mean` column)."""

    corruption: np.ndarray
    severity: np.ndarray
    family: np.ndarray
    size: np.ndarray
    metric: np.ndarray
    value: np.ndarray
    styles: dict[str, FamilyStyle]

    @classmethod
    def from_columns(
        cls, c: Mapping[str, np.ndarray], keep: np.ndarray, styles: Mapping[str, FamilyStyle]
    ) -> ShiftBoxes:
        """The rows `keep` (a boolean mask) of shift/metrics.csv's columns `c`."""

        def column(name: str, dtype: type) -> np.ndarray:
            return np.asarray(np.asarray(c[name])[keep], dtype=dtype)

        return cls(
            column("corruption", str),
            column("severity", int),
            column("family", str),
            column("size", int),
            column("metric", str),
            column("mean", float),
            dict(styles),
        )

    def figure(self) -> Figure:
        sevs = sorted(set(self.severity.tolist()))
        fams = [f for f in self.styles if f in set(self.family)]
        width = 0.8 / max(len(fams), 1)
        fig = new_figure(12.0, 8.4)
        axes = fig.subplots(2, 2).ravel()
        for ax, (name, (title, ylabel, scale)) in zip(axes, METRIC_AXES.items()):
            for j, fam in enumerate(fams):
                self._draw_family(ax, fam, name, scale, sevs, width, j)
            ax.set_xticks(range(len(sevs)), ["clean" if s == 0 else str(s) for s in sevs])
            ax.set_xlim(-0.6, len(sevs) - 0.4)
            ax.set_xlabel("corruption severity", fontsize=LABEL)
            ax.set_ylabel(ylabel, fontsize=LABEL)
            ax.set_title(title, fontsize=TITLE)
            ax.grid(axis="y", alpha=0.3)
            for g in range(1, len(sevs)):
                ax.axvline(g - 0.5, color="#dddddd", lw=0.8, zorder=0)
        handles = [
            Patch(facecolor=self.styles[f][0], edgecolor="black", label=self.styles[f][1])  # type: ignore[arg-type]
            for f in fams
        ]
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(fams), 4), fontsize=SMALL
        )
        fig.suptitle("Dataset shift: spread over corruptions at each severity", fontsize=TITLE)
        return fig

    def _draw_family(
        self, ax: Axes, fam: str, metric: str, scale: float, sevs: list[int], width: float, j: int
    ) -> None:
        """One family's boxes (spread over corruptions) and square markers (a single value:
        clean is the same for every corruption)."""
        data, pos, single, single_pos = [], [], [], []
        for g, s in enumerate(sevs):
            sel = (self.family == fam) & (self.metric == metric) & (self.severity == s)
            x = g - 0.4 + width * (j + 0.5)
            if sel.any() and np.ptp(self.value[sel]) > 0:
                data.append(self.value[sel] * scale)
                pos.append(x)
            elif sel.any():
                single.append(self.value[sel][0] * scale)
                single_pos.append(x)
        _family_boxes(ax, data, pos, single, single_pos, width, self.styles[fam][0])

    def table(self, name: str, caption: str = "") -> Table:
        """One row per value drawn, rounded as its metric is (fractions to 4 decimals)."""
        rows = [
            [str(self.corruption[i]), int(self.severity[i]), str(self.family[i]),
             int(self.size[i]), str(self.metric[i]), rounded(str(self.metric[i]), self.value[i])]
            for i in range(len(self.value))
        ]  # fmt: skip
        header = ["corruption", "severity", "family", "ensemble_size", "metric", "value"]
        return Table(name, header, rows, caption)


def _family_boxes(
    ax: Axes,
    data: list[np.ndarray],
    pos: list[float],
    single: list[float],
    single_pos: list[float],
    width: float,
    color: object,
) -> None:
    """One family's boxes (spread over corruptions) and square markers (a single value)."""
    if single:
        ax.scatter(single_pos, single, s=28, marker="s", color=color, edgecolor="black",
                   linewidth=0.6, zorder=3)  # fmt: skip
    if not data:
        return
    ax.boxplot(
        data,
        positions=pos,
        widths=width * 0.85,
        patch_artist=True,
        manage_ticks=False,
        showfliers=True,
        boxprops={"facecolor": color, "edgecolor": "black", "linewidth": 0.6},
        medianprops={"color": "black", "linewidth": 1.0},
        whiskerprops={"linewidth": 0.6},
        capprops={"linewidth": 0.6},
        flierprops={"markersize": 2.5, "markeredgecolor": color},
    )


@dataclass(frozen=True, eq=False)
class CorruptionStrip:
    """One example, clean and at severities 1–5, for each corruption: strip [len(names), 6,
    ...]. uint8 images [K, 6, H, W, C] are shown as pictures; 1-D signals [K, 6, L] or
    [K, 6, 1, L] as line plots, with the clean signal in grey behind each corrupted one."""

    strip: np.ndarray
    names: list[str]

    @property
    def images(self) -> bool:
        return self.strip.dtype == np.uint8 and self.strip.ndim == 5

    def figure(self) -> Figure:
        images = self.images
        K, cols = self.strip.shape[0], self.strip.shape[1]
        strip = self.strip if images else self.strip.reshape(K, cols, -1).astype(float)
        fig = new_figure(1.75 * cols + 0.8, (1.55 if images else 1.15) * K + 0.7)
        axes = fig.subplots(K, cols, squeeze=False)
        for r in range(K):
            lo, hi = (strip[r].min(), strip[r].max()) if not images else (0, 1)
            pad = 0.05 * (hi - lo or 1.0)
            for c in range(cols):
                ax = axes[r, c]
                if images:
                    img = strip[r, c]
                    gray = img.shape[-1] == 1
                    ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None,
                              vmin=0, vmax=255, interpolation="nearest")  # fmt: skip
                else:
                    if c:
                        ax.plot(strip[r, 0], color="#bbbbbb", lw=1.0)
                    ax.plot(strip[r, c], color="black" if c == 0 else "#c44e52", lw=1.1)
                    ax.set_ylim(lo - pad, hi + pad)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title("clean" if c == 0 else f"severity {c}", fontsize=LABEL)
            axes[r, 0].set_ylabel(self.names[r].replace("_", " "), fontsize=LABEL)
        fig.suptitle("One test example under each corruption", fontsize=TITLE)
        return fig

    def table(self, name: str, caption: str = "") -> Table:
        """1-D signals: every value drawn; images: each panel's mean and std pixel (the picture
        itself is in the PNG)."""
        images = self.images
        rows = []
        for k, corruption in enumerate(self.names):
            for sev in range(self.strip.shape[1]):
                panel = self.strip[k, sev].astype(float)
                if images:
                    rows.append([corruption, sev, None, sig(panel.mean()), sig(panel.std())])
                else:
                    rows += [
                        [corruption, sev, i, sig(v), None] for i, v in enumerate(panel.ravel())
                    ]
        header = ["corruption", "severity", "position", "value", "pixel_std"]
        return Table(name, header, rows, caption)


def corruption_strip(strip: np.ndarray, names: Sequence[str]) -> CorruptionStrip:
    return CorruptionStrip(np.asarray(strip), list(names))
