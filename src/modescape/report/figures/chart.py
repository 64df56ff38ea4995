"""A `Chart` (report/base.py) drawn with matplotlib: the PNG/PDF side of the one description a
line or scatter figure is built from. The page draws the same object as SVG
(`report/render/interactive.py`), so the two show the same series, colours, line styles,
markers, bands and legend; `tests/report/figures/test_chart.py` checks that they do.

A series with a line is one `Line2D` (its markers on it); a series of points only is one
`PathCollection` (`scatter`: per-point colours, open markers). Both carry the series' name as
their label, so the figure's artists read back as the chart's series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D

from modescape.report.base import AxisScale, Chart, ChartKind, LineStyle, Marker, Series
from modescape.report.base import series_line as line_of
from modescape.report.base import series_marker as marker_of

# LineStyle -> matplotlib's code
MPL_LINE = {LineStyle.SOLID: "-", LineStyle.DASHED: "--", LineStyle.DOTTED: ":", LineStyle.NONE: ""}
# marker -> its size on a line (points) and as a scatter point (points²)
LINE_SIZE = {
    Marker.CIRCLE: 4.0,
    Marker.DOT: 5.0,
    Marker.SQUARE: 4.5,
    Marker.DIAMOND: 7.0,
    Marker.STAR: 12.0,
    Marker.NONE: 0.0,
}
SCATTER_SIZE = {
    Marker.CIRCLE: 18.0,
    Marker.DOT: 30.0,
    Marker.SQUARE: 22.0,
    Marker.DIAMOND: 150.0,
    Marker.STAR: 200.0,
    Marker.NONE: 0.0,
}
BAND_ALPHA = 0.14
GUIDE_ALPHA = 0.6
LABEL, TITLE = 10, 12  # font sizes (points), as every figure of the report (figures/analysis.py)


def hex_color(c: object) -> str:
    """A matplotlib colour as "#rrggbb" (a chart series' colour)."""
    return to_hex(c, keep_alpha=False)  # type: ignore[arg-type]


def points(values: Iterable[float | None]) -> list[float]:
    """Rounded values as a series' coordinates: NaN (a gap) where a value has none."""
    return [math.nan if v is None else v for v in values]


def mpl_marker(m: Marker) -> str:
    return "" if m == Marker.NONE else m.value


def draw_series(ax: Axes, chart: Chart, s: Series, *, lw: float = 1.6) -> Artist:
    """One series on `ax` (its band first), labelled with its name; returns its main artist."""
    x = np.asarray(s.x, dtype=float)
    y = np.asarray(s.y, dtype=float)
    line, marker = line_of(chart, s), marker_of(chart, s)
    if s.err is not None and chart.kind == ChartKind.LINE:
        lo, hi = chart.y_clip or (-np.inf, np.inf)
        err = np.asarray(s.err, dtype=float)
        ax.fill_between(
            x,
            np.clip(y - err, lo, hi),
            np.clip(y + err, lo, hi),
            color=s.color,
            alpha=BAND_ALPHA,
            lw=0,
        )
    elif s.err is not None:
        ax.vlines(x, y - np.asarray(s.err), y + np.asarray(s.err), color=s.color, lw=1.0, alpha=0.6)
    if line != LineStyle.NONE:
        (artist,) = ax.plot(
            x,
            y,
            MPL_LINE[line],
            color=s.color,
            lw=lw,
            marker=mpl_marker(marker),
            ms=LINE_SIZE[marker],
            mfc=None if s.filled else "white",
            label=s.name,
        )
        return artist
    colors = s.point_colors if s.point_colors is not None else s.color
    face = "white" if not s.filled else colors
    edge = (
        colors if not s.filled else ("black" if marker in (Marker.STAR, Marker.DIAMOND) else "face")
    )
    return ax.scatter(
        x,
        y,
        s=SCATTER_SIZE[marker],
        marker=mpl_marker(marker) or "o",
        c=None,
        facecolors=face,
        edgecolors=edge,
        linewidths=1.6 if not s.filled else 0.7,
        label=s.name,
        zorder=3 if marker in (Marker.STAR, Marker.DIAMOND) else 2,
    )


def draw_chart(ax: Axes, chart: Chart, *, lw: float = 1.6) -> list[Artist]:
    """Every series of `chart` on `ax`, its guides, annotations, axis labels, scales, limits and
    fixed ticks; returns the series' artists (the legend's handles when the chart has no
    `keys`; `legend_handles` adds the guides)."""
    artists = [draw_series(ax, chart, s, lw=lw) for s in chart.series]
    for s in chart.series:
        if s.annotate and s.labels:
            for x, y, text in zip(s.x, s.y, s.labels):
                ax.annotate(text, (x, y), xytext=(7, 5), textcoords="offset points", fontsize=8)
    for g in chart.guides:
        line = ax.axvline if g.axis == "x" else ax.axhline
        line(g.value, color=g.color, ls=MPL_LINE[g.line], lw=1, alpha=GUIDE_ALPHA, label=g.name,
             gid="guide")  # fmt: skip
    ax.set_xlabel(chart.x_label, fontsize=LABEL)
    ax.set_ylabel(chart.y_label, fontsize=LABEL)
    for axis, set_scale, set_lim in (("x", ax.set_xscale, ax.set_xlim),
                                     ("y", ax.set_yscale, ax.set_ylim)):  # fmt: skip
        sc = chart.scale(axis)
        if sc.kind == AxisScale.SYMLOG:
            set_scale("symlog", linthresh=sc.linthresh, linscale=1.0, base=10)
        elif sc.kind == AxisScale.LOG:
            set_scale("log")
        set_lim(*chart.limits(axis))  # the page draws the same extent (Chart.domain)
    if chart.x_ticks is not None:
        ax.set_xticks([v for v, _ in chart.x_ticks], [t for _, t in chart.x_ticks])
    if chart.title:
        ax.set_title(chart.title, fontsize=TITLE)
    return artists


def legend_handles(chart: Chart, artists: Sequence[Artist]) -> list[Artist]:
    """The legend of a chart as the figure shows it: its `keys` when it has them (a compact
    legend), else one entry per series; then its guides."""
    guides: list[Artist] = [
        Line2D([], [], ls=MPL_LINE[g.line], color=g.color, lw=1, alpha=GUIDE_ALPHA, label=g.name)
        for g in chart.guides
    ]
    if chart.keys:
        keys: list[Artist] = [key_handle(chart, k) for k in chart.keys]
        return keys + guides
    # a series in per-point colours (members in their own colours) shows grey in the legend
    return [
        key_handle(chart, s) if s.point_colors is not None else a
        for s, a in zip(chart.series, artists)
    ] + guides


def key_handle(chart: Chart, k: Series) -> Line2D:
    """A legend-only entry: a proxy line in the key's colour, line style and marker."""
    marker = marker_of(chart, k)
    color = k.color or ("#bbbbbb" if k.point_colors is not None else "black")
    return Line2D(
        [],
        [],
        ls=MPL_LINE[line_of(chart, k)],
        color=color,
        lw=1.6,
        marker=mpl_marker(marker),
        ms=max(LINE_SIZE[marker], 6.0),
        mfc=None if k.filled else "white",
        mec="black" if k.point_colors is not None or not k.filled else None,
        label=k.name,
    )
