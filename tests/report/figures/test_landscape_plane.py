"""The loss-landscape plane (report/figures/landscape.py): panels, colour scales, anchors and
trajectories of the figure and the rows of its CSV, all from one `LandscapePlane`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib.colors import LogNorm

from modescape.report.figures import landscape as landscape_figures
from modescape.report.figures.analysis import member_color
from modescape.report.render.page import csv_bytes
from tests.report.figures.drawn import pixels, scatters


def test_landscape_plane_panels_colourbars_anchors_and_trajectories():
    a, b = np.linspace(-1, 11, 13), np.linspace(-2, 10, 11)
    A, B = np.meshgrid(a, b)
    loss = 0.1 + np.hypot(A - 10, B) / 5  # [b, a]
    acc = np.clip(1 - loss / 5, 0, 1)
    agr = {"m0": np.exp(-np.hypot(A - 10, B)), "m1": np.exp(-np.hypot(A - 3, B - 8))}
    coords = np.array([[0, 0], [10, 0], [3, 8]])
    traj = {
        "member": np.array([0, 0, 1, 1]),
        "epoch": np.array([1, 0, 0, 1]),
        "a": np.array([10.0, 1.0, 0.5, 3.0]),
        "b": np.array([0.0, 1.0, 1.0, 8.0]),
    }
    anchors = {"names": ["origin", "m0", "m1"], "coords": coords.tolist()}
    fig = landscape_figures.landscape_plane(a, b, loss, acc, agr, anchors, traj, title="plane")
    fig = fig.figure()
    panels = [ax for ax in fig.axes if ax.get_title()]
    colorbars = [ax for ax in fig.axes if not ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "Test loss",
        "Test accuracy",
        "Agreement with m0 − with m1",
        "Agreement with m0",
        "Agreement with m1",
    ]
    assert len(colorbars) == 5
    assert "log" in colorbars[0].get_ylabel() and "agreement with m1" in colorbars[4].get_ylabel()
    assert isinstance(panels[0].collections[0].norm, LogNorm)
    assert panels[0].collections[0].norm.vmin == pytest.approx(loss.min())
    # The difference is on a symmetric diverging scale reaching the largest |difference|.
    diff = 100 * (agr["m0"] - agr["m1"])
    norm = panels[2].collections[0].norm
    assert norm.vmin == pytest.approx(-np.abs(diff).max()) and norm.vmax == -norm.vmin
    # Both agreement maps share one data-driven range (not 0-100%).
    lo, hi = 100 * min(v.min() for v in agr.values()), 100 * max(v.max() for v in agr.values())
    for ax in panels[3:]:
        assert (ax.collections[0].norm.vmin, ax.collections[0].norm.vmax) == pytest.approx((lo, hi))
    for ax in panels:
        assert sorted(t.get_text() for t in ax.texts) == ["m0", "m1", "origin"]
        stars = scatters(ax)[-1]
        np.testing.assert_allclose(stars.get_offsets(), coords)
        assert len(ax.lines) == 2  # a trajectory per member, in epoch order
        np.testing.assert_allclose(ax.lines[0].get_xdata(), [1.0, 10.0], rtol=1e-4)
        assert ax.lines[1].get_color() == member_color(1)
        assert ax.get_xlim() == (-1, 11) and ax.get_ylim() == (-2, 10)
    assert fig.get_suptitle() == "plane"


def small_plane(**changes):
    a, b = np.array([-1.0, 0.0, 1.0]), np.array([0.0, 2.0])
    loss = np.array([[0.5, 0.25, 1.0], [2.0, 0.125, 4.0]])  # [b, a]
    acc = np.array([[0.9, 0.95, 0.5], [0.25, 0.975, 0.1]])
    agr = {"m0": np.array([[1.0, 0.9, 0.5], [0.2, 0.8, 0.1]]), "m1": np.full((2, 3), 0.5)}
    anchors = {"names": ["m0", "m1"], "coords": [[-1.0, 0.0], [1.0, 2.0]], "loss": [0.5, 4.0],
               "accuracy": [0.9, 0.1]}  # fmt: skip
    traj = {"member": np.array([0, 0]), "epoch": np.array([2, 1]), "a": np.array([0.5, -0.5]),
            "b": np.array([1.0, 0.25])}  # fmt: skip
    p = landscape_figures.landscape_plane(a, b, loss, acc, agr, anchors, traj, title="t")
    return dataclasses.replace(p, **changes)


def test_plane_csv_holds_every_grid_point_anchor_and_snapshot():
    table = small_plane().table("landscape_p")
    assert table.header == ["kind", "name", "a", "b", "loss", "accuracy", "agreement_m0",
                            "agreement_m1", "agreement_m0_minus_m1"]  # fmt: skip
    grid = [r for r in table.rows if r[0] == "grid"]
    assert len(grid) == 6  # a varies fastest, as the maps are indexed [b, a]
    assert grid[1] == ["grid", "", 0.0, 0.0, 0.25, 0.95, 0.9, 0.5, 0.4]
    assert grid[5] == ["grid", "", 1.0, 2.0, 4.0, 0.1, 0.1, 0.5, -0.4]
    anchors = [r for r in table.rows if r[0] == "anchor"]
    assert anchors == [["anchor", "m0", -1.0, 0.0, 0.5, 0.9, None, None, None],
                       ["anchor", "m1", 1.0, 2.0, 4.0, 0.1, None, None, None]]  # fmt: skip
    snapshots = [r[:4] for r in table.rows if r[0] == "snapshot"]
    assert snapshots == [["snapshot", "m0 e1", -0.5, 0.25], ["snapshot", "m0 e2", 0.5, 1.0]]


def test_panels_draw_the_description_in_percent():
    p = small_plane()
    assert [q.what for q in p.panels] == ["loss", "acc", "diff", "agr", "agr"]
    np.testing.assert_allclose(p.values(p.panels[1]), 100 * p.accuracy)
    np.testing.assert_allclose(p.values(p.panels[2]), [[50, 40, 0], [-30, 30, -40]])
    assert p.panels[2].limits == (-50.0, 50.0)
    assert p.panels[3].limits == p.panels[4].limits == (10.0, 100.0)


def test_png_and_csv_are_drawn_from_one_description():
    p = small_plane()
    png, csv = pixels(p.figure()), csv_bytes(p.table("x"))
    planted = small_plane(loss=p.loss * np.array([[1.0, 1.0, 1.0], [1.0, 4.0, 1.0]]))
    assert pixels(planted.figure()) != png
    assert csv_bytes(planted.table("x")) != csv
    assert csv_bytes(small_plane(title="other").table("x")) == csv
