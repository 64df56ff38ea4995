"""Embeddings (report/figures/embedding.py): trajectories and samplers' samples in function
space, each drawn and tabulated from one description parsed once from the study's CSV."""

from __future__ import annotations

import dataclasses

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

from modescape.report.figures import embedding
from modescape.report.figures.analysis import member_color
from modescape.report.render.page import csv_bytes
from tests.report.figures.drawn import pixels, scatters


def test_trajectory_figure_one_line_per_member_in_epoch_order():
    rng = np.random.default_rng(2)
    members, epochs = np.repeat([0, 1, 2], 5), np.tile(np.arange(5), 3)
    x, y = rng.normal(size=15), rng.normal(size=15)
    perm = rng.permutation(15)  # rows in any order: the figure must sort by epoch
    cols = {"member": members[perm], "epoch": epochs[perm], "x": x[perm], "y": y[perm]}
    fig = embedding.Trajectories.from_columns(cols, "t-SNE").figure()
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    for m, line in enumerate(ax.lines):
        # coordinates as the CSV rounds them: 4 significant digits
        np.testing.assert_allclose(line.get_xdata(), x[members == m], rtol=1e-3)  # epochs 0..4
        np.testing.assert_allclose(line.get_ydata(), y[members == m], rtol=1e-3)
        assert to_rgba(line.get_color()) == member_color(m)
    # the starts (open circles) and the ends (stars), one point per member in its colour
    start, end = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(start.get_offsets(), np.c_[x, y][epochs == 0], rtol=1e-3)
    np.testing.assert_allclose(end.get_offsets(), np.c_[x, y][epochs == 4], rtol=1e-3)
    assert [to_rgba(c) for c in start.get_edgecolors()] == [member_color(m)
                                                            for m in range(3)]  # fmt: skip
    assert [to_rgba(c) for c in end.get_facecolors()] == [member_color(m) for m in range(3)]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["member 0", "member 1", "member 2"]
    assert legend[3:] == ["start (epoch 0)", "end (epoch 4)"]


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def tsne_columns(members=(0, 1), epochs=4, samples=5, seed=0):
    rng = np.random.default_rng(seed)
    kind, member, index = [], [], []
    for m in members:
        for e in range(epochs):
            kind.append("trajectory"), member.append(m), index.append(e)
        for i in range(samples):
            kind.append("sample"), member.append(m), index.append(i)
    n = len(kind)
    return {
        "kind": np.array(kind),
        "member": np.array(member),
        "index": np.array(index),
        "x": rng.normal(size=n),
        "y": rng.normal(size=n),
    }


def test_subspace_tsne_one_panel_per_method_lines_and_lighter_clouds():
    panels = {m: tsne_columns(seed=i) for i, m in enumerate(("random", "dropout", "diagonal"))}
    perm = np.random.default_rng(9).permutation(18)  # rows in any order: sorted by index
    panels["random"] = {k: v[perm] for k, v in panels["random"].items()}
    fig = embedding.sampler_embeddings(panels).figure()
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == [
        "random subspace",
        "dropout subspace",
        "diagonal Gaussian",
    ]
    cols = panels["random"]
    ax = fig.axes[0]
    assert len(ax.lines) == 2  # one trajectory per member
    for m, line in zip((0, 1), ax.lines):
        rows = np.flatnonzero((cols["kind"] == "trajectory") & (cols["member"] == m))
        rows = rows[np.argsort(cols["index"][rows])]
        np.testing.assert_allclose(line.get_xdata(), cols["x"][rows], rtol=1e-4)
        assert line.get_color() == member_color(m)
    sc = scatters(ax)  # per member: its cloud, its start marker, its end marker
    assert len(sc) == 6
    for m, cloud, start, end in zip((0, 1), sc[::3], sc[1::3], sc[2::3]):
        sel = (cols["kind"] == "sample") & (cols["member"] == m)
        np.testing.assert_allclose(cloud.get_offsets(), np.c_[cols["x"][sel], cols["y"][sel]])
        light, full = cloud.get_facecolor()[0], np.array(member_color(m))
        assert np.all(light[:3] >= full[:3]) and np.any(light[:3] > full[:3])  # lighter
        rows = np.flatnonzero((cols["kind"] == "trajectory") & (cols["member"] == m))
        last = rows[np.argmax(cols["index"][rows])]
        np.testing.assert_allclose(end.get_offsets(), [[cols["x"][last], cols["y"][last]]])
        first = (cols["kind"] == "trajectory") & (cols["member"] == m) & (cols["index"] == 0)
        np.testing.assert_allclose(
            start.get_offsets(), np.c_[cols["x"][first], cols["y"][first]], rtol=1e-4
        )
    assert legend_texts(fig) == [
        "member 0",
        "member 1",
        "first snapshot",
        "final snapshot",
        "samples around the final snapshot",
    ]


