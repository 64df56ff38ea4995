"""Figures of the follow-up studies, each on small synthetic arrays, checked through its artists."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from modescape.report.figures import analysis as figures
from modescape.report.figures import landscape as landscape_figures
from modescape.report.figures import studies as figures_study
from modescape.report.figures.analysis import member_color
from tests.report.figures.drawn import scatters


def legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def plane_table():
    rng = np.random.default_rng(0)
    kind, method, member, acc, div = [], [], [], [], []
    for m in ("random", "lowrank"):
        for _ in range(6):
            kind.append("sample"), method.append(m), member.append(0)
            acc.append(rng.uniform(0.3, 0.85)), div.append(rng.uniform(0, 1))
    for k, (a, d) in enumerate([(0.88, 1.2), (0.9, 1.4)], start=1):
        kind.append("member"), method.append("independent"), member.append(k)
        acc.append(a), div.append(d)
    return np.array(kind), np.array(method), np.array(member), np.array(acc), np.array(div)


def test_diversity_accuracy_plane_series_reference_and_curves():
    kind, method, member, acc, div = plane_table()
    grid = np.linspace(0.1, 0.86, 20)
    upper, lower = 1 + grid, 1 - grid
    fig = figures_study.diversity_accuracy_figure(
        kind,
        method,
        member,
        acc,
        div,
        reference_member=0,
        reference_accuracy=0.86,
        curve_accuracy=grid,
        upper=upper,
        lower=lower,
    )
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    # Two labelled reference curves, drawn in percent on x.
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_xdata(), grid * 100, rtol=1e-4)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), upper, rtol=1e-4)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), lower, rtol=1e-4)
    # One scatter per method, then the members, then the reference star at (a*, 0).
    sc = scatters(ax)
    assert len(sc) == 4
    for c, m in zip(sc[:2], ("random", "lowrank")):
        sel = (kind == "sample") & (method == m)
        np.testing.assert_allclose(c.get_offsets(), np.c_[acc[sel] * 100, div[sel]], atol=1e-3)
        assert tuple(c.get_facecolor()[0][:3]) == pytest.approx(figures_study.METHOD_COLORS[m][:3])
    np.testing.assert_allclose(sc[2].get_offsets(), [[88, 1.2], [90, 1.4]], rtol=1e-4)
    assert [tuple(f) for f in sc[2].get_facecolor()] == [member_color(1), member_color(2)]
    assert [t.get_text() for t in ax.texts] == ["m1", "m2"]
    np.testing.assert_allclose(sc[3].get_offsets(), [[86, 0]], rtol=1e-4)
    assert sorted(t.get_text() for t in ax.texts) == ["m1", "m2"]
    labels = legend_texts(fig)
    assert labels[:2] == [
        "upper reference: independent errors",
        "lower reference: perturbed reference",
    ]
    assert "random subspace samples" in labels and "low-rank Gaussian samples" in labels
    assert "independent members" in labels and "reference: member 0 (86.0%)" in labels
    assert "(1 − accuracy)" in ax.get_ylabel() and ax.get_xlabel() == "accuracy (%)"


def test_subspace_ensembles_reuse_the_ensemble_figure_with_sampler_styles():
    rows, rng = [], np.random.default_rng(1)
    fams = ("deep", "weight_average+ensemble", "random", "random+ensemble")
    for fam in fams:
        for k in (1, 2, 3):
            for mt in ("accuracy", "nll", "brier", "ece"):
                rows.append((fam, k, mt, rng.uniform(0.1, 0.9), rng.uniform(0, 0.05)))
    family, size, metric, mean, std = (np.array(c) for c in zip(*rows))
    fig = figures_study.subspace_ensembles_figure(family, size, metric, mean, std)
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 4
    for ax, (name, (_, _, scale)) in zip(panels, figures.METRIC_AXES.items()):
        assert len(ax.lines) == 4
        for line, fam in zip(ax.lines, fams):
            sel = (family == fam) & (metric == name)
            np.testing.assert_allclose(line.get_ydata(), mean[sel] * scale, rtol=1e-4)
        styles = [line.get_linestyle() for line in ax.lines]
        assert styles == ["-", "-", "--", "-"]  # samples around one trajectory: dashed
        assert to_rgba(ax.lines[2].get_color()) == to_rgba(ax.lines[3].get_color())
    assert ax.get_legend() is None  # the legend sits outside the panels
    # compact: one entry per colour and one per line style, not one per (sampler, kind)
    assert legend_texts(fig) == [
        "deep ensemble",
        "weight averages",
        "random subspace",
        "solid: ensemble of k members' models",
        "dashed: k samples around one member (mean over members)",
    ]


def test_subspace_ensembles_axes_and_bands_stay_in_each_metric_domain():
    """A wide std must not push ECE, NLL or Brier below 0 or accuracy past 100%."""
    rows = []
    for fam in ("deep", "random", "random+ensemble"):
        for k in (1, 2, 3):
            for mt, mu in (("accuracy", 0.97), ("nll", 0.05), ("brier", 0.04), ("ece", 0.01)):
                rows.append((fam, k, mt, mu, 0.2))
    family, size, metric, mean, std = (np.array(c) for c in zip(*rows))
    fig = figures_study.subspace_ensembles_figure(family, size, metric, mean, std)
    panels = [ax for ax in fig.axes if ax.lines]
    for ax, name in zip(panels, figures.METRIC_AXES):
        lo, hi = figures.METRIC_DOMAIN[name]
        bottom, top = ax.get_ylim()
        assert bottom >= lo and top <= hi, name
        for band in ax.collections:
            ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
            assert ys.min() >= lo and ys.max() <= hi, name


@pytest.mark.parametrize("spread, log", [(1.0, False), (100.0, True)])
def test_js_bars_values_labels_and_log_scale_for_wide_ranges(spread, log):
    values = {"independent members": 0.08, "late snapshots": 0.08 / spread, "random": 0.05}
    bars = figures_study.JsDiversityBars(values, {"random": "red"})
    fig = bars.figure()
    assert bars.table("subspace_js").rows == [[k, v] for k, v in values.items()]
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, list(values.values()))
    ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())))
    assert [label for _, label in ticks[::-1]] == list(values)  # top to bottom
    assert sorted(t.get_text().strip() for t in ax.texts) == sorted(
        f"{v:.3g}" for v in values.values()
    )
    assert (ax.get_xscale() == "log") is log
    assert to_rgba(ax.patches[2].get_facecolor()) == to_rgba("red")


def test_shift_diversity_lines_per_family_log_when_spread():
    js = {"members": [0.1, 0.2, 0.3], "late": [0.001, 0.002, 0.003], "other": [1, 1, 1]}
    styles = {"members": ("blue", "independent"), "late": ("orange", "late snapshots")}
    fig = figures_study.shift_diversity_figure([0, 1, 2], js, styles)
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), js["late"], rtol=1e-4)
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "2"]
    assert legend_texts(fig) == ["independent", "late snapshots"]
    linear = figures_study.shift_diversity_figure([0, 1], {"members": [0.1, 0.2]}, styles)
    assert linear.axes[0].get_yscale() == "linear"
    # the caption says when the axis is logarithmic
    log_chart = figures_study.shift_diversity_chart([0, 1, 2], js, styles)
    lin_chart = figures_study.shift_diversity_chart([0, 1], {"members": [0.1, 0.2]}, styles)
    assert "logarithmic y axis" in figures_study.shift_diversity_caption(log_chart)
    assert "logarithmic" not in figures_study.shift_diversity_caption(lin_chart)


def test_paths_figure_one_line_per_path_and_barriers_in_the_legend():
    alpha = np.linspace(0, 1, 5)
    paths = [
        {
            "name": "m0->m1",
            "kind": "across members",
            "alpha": alpha,
            "error": [0.1, 0.3, 0.5, 0.3, 0.12],
            "loss": [0.3, 1, 2, 1, 0.3],
            "error_barrier": 0.39,
            "loss_barrier": 1.7,
        },
        {
            "name": "m0@e3->m0",
            "kind": "within trajectory",
            "alpha": alpha,
            "error": [0.1] * 5,
            "loss": [0.3] * 5,
            "error_barrier": 0.0,
            "loss_barrier": 0.0,
        },
    ]
    fig = landscape_figures.paths_figure(paths)
    err_ax, loss_ax = fig.axes
    assert len(err_ax.lines) == 2 and len(loss_ax.lines) == 2
    np.testing.assert_allclose(err_ax.lines[0].get_ydata(), [10, 30, 50, 30, 12])
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [0.3, 1, 2, 1, 0.3])
    assert err_ax.lines[0].get_color() == landscape_figures.PATH_KIND_COLORS["across members"]
    assert err_ax.lines[1].get_color() == landscape_figures.PATH_KIND_COLORS["within trajectory"]
    assert legend_texts(fig) == [
        "m0->m1 (across members; error barrier 39.0 points, loss barrier 1.700)",
        "m0@e3->m0 (within trajectory; error barrier 0.0 points, loss barrier 0.000)",
    ]


def test_agreement_scales_are_data_driven():
    assert landscape_figures.agreement_difference_limit(np.array([-3.0, 12.0, np.nan])) == 12.0
    assert landscape_figures.agreement_difference_limit(np.zeros(3)) == 1.0  # never a 0-wide scale
    maps = [np.array([86.0, 90.0]), np.array([87.0, 93.0])]
    assert landscape_figures.agreement_range(maps) == (86.0, 93.0)
    assert landscape_figures.agreement_range([np.array([99.0, 100.0])]) == (97.0, 100.0)


def test_plane_description_chart_and_csv_hold_the_same_points():
    from modescape.store.schema import ReferenceCurves

    kind, method, member, acc, div = plane_table()
    cols = {"kind": kind, "method": method, "member": member, "accuracy": acc,
            "norm_diversity": div, "sample": np.where(kind == "sample", 3.0, np.nan)}  # fmt: skip
    grid = [0.2, 0.5, 0.8]
    curves = ReferenceCurves(grid, [1.2, 1.5, 1.8], [0.8, 0.5, 0.2])
    plane = figures_study.DiversityAccuracyPlane.from_columns(cols, 0, 0.86, curves)
    (chart,) = plane.charts()
    assert plane.charts()[0] is chart
    rows = plane.table("swag_plane").rows
    points = [r for r in rows if r[0] in ("sample", "member")]
    drawn = [(x / 100, y) for s in chart.series[2:-1] for x, y in zip(s.x, s.y)]
    np.testing.assert_allclose([(r[4], r[5]) for r in points], drawn, atol=1e-4)
    assert [r[3] for r in points] == [3] * 12 + [None, None]  # sample numbers; none for members
    upper = [(r[4], r[5]) for r in rows if r[0] == "upper_curve"]
    np.testing.assert_allclose(upper, list(zip(np.divide(chart.series[0].x, 100),
                                               chart.series[0].y)), atol=1e-4)  # fmt: skip
    # a planted accuracy moves the chart's point and the CSV's row alike
    planted = dataclasses.replace(plane, accuracy=np.where(np.arange(len(acc)) == 0, 0.5, acc))
    assert planted.table("p").rows[0][4] == 0.5 and planted.charts()[0].series[2].x[0] == 50.0
    # no reference curves (a reference no better than chance): none drawn, none tabulated
    bare = figures_study.DiversityAccuracyPlane.from_columns(cols, 0, 0.86, None)
    assert not any("_curve" in str(r[0]) for r in bare.table("p").rows)
    assert not any(s.name.startswith("upper") for s in bare.charts()[0].series)


def test_shift_diversity_description_chart_and_csv_hold_the_same_values():
    styles = {"members": ("#000000", "members"), "weight_average": ("#777777", "averages")}
    js = {"members": [0.1, 0.25, 0.5], "weight_average": [0.01, 0.02, 0.04], "other": [1, 1, 1]}
    diversity = figures_study.ShiftDiversity([0, 1, 3], js, styles)
    table = diversity.table("shift_diversity")
    assert table.header == ["family", "severity_0", "severity_1", "severity_3"]
    assert [r[0] for r in table.rows] == ["members", "weight_average"]  # "other" has no style
    assert [r[1:] for r in table.rows] == [s.y for s in diversity.charts()[0].series]
    assert diversity.caption() == figures_study.shift_diversity_caption(diversity.charts()[0])
    planted = figures_study.ShiftDiversity([0, 1, 3], {**js, "members": [0.1, 0.3, 0.5]}, styles)
    assert planted.table("s").rows[0][2] == planted.charts()[0].series[0].y[1] == 0.3


def test_linear_paths_description_chart_and_csv_hold_the_same_points():
    alpha = np.linspace(0, 1, 5)
    paths = [
        landscape_figures.LinearPath("m0->m1", "across members", alpha,
                                     np.array([0.1, 0.3, 0.5, 0.3, 0.12]),
                                     np.array([0.3, 1, 2, 1, 0.3]), 0.39, 1.7),
        landscape_figures.LinearPath("m0@e3->m0", "within trajectory", alpha,
                                     np.full(5, 0.1), np.full(5, 0.3), 0.0, 0.0),
    ]  # fmt: skip
    lines = landscape_figures.LinearPaths(paths)
    error, loss = lines.charts()
    rows = lines.table("landscape_paths").rows
    assert [r[:2] for r in rows] == [[p.name, p.kind] for p in paths for _ in alpha]
    np.testing.assert_allclose([r[2] for r in rows], [x for s in error.series for x in s.x])
    np.testing.assert_allclose([100 * r[3] for r in rows], [y for s in error.series for y in s.y])
    np.testing.assert_allclose([r[4] for r in rows], [y for s in loss.series for y in s.y])
    # a mapping draws as the typed path does
    as_dict = [dataclasses.asdict(p) for p in paths]
    assert landscape_figures.paths_charts(as_dict)[0].series[0].y == error.series[0].y
    planted = landscape_figures.LinearPaths([dataclasses.replace(paths[0], loss=paths[0].loss * 2)])
    assert planted.table("p").rows[2][4] == 4.0 and planted.charts()[1].series[0].y[2] == 4.0
