"""The connector study's figures (report/figures/connect.py): the profile along t, the curve's
plane and the ensembles, each drawn and tabulated from one description."""

from __future__ import annotations

import dataclasses

import numpy as np

from modescape.report.figures import connect as figs
from modescape.report.render.page import csv_bytes
from tests.report.figures.drawn import pixels


def profile_columns(shift: float = 0.0) -> dict[str, np.ndarray]:
    t = np.array([0.0, 0.5, 1.0])
    return {
        "t": t,
        "test_error": np.array([0.1, 0.123456 + shift, 0.1]),
        "train_loss": np.array([0.2, 0.4, 0.2]),
        "agreement_end0": 1 - t / 2,
        "agreement_end1": 0.5 + t / 2,
        "diversity_nearer": np.zeros(3),  # a column the profile does not draw
    }


def test_profile_rows_curve_then_line_and_lines_in_percent():
    p = figs.connect_profile(profile_columns(), profile_columns(0.2))
    table = p.table("connect_profile")
    assert table.header == ["path", *figs.PROFILE_COLUMNS]
    assert table.rows[1] == ["curve", 0.5, 0.1235, 0.4, 0.75, 0.75]
    assert table.rows[4] == ["line", 0.5, 0.3235, 0.4, 0.75, 0.75]
    ax_err = p.figure().axes[0]
    np.testing.assert_allclose(ax_err.lines[0].get_ydata(), [10, 12.3456, 10])
    assert [ln.get_linestyle() for ln in ax_err.lines] == ["-", "--"]


def small_plane(**changes) -> figs.CurvePlane:
    a, b = np.array([0.0, 1.0, 2.0]), np.array([-1.0, 1.0])
    maps = {
        "test_loss": np.array([[0.5, 1.0, 2.0], [0.25, 0.125, 4.0]]),
        "test_accuracy": np.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]]),
        "agreement_end0": np.full((2, 3), 0.5),
        "agreement_end1": np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]),
    }
    curve = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 0.0]])
    line = np.array([[0.0, 0.0], [2.0, 0.0]])
    plane = figs.curve_plane(a, b, maps, [[0, 0], [2, 0], [1, 1]], curve, line)
    return dataclasses.replace(plane, **changes)


def test_plane_rows_per_grid_point_and_panel_titles():
    plane = small_plane()
    table = plane.table("connect_plane")
    assert table.header == ["a", "b", "test_loss", "test_accuracy", "agreement_end0",
                            "agreement_end1"]  # fmt: skip
    assert len(table.rows) == 6
    assert table.rows[4] == [1.0, 1.0, 0.125, 0.5, 0.5, 0.5]  # b outer, a inner
    fig = plane.figure()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["Test loss", "Test accuracy (%)", "Agreement with end 0 (%)",
                      "Agreement with end 1 (%)"]  # fmt: skip
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(["θ₀", "θ₁", "bend"])


def test_ensembles_rows_are_the_accuracy_curves():
    e = figs.ConnectEnsembles(
        {"curve ensemble": (np.array([1, 2]), np.array([0.8, 0.85555]))},
        {"curve points": (np.array([0.8, 0.9]), np.array([0.5, 0.25]))},
    )
    assert e.table("connect_ensembles").rows == [["curve ensemble", 1, 0.8],
                                                 ["curve ensemble", 2, 0.8556]]  # fmt: skip
    ax_curve, ax_plane = e.figure().axes
    np.testing.assert_allclose(ax_curve.lines[0].get_ydata(), [80, 85.555])
    np.testing.assert_allclose(ax_plane.collections[0].get_offsets(), [[80, 0.5], [90, 0.25]])


def test_png_and_csv_are_drawn_from_one_description():
    plane = small_plane()
    png, csv = pixels(plane.figure()), csv_bytes(plane.table("p"))
    accuracy = dataclasses.replace(plane.maps[1], values=plane.maps[1].values[::-1])
    planted = small_plane(maps=[plane.maps[0], accuracy, *plane.maps[2:]])
    assert pixels(planted.figure()) != png
    assert csv_bytes(planted.table("p")) != csv
    p = figs.connect_profile(profile_columns(), profile_columns())
    q = figs.connect_profile(profile_columns(), profile_columns(0.2))
    # the profile's lines are its data (checked above): the planted line moves in both
    err_p, err_q = p.figure().axes[0].lines[1], q.figure().axes[0].lines[1]
    assert err_p.get_ydata()[1] != err_q.get_ydata()[1]
    assert csv_bytes(p.table("x")) != csv_bytes(q.table("x"))
