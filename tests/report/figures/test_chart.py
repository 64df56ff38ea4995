"""Every interactive chart of the report says what its static figure says: the same series (names,
points), colours, line styles, markers, ± bands and legend, read back from the page's SVG and
from the matplotlib Figure the PNG was rendered from. A planted mismatch (a dropped series, a
solid line for a dashed one, a changed marker or colour, another legend) must fail."""

from __future__ import annotations

import copy
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_hex
from matplotlib.markers import MarkerStyle
from matplotlib.scale import LogTransform, SymmetricalLogTransform
from matplotlib.ticker import FixedLocator

from modescape.report.base import LINEAR, LOG, Guide, LineStyle, Marker, Plot, symlog
from modescape.report.render.interactive import SHAPES, figure_svg

MPL_LINE = {"-": "solid", "--": "dashed", ":": "dotted", "None": "none", "": "none"}


def axis_inverse(kind: str, linthresh: float):
    """From a page's axis coordinate back to the value, by matplotlib's own transforms (so the
    page's scale is checked against the PNG's, not against itself)."""
    if kind == "log":
        return LogTransform(10).inverted().transform
    if kind == "symlog":
        return SymmetricalLogTransform(10, linthresh, 1.0).inverted().transform
    return lambda v: v


class ChartReader(HTMLParser):
    """A figure's panels as the page draws them (each chart's SVG) and its one legend."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: list[dict] = []
        self.shapes: dict[str, str] = {}  # marker <path> id -> its d
        self.buttons: list[str] = []
        self.keys: list[str] = []
        self.guide_keys: list[str] = []
        self._text: list[str] | None = None
        self._into: list[str] | None = None
        self._title = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "div" and "ptitle" in cls:
            self._text, self._into = [], None
        elif tag == "div" and "chart" in cls:
            scales = {ax: (a[f"data-{ax}s"], float(a[f"data-{ax}th"])) for ax in "xy"}
            inv = {ax: axis_inverse(*scales[ax]) for ax in "xy"}
            dom = [float(v) for v in a["data-dom"].split()]
            xt = json.loads(a["data-xt"]) if "data-xt" in a else None
            self.panels.append({
                "title": self._title, "scales": scales, "inv": inv, "series": [], "guides": [],
                "limits": {"x": tuple(inv["x"](np.array(dom[:2]))),
                           "y": tuple(inv["y"](np.array(dom[2:])))},
                "xticks": None if xt is None else [(float(inv["x"](np.array([t]))[0]), text)
                                                   for t, text in xt],
            })  # fmt: skip
            self._title = ""
        elif tag == "path" and "id" in a:
            self.shapes["#" + a["id"]] = a["d"]
        elif tag == "path" and "guide" in cls:
            p = self.panels[-1]
            v = float(p["inv"][a["data-axis"]](np.array([float(a["data-v"])]))[0])
            color = re.search(r"color:(#[0-9a-f]{6})", a["style"]).group(1)
            p["guides"].append((a["data-axis"], v, cls[2], color))
        elif tag == "g" and "series" in cls:
            color = re.search(r"color:(#[0-9a-f]{6})", a["style"]).group(1)
            self.panels[-1]["series"].append({"s": int(a["data-s"]), "color": color,
                                              "line": "none", "band": False, "points": [],
                                              "notes": []})  # fmt: skip
        elif tag == "path" and "line" in cls and self._text is None:
            self.panels[-1]["series"][-1]["line"] = cls[1]
        elif tag == "path" and "band" in cls:
            self.panels[-1]["series"][-1]["band"] = True
        elif tag == "use" and "pt" in cls and self._text is None:
            p = self.panels[-1]
            s = p["series"][-1]
            shape = next(m for m, d in SHAPES.items() if d == self.shapes[a["href"]])
            s["marker"] = Marker.NONE.value if "no" in cls else shape.value
            s["filled"] = "open" not in cls
            own = re.search(r"color:(#[0-9a-f]{6})", a.get("style") or "")
            x = float(p["inv"]["x"](np.array([float(a["data-x"])]))[0])
            y = float(p["inv"]["y"](np.array([float(a["data-y"])]))[0])
            s["points"].append((x, y, own.group(1) if own else s["color"]))
        elif tag == "text" and "ann" in cls:
            self._text, self._into = [], self.panels[-1]["series"][-1]["notes"]
        elif tag in ("button", "span") and "key" in cls:
            self._text = []
            self._into = self.guide_keys if "guide" in cls else (
                self.keys if "fixed" in cls else self.buttons)  # fmt: skip

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("button", "span", "text", "div") and self._text is not None:
            if tag == "div":  # a panel's title
                self._title = "".join(self._text)
            elif self._into is not None:
                self._into.append("".join(self._text))
            self._text = None


def page_chart(svg: str) -> tuple[list[dict], list[str]]:
    """(panels, legend entries) of one figure's HTML: each panel's series named by the legend's
    buttons; the legend is its fixed keys when it has them (a compact legend), else one entry
    per series, then its guides."""
    r = ChartReader()
    r.feed(svg)
    for p in r.panels:
        for s in p["series"]:
            s["name"] = r.buttons[s["s"]]
    return r.panels, (r.keys or r.buttons) + r.guide_keys


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


def axis_scale(ax, axis: str) -> tuple[str, float]:
    a = ax.xaxis if axis == "x" else ax.yaxis
    kind = a.get_scale()
    return kind, float(a.get_transform().linthresh) if kind == "symlog" else 1.0


def figure_panel(ax) -> dict:
    """One panel of the static figure: its series, bands, guides, scales, limits, title,
    annotations and fixed x ticks, read from the matplotlib axes."""
    series, guides = [], []
    for a in ax.lines:
        if a.get_gid() == "guide":
            vertical = list(a.get_ydata()) == [0, 1]
            value = float((a.get_xdata() if vertical else a.get_ydata())[0])
            guides.append(("x" if vertical else "y", value, MPL_LINE[a.get_linestyle()],
                           to_hex(a.get_color())))  # fmt: skip
            continue
        if not len(a.get_xdata()):
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
    fixed = isinstance(ax.xaxis.get_major_locator(), FixedLocator)
    return {
        "series": series,
        "bands": [to_hex(p.get_facecolor()[0]) for p in ax.collections
                  if type(p) is not PathCollection and isinstance(p, PolyCollection)],
        "guides": guides,
        "scales": {"x": axis_scale(ax, "x"), "y": axis_scale(ax, "y")},
        "limits": {"x": ax.get_xlim(), "y": ax.get_ylim()},
        "title": ax.get_title(),
        "notes": sorted(t.get_text() for t in ax.texts),
        "xticks": [(float(v), t.get_text()) for v, t in zip(ax.get_xticks(),
                                                          ax.get_xticklabels())] if fixed else None,
    }  # fmt: skip


def figure_chart(plot: Plot) -> tuple[list[dict], list[str]]:
    """(panels, legend entries) of the static figure: every axes that has data, in order."""
    panels = [figure_panel(ax) for ax in plot.figure.axes if ax.has_data()]
    legends = [*plot.figure.legends, *(a.get_legend() for a in plot.figure.axes)]
    texts = [t.get_text() for lg in legends if lg is not None for t in lg.get_texts()]
    return panels, texts


def panel_mismatches(i: int, page: dict, drawn: dict, titled: bool) -> list[str]:
    """Every way panel i of the page differs from panel i of the figure."""
    out, at = [], f"panel {i}"
    names = [s["name"] for s in page["series"]], [s["name"] for s in drawn["series"]]
    if names[0] != names[1] and sorted(names[0]) != sorted(names[1]):
        out.append(f"{at} series: page {names[0]} vs figure {names[1]}")
    by_name = {s["name"]: s for s in drawn["series"]}
    for s in page["series"]:
        f = by_name.get(s["name"])
        if f is None:
            continue
        for key in ("line", "marker", "filled"):
            if s.get(key) != f.get(key):
                out.append(
                    f"{at} {s['name']}: {key} {s.get(key)} on the page, {f.get(key)} in figure"
                )
        fin = [p for p in f["points"] if math.isfinite(p[0]) and math.isfinite(p[1])]
        if len(fin) != len(s["points"]) or not np.allclose(
            [p[:2] for p in fin], [p[:2] for p in s["points"]], rtol=1e-9, atol=1e-9
        ):
            out.append(f"{at} {s['name']}: points differ")
        elif [p[2] for p in fin] != [p[2] for p in s["points"]]:
            out.append(f"{at} {s['name']}: colours {s['points'][0][2]} vs {fin[0][2]}")
    if sorted(s["color"] for s in page["series"] if s["band"]) != sorted(drawn["bands"]):
        out.append(f"{at} bands differ")
    page_guides = [(ax, v, line, c) for ax, v, line, c in page["guides"]]
    if len(page_guides) != len(drawn["guides"]) or any(
        p[0] != d[0] or p[2:] != d[2:] or not math.isclose(p[1], d[1], rel_tol=1e-9, abs_tol=1e-12)
        for p, d in zip(page_guides, drawn["guides"])
    ):
        out.append(f"{at} guides: page {page_guides} vs figure {drawn['guides']}")
    for axis in "xy":
        p_kind, p_th = page["scales"][axis]
        f_kind, f_th = drawn["scales"][axis]
        if p_kind != f_kind or (f_kind == "symlog" and not math.isclose(p_th, f_th)):
            out.append(f"{axis} axis scale of {at}: {p_kind} ({p_th}) on the page, "
                       f"{f_kind} ({f_th}) in the figure")  # fmt: skip
        (a, b), (c, d) = page["limits"][axis], drawn["limits"][axis]
        if not np.allclose([a, b], [c, d], rtol=1e-6, atol=1e-9 * (abs(d - c) or 1)):
            out.append(f"{axis} limits of {at}: page {(a, b)} vs figure {(c, d)}")
    if titled and page["title"] != drawn["title"]:
        out.append(f"{at} title: page {page['title']!r} vs figure {drawn['title']!r}")
    notes = sorted(n for s in page["series"] for n in s["notes"])
    if notes != drawn["notes"]:
        out.append(f"{at} annotations: page {notes} vs figure {drawn['notes']}")
    if page["xticks"] is not None or drawn["xticks"] is not None:
        p_ticks, f_ticks = page["xticks"] or [], drawn["xticks"] or []
        if [t for _, t in p_ticks] != [t for _, t in f_ticks] or not np.allclose(
            [v for v, _ in p_ticks], [v for v, _ in f_ticks]
        ):
            out.append(f"{at} x ticks: page {p_ticks} vs figure {f_ticks}")
    return out


def mismatches(plot: Plot, svg: str) -> list[str]:
    """Every way the page's charts of `plot` differ from its static figure (empty: none): the
    number of panels, then each panel's series, styles, points, bands, guides, axis scales and
    limits, title, annotations and fixed ticks, then the legend."""
    page, page_legend = page_chart(svg)
    drawn, legend = figure_chart(plot)
    out = []
    if len(page) != len(drawn):
        out.append(f"panels: {len(page)} on the page, {len(drawn)} in the figure")
    for i, (p, d) in enumerate(zip(page, drawn)):
        out += panel_mismatches(i, p, d, titled=len(drawn) > 1)
    if page_legend != legend:
        out.append(f"legend: page {page_legend} vs figure {legend}")
    return out


@pytest.fixture(scope="module")
def plots(analysed_plots) -> dict[str, Plot]:
    return analysed_plots


def figure_html(page: str, name: str) -> str:
    start = page.index(f'<figure class="fig" id="fig-{name}">')
    return page[start : page.index("</figure>", start)]


def test_every_chart_of_the_report_matches_its_static_figure(written: Path, plots):
    page = written.read_text()
    charted = {name: p for name, p in plots.items() if p.charts}
    # the line and scatter figures of the analysis, subspace, landscape and shift studies
    assert {"distance_from_init", "agreement_with_final", "ensemble_curves", "training_curves",
            "subspace_plane", "subspace_ensembles", "landscape_paths",
            "shift_diversity"} <= set(charted)  # fmt: skip
    assert any(n.startswith("trajectories_") for n in charted)
    for name, plot in charted.items():
        assert mismatches(plot, figure_html(page, name)) == [], name
    # every panel of a multi-panel figure is on the page (metrics, loss and accuracy, paths)
    panels = {n: len(plots[n].charts) for n in ("ensemble_curves", "subspace_ensembles",
                                                "training_curves", "landscape_paths")}  # fmt: skip
    assert panels == {"ensemble_curves": 4, "subspace_ensembles": 4, "training_curves": 2,
                      "landscape_paths": 2}  # fmt: skip
    assert figure_html(page, "ensemble_curves").count('<div class="chart"') == 4
    # box plots have no line chart that could say otherwise: the page shows the PNG
    assert plots["shift_boxplots"].charts == []


def planted(plot: Plot, change) -> list[str]:
    """The mismatches found when the page draws `plot`'s charts after `change(charts)`."""
    bad = copy.deepcopy(plot.charts)
    change(bad)
    return mismatches(plot, figure_svg(bad, uid="x"))


