"""Every interactive chart of the report says what its static figure says: the same series (names,
points), colours, line styles, markers, ± bands and legend, read back from the page's SVG and
from the matplotlib Figure the PNG was rendered from. A planted mismatch (a dropped series, a
solid line for a dashed one, a changed marker or colour, another legend) must fail."""

from __future__ import annotations

import copy
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle

from modescape.report.base import LineStyle, Marker, Plot
from modescape.report.render.interactive import SHAPES, chart_svg

MPL_LINE = {"-": "solid", "--": "dashed", ":": "dotted", "None": "none", "": "none"}


class ChartReader(HTMLParser):
    """The series of one chart as the page draws them (its SVG and legend)."""

    def __init__(self) -> None:
        super().__init__()
        self.log = {"x": False, "y": False}
        self.shapes: dict[str, str] = {}  # marker <path> id -> its d
        self.series: list[dict] = []
        self.buttons: list[str] = []
        self.keys: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "div" and "chart" in cls:
            self.log = {"x": a["data-xlog"] == "1", "y": a["data-ylog"] == "1"}
        elif tag == "path" and "id" in a:
            self.shapes["#" + a["id"]] = a["d"]
        elif tag == "g" and "series" in cls:
            color = re.search(r"color:(#[0-9a-f]{6})", a["style"]).group(1)
            self.series.append({"color": color, "line": "none", "band": False, "points": []})
        elif tag == "path" and "line" in cls and self.series and self._text is None:
            self.series[-1]["line"] = cls[1]
        elif tag == "path" and "band" in cls:
            self.series[-1]["band"] = True
        elif tag == "use" and "pt" in cls and self._text is None:
            s = self.series[-1]
            shape = next(m for m, d in SHAPES.items() if d == self.shapes[a["href"]])
            s["marker"] = Marker.NONE.value if "no" in cls else shape.value
            s["filled"] = "open" not in cls
            own = re.search(r"color:(#[0-9a-f]{6})", a.get("style") or "")
            x, y = float(a["data-x"]), float(a["data-y"])
            x, y = 10**x if self.log["x"] else x, 10**y if self.log["y"] else y
            s["points"].append((x, y, own.group(1) if own else s["color"]))
        elif tag in ("button", "span") and "key" in cls:
            self._text = []
            self._fixed = "fixed" in cls

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("button", "span") and self._text is not None:
            (self.keys if self._fixed else self.buttons).append("".join(self._text))
            self._text = None


def page_chart(svg: str) -> tuple[list[dict], list[str], dict]:
    """(series, legend entries, log axes) of one chart's HTML: the legend is its fixed keys when
    it has them (a compact legend), else one entry per series (its toggle buttons)."""
    r = ChartReader()
    r.feed(svg)
    for s, name in zip(r.series, r.buttons, strict=True):
        s["name"] = name
    return r.series, r.keys or r.buttons, r.log


def mpl_marker_name(collection: PathCollection) -> str:
    """Which of the chart markers a scatter's points are (by their path's vertices)."""
    verts = collection.get_paths()[0].vertices
    for m in Marker:
        if m == Marker.NONE:
            continue
        style = MarkerStyle(m.value)
        ref = style.get_path().transformed(style.get_transform()).vertices
        if ref.shape == verts.shape and np.allclose(ref, verts, atol=1e-6):
            return m.value
    return "?"


def figure_chart(plot: Plot) -> tuple[list[dict], list[str], object]:
    """(series, legend entries, axes) of the panel of the static figure the chart stands for."""
    axes = [ax for ax in plot.figure.axes if ax.lines or ax.collections]
    ax = axes[plot.chart.panel]
    series = []
    for a in ax.lines:
        if a.get_gid() == "guide" or not len(a.get_xdata()):
            continue
        color = to_hex(a.get_color())
        face = a.get_markerfacecolor()
        series.append({
            "name": a.get_label(), "color": color, "line": MPL_LINE[a.get_linestyle()],
            "marker": Marker.NONE.value if a.get_marker() in ("None", "", None) else a.get_marker(),
            "filled": to_hex(face) != "#ffffff",
            "points": [(x, y, color) for x, y in zip(a.get_xdata(), a.get_ydata())],
        })  # fmt: skip
    for c in ax.collections:
        if not isinstance(c, PathCollection):
            continue
        face = [to_hex(f) for f in c.get_facecolors()]
        filled = any(f != "#ffffff" for f in face)
        colors = face if filled else [to_hex(e) for e in c.get_edgecolors()]
        xy = c.get_offsets()
        colors = colors * len(xy) if len(colors) == 1 else colors
        series.append({
            "name": c.get_label(), "line": "none", "marker": mpl_marker_name(c),
            "filled": filled, "points": [(x, y, k) for (x, y), k in zip(xy, colors)],
        })  # fmt: skip
    bands = [to_hex(p.get_facecolor()[0]) for p in ax.collections if type(p) is not PathCollection
             and isinstance(p, PolyCollection)]  # fmt: skip
    guides = {a.get_label() for a in ax.get_figure().findobj(Line2D) if a.get_gid() == "guide"}
    legends = [*plot.figure.legends, *(a.get_legend() for a in plot.figure.axes)]
    texts = [t.get_text() for lg in legends if lg is not None for t in lg.get_texts()]
    return series, [t for t in texts if t not in guides], (ax, bands)


