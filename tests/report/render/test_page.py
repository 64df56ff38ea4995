"""The page around the sections: figure files and data.json, figure numbers and anchors, the
table of contents, 2x PNGs, and the interactive charts' SVG."""

from __future__ import annotations

import json
import math
import re

from modescape.report import html as report
from modescape.report.base import (
    LINEAR,
    LOG,
    Chart,
    ChartKind,
    ReportContext,
    Series,
    Table,
    symlog,
)
from modescape.report.render.interactive import chart_data, figure_svg, ticks, value_text
from modescape.report.render.page import FigureBlock, csv_bytes, figure_html, png_size
from modescape.store.files import json_bytes
from modescape.store.run import load_run


def test_every_figure_with_data_has_its_csv_and_its_series_in_data_json(written):
    out = written.parent
    ctx = ReportContext(load_run(written.parent.parent))
    sections = [s for fn in report.section_functions() if (s := fn(ctx)) is not None]
    plots = [p for s in sections for p in s.figures]
    data = json.loads((out / "data.json").read_text())
    entries = {f["name"]: f for f in data["figures"]}
    assert [f["name"] for f in data["figures"]] == [p.name for p in plots]
    assert [f["number"] for f in data["figures"]] == list(range(1, len(plots) + 1))
    page = written.read_text()
    with_data = [p for p in plots if p.data is not None]
    assert with_data, "no Plot carries its data yet"
    for p in plots:
        entry, csv_file = entries[p.name], out / "figures" / f"{p.name}.csv"
        if p.data is None:
            assert not csv_file.exists() and "rows" not in entry
            continue
        # The file is the Plot's table, byte for byte; data.json holds the same numbers.
        assert csv_file.read_bytes() == csv_bytes(p.data), p.name
        assert f'href="figures/{p.name}.csv"' in page
        assert entry["columns"] == p.data.header
        assert entry["rows"] == json.loads(json_bytes([list(r) for r in p.data.rows]))
        assert all(re.fullmatch(r"[a-z0-9_]+", h) for h in p.data.header), p.data.header
        if p.charts:  # every panel, in the figure's order
            assert entry["charts"] == json.loads(json_bytes([chart_data(c) for c in p.charts]))


def test_figures_are_numbered_anchored_and_listed(written):
    page = written.read_text()
    data = json.loads((written.parent / "data.json").read_text())
    for f in data["figures"]:
        assert f'<figure class="fig" id="fig-{f["name"]}">' in page
        assert (
            f'href="#fig-{f["name"]}" title="Link to this figure">Figure {f["number"]}</a>' in page
        )
    toc = page[page.index('<nav class="toc"') : page.index("</nav>")]
    for sec_id in ("run", "ensembles", "training"):
        assert f'href="#{sec_id}"' in toc and f'<section id="{sec_id}">' in page
    assert "@media print" in page and "prefers-color-scheme: dark" in page
    assert page.count('class="chart"') >= 1  # at least the ensemble curves are interactive


def test_page_pngs_are_2x_and_shown_at_css_size(written):
    page = written.read_text()
    for m in re.finditer(r'<img [^>]*src="data:image/png;base64,[^"]+" width="(\d+)" '
                         r'height="(\d+)"', page):  # fmt: skip
        assert int(m[1]) > 0 and int(m[2]) > 0
    png = (written.parent / "figures" / "cosine_all.png").read_bytes()  # a heatmap: no chart
    w, h = png_size(png)
    assert f'width="{w // 2}" height="{h // 2}"' in page


def test_chart_svg_escapes_and_skips_missing_points():
    chart = Chart(
        ChartKind.LINE,
        "size <x>",
        "acc & more",
        [
            Series("<b>deep</b>", [1, 2, 3], [0.5, math.nan, 0.7], err=[0.1, 0.1, 0.1]),
            Series("other", [1, 2], [0.4, 0.6], labels=['"q"', "<i>"], color="#123456"),
        ],
    )
    svg = figure_svg([chart], "u1")
    assert "<b>" not in svg and "<i>" not in svg and "&lt;b&gt;deep&lt;/b&gt;" in svg
    assert "size &lt;x&gt;" in svg and "acc &amp; more" in svg
    assert svg.count("data-x=") == 4  # the NaN point is left out, its line broken
    assert 'data-pts="1.0,0.5;3.0,0.7"' in svg
    assert 'data-t="other: &quot;q&quot; · size &lt;x&gt; 1 · acc &amp; more 0.4"' in svg
    assert "#123456" in svg and 'data-xint="1"' in svg
    assert value_text(0.81234) == "0.8123" and value_text(math.nan) == "nan"


def test_a_point_without_a_number_is_a_gap_like_nan():
    """None (e.g. a normalised diversity at accuracy 1) used to raise in float(None)."""
    with_none = Series("s", [1, 2, 3], [0.5, None, 0.7], err=[0.1, None, 0.1])
    with_nan = Series("s", [1, 2, 3], [0.5, math.nan, 0.7], err=[0.1, math.nan, 0.1])
    svg = figure_svg([Chart(ChartKind.LINE, "x", "y", [with_none])], "u1")
    assert svg == figure_svg([Chart(ChartKind.LINE, "x", "y", [with_nan])], "u1")
    assert svg.count("data-x=") == 2


def test_ticks_are_round_and_log_axes_use_decades():
    assert ticks(0.0, 1.0, LINEAR, 5) == [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    assert ticks(0.5, 3.5, LINEAR, 10, integer=True) == [1.0, 2.0, 3.0]
    assert ticks(-3.2, 0.1, LOG, 6) == [-3.0, -2.0, -1.0, 0.0]
    # symlog: 0 and the decades beyond the linear range (here 0.25), on the axis's scale
    sc = symlog(0.25)
    lo, hi = sc.forward(-0.1), sc.forward(40.0)
    assert [round(sc.inverse(t), 9) for t in ticks(lo, hi, sc, 6)] == [0.0, 1.0, 10.0]
    # zoomed inside the linear range: round linear ticks
    assert [round(sc.inverse(t), 9) for t in ticks(sc.forward(0.0), sc.forward(0.2), sc, 4)] == [
        0.0,
        0.05,
        0.1,
        0.15,
        0.2,
    ]


def test_figure_without_chart_shows_its_png_with_links():
    png = (
        b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + (200).to_bytes(4, "big") + (100).to_bytes(4, "big")
    )
    html = figure_html(FigureBlock("a<b", "cap & x", png, [], [("PNG", "figures/a<b.png")]), 7, 2)
    assert 'id="fig-a&lt;b"' in html and "Figure 7</a>. cap &amp; x" in html
    assert 'width="100" height="50"' in html and 'href="figures/a&lt;b.png"' in html
    table = Table("t", ["a_b"], [[1.5]])
    assert csv_bytes(table) == b"a_b\n1.5\n"
