"""What a matplotlib figure drew, read back for the figure tests of this folder."""

from __future__ import annotations

from matplotlib.collections import PathCollection

from modescape.report.figures.analysis import figure_bytes


def pixels(fig) -> bytes:
    """The figure's pixels, small and without the layout pass: the test compares what two
    descriptions draw, not where the layout puts it."""
    fig.set_layout_engine("none")
    return figure_bytes(fig, "png", 0.3)


def scatters(ax) -> list[PathCollection]:
    """The axes' point sets (one per scatter series)."""
    return [c for c in ax.collections if isinstance(c, PathCollection)]
