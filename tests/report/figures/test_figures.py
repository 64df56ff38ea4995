"""Figures: each one on small synthetic arrays, checked through the artists it drew."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgba
from PIL import Image
from scipy.spatial.distance import cdist

from modescape.analysis.metrics import reliability
from modescape.errors import ModescapeError
from modescape.report.figures import analysis as figures


def tick_labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels()]


def test_within_trajectory_heatmap_ticks_colorbar_and_data():
    rng = np.random.default_rng(0)
    m = rng.uniform(0, 1, (5, 5))
    fig = figures.within_trajectory_heatmap(m, [0, 2, 4, 6, 8], "cosine", member=3)
    ax, cbar = fig.axes  # the heatmap and its colour bar
    assert tick_labels(ax.xaxis) == ["0", "2", "4", "6", "8"]
    assert tick_labels(ax.yaxis) == ["0", "2", "4", "6", "8"]
    assert ax.get_xlabel() == "epoch"
    assert "member 3" in ax.get_title()
    assert "cosine" in cbar.get_ylabel()
    np.testing.assert_array_equal(ax.images[0].get_array(), m)


def test_long_trajectories_get_thinned_ticks_that_keep_first_and_last_epoch():
    epochs = list(range(41))
    fig = figures.within_trajectory_heatmap(np.eye(41), epochs, "disagreement")
    labels = tick_labels(fig.axes[0].xaxis)
    assert 5 <= len(labels) <= 13
    assert labels[0] == "0" and labels[-1] == "40"
    positions = fig.axes[0].get_xticks()
    assert [str(epochs[int(p)]) for p in positions] == labels  # label = epoch at that cell


def test_across_members_heatmap_annotates_every_cell():
    m = np.array([[1.0, 0.02, -0.01], [0.02, 1.0, 0.05], [-0.01, 0.05, 1.0]])
    fig = figures.across_members_heatmap(m, [0, 1, 2], "cosine")
    ax = fig.axes[0]
    assert tick_labels(ax.xaxis) == ["m0", "m1", "m2"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(f"{v:.2f}" for v in m.ravel())
    lo, hi = ax.images[0].get_clim()
    assert lo == pytest.approx(-0.01) and hi == 1.0  # negative cosines stay on the scale


def test_full_heatmap_separates_member_blocks():
    M, E = 3, 4
    m = np.random.default_rng(1).uniform(size=(M * E, M * E))
    fig = figures.full_heatmap(m, [0, 1, 2], [0, 1, 2, 3], "disagreement")
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
        figures.full_heatmap(m[:-1], [0, 1, 2], [0, 1, 2, 3], "cosine")


def test_unknown_heatmap_quantity_names_the_allowed_ones():
    with pytest.raises(ModescapeError, match="cosine, disagreement"):
        figures.within_trajectory_heatmap(np.eye(2), [0, 1], "cosines")


def test_trajectory_figure_one_line_per_member_in_epoch_order():
    rng = np.random.default_rng(2)
    members, epochs = np.repeat([0, 1, 2], 5), np.tile(np.arange(5), 3)
    x, y = rng.normal(size=15), rng.normal(size=15)
    perm = rng.permutation(15)  # rows in any order: the figure must sort by epoch
    fig = figures.trajectory_figure(members[perm], epochs[perm], x[perm], y[perm])
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    for m, line in enumerate(ax.lines):
        # coordinates as the CSV rounds them: 4 significant digits
        np.testing.assert_allclose(line.get_xdata(), x[members == m], rtol=1e-3)  # epochs 0..4
        np.testing.assert_allclose(line.get_ydata(), y[members == m], rtol=1e-3)
        assert to_rgba(line.get_color()) == figures.member_color(m)
    # the starts (open circles) and the ends (stars), one point per member in its colour
    start, end = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(start.get_offsets(), np.c_[x, y][epochs == 0], rtol=1e-3)
    np.testing.assert_allclose(end.get_offsets(), np.c_[x, y][epochs == 4], rtol=1e-3)
    assert [to_rgba(c) for c in start.get_edgecolors()] == [figures.member_color(m)
                                                            for m in range(3)]  # fmt: skip
    assert [to_rgba(c) for c in end.get_facecolors()] == [figures.member_color(m) for m in range(3)]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["member 0", "member 1", "member 2"]
    assert legend[3:] == ["start (epoch 0)", "end (epoch 4)"]


def curves_table(sizes=(1, 2, 3, 4)):
    rows, rng = [], np.random.default_rng(3)
    for fam in ("deep", "snapshot", "weight_average"):
        for k in sizes:
            for metric in ("accuracy", "nll", "brier", "ece"):
                rows.append((fam, k, metric, rng.uniform(0.1, 0.9), rng.uniform(0, 0.05)))
    return [np.array(col) for col in zip(*rows)]


def test_ensemble_curves_mean_and_std_bands_start_at_size_one():
    family, size, metric, mean, std = curves_table()
    perm = np.random.default_rng(4).permutation(len(family))
    fig = figures.ensemble_curves_figure(*(c[perm] for c in (family, size, metric, mean, std)))
    axes = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in axes] == [
        "Accuracy",
        "Negative log-likelihood",
        "Brier score",
        "Expected calibration error",
    ]
    for ax, (name, (_, _, scale)) in zip(axes, figures.METRIC_AXES.items()):
        assert len(ax.lines) == 3
        for line, fam in zip(ax.lines, ("deep", "snapshot", "weight_average")):
            sel = (family == fam) & (metric == name)
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
            np.testing.assert_allclose(line.get_ydata(), mean[sel] * scale, rtol=1e-4)
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 3
        sel = (family == "deep") & (metric == name)
        ys = bands[0].get_paths()[0].vertices[:, 1]
        # the std as the chart rounds it: 3 significant digits
        assert ys.max() == pytest.approx(max(mean[sel] + std[sel]) * scale, rel=1e-3)
        assert ys.min() == pytest.approx(min(mean[sel] - std[sel]) * scale, rel=1e-3)
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks[0] == 1 and all(float(t).is_integer() for t in ticks)
    assert "%" in axes[0].get_ylabel()


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
    fig = figures.reliability_figure({"Single": d, "Ensemble": d})
    assert len(fig.axes) == 4
    top, bottom = fig.axes[0], fig.axes[1]
    assert f"ECE {rel.ece:.1%}" in top.get_title()
    heights = [p.get_height() for p in top.patches]
    np.testing.assert_allclose(heights, np.nan_to_num(rel.accuracy, nan=0.0))
    np.testing.assert_allclose([p.get_height() for p in bottom.patches], rel.counts)
    diagonal = [line for line in top.lines if list(line.get_xdata()) == [0, 1]]
    assert len(diagonal) == 1 and list(diagonal[0].get_ydata()) == [0, 1]


def test_training_curves_skip_missing_values_and_share_member_colours():
    member = np.repeat([0, 1], 4)
    epoch = np.tile(np.arange(4), 2)
    train_loss = np.array([np.nan, 1.0, 0.8, 0.6] * 2)  # epoch 0 has no training loss
    curves = {
        "train_loss": train_loss,
        "test_loss": np.full(8, 1.2),
        "train_acc": np.full(8, 0.5),
        "test_acc": np.full(8, 0.4),
    }
    fig = figures.training_curves_figure(member, epoch, curves)
    loss_ax, acc_ax = fig.axes[:2]
    assert len(loss_ax.lines) == 4 and len(acc_ax.lines) == 4
    first = loss_ax.lines[0]
    np.testing.assert_array_equal(first.get_xdata(), [1, 2, 3])
    # train (solid) for each member, then test (dashed)
    np.testing.assert_allclose(acc_ax.lines[2].get_ydata(), 40.0)  # test accuracy, in percent
    assert [ln.get_linestyle() for ln in acc_ax.lines] == ["-", "-", "--", "--"]
    tab10 = colormaps["tab10"]
    assert to_rgba(loss_ax.lines[1].get_color()) == tab10(1)
    assert to_rgba(loss_ax.lines[3].get_color()) == tab10(1)


def test_distance_from_init_matches_direct_norms():
    rng = np.random.default_rng(6)
    M, E = 2, 5
    weights = np.cumsum(rng.normal(size=(M, E, 30)), axis=1).reshape(M * E, 30)
    dist = cdist(weights, weights)
    fig = figures.distance_from_init_figure(dist, [0, 1], list(range(E)))
    ax = fig.axes[0]
    for i, line in enumerate(ax.lines):
        w = weights[i * E : (i + 1) * E]
        np.testing.assert_allclose(line.get_ydata(), np.linalg.norm(w - w[0], axis=1), rtol=1e-4)
        np.testing.assert_array_equal(line.get_xdata(), range(E))


def test_save_figure_writes_decodable_png_and_pdf(tmp_path: Path):
    fig = figures.across_members_heatmap(np.eye(3), [0, 1, 2], "cosine")
    paths = figures.save_figure(fig, tmp_path / "sub" / "heat")
    assert [p.name for p in paths] == ["heat.png", "heat.pdf"]
    with Image.open(paths[0]) as im:
        im.load()
        w, h = fig.get_size_inches() * figures.DPI
        assert im.format == "PNG" and im.size == (round(w), round(h))
    assert paths[1].read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["heat.pdf", "heat.png"]
    # Same inputs, same bytes: nothing time-dependent (creation date) goes into the files.
    again = figures.across_members_heatmap(np.eye(3), [0, 1, 2], "cosine")
    assert figures.render_figure(again) == {
        "png": paths[0].read_bytes(),
        "pdf": paths[1].read_bytes(),
    }
    Image.open(io.BytesIO(figures.figure_bytes(fig, "png"))).verify()
    with pytest.raises(ModescapeError, match="png, pdf"):
        figures.figure_bytes(fig, "svg")


def test_ensemble_curves_styles_pick_order_colour_and_line_style():
    family, size, metric, mean, std = curves_table()
    styles = {"weight_average": ("red", "--", "wa"), "deep": ("blue", "-", "deep")}
    fig = figures.ensemble_curves_figure(family, size, metric, mean, std, styles=styles)
    ax = fig.axes[0]
    assert len(ax.lines) == 2  # "snapshot" is not in styles: not drawn
    assert [line.get_label() for line in ax.lines] == ["wa", "deep"]
    assert [line.get_linestyle() for line in ax.lines] == ["--", "-"]
    assert to_rgba(ax.lines[0].get_color()) == to_rgba("red")
    sel = (family == "weight_average") & (metric == "accuracy")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean[sel] * 100, rtol=1e-4)


def test_agreement_with_final_figure_lines():
    from modescape.report.figures.analysis import agreement_with_final_figure

    members, epochs = [0, 1], [0, 1, 2]
    agreement = np.array([[0.1, 0.2], [0.5, 0.3], [1.0, 0.4], [0.2, 0.1], [0.3, 0.6], [0.4, 1.0]])
    fig = agreement_with_final_figure(agreement, members, epochs)
    ax = fig.axes[0]
    solid = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata())]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--" and len(ln.get_xdata())]
    np.testing.assert_allclose(solid[0].get_ydata(), [10, 50, 100])  # member 0 vs its own final
    np.testing.assert_allclose(solid[1].get_ydata(), [10, 60, 100])
    np.testing.assert_allclose(dashed[0].get_ydata(), [20, 30, 40])  # member 0 vs member 1's
    with pytest.raises(ValueError, match="expected"):
        agreement_with_final_figure(agreement[:4], members, epochs)


def test_heatmaps_compared_side_by_side_share_one_colour_scale():
    rng = np.random.default_rng(0)
    members, epochs = [0, 1, 2], [0, 1, 2, 3]
    full = rng.uniform(0, 0.6, size=(12, 12))
    finals = np.arange(3) * 4 + 3
    across, own = full[np.ix_(finals, finals)], full[:4, :4]
    limits = figures.shared_limits("disagreement", full, across, own)
    assert limits == (0.0, pytest.approx(full.max()))
    figs = [
        figures.full_heatmap(full, members, epochs, "disagreement", limits=limits),
        figures.across_members_heatmap(across, members, "disagreement", limits=limits),
        figures.within_trajectory_heatmap(own, epochs, "disagreement", limits=limits),
    ]
    assert {fig.axes[0].images[0].get_clim() for fig in figs} == {limits}
    # Without shared limits each would scale to its own maximum.
    alone = figures.within_trajectory_heatmap(own, epochs, "disagreement")
    assert alone.axes[0].images[0].get_clim()[1] == pytest.approx(own.max())
    lo, hi = figures.shared_limits("cosine", np.array([[1.0, -0.2], [-0.2, 1.0]]))
    assert (lo, hi) == (-0.2, 1.0)


def test_metric_values_are_clipped_to_their_domain():
    np.testing.assert_allclose(figures.clip_to_domain("ece", [-5.0, 3.0, 120.0]), [0, 3, 100])
    np.testing.assert_allclose(figures.clip_to_domain("nll", [-0.1, 7.0]), [0, 7])
    np.testing.assert_allclose(figures.clip_to_domain("brier", [-0.1, 2.5]), [0, 2])
    np.testing.assert_allclose(figures.clip_to_domain("other", [-1.0]), [-1])
