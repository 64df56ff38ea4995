"""The instability section shows what the study wrote: one row per spawn point plus the two
references, the figure with its chart, the trajectories when written, the study's reading."""

from __future__ import annotations

import numpy as np

from modescape.report.sections.spawn import instability_section_from
from modescape.results import PairLevel as Level
from modescape.store.schema import InstabilityPoint as PointLevel
from modescape.store.schema import InstabilitySummary


def _level(barrier: float, dis: float) -> Level:
    return Level(barrier, barrier, barrier / 2, dis, dis / 10, 0.9, 1.0, (0.8, 0.7), 1)


def test_section_rows_figures_and_reading():
    s = InstabilitySummary(
        parent="/runs/p", member=0, children=2,
        points=[PointLevel(0.0, 0, 0, _level(0.2, 0.3)), PointLevel(2.0, 2, 0, _level(0.01, 0.05))],
        within=_level(0.0, 0.02), across=None, within_epochs=[3, 5], across_members=[],
        onset=2.0, reading="The barrier first falls below 2% at epoch 2 (stable).",
        bn_policy="none", settings={"threshold": 0.02, "embed": "pca"},
    )  # fmt: skip
    index = np.array([(-1, 0, e) for e in range(3)] + [(0, c, e) for c in (0, 1) for e in (1, 2)])
    coords = np.random.default_rng(0).normal(size=(len(index), 2))
    sec = instability_section_from(s, coords, index)
    assert sec.reading[0] == s.reading
    assert [p.name for p in sec.figures] == ["instability", "spawn_trajectories"]
    table = sec.figures[0].data
    assert [r[0] for r in table.rows] == ["spawn 0", "spawn 2", "within a trajectory"]
    col = table.header.index("error_barrier")
    assert [r[col] for r in table.rows] == [0.2, 0.01, 0.0]
    chart, disagreement = sec.figures[0].charts  # both panels
    assert disagreement.x_scale == chart.x_scale
    # the caption names the onset's line, which both panels draw (and the legend lists)
    assert "vertical line: stable from epoch 2;" in sec.figures[0].caption
    assert [g.value for c in sec.figures[0].charts for g in c.guides] == [2.0, 2.0]
    assert [x.name for x in chart.series] == [
        "children of one spawn point",
        "within a trajectory",
        "stable below this",
    ]
    assert chart.series[0].y == [20.0, 1.0]
    assert instability_section_from(s).figures[-1].name == "instability"  # no embedding: no plot


def test_caption_and_notes_follow_the_measured_settings():
    s = InstabilitySummary(
        parent="/runs/p", member=0, children=2,
        points=[PointLevel(0.0, 0, 0, _level(0.2, 0.3))],
        within=_level(0.0, 0.02), across=None, within_epochs=[0, 1], across_members=[],
        onset=None, reading="...", bn_policy="none",
        settings={"threshold": 0.02, "alphas": 7},
        warnings=["across-initialisation reference left out: the parent run has no other "
                  "finished member than 0"],
    )  # fmt: skip
    sec = instability_section_from(s)
    caption = sec.figures[0].data.caption
    assert "(7 evenly spaced points)" in caption and "30" not in caption
    assert "the reference (within a trajectory)." in caption
    assert sec.reading[-1].startswith("Note: across-initialisation reference left out")
