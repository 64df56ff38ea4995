"""The analysis study's chart figures as descriptions (report/figures/curves.py): the page's
charts, the PNG's panels and the CSV all come from one object, so a change planted in the
description's arrays shows in both the chart and the CSV."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modescape.report.figures.analysis import METRIC_AXES, family_styles
from modescape.report.figures.curves import (
    AgreementWithFinal,
    DistanceFromInit,
    EnsembleCurves,
    TrainingCurves,
)
from modescape.report.figures.described import charted_plot


def ensemble_columns() -> dict[str, np.ndarray]:
    rows = [(f, k, mt) for f in ("deep", "snapshot") for k in (1, 2, 3) for mt in METRIC_AXES]
    rng = np.random.default_rng(0)
    return {
        "family": np.array([r[0] for r in rows]),
        "size": np.array([r[1] for r in rows]),
        "metric": np.array([r[2] for r in rows]),
        "mean": rng.uniform(0.1, 0.9, len(rows)),
        "std": rng.uniform(0.0, 0.05, len(rows)),
    }


def ensemble_points(curves: EnsembleCurves) -> list[tuple[str, int, str, float]]:
    """(family, size, metric, y in the metric's own units) of every point the charts draw."""
    labels = {label: fam for fam, (_, _, label) in family_styles(curves.family).items()}
    points = []
    for (metric, (_, _, scale)), chart in zip(METRIC_AXES.items(), curves.charts()):
        for s in chart.series:
            points += [(labels[s.name], int(x), metric, y / scale) for x, y in zip(s.x, s.y)]
    return sorted(points)


def test_ensemble_curves_chart_and_csv_hold_the_same_points():
    curves = EnsembleCurves.from_columns(ensemble_columns())
    assert curves.charts() is curves.charts()  # one list, drawn by figure() and on the page
    plot = charted_plot("ensemble_curves", curves, "shown", data_caption="csv")
    assert plot.charts == curves.charts() and all(
        a is b for a, b in zip(plot.charts, curves.charts())
    )
    assert plot.data.caption == "csv" and plot.caption == "shown"
    assert len(plot.figure.axes) == len(plot.charts) == 4
    table = sorted((r[0], r[1], r[2], r[3]) for r in plot.data.rows)
    assert plot.data.header == ["family", "ensemble_size", "metric", "mean", "std"]
    drawn = ensemble_points(curves)
    assert [t[:3] for t in table] == [d[:3] for d in drawn]
    np.testing.assert_allclose([t[3] for t in table], [d[3] for d in drawn], rtol=1e-3)
    # a planted change in the description moves the chart's point and the CSV's row alike
    mean = curves.mean.copy()
    mean[0] += 0.05
    planted = dataclasses.replace(curves, mean=mean)
    row = planted.table("x").rows[0]
    assert row[3] == pytest.approx(curves.table("x").rows[0][3] + 0.05, abs=1e-3)
    moved = [a for a, b in zip(ensemble_points(planted), drawn) if a != b]
    assert len(moved) == 1 and moved[0][:3] == tuple(row[:3])


def test_subspace_curves_use_the_compact_legend_and_the_same_csv():
    c = ensemble_columns()
    plain, compact = EnsembleCurves.from_columns(c), EnsembleCurves.from_columns(c, subspace=True)
    assert plain.charts()[0].keys == [] and compact.charts()[0].keys
    assert plain.table("t").rows == compact.table("t").rows


def test_member_lines_chart_and_csv_hold_the_same_values():
    M, E = [0, 3], [0, 1, 2]
    rng = np.random.default_rng(1)
    matrix = rng.uniform(0, 5, (6, 6))
    distance = DistanceFromInit.from_matrix(matrix, M, E)
    np.testing.assert_array_equal(distance.distance[1], matrix[3, 3:6])  # member 3 from its start
    rows = distance.table("distance_from_init").rows
    assert [r[:2] for r in rows] == [[m, e] for m in M for e in E]
    drawn = [y for s in distance.charts()[0].series for y in s.y]
    np.testing.assert_allclose([r[2] for r in rows], drawn, rtol=1e-3)
    planted = dataclasses.replace(distance, distance=distance.distance + 1.0)
    assert planted.table("d").rows[0][2] == pytest.approx(rows[0][2] + 1.0, rel=1e-3)
    assert planted.charts()[0].series[0].y[0] == pytest.approx(drawn[0] + 1.0, rel=1e-3)

    agreement = AgreementWithFinal.from_matrix(rng.uniform(0.5, 1.0, (6, 2)), M, E)
    table = agreement.table("agreement_with_final")
    assert table.header == ["member", "epoch", "agreement_own_final", "agreement_other_finals_mean"]
    own = [y / 100 for s in agreement.charts()[0].series[:2] for y in s.y]
    others = [y / 100 for s in agreement.charts()[0].series[2:] for y in s.y]
    np.testing.assert_allclose([r[2] for r in table.rows], own, atol=1e-4)
    np.testing.assert_allclose([r[3] for r in table.rows], others, atol=1e-4)
    one = AgreementWithFinal.from_matrix(np.ones((3, 1)), [0], E)  # one member: no "others"
    assert one.others is None and len(one.charts()[0].series) == 1
    assert one.table("a").header == ["member", "epoch", "agreement_own_final"]


def test_training_curves_chart_and_csv_hold_the_same_values():
    member = np.array([1, 0, 1, 0, 1, 0])
    epoch = np.array([0, 0, 1, 1, 2, 2])
    c = {
        "member": member,
        "epoch": epoch,
        "train_loss": np.array([np.nan, np.nan, 1.0, 1.1, 0.5, 0.6]),
        "test_acc": np.array([0.1, 0.12, 0.5, 0.55, 0.7, 0.72]),
        "val_loss": np.full(6, np.nan),  # never measured: neither drawn nor in the CSV
    }
    curves = TrainingCurves.from_columns(c)
    table = curves.table("training_curves")
    assert table.header == ["member", "epoch", "train_loss", "test_acc"]
    assert [r[:2] for r in table.rows] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    loss, acc = curves.charts()
    by_name = {s.name: s for s in loss.series + acc.series}
    for m in (0, 1):
        mine = [r for r in table.rows if r[0] == m]
        assert by_name[f"member {m} train"].y == [r[2] for r in mine if r[2] is not None]
        np.testing.assert_allclose(by_name[f"member {m} test"].y, [100 * r[3] for r in mine])
    planted = dataclasses.replace(curves, curves={**curves.curves, "test_acc": c["test_acc"] / 2})
    assert planted.table("t").rows[0][3] == pytest.approx(table.rows[0][3] / 2, abs=1e-4)
    assert planted.charts()[1].series[0].y[0] == pytest.approx(acc.series[0].y[0] / 2)
