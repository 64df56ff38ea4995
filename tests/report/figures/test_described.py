"""`described_plot`: a section's Plot takes its figure and its CSV from one description."""

from __future__ import annotations

import numpy as np

from modescape.report.figures.described import described_plot
from modescape.report.figures.heatmap import across_members_heatmap


def test_plot_figure_and_data_come_from_the_description():
    h = across_members_heatmap(np.array([[0.0, 0.25], [0.25, 0.0]]), [3, 7], "disagreement")
    plot = described_plot("disagreement_members", h, "shown caption", data_caption="csv caption")
    assert plot.name == plot.data.name == "disagreement_members"
    assert plot.caption == "shown caption" and plot.data.caption == "csv caption"
    assert plot.data.header == ["member", "m3", "m7"]
    assert plot.data.rows == [[3, 0.0, 0.25], [7, 0.25, 0.0]]
    np.testing.assert_array_equal(plot.figure.axes[0].images[0].get_array(), h.matrix)
    assert plot.charts == []
    assert described_plot("x", h, "same").data.caption == "same"
