"""The heatmaps' descriptions (report/figures/heatmap.py): what the PNG draws and what the CSV
holds come from one `Heatmap`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modescape.errors import ModescapeError
from modescape.report.figures import heatmap
from modescape.report.render.page import csv_bytes
from tests.report.figures.drawn import pixels


def tick_labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels()]


def test_within_trajectory_heatmap_ticks_colorbar_and_data():
    rng = np.random.default_rng(0)
    m = rng.uniform(0, 1, (5, 5))
    fig = heatmap.within_trajectory_heatmap(m, [0, 2, 4, 6, 8], "cosine", member=3).figure()
    ax, cbar = fig.axes  # the heatmap and its colour bar
    assert tick_labels(ax.xaxis) == ["0", "2", "4", "6", "8"]
    assert tick_labels(ax.yaxis) == ["0", "2", "4", "6", "8"]
    assert ax.get_xlabel() == "epoch"
    assert "member 3" in ax.get_title()
    assert "cosine" in cbar.get_ylabel()
    np.testing.assert_array_equal(ax.images[0].get_array(), m)


def test_long_trajectories_get_thinned_ticks_that_keep_first_and_last_epoch():
    epochs = list(range(41))
    fig = heatmap.within_trajectory_heatmap(np.eye(41), epochs, "disagreement").figure()
    labels = tick_labels(fig.axes[0].xaxis)
    assert 5 <= len(labels) <= 13
    assert labels[0] == "0" and labels[-1] == "40"
    positions = fig.axes[0].get_xticks()
    assert [str(epochs[int(p)]) for p in positions] == labels  # label = epoch at that cell


def test_across_members_heatmap_annotates_every_cell():
    m = np.array([[1.0, 0.02, -0.01], [0.02, 1.0, 0.05], [-0.01, 0.05, 1.0]])
    fig = heatmap.across_members_heatmap(m, [0, 1, 2], "cosine").figure()
    ax = fig.axes[0]
    assert tick_labels(ax.xaxis) == ["m0", "m1", "m2"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(f"{v:.2f}" for v in m.ravel())
    lo, hi = ax.images[0].get_clim()
    assert lo == pytest.approx(-0.01) and hi == 1.0  # negative cosines stay on the scale


def test_full_heatmap_separates_member_blocks():
    M, E = 3, 4
    m = np.random.default_rng(1).uniform(size=(M * E, M * E))
    fig = heatmap.full_heatmap(m, [0, 1, 2], [0, 1, 2, 3], "disagreement").figure()
    ax = fig.axes[0]
    # axhline / axvline at every block boundary: 2 per boundary.
    bounds = sorted(
        {
            round(float(line.get_xdata()[0]), 2)
            for line in ax.lines
            if line.get_xdata()[0] == line.get_xdata()[1]
        }
    )
    assert bounds == [3.5, 7.5]
    assert len(ax.lines) == 2 * (M - 1)
    assert tick_labels(ax.xaxis) == ["m0", "m1", "m2"]
    np.testing.assert_allclose(ax.get_xticks(), [1.5, 5.5, 9.5])
    assert len(fig.axes) == 2  # colour bar
    with pytest.raises(ValueError, match="expected"):
        heatmap.full_heatmap(m[:-1], [0, 1, 2], [0, 1, 2, 3], "cosine")


def test_unknown_heatmap_quantity_names_the_allowed_ones():
    with pytest.raises(ModescapeError, match="cosine, disagreement"):
        heatmap.within_trajectory_heatmap(np.eye(2), [0, 1], "cosines")


def test_heatmaps_compared_side_by_side_share_one_colour_scale():
    rng = np.random.default_rng(0)
    members, epochs = [0, 1, 2], [0, 1, 2, 3]
    full = rng.uniform(0, 0.6, size=(12, 12))
    finals = np.arange(3) * 4 + 3
    across, own = full[np.ix_(finals, finals)], full[:4, :4]
    limits = heatmap.shared_limits("disagreement", full, across, own)
    assert limits == (0.0, pytest.approx(full.max()))
    figs = [
        heatmap.full_heatmap(full, members, epochs, "disagreement", limits=limits).figure(),
        heatmap.across_members_heatmap(across, members, "disagreement", limits=limits).figure(),
        heatmap.within_trajectory_heatmap(own, epochs, "disagreement", limits=limits).figure(),
    ]
    assert {fig.axes[0].images[0].get_clim() for fig in figs} == {limits}
    # Without shared limits each would scale to its own maximum.
    alone = heatmap.within_trajectory_heatmap(own, epochs, "disagreement").figure()
    assert alone.axes[0].images[0].get_clim()[1] == pytest.approx(own.max())
    lo, hi = heatmap.shared_limits("cosine", np.array([[1.0, -0.2], [-0.2, 1.0]]))
    assert (lo, hi) == (-0.2, 1.0)


def png_and_csv(description) -> tuple[bytes, bytes]:
    return (
        pixels(description.figure()),
        csv_bytes(description.table("heat")),
    )


def test_full_heatmap_csv_holds_the_matrix_by_snapshot():
    # 2 members x 2 epochs: rows and columns member-major, m0_e0, m0_e1, m1_e0, m1_e1
    m = np.array(
        [[0.0, 0.1, 0.5, 0.6], [0.1, 0.0, 0.4, 0.55], [0.5, 0.4, 0.0, 0.2], [0.6, 0.55, 0.2, 0.0]]
    )
    h = heatmap.full_heatmap(m, [0, 1], [1, 3], "disagreement")
    table = h.table("disagreement_all")
    assert table.header == ["member", "epoch", "m0_e1", "m0_e3", "m1_e1", "m1_e3"]
    assert [r[:2] for r in table.rows] == [[0, 1], [0, 3], [1, 1], [1, 3]]
    np.testing.assert_array_equal([r[2:] for r in table.rows], m)
    np.testing.assert_array_equal(h.figure().axes[0].images[0].get_array(), m)
    assert h.limits == (0.0, 0.6) and h.blocks == 2


def test_cosine_csv_keeps_six_decimals_distance_four_digits():
    m = np.array([[1.0, 0.9999871234], [0.9999871234, 1.0]])
    cos = heatmap.across_members_heatmap(m, [0, 1], "cosine").table("c")
    assert cos.header == ["member", "m0", "m1"] and cos.rows[0] == [0, 1.0, 0.999987]
    dist = heatmap.within_trajectory_heatmap(m * 123.456, [0, 5], "distance").table("d")
    assert dist.header == ["epoch", "e0", "e5"] and dist.rows[1] == [5, 123.5, 123.5]


@pytest.mark.parametrize("build", ["full", "members", "trajectory"])
def test_png_and_csv_are_drawn_from_one_description(build):
    rng = np.random.default_rng(3)
    m = rng.uniform(0, 0.5, (4, 4))
    h = {
        "full": lambda: heatmap.full_heatmap(m, [0, 1], [0, 1], "disagreement"),
        "members": lambda: heatmap.across_members_heatmap(m, [0, 1, 2, 3], "disagreement"),
        "trajectory": lambda: heatmap.within_trajectory_heatmap(m, [0, 1, 2, 3], "disagreement"),
    }[build]()
    png, csv = png_and_csv(h)
    planted = m.copy()
    planted[1, 2] = 0.25 if planted[1, 2] != 0.25 else 0.3
    changed = png_and_csv(dataclasses.replace(h, matrix=planted))
    assert changed[0] != png and changed[1] != csv
    # A label changes the picture only; the numbers stay.
    relabelled = png_and_csv(dataclasses.replace(h, title="another title"))
    assert relabelled[0] != png and relabelled[1] == csv
