"""The instability figures draw what they are given: the children's curve, both reference
levels, the threshold and the onset; trajectories one line per child plus the parent's."""

from __future__ import annotations

import dataclasses

import numpy as np

from modescape.report.figures.spawn import instability_figure, spawn_trajectories
from modescape.report.render.page import csv_bytes
from tests.report.figures.drawn import pixels


def test_instability_figure_draws_references_threshold_and_onset():
    fig = instability_figure(
        [0, 0.5, 1, 4],
        {"error_barrier": [0.3, 0.1, 0.01, 0.0], "disagreement": [0.4, 0.2, 0.05, 0.02]},
        within={"error_barrier": 0.005, "disagreement": 0.03},
        across={"error_barrier": 0.5, "disagreement": 0.45},
        onset=1.0,
    )
    barrier, disagreement = fig.axes
    assert np.allclose(barrier.lines[0].get_ydata(), [30, 10, 1, 0])
    levels = sorted(float(line.get_ydata()[0]) for line in barrier.lines[1:4])
    assert levels == [0.5, 2.0, 50.0]  # within, threshold, across (percent)
    assert float(barrier.lines[-1].get_xdata()[0]) == 1.0  # the onset
    assert len(disagreement.lines) == 4  # curve, two references, onset: no threshold
    assert barrier.get_xscale() == "symlog"


def test_no_onset_no_references():
    fig = instability_figure([0, 1], {"error_barrier": [0.3, 0.2]}, None, None, None)
    (ax,) = fig.axes
    assert len(ax.lines) == 2  # the curve and the threshold


def test_trajectories_one_line_per_child_and_the_parent():
    index = np.array([(-1, 0, e) for e in range(4)] + [(p, c, e) for p in (0, 1) for c in (0, 1)
                                                       for e in (2, 3)])  # fmt: skip
    coords = np.random.default_rng(0).normal(size=(len(index), 2))
    fig = spawn_trajectories(coords, index).figure()
    (ax,) = fig.axes
    paths = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert len(paths) == 5  # the parent and four children
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["parent", "children of spawn point 0", "children of spawn point 1"]


def test_trajectories_csv_holds_every_point_in_drawing_order():
    # rows in any order: the parent first, then each child, each in epoch order
    index = np.array([(0, 0, 3), (-1, 0, 1), (0, 0, 2), (-1, 0, 0)])
    coords = np.array([[4.0, -4.0], [2.0, -2.0], [3.0, -3.0], [1.0, -1.23456]])
    t = spawn_trajectories(coords, index, "PCA")
    table = t.table("spawn_trajectories")
    assert table.header == ["trajectory", "spawn_point", "child", "epoch", "x", "y"]
    assert table.rows == [
        ["parent", None, None, 0, 1.0, -1.235],
        ["parent", None, None, 1, 2.0, -2.0],
        ["child", 0, 0, 2, 3.0, -3.0],
        ["child", 0, 0, 3, 4.0, -4.0],
    ]
    parent = t.figure().axes[0].lines[0]
    np.testing.assert_allclose(parent.get_xdata(), [1.0, 2.0])
    moved = dataclasses.replace(t, coords=coords + np.array([[0.0, 0.0]] * 3 + [[0.5, 0.0]]))
    assert csv_bytes(moved.table("x")) != csv_bytes(table)
    assert pixels(moved.figure()) != pixels(t.figure())


def test_instability_description_chart_and_csv_hold_the_same_levels():
    from modescape.report.figures.spawn import Instability
    from modescape.results import PairLevel
    from modescape.store.schema import InstabilityPoint

    def level(barrier: float) -> PairLevel:
        return PairLevel(barrier, barrier, barrier / 2, 0.3, 0.03, 0.9, 1.5, (0.8, 0.7), 1)

    points = [InstabilityPoint(0.0, 0, 0, level(0.2)), InstabilityPoint(2.0, 2, 0, level(0.01))]
    figure = Instability(points, level(0.0), None, 0.02, 2.0)
    barrier, disagreement = figure.charts()
    assert figure.charts()[0] is barrier and disagreement.title.startswith("Disagreement")
    table = figure.table("instability_points")
    assert [r[0] for r in table.rows] == ["spawn 0", "spawn 2", "within a trajectory"]
    col = table.header.index("error_barrier")
    children = barrier.series[0]
    assert [100 * r[col] for r in table.rows[:2]] == children.y
    assert [r[1] for r in table.rows[:2]] == children.x
    assert barrier.series[1].y == [100 * table.rows[2][col]] * 2  # the within reference
    assert len(figure.figure().axes) == 2
    planted = Instability([points[0], dataclasses.replace(points[1], level=level(0.05))],
                          level(0.0), None, 0.02, 2.0)  # fmt: skip
    assert planted.table("p").rows[1][col] == 0.05 and planted.charts()[0].series[0].y[1] == 5.0
