"""The Connectors section: figures with their numbers, a reading generated from the summary,
Garipov et al.'s table and the paper's claim beside this run's values."""

from __future__ import annotations

import shutil

import pytest

from modescape.report.base import ReportContext
from modescape.report.sections.connect import connect_reading, connect_section
from modescape.store.run import load_run
from modescape.store.schema import ConnectSummary
from modescape.studies.connect import ConnectConfig, fit_curve

SMALL = ConnectConfig(epochs=2, points=7, train_examples=200, max_examples=100,
                      plane_resolution=5, fge_cycles=2, fge_cycle_epochs=1)  # fmt: skip


@pytest.fixture(scope="module")
def connected(analysed, tmp_path_factory):
    dst = tmp_path_factory.mktemp("connect") / "run"
    shutil.copytree(analysed, dst)
    fit_curve(dst, SMALL)
    return dst


def test_section_has_every_figure_with_its_numbers(connected):
    section = connect_section(ReportContext(load_run(connected)))
    assert section is not None
    names = [p.name for p in section.figures]
    assert names == ["connect_profile", "connect_plane", "connect_ensembles"]
    profile = section.figures[0].data
    assert len(profile.rows) == 2 * SMALL.points  # the curve's and the line's t values
    assert {r[0] for r in profile.rows} == {"curve", "line"}
    families = {r[0] for r in section.figures[2].data.rows}
    assert {"curve ensemble", "FGE", "deep ensemble", "snapshot ensemble"} <= families
    table = section.tables[0]
    assert any("6.79-7.75%" in row[2] for row in table.rows)  # Garipov's VGG16 Bézier curve
    assert any("space of predictions" in row[2] for row in table.rows)


def test_reading_quotes_the_summary(connected):
    s = load_run(connected).study("connect")
    section = connect_section(ReportContext(load_run(connected)))
    text = " ".join(section.reading)
    assert f"{100 * s.error_barrier:.1f} points" in text
    assert f"{100 * s.line_error_barrier:.1f}" in text
    assert f"{100 * s.midpoint['disagreement_end0']:.1f}%" in text


def _summary(mid0: float, mid1: float, ends: float, barrier: float = 0.01, line: float = 0.5):
    return ConnectSummary(
        pair=["m0", "m1"],
        config={"shape": "bezier", "bends": 3, "epochs": 4, "recipe": "garipov"},
        error_barrier=barrier,
        line_error_barrier=line,
        loss_barrier=0.0,
        line_loss_barrier=0.0,
        stats={"test_error": {"max": 0.3}},
        line_stats={},
        length=10.0,
        line_length=8.0,
        midpoint={"t": 0.5, "disagreement_end0": mid0, "disagreement_end1": mid1,
                  "ends_disagreement": ends},
        curve_folder="connect/curve",
        bn_policy="none",
        num_examples=100,
    )  # fmt: skip


def test_reading_follows_the_numbers_not_the_paper():
    apart = " ".join(connect_reading(_summary(0.2, 0.22, 0.25), {}))
    assert "connected in loss, apart in function" in apart and "50.0× lower" in apart
    assert "as the paper (v1) states" in apart
    close = " ".join(connect_reading(_summary(0.02, 0.22, 0.25), {}))
    assert "close in function" in close and "apart in function" not in close
    assert "unlike the paper's claim" in close and "as the paper" not in close
    # a curve that kept a barrier is not "connected in loss", however apart its functions
    barrier = " ".join(connect_reading(_summary(0.2, 0.22, 0.25, barrier=0.12), {}))
    assert "not connected in loss (a barrier of 12.0 points remains)" in barrier
    assert "unlike the paper's claim" in barrier and "4.2× lower" in barrier
    # a curve worse than the straight line is never called lower
    worse = " ".join(connect_reading(_summary(0.2, 0.22, 0.25, barrier=0.3, line=0.1), {}))
    assert "higher than the line's" in worse and "× lower" not in worse
    flat = " ".join(connect_reading(_summary(0.2, 0.22, 0.25, barrier=0.0, line=0.0), {}))
    assert "(the same)" in flat and "connected in loss, apart" in flat
    printed = " ".join(connect_reading(_summary(0.2, 0.22, 0.25, 0.0812, 0.0814), {}))
    assert "8.1 points against 8.1 for the straight line (the same)" in printed


def test_no_section_without_results(analysed):
    assert connect_section(ReportContext(load_run(analysed))) is None


def test_compare_overlays_curve_profiles(connected, analysed, tmp_path):
    import json

    from modescape.report.compare import compare_runs

    out = compare_runs([connected, analysed], tmp_path / "cmp")
    data = json.loads((out.parent / "data.json").read_text())
    figs = {f["name"]: f for f in data["figures"]}
    assert {"connect_test_error", "connect_agreement_end0"} <= set(figs)
    rows = figs["connect_test_error"]["rows"]
    assert len(rows) == SMALL.points  # only the run with a curve
    assert rows[0][1] == 0.0 and rows[-1][1] == 1.0
