"""Reliability diagrams (report/figures/reliability.py): the figure and the CSV from one
`Reliability`, built from the analysis study's reliability bins."""

from __future__ import annotations

import dataclasses

import numpy as np

from modescape.analysis.metrics import reliability
from modescape.report.figures.analysis import figure_bytes
from modescape.report.figures.reliability import Reliability, ReliabilityPanel, reliability_diagrams
from modescape.report.render.page import csv_bytes


def pixels(fig) -> bytes:
    """The figure's pixels, small and without the layout pass: the test compares what two
    descriptions draw, not where the layout puts it."""
    fig.set_layout_engine("none")
    return figure_bytes(fig, "png", 0.3)


def test_reliability_figure_bars_counts_and_ece_from_metrics():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(400, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 10, 400)
    rel = reliability(probs, labels)
    d = {
        "edges": rel.edges,
        "counts": rel.counts,
        "accuracy": rel.accuracy,
        "confidence": rel.confidence,
    }
    fig = reliability_diagrams({"single_member_0": d, "deep_ensemble_2": d}).figure()
    assert len(fig.axes) == 4
    top, bottom = fig.axes[0], fig.axes[1]
    assert f"ECE {rel.ece:.1%}" in top.get_title()
    heights = [p.get_height() for p in top.patches]
    np.testing.assert_allclose(heights, np.nan_to_num(rel.accuracy, nan=0.0))
    np.testing.assert_allclose([p.get_height() for p in bottom.patches], rel.counts)
    diagonal = [line for line in top.lines if list(line.get_xdata()) == [0, 1]]
    assert len(diagonal) == 1 and list(diagonal[0].get_ydata()) == [0, 1]


def two_bins(accuracy=(np.nan, 0.75)) -> dict[str, list]:
    # bin [0, 0.5) empty; bin [0.5, 1]: 4 examples, 3 right, mean confidence 0.625
    return {"edges": [0.0, 0.5, 1.0], "counts": [0, 4], "accuracy": list(accuracy),
            "confidence": [np.nan, 0.625]}  # fmt: skip


def test_single_member_first_titles_in_words_and_ece_by_hand():
    r = reliability_diagrams({"deep_ensemble_5": two_bins(), "single_member_2": two_bins()})
    assert [p.title for p in r.panels] == ["Single member (m2)", "Deep ensemble of 5 members"]
    assert r.panels[0].ece == 0.125  # all 4 examples in one bin: |0.75 - 0.625|
    table = r.table("reliability")
    assert table.header[:4] == ["model", "bin_lower", "bin_upper", "examples"]
    assert table.rows[:2] == [
        ["Single member (m2)", 0.0, 0.5, 0, None, None],  # an empty bin: blank cells
        ["Single member (m2)", 0.5, 1.0, 4, 0.75, 0.625],
    ]


def test_png_and_csv_are_drawn_from_one_description():
    r = reliability_diagrams({"single_member_0": two_bins()})
    png, csv = pixels(r.figure()), csv_bytes(r.table("reliability"))
    panel = dataclasses.replace(r.panels[0], accuracy=np.array([np.nan, 0.5]))
    planted = Reliability([panel])
    assert pixels(planted.figure()) != png
    assert csv_bytes(planted.table("reliability")) != csv
    assert "ECE 12.5%" in r.figure().axes[0].get_title()
    assert isinstance(r.panels[0], ReliabilityPanel)