def test_trajectories_csv_chart_and_figure_hold_the_same_points():
    # rows as the study may write them (any order): sorted by member, then epoch
    cols = {
        "member": np.array([1, 0, 0, 1]),
        "epoch": np.array([0, 2, 0, 2]),
        "x": np.array([3.0, 2.0, 1.0, 4.123456]),
        "y": np.array([-1.0, -2.0, -3.0, -4.0]),
    }
    t = embedding.Trajectories.from_columns(cols, "PCA")
    table = t.table("trajectories_pca")
    assert table.header == ["member", "epoch", "x", "y"]
    assert table.rows == [[0, 0, 1.0, -3.0], [0, 2, 2.0, -2.0], [1, 0, 3.0, -1.0],
                          [1, 2, 4.123, -4.0]]  # fmt: skip
    members = [s for s in t.chart.series if s.name.startswith("member")]
    assert [(s.x, s.y) for s in members] == [
        ([1.0, 2.0], [-3.0, -2.0]),
        ([3.0, 4.123], [-1.0, -4.0]),
    ]
    assert t.chart.x_label == "PCA dimension 1"
    lines = t.figure().axes[0].lines
    np.testing.assert_allclose(lines[1].get_xdata(), [3.0, 4.123])


def test_joint_embedding_one_panel_per_method_with_every_trajectory():
    cols = {
        "kind": np.array(["trajectory", "trajectory", "sample", "sample", "sample"]),
        "method": np.array(["", "", "swag", "swa", "swag"]),
        "member": np.array([0, 0, 0, 0, 0]),
        "index": np.array([0, 1, 0, 0, 1]),
        "x": np.arange(5.0),
        "y": -np.arange(5.0),
    }
    e = embedding.joint_embedding(cols)
    assert [p.method for p in e.panels] == ["swag", "swa"]
    np.testing.assert_array_equal(e.panels[0].x, [0, 1, 2, 4])
    np.testing.assert_array_equal(e.panels[1].kind, ["trajectory", "trajectory", "sample"])
    rows = e.table("swag_tsne").rows
    assert rows[2] == ["swag", "sample", 0, 0, 2.0, -2.0] and len(rows) == 7
    np.testing.assert_array_equal(e.panels[0].final_snapshots()[0], [1.0, -1.0])
    assert embedding.joint_embedding({k: v[:2] for k, v in cols.items()}) is None


def test_png_and_csv_are_drawn_from_one_description():
    e = embedding.sampler_embeddings({"random": tsne_columns()})
    png, csv = pixels(e.figure()), csv_bytes(e.table("subspace_tsne"))
    panel = e.panels[0]
    moved = dataclasses.replace(panel, x=panel.x + np.where(panel.kind == "sample", 1.0, 0.0))
    planted = dataclasses.replace(e, panels=[moved])
    assert pixels(planted.figure()) != png
    assert csv_bytes(planted.table("subspace_tsne")) != csv
    t = embedding.Trajectories(np.array([0, 0]), np.array([0, 1]), np.zeros(2), np.ones(2), "PCA")
    moved_t = dataclasses.replace(t, y=np.array([1.0, 2.0]))
    assert csv_bytes(moved_t.table("t")) != csv_bytes(t.table("t"))
    assert pixels(moved_t.figure()) != pixels(t.figure())