def mismatches(plot: Plot, svg: str) -> list[str]:
    """Every way the page's chart of `plot` differs from its static figure (empty: none)."""
    page, page_legend, log = page_chart(svg)
    drawn, legend, (ax, bands) = figure_chart(plot)
    out = []
    if [s["name"] for s in page] != [s["name"] for s in drawn] and sorted(
        s["name"] for s in page
    ) != sorted(s["name"] for s in drawn):
        out.append(f"series: page {[s['name'] for s in page]} vs figure "
                   f"{[s['name'] for s in drawn]}")  # fmt: skip
    by_name = {s["name"]: s for s in drawn}
    for s in page:
        f = by_name.get(s["name"])
        if f is None:
            continue
        for key in ("line", "marker", "filled"):
            if s.get(key) != f.get(key):
                out.append(f"{s['name']}: {key} {s.get(key)} on the page, {f.get(key)} in figure")
        fin = [p for p in f["points"] if math.isfinite(p[0]) and math.isfinite(p[1])]
        if len(fin) != len(s["points"]) or not np.allclose(
            [p[:2] for p in fin], [p[:2] for p in s["points"]], rtol=1e-9, atol=1e-12
        ):
            out.append(f"{s['name']}: points differ")
        elif [p[2] for p in fin] != [p[2] for p in s["points"]]:
            out.append(f"{s['name']}: colours {s['points'][0][2]} vs {fin[0][2]}")
    page_bands = sorted(s["color"] for s in page if s["band"])
    if page_bands != sorted(bands):
        out.append(f"bands: page {page_bands} vs figure {sorted(bands)}")
    if page_legend != legend:
        out.append(f"legend: page {page_legend} vs figure {legend}")
    for axis, scale in (("x", ax.get_xscale()), ("y", ax.get_yscale())):
        if log[axis] != (scale == "log"):
            out.append(f"{axis} axis: log {log[axis]} on the page, {scale} in the figure")
    return out


@pytest.fixture(scope="module")
def plots(analysed_plots) -> dict[str, Plot]:
    return analysed_plots


def figure_html(page: str, name: str) -> str:
    start = page.index(f'<figure class="fig" id="fig-{name}">')
    return page[start : page.index("</figure>", start)]


def test_every_chart_of_the_report_matches_its_static_figure(written: Path, plots):
    page = written.read_text()
    charted = {name: p for name, p in plots.items() if p.chart is not None}
    # the line and scatter figures of the analysis, subspace, landscape and shift studies
    assert {"distance_from_init", "agreement_with_final", "ensemble_curves", "training_curves",
            "subspace_plane", "subspace_ensembles", "landscape_paths",
            "shift_diversity"} <= set(charted)  # fmt: skip
    assert any(n.startswith("trajectories_") for n in charted)
    for name, plot in charted.items():
        assert mismatches(plot, figure_html(page, name)) == [], name
    # box plots have no line chart that could say otherwise: the page shows the PNG
    assert plots["shift_boxplots"].chart is None


def planted(plot: Plot, change) -> list[str]:
    bad = copy.deepcopy(plot.chart)
    change(bad)
    return mismatches(plot, chart_svg(bad, uid="x"))


def test_a_planted_mismatch_fails(plots):
    agreement, curves = plots["agreement_with_final"], plots["training_curves"]
    assert mismatches(agreement, chart_svg(agreement.chart, uid="x")) == []
    dashed = next(i for i, s in enumerate(agreement.chart.series) if s.line == LineStyle.DASHED)

    def drop(c):
        del c.series[dashed]

    def solid(c):
        c.series[dashed].line = LineStyle.SOLID

    def recolour(c):
        c.series[0].color = "#000000"

    def marker(c):
        c.series[0].marker = Marker.CIRCLE

    for change, what in ((drop, "series"), (solid, "line"), (recolour, "colours"),
                         (marker, "marker")):  # fmt: skip
        assert any(what in m for m in planted(agreement, change)), what

    def no_keys(c):
        c.keys = []

    assert any("legend" in m for m in planted(curves, no_keys))
    ens = plots["ensemble_curves"]

    def no_band(c):
        c.series[0].err = None

    assert any("bands" in m for m in planted(ens, no_band))


def test_the_instability_chart_matches_its_figure():
    """The spawn study's figure (not in the fixture run): children, references, threshold."""
    from modescape.report.sections.spawn import instability_section_from
    from modescape.results import PairLevel as Level
    from modescape.store.schema import InstabilityPoint as Point
    from modescape.store.schema import InstabilitySummary

    def level(barrier: float) -> Level:
        return Level(barrier, barrier, barrier / 2, 0.3, 0.03, 0.9, 1.0, (0.8, 0.7), 1)

    s = InstabilitySummary(
        parent="/runs/p", member=0, children=2,
        points=[Point(0.0, 0, 0, level(0.2)), Point(2.0, 2, 0, level(0.01))],
        within=level(0.0), across=level(0.3), within_epochs=[3, 5], across_members=[1],
        onset=2.0, reading="", bn_policy="none", settings={"threshold": 0.02},
    )  # fmt: skip
    plot = instability_section_from(s, None, None).figures[0]
    assert mismatches(plot, chart_svg(plot.chart, uid="i")) == []
    assert [x.line for x in plot.chart.series] == ["solid", "dashed", "dashed", "dotted"]
