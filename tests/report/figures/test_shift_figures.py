"""The dataset-shift figures that are not charts (report/figures/shift.py): box plots over
corruptions and the corruption strip, each drawn and tabulated from one description."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib.patches import PathPatch

from modescape.report.figures.analysis import METRIC_AXES
from modescape.report.figures.shift import ShiftBoxes, corruption_strip
from modescape.report.render.page import csv_bytes
from tests.report.figures.drawn import pixels, scatters


def legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def shift_boxes(severity, family, metric, value, styles, corruption=None) -> ShiftBoxes:
    n = len(value)
    corruption = np.array(["noise"] * n) if corruption is None else corruption
    return ShiftBoxes(corruption, severity, family, np.ones(n, int), metric, value, styles)


def shift_table(ensemble_worse_at=()):
    rng = np.random.default_rng(2)
    rows = []
    for _corr in ("noise", "blur", "shift"):
        for s in range(4):
            for fam in ("single", "ensemble", "weight_average"):
                for mt in ("accuracy", "nll", "brier", "ece"):
                    v = 0.9 - 0.15 * s if s == 0 else 0.9 - 0.15 * s + rng.uniform(-0.05, 0.05)
                    rows.append((s, fam, mt, v))
    return [np.array(c) for c in zip(*rows)]


def test_shift_boxplots_one_box_per_family_and_corrupted_severity():
    severity, family, metric, value = shift_table()
    styles = {
        "single": ("#8fb3e0", "single"),
        "ensemble": ("#1f3b73", "ensemble"),
        "weight_average": ("#7a7a7a", "weight average"),
        "absent": ("red", "absent"),
    }
    fig = shift_boxes(severity, family, metric, value, styles).figure()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [v[0] for v in METRIC_AXES.values()]
    for ax, (name, (_, _, scale)) in zip(panels, METRIC_AXES.items()):
        boxes = [p for p in ax.patches if isinstance(p, PathPatch)]
        assert len(boxes) == 3 * 3  # 3 families x severities 1..3 (clean has no spread)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "2", "3"]
        sel = (family == "single") & (metric == name) & (severity == 1)
        flat = [ln.get_ydata() for ln in ax.lines if len(set(ln.get_ydata())) == 1]
        # The box's median line (caps sit at the min and max of 3 values, not at the median).
        assert any(y[0] == pytest.approx(np.median(value[sel]) * scale) for y in flat)
        clean = scatters(ax)  # one marker per family at clean
        assert len(clean) == 3
        sel = (family == "ensemble") & (metric == name) & (severity == 0)
        assert clean[1].get_offsets()[0][1] == pytest.approx(value[sel][0] * scale)
        assert clean[1].get_offsets()[0][0] < 0.4  # inside the clean group
    assert legend_texts(fig) == ["single", "ensemble", "weight average"]


def test_corruption_strip_signals_and_images():
    rng = np.random.default_rng(3)
    signals = rng.normal(size=(2, 6, 1, 40))
    fig = corruption_strip(signals, ["gaussian_noise", "translation"]).figure()
    assert len(fig.axes) == 12
    assert fig.axes[0].get_title() == "clean" and fig.axes[5].get_title() == "severity 5"
    assert fig.axes[6].get_ylabel() == "translation"
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[3].lines) == 2  # clean behind, in grey
    np.testing.assert_allclose(fig.axes[3].lines[0].get_ydata(), signals[0, 0, 0])
    np.testing.assert_allclose(fig.axes[3].lines[1].get_ydata(), signals[0, 3, 0])
    images = rng.integers(0, 256, size=(1, 6, 8, 8, 3), dtype=np.uint8)
    fig = corruption_strip(images, ["contrast"]).figure()
    assert len(fig.axes) == 6
    np.testing.assert_array_equal(fig.axes[4].images[0].get_array(), images[0, 4])
    gray = rng.integers(0, 256, size=(1, 6, 8, 8, 1), dtype=np.uint8)
    fig = corruption_strip(gray, ["contrast"]).figure()
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), gray[0, 1, ..., 0])


def test_boxes_rows_are_the_kept_metric_rows_rounded_by_metric():
    c = {
        "corruption": np.array(["noise", "noise", "blur", "noise"]),
        "severity": np.array([0.0, 1.0, 1.0, 1.0]),
        "family": np.array(["single", "single", "single", "member_0"]),
        "size": np.array([1.0, 1.0, 1.0, 1.0]),
        "metric": np.array(["accuracy", "nll", "accuracy", "accuracy"]),
        "mean": np.array([0.912345, 1.234567, 0.8, 0.7]),
    }
    keep = np.array([True, True, True, False])
    b = ShiftBoxes.from_columns(c, keep, {"single": ("#000000", "single")})
    table = b.table("shift_boxplots")
    assert table.header == ["corruption", "severity", "family", "ensemble_size", "metric", "value"]
    assert table.rows == [
        ["noise", 0, "single", 1, "accuracy", 0.9123],  # a fraction: 4 decimals
        ["noise", 1, "single", 1, "nll", 1.235],  # a loss: 4 significant digits
        ["blur", 1, "single", 1, "accuracy", 0.8],
    ]


def test_strip_rows_signal_values_and_image_pixel_statistics():
    signals = np.arange(2 * 6 * 3, dtype=float).reshape(2, 6, 1, 3) / 7
    rows = corruption_strip(signals, ["a", "b"]).table("shift_examples").rows
    assert len(rows) == 2 * 6 * 3 and rows[4] == ["a", 1, 1, 0.5714, None]
    images = np.zeros((1, 6, 2, 2, 1), dtype=np.uint8)
    images[0, 2] = [[[0], [255]], [[255], [0]]]
    rows = corruption_strip(images, ["contrast"]).table("shift_examples").rows
    assert rows[2] == ["contrast", 2, None, 127.5, 127.5]


def test_png_and_csv_are_drawn_from_one_description():
    severity, family, metric, value = shift_table()
    styles = {"single": ("#8fb3e0", "single"), "ensemble": ("#1f3b73", "ensemble")}
    b = shift_boxes(severity, family, metric, value, styles)
    png, csv = pixels(b.figure()), csv_bytes(b.table("x"))
    planted = dataclasses.replace(b, value=np.where(family == "single", value - 0.1, value))
    assert pixels(planted.figure()) != png
    assert csv_bytes(planted.table("x")) != csv
    strip = corruption_strip(np.random.default_rng(0).normal(size=(1, 6, 20)), ["noise"])
    spike = strip.strip.copy()
    spike[0, 3, 5] += 3.0  # one value of the severity-3 signal (a constant shift looks the same)
    moved = dataclasses.replace(strip, strip=spike)
    drawn = moved.figure().axes[3].lines[1].get_ydata()  # severity 3, in front of the clean one
    assert drawn[5] == spike[0, 3, 5] != strip.figure().axes[3].lines[1].get_ydata()[5]
    assert csv_bytes(moved.table("x")) != csv_bytes(strip.table("x"))