def test_a_planted_mismatch_fails(plots):
    agreement, curves = plots["agreement_with_final"], plots["training_curves"]
    assert mismatches(agreement, figure_svg(agreement.charts, uid="x")) == []
    dashed = next(i for i, s in enumerate(agreement.charts[0].series) if s.line == LineStyle.DASHED)

    def drop(c):
        del c[0].series[dashed]

    def solid(c):
        c[0].series[dashed].line = LineStyle.SOLID

    def recolour(c):
        c[0].series[0].color = "#000000"

    def marker(c):
        c[0].series[0].marker = Marker.CIRCLE

    def y_range(c):
        c[0].y_range = (0.0, 200.0)

    for change, what in ((drop, "series"), (solid, "line"), (recolour, "colours"),
                         (marker, "marker"), (y_range, "y limits")):  # fmt: skip
        assert any(what in m for m in planted(agreement, change)), what

    def no_keys(c):
        for chart in c:
            chart.keys = []

    assert any("legend" in m for m in planted(curves, no_keys))
    ens = plots["ensemble_curves"]
    assert mismatches(ens, figure_svg(ens.charts, uid="x")) == []

    def no_band(c):
        c[2].series[0].err = None  # in a later panel (Brier)

    def no_panel(c):
        del c[-1]

    def retitle(c):
        c[1].title = "Accuracy"

    def recolour_late(c):
        c[3].series[0].color = "#000000"

    for change, what in ((no_band, "panel 2 bands"), (no_panel, "panels"),
                         (retitle, "panel 1 title"), (recolour_late, "panel 3")):  # fmt: skip
        assert any(m.startswith(what) for m in planted(ens, change)), what
    # the loss panel of the training curves, the loss panel of the paths
    assert any(m.startswith("panels") for m in planted(curves, lambda c: c.pop(0)))
    paths = plots["landscape_paths"]
    assert any("panel 1" in m for m in planted(paths, lambda c: c[1].series.pop()))


