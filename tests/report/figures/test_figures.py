"""Figures: each one on small synthetic arrays, checked through the artists it drew."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from PIL import Image
from scipy.spatial.distance import cdist

from modescape.errors import ModescapeError
from modescape.report.figures import analysis as figures
from modescape.report.figures import heatmap


def tick_labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels()]


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
    fig = heatmap.across_members_heatmap(np.eye(3), [0, 1, 2], "cosine").figure()
    paths = figures.save_figure(fig, tmp_path / "sub" / "heat")
    assert [p.name for p in paths] == ["heat.png", "heat.pdf"]
    with Image.open(paths[0]) as im:
        im.load()
        w, h = fig.get_size_inches() * figures.DPI
        assert im.format == "PNG" and im.size == (round(w), round(h))
    assert paths[1].read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["heat.pdf", "heat.png"]
    # Same inputs, same bytes: nothing time-dependent (creation date) goes into the files.
    again = heatmap.across_members_heatmap(np.eye(3), [0, 1, 2], "cosine").figure()
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


def test_metric_values_are_clipped_to_their_domain():
    np.testing.assert_allclose(figures.clip_to_domain("ece", [-5.0, 3.0, 120.0]), [0, 3, 100])
    np.testing.assert_allclose(figures.clip_to_domain("nll", [-0.1, 7.0]), [0, 7])
    np.testing.assert_allclose(figures.clip_to_domain("brier", [-0.1, 2.5]), [0, 2])
    np.testing.assert_allclose(figures.clip_to_domain("other", [-1.0]), [-1])