def test_ticks_and_annotations_of_the_figure_are_on_the_page(plots):
    """The shift figure's "clean" tick and the plane's member labels are in both renderers."""
    shift, plane = plots["shift_diversity"], plots["subspace_plane"]
    for plot in (shift, plane):
        assert mismatches(plot, figure_svg(plot.charts, uid="x")) == []
    assert shift.charts[0].x_ticks[0][1] == "clean"

    def no_ticks(c):
        c[0].x_ticks = None

    assert any("x ticks" in m for m in planted(shift, no_ticks))
    assert any(s.annotate for s in plane.charts[0].series)

    def no_labels(c):
        for s in c[0].series:
            s.annotate = False

    assert any("annotations" in m for m in planted(plane, no_labels))


def test_scales_place_values_as_matplotlib_does():
    values = np.array([-40.0, -1.0, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0, 4.0, 40.0])
    sc = symlog(0.25)
    reference = SymmetricalLogTransform(10, 0.25, 1.0).transform(values)
    np.testing.assert_allclose([sc.forward(v) for v in values], reference, rtol=1e-12)
    np.testing.assert_allclose([sc.inverse(sc.forward(v)) for v in values], values, atol=1e-12)
    np.testing.assert_allclose(
        [LOG.forward(v) for v in values[values > 0]],
        LogTransform(10).transform(values[values > 0]),
    )
    assert math.isnan(LOG.forward(0.0)) and LINEAR.forward(-3.0) == -3.0
    with pytest.raises(ValueError):
        symlog(0.0)


def instability_plot() -> Plot:
    from modescape.report.sections.spawn import instability_section_from
    from modescape.results import PairLevel as Level
    from modescape.store.schema import InstabilityPoint as Point
    from modescape.store.schema import InstabilitySummary

    def level(barrier: float) -> Level:
        return Level(barrier, barrier, barrier / 2, 0.3, 0.03, 0.9, 1.0, (0.8, 0.7), 1)

    s = InstabilitySummary(
        parent="/runs/p", member=0, children=2,
        points=[Point(0.0, 0, 0, level(0.2)), Point(0.25, 0, 0, level(0.1)),
                Point(2.0, 2, 0, level(0.01))],
        within=level(0.0), across=level(0.3), within_epochs=[3, 5], across_members=[1],
        onset=2.0, reading="", bn_policy="none", settings={"threshold": 0.02},
    )  # fmt: skip
    return instability_section_from(s, None, None).figures[0]


def test_the_instability_chart_matches_its_figure():
    """The spawn study's figure (not in the fixture run): both panels, children, references,
    threshold, the onset guide, and the symlog spawn-point axis."""
    plot = instability_plot()
    assert mismatches(plot, figure_svg(plot.charts, uid="i")) == []
    barrier, disagreement = plot.charts
    assert disagreement.title.startswith("Disagreement")
    assert [x.line for x in barrier.series] == ["solid", "dashed", "dashed", "dotted"]
    assert barrier.x_scale == symlog(0.25) and barrier.guides[0].value == 2.0

    def linear(c):
        c[1].x_scale = LINEAR

    def linthresh(c):
        c[0].x_scale = symlog(1.0)

    def no_onset(c):
        c[1].guides = []

    def moved_onset(c):
        c[0].guides = [Guide("x", 1.0, c[0].guides[0].name)]

    for change, what in ((linear, "x axis scale of panel 1"),
                         (linthresh, "x axis scale of panel 0"), (no_onset, "panel 1 guides"),
                         (moved_onset, "panel 0 guides")):  # fmt: skip
        assert any(m.startswith(what) for m in planted(plot, change)), what


def test_an_axis_extent_is_never_empty_or_undefined():
    """A log axis with a fixed end at 0 (no place on it) keeps the data's end; a clip that
    leaves nothing still gives a drawable extent; both renderers use the same one."""
    from modescape.report.base import Chart, ChartKind, Series

    s = Series("s", [1, 10, 100], [0.5, 0.6, 0.7])
    chart = Chart(ChartKind.LINE, "x", "y", [s], x_scale=LOG, x_range=(0.0, None))
    lo, hi = chart.domain("x")
    assert math.isfinite(lo) and hi > lo
    np.testing.assert_allclose(chart.limits("x"), [10**lo, 10**hi])
    flat = Chart(ChartKind.LINE, "x", "y", [s], y_clip=(2.0, 3.0))
    lo, hi = flat.domain("y")
    assert math.isfinite(lo) and hi > lo
