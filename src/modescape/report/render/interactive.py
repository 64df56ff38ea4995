"""Interactive charts for the report pages: a figure's `Chart`s (report/base.py, one per panel) as
inline SVG small multiples with one legend, plus the one small inline script that gives every
chart hover values, drag-to-zoom and series toggling.

No library and nothing fetched: Python draws each panel whole (axes on the chart's scales and
extent, ticks, guides, one `<g>` per series, a `<use class="pt">` of the series' marker shape per
point with its values in `data-x`/`data-y` (on the axis scale) and its hover text in `data-t`,
`<path>` lines in the series' line style and ± bands with their points in `data-pts`), so the SVG
reads and prints without script. `CHART_JS` then redraws each panel at its on-screen width (text
stays at its CSS size on a phone) and handles:

    hover / tap      the nearest point's hover text in a tooltip (`#tip`)
    drag (mouse)     zoom to the dragged rectangle in that panel; double-click resets
    legend button    shows / hides its series in every panel (`aria-pressed`)

Every string that comes from a run (series names, labels, axis labels) is HTML-escaped here.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence

from modescape.report.base import (
    AxisScale,
    Chart,
    ChartKind,
    Guide,
    LineStyle,
    Marker,
    Scale,
    Series,
    series_line,
    series_marker,
)

# matplotlib's tab10, so chart colours match the PNGs' defaults
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip

# The static layout (the script redraws at the on-screen width; see CHART_JS's `lay`).
WIDTH, HEIGHT = 640, 384
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 10, 42


def value_text(v: float) -> str:
    """A number as the tooltip shows it: 4 significant digits ('0.8123', '12.35', '1.2e-05')."""
    return "nan" if not math.isfinite(v) else f"{v:.4g}"


def point_text(chart: Chart, s: Series, i: int) -> str:
    """The hover text of point i of series s: 'deep: size 3 · accuracy 0.8123 ± 0.01'."""
    err = f" ± {value_text(s.err[i])}" if s.err is not None and math.isfinite(s.err[i]) else ""
    xy = f"{chart.x_label} {value_text(s.x[i])} · {chart.y_label} {value_text(s.y[i])}{err}"
    label = s.labels[i] if s.labels is not None and i < len(s.labels) else ""
    return f"{s.name}: {label + ' · ' if label else ''}{xy}"


# Marker shapes around (0, 0), defined once per chart and placed with <use>; the sizes follow
# the PNGs' (a star is larger than a circle, a dot smaller).
SHAPES = {
    Marker.CIRCLE: "M-3,0a3,3 0 1,0 6,0a3,3 0 1,0 -6,0",
    Marker.NONE: "M-3,0a3,3 0 1,0 6,0a3,3 0 1,0 -6,0",  # invisible: hover only
    Marker.DOT: "M-2,0a2,2 0 1,0 4,0a2,2 0 1,0 -4,0",
    Marker.SQUARE: "M-3,-3h6v6h-6Z",
    Marker.DIAMOND: "M0,-5L5,0L0,5L-5,0Z",
    Marker.STAR: "M"
    + "L".join(
        f"{r * math.sin(k * math.pi / 5):.2f},{-r * math.cos(k * math.pi / 5):.2f}"
        for k, r in zip(range(10), [6.5, 2.6] * 5)
    )
    + "Z",
}


def figure_svg(charts: Sequence[Chart], uid: str, title: str = "") -> str:
    """A figure's charts (its panels, in order) as small multiples, each a `<div class="chart">`
    holding its SVG (titled when there are several), then one legend for them all: a button per
    series name (toggling that series in every panel), then the charts' fixed keys and guides.
    The panels sit side by side where the page is wide enough, one above the other on a phone."""
    names = list(dict.fromkeys(s.name for c in charts for s in c.series))
    used = {series_marker(c, s) for c in charts for s in [*c.series, *c.keys]}
    defs = "".join(
        f'<path id="{html.escape(uid)}-m{i}" d="{SHAPES[m]}"/>'
        for i, m in enumerate(Marker)
        if m in used
    )
    panels = [
        _panel_svg(c, names, uid, i, defs if i == 0 else "", title, len(charts) > 1)
        for i, c in enumerate(charts)
    ]
    multi = " multi" if len(charts) > 1 else ""
    return (
        f'<div class="charts{multi}">{"".join(panels)}</div>'
        f'<div class="legend">{_legend(charts, names, uid)}</div>'
    )


def _legend(charts: Sequence[Chart], names: list[str], uid: str) -> str:
    """One button per series name (drawn as its first occurrence), then the fixed keys and the
    guides of every chart, each name once."""
    esc = html.escape
    first: dict[str, tuple[Chart, Series]] = {}
    keys: dict[str, tuple[Chart, Series]] = {}
    guides: dict[str, Guide] = {}
    for c in charts:
        for s in c.series:
            first.setdefault(s.name, (c, s))
        for k in c.keys:
            keys.setdefault(k.name, (c, k))
        for g in c.guides:
            guides.setdefault(g.name, g)
    out = [
        f'<button type="button" class="key" data-s="{k}" aria-pressed="true">'
        f"{_swatch(*first[n], k, uid)}{esc(n)}</button>"
        for k, n in enumerate(names)
    ]
    out += [
        f'<span class="key fixed">{_swatch(c, k, i, uid)}{esc(k.name)}</span>'
        for i, (c, k) in enumerate(keys.values())
    ]
    out += [
        f'<span class="key fixed guide"><svg class="sw" viewBox="0 0 24 12" aria-hidden="true" '
        f'style="color:{esc(g.color)}"><path class="line {g.line.value}" d="M1,6H23"/></svg>'
        f"{esc(g.name)}</span>"
        for g in guides.values()
    ]
    return "".join(out)


def _panel_svg(
    chart: Chart, names: list[str], uid: str, panel: int, defs: str, title: str, titled: bool
) -> str:
    """Panel `panel` of figure `uid` as `<div class="chart">` and its SVG; `defs`: the figure's
    marker shapes (in its first panel, which every panel and the legend refer to)."""
    esc = html.escape
    xd, yd = chart.domain("x"), chart.domain("y")
    sx, sy = _scale(xd, LEFT, WIDTH - RIGHT), _scale(yd, HEIGHT - BOTTOM, TOP)
    groups = [_series_svg(chart, s, names.index(s.name), uid, sx, sy) for s in chart.series]
    guides = [_guide_svg(g, chart, sx, sy) for g in chart.guides]
    xint = all(float(v).is_integer() for s in chart.series for v in s.x)
    xt = (
        f' data-xt="{esc(json.dumps([[chart.x_scale.forward(v), t] for v, t in chart.x_ticks]))}"'
        if chart.x_ticks is not None
        else ""
    )
    attrs = (
        f'data-kind="{chart.kind.value}" data-xs="{chart.x_scale.kind.value}" '
        f'data-xth="{chart.x_scale.linthresh!r}" data-ys="{chart.y_scale.kind.value}" '
        f'data-yth="{chart.y_scale.linthresh!r}" data-xint="{int(xint)}"{xt} '
        f'data-dom="{xd[0]!r} {xd[1]!r} {yd[0]!r} {yd[1]!r}" '
        f'data-xl="{esc(chart.x_label)}" data-yl="{esc(chart.y_label)}"'
    )
    label = title or f"{chart.y_label} against {chart.x_label}"
    if titled and chart.title:
        label = f"{chart.title}: {label}"
    head = f'<div class="ptitle">{esc(chart.title)}</div>' if titled and chart.title else ""
    return (
        f'<div class="panel">{head}<div class="chart" {attrs}><svg viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" role="img" aria-label="{esc(label)}"><defs>{defs}</defs>'
        f'<clipPath id="clip-{esc(uid)}-{panel}"><rect class="clip" x="{LEFT}" y="{TOP}" '
        f'width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}"/></clipPath>'
        f'<g class="frame">{_frame(chart, xd, yd, sx, sy)}</g>'
        f'<g class="plot" clip-path="url(#clip-{esc(uid)}-{panel})">{"".join(guides + groups)}</g>'
        f'<rect class="zoom" width="0" height="0"/></svg></div></div>'
    )


def _guide_svg(g: Guide, chart: Chart, sx, sy) -> str:
    """A reference line across the plot at `g.value` (data-v: on the axis's scale)."""
    t = chart.scale(g.axis).forward(g.value)
    if g.axis == "x":
        d = f"M{sx(t):.1f},{TOP}V{HEIGHT - BOTTOM}"
    else:
        d = f"M{LEFT},{sy(t):.1f}H{WIDTH - RIGHT}"
    return (
        f'<path class="guide line {g.line.value}" data-axis="{g.axis}" data-v="{t!r}" '
        f'd="{d}" style="color:{html.escape(g.color)}"><title>{html.escape(g.name)}</title></path>'
    )


def _marker_ref(uid: str, m: Marker) -> str:
    return f"#{html.escape(uid)}-m{list(Marker).index(m)}"


def _mark_class(chart: Chart, s: Series) -> str:
    m = series_marker(chart, s)
    return "pt" + (" no" if m == Marker.NONE else "") + ("" if s.filled else " open")


def _series_svg(chart: Chart, s: Series, k: int, uid: str, sx, sy) -> str:
    """One series: its ± band or bars, its line (in its line style), its markers (<use> of the
    marker's shape, with the point's values and hover text), its annotations."""
    esc = html.escape
    color = s.color or PALETTE[k % len(PALETTE)]
    tx, ty = chart.x_scale.forward, chart.y_scale.forward
    clip = chart.y_clip or (-math.inf, math.inf)
    parts = []
    pts = [(tx(x), ty(y)) for x, y in zip(s.x, s.y)]
    if s.err is not None:
        lo = [(tx(x), ty(max(clip[0], y - e))) for x, y, e in zip(s.x, s.y, s.err)]
        hi = [(tx(x), ty(min(clip[1], y + e))) for x, y, e in zip(s.x, s.y, s.err)]
        cls = "band" if chart.kind == ChartKind.LINE else "bars"
        if chart.kind == ChartKind.LINE:
            data = _pts(lo + hi[::-1])
        else:  # one vertical bar per point
            data = ";".join(_pts([a, b]) for a, b in zip(lo, hi))
        parts.append(f'<path class="{cls}" data-pts="{data}" d="{_d(data, sx, sy, cls)}"/>')
    line = series_line(chart, s)
    if line != LineStyle.NONE:
        data = _pts(pts)
        parts.append(f'<path class="line {line.value}" data-pts="{data}" d="{_d(data, sx, sy)}"/>')
    ref, cls = _marker_ref(uid, series_marker(chart, s)), _mark_class(chart, s)
    for i, (x, y) in enumerate(pts):
        if math.isfinite(x) and math.isfinite(y):
            own = s.point_colors[i] if s.point_colors is not None else None
            style = f' style="color:{esc(own)}"' if own else ""
            parts.append(
                f'<use class="{cls}" href="{ref}" x="{sx(x):.1f}" y="{sy(y):.1f}"{style} '
                f'data-x="{x!r}" data-y="{y!r}" data-t="{esc(point_text(chart, s, i))}"/>'
            )
            if s.annotate and s.labels is not None and i < len(s.labels):
                parts.append(
                    f'<text class="ann" x="{sx(x) + 7:.1f}" y="{sy(y) - 5:.1f}" data-x="{x!r}" '
                    f'data-y="{y!r}">{esc(s.labels[i])}</text>'
                )
    return f'<g class="series" data-s="{k}" style="color:{esc(color)}">{"".join(parts)}</g>'


def _swatch(chart: Chart, s: Series, k: int, uid: str) -> str:
    """A legend entry's small picture: the series' line style and marker in its colour (a
    series coloured point by point shows grey)."""
    color = s.color or ("#777777" if s.point_colors else PALETTE[k % len(PALETTE)])
    line = series_line(chart, s)
    stroke = f'<path class="line {line.value}" d="M1,6H23"/>' if line != LineStyle.NONE else ""
    mark = series_marker(chart, s)
    use = (
        f'<use class="{_mark_class(chart, s)}" href="{_marker_ref(uid, mark)}" x="12" y="6"/>'
        if mark != Marker.NONE
        else ""
    )
    return (
        f'<svg class="sw" viewBox="0 0 24 12" aria-hidden="true" '
        f'style="color:{html.escape(color)}">{stroke}{use}</svg>'
    )


def _scale(dom: tuple[float, float], a: float, b: float):
    d0, d1 = dom
    return lambda v: a + (v - d0) / (d1 - d0) * (b - a)


def _pts(points: Sequence[tuple[float, float]]) -> str:
    """Points as 'x,y x,y;x,y' (data space on the axis scale): ';' breaks the line at a gap."""
    segs, cur = [], []
    for x, y in points:
        if math.isfinite(x) and math.isfinite(y):
            cur.append(f"{x!r},{y!r}")
        elif cur:
            segs.append(" ".join(cur))
            cur = []
    if cur:
        segs.append(" ".join(cur))
    return ";".join(segs)


def _d(data: str, sx, sy, cls: str = "line") -> str:
    out = []
    for seg in filter(None, data.split(";")):
        xy = [tuple(map(float, p.split(","))) for p in seg.split(" ")]
        out.append("M" + "L".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in xy))
        if cls == "band":
            out.append("Z")
    return "".join(out)


def ticks(lo: float, hi: float, scale: Scale, n: int = 6, integer: bool = False) -> list[float]:
    """Tick positions (on the axis scale) within [lo, hi], whole numbers only for `integer`
    data (sizes, epochs); the same rule as CHART_JS's `ticks`. Log: whole decades when the
    range spans 1.5 or more; symlog: 0 and ±10^k outside the linear range, when two fit."""
    if scale.kind == AxisScale.LOG and hi - lo >= 1.5:
        step = max(1, math.ceil((hi - lo) / n))
        return [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1) if k % step == 0]
    a, b = scale.inverse(lo), scale.inverse(hi)
    if scale.kind == AxisScale.SYMLOG:
        top = max(abs(a), abs(b))
        first = math.ceil(math.log10(scale.linthresh) - 1e-9)
        last = math.floor(math.log10(top) + 1e-9) if top > 0 else first - 1
        decades = [10.0**k for k in range(first, last + 1)]
        cands = sorted({0.0, *decades, *(-d for d in decades)})
        cands = [v for v in cands if a <= v <= b]
        if len(cands) >= 2:
            step = max(1, math.ceil(len(cands) / n))
            return [scale.forward(v) for i, v in enumerate(cands) if i % step == 0]
    raw = max((b - a) / n, 1.0 if integer else 0.0)
    if not raw > 0:
        return []
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    out, v = [], math.ceil(a / step) * step
    while v <= b + step * 1e-9:
        out.append(scale.forward(v))
        v += step
    return [t for t in out if math.isfinite(t)]


def tick_text(v: float, scale: Scale) -> str:
    v = scale.inverse(v)
    return f"{float(f'{v:.6g}'):g}"


def _frame(chart: Chart, xd, yd, sx, sy) -> str:
    esc = html.escape
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    out = [f'<rect class="box" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}"/>']
    xint = all(float(v).is_integer() for s in chart.series for v in s.x)
    if chart.x_ticks is not None:
        xticks = [(chart.x_scale.forward(v), t) for v, t in chart.x_ticks]
        xticks = [(v, t) for v, t in xticks if xd[0] <= v <= xd[1]]
    else:
        xticks = [(t, tick_text(t, chart.x_scale)) for t in ticks(*xd, chart.x_scale,
                                                                   integer=xint)]  # fmt: skip
    for t, label in xticks:
        x = sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y1}"/>')
        out.append(f'<text x="{x:.1f}" y="{y1 + 16}" text-anchor="middle">{esc(label)}</text>')
    for t in ticks(*yd, chart.y_scale, 5):
        y = sy(t)
        out.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
        label = tick_text(t, chart.y_scale)
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(
        f'<text class="axis" x="{(x0 + x1) / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{esc(chart.x_label)}</text>"
        f'<text class="axis" transform="translate(14 {(y0 + y1) / 2}) rotate(-90)" '
        f'text-anchor="middle">{esc(chart.y_label)}</text>'
    )
    return "".join(out)


def chart_data(chart: Chart) -> dict:
    """The chart's series as plain JSON-able data (report/data.json)."""
    return {
        "kind": chart.kind.value,
        "title": chart.title,
        "x_label": chart.x_label,
        "y_label": chart.y_label,
        "x_log": chart.x_scale.kind == AxisScale.LOG,
        "y_log": chart.y_scale.kind == AxisScale.LOG,
        "x_scale": _scale_data(chart.x_scale),
        "y_scale": _scale_data(chart.y_scale),
        "x_limits": list(chart.limits("x")),
        "y_limits": list(chart.limits("y")),
        "y_range": list(chart.y_range) if chart.y_range is not None else None,
        "series": [
            {
                "name": s.name,
                **_style(chart, s),
                "x": [float(v) for v in s.x],
                "y": [float(v) for v in s.y],
                **({"err": [float(v) for v in s.err]} if s.err is not None else {}),
                **({"labels": list(s.labels)} if s.labels is not None else {}),
            }
            for s in chart.series
        ],
        "keys": [{"name": s.name, **_style(chart, s)} for s in chart.keys],
        "guides": [
            {
                "axis": g.axis,
                "value": g.value,
                "name": g.name,
                "color": g.color,
                "line": g.line.value,
            }
            for g in chart.guides
        ],
    }


def _scale_data(scale: Scale) -> dict:
    out: dict = {"kind": scale.kind.value}
    if scale.kind == AxisScale.SYMLOG:
        out["linthresh"] = scale.linthresh
    return out


def _style(chart: Chart, s: Series) -> dict:
    """How a series is drawn, as data.json records it (and the figure test compares)."""
    return {
        "color": s.color,
        "line": series_line(chart, s).value,
        "marker": series_marker(chart, s).value,
        **({"point_colors": list(s.point_colors)} if s.point_colors is not None else {}),
        **({} if s.filled else {"filled": False}),
    }


CHART_CSS = """
.charts { display: grid; grid-template-columns: minmax(0, 1fr); gap: 6px 18px; }
.charts.multi { grid-template-columns: repeat(auto-fit, minmax(min(100%, 400px), 1fr)); }
.panel { min-width: 0; }
.ptitle { font-size: 0.9em; font-weight: 600; text-align: center; margin: 4px 0 0; }
.chart { position: relative; width: 100%; }
.chart svg { display: block; width: 100%; height: auto; font-size: 12px; user-select: none;
             touch-action: pan-y; }
.chart text { fill: currentColor; }
.chart .axis { font-size: 13px; }
.chart .box { fill: none; stroke: var(--rule); }
.chart .grid { stroke: var(--grid); }
.chart .line, .legend .sw .line { fill: none; stroke: currentColor; stroke-width: 1.8; }
.chart .line.dashed, .legend .sw .line.dashed { stroke-dasharray: 6 4; }
.chart .line.dotted, .legend .sw .line.dotted { stroke-dasharray: 1.5 3; stroke-linecap: round; }
.chart .band { fill: currentColor; opacity: 0.15; stroke: none; }
.chart .bars { stroke: currentColor; stroke-width: 1.2; opacity: 0.6; }
.chart .pt, .legend .sw .pt { fill: currentColor; stroke: var(--bg); stroke-width: 0.8; }
.chart .pt.open, .legend .sw .pt.open { fill: var(--bg); stroke: currentColor; stroke-width: 1.6; }
.chart .pt.no { opacity: 0; }
.chart .pt.hot { stroke: var(--fg); stroke-width: 2; opacity: 1; }
.chart .series.off, .chart .series.off * { display: none; }
.chart .zoom { fill: var(--accent); opacity: 0.15; }
.chart .guide { stroke-width: 1.2; opacity: 0.6; }
.chart .ann { font-size: 11px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 6px; margin: 4px 0; }
.legend .key { font: inherit; font-size: 0.85em; color: inherit; background: none;
               border: 1px solid var(--rule); border-radius: 12px; padding: 1px 8px;
               cursor: pointer; max-width: 100%; overflow-wrap: break-word; text-align: left; }
.legend .key .sw { display: inline-block; width: 24px; height: 12px; margin-right: 5px;
                   vertical-align: -1px; overflow: visible; }
.legend .key.fixed { cursor: default; }
.legend .key[aria-pressed="false"] { opacity: 0.45; text-decoration: line-through; }
#tip { position: absolute; z-index: 20; pointer-events: none; display: none; max-width: 280px;
       background: var(--fg); color: var(--bg); font-size: 12px; line-height: 1.35;
       padding: 4px 8px; border-radius: 4px; overflow-wrap: break-word; }
"""

# Kept small and free of eval and network access; see the module docstring.
CHART_JS = r"""
(() => {
const tip = document.getElementById('tip');
const fmt = v => String(+v.toPrecision(6));
const set = (e, a) => Object.entries(a).forEach(([k, v]) => e.setAttribute(k, v));
// an axis scale: {k: 'linear' | 'log' | 'symlog', th: linthresh}; as report/base.py's Scale
const ADJ = 1 / (1 - 1 / 10);
function fwd(v, s) {
  if (s.k === 'log') return v > 0 ? Math.log10(v) : NaN;
  if (s.k !== 'symlog') return v;
  const a = Math.abs(v);
  return a <= s.th ? v * ADJ : Math.sign(v) * s.th * (ADJ + Math.log10(a / s.th));
}
function inv(t, s) {
  if (s.k === 'log') return 10 ** t;
  if (s.k !== 'symlog') return t;
  const a = Math.abs(t);
  return a <= s.th * ADJ ? t / ADJ : Math.sign(t) * s.th * 10 ** (a / s.th - ADJ);
}
function ticks(lo, hi, s, n, int) {  // the same rule as interactive.py's `ticks`
  if (s.k === 'log' && hi - lo >= 1.5) {
    const st = Math.max(1, Math.ceil((hi - lo) / n)), out = [];
    for (let k = Math.ceil(lo); k <= Math.floor(hi); k++) if (k % st === 0) out.push(k);
    return out;
  }
  const a = inv(lo, s), b = inv(hi, s);
  if (s.k === 'symlog') {
    const top = Math.max(Math.abs(a), Math.abs(b)), first = Math.ceil(Math.log10(s.th) - 1e-9);
    const last = top > 0 ? Math.floor(Math.log10(top) + 1e-9) : first - 1, c = new Set([0]);
    for (let k = first; k <= last; k++) { c.add(10 ** k); c.add(-(10 ** k)); }
    const cands = [...c].sort((p, q) => p - q).filter(v => a <= v && v <= b);
    if (cands.length >= 2) {
      const st = Math.max(1, Math.ceil(cands.length / n));
      return cands.filter((v, i) => i % st === 0).map(v => fwd(v, s));
    }
  }
  const raw = Math.max((b - a) / n, int ? 1 : 0);
  if (!(raw > 0)) return [];
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map(m => m * mag).find(v => v >= raw), out = [];
  for (let v = Math.ceil(a / step) * step; v <= b + step * 1e-9; v += step) out.push(fwd(v, s));
  return out.filter(isFinite);
}
function el(tag, attrs, text) {  // the namespace is read from the page's own <svg>s
  const e = document.createElementNS(document.querySelector('svg').namespaceURI, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function draw(c) {
  const svg = c.querySelector('svg'), W = Math.max(200, Math.round(c.clientWidth));
  const H = Math.round(Math.min(440, Math.max(240, W * 0.6)));
  const [x0, x1, y0, y1] = c.dom, L = 58, R = W - 12, T = 10, B = H - 42, d = c.dataset;
  const sx = v => L + (v - x0) / (x1 - x0) * (R - L), sy = v => B - (v - y0) / (y1 - y0) * (B - T);
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const clip = svg.querySelector('.clip');
  set(clip, {x: L, y: T, width: R - L, height: B - T});
  const f = svg.querySelector('.frame');
  f.replaceChildren(el('rect', {class: 'box', x: L, y: T, width: R - L, height: B - T}));
  const xs = {k: d.xs, th: +d.xth}, ys = {k: d.ys, th: +d.yth};
  const xt = d.xt ? JSON.parse(d.xt).filter(([t]) => x0 <= t && t <= x1) :
    ticks(x0, x1, xs, Math.max(2, Math.round((R - L) / 70)), d.xint === '1')
      .map(t => [t, fmt(inv(t, xs))]);
  for (const [t, text] of xt) {
    f.append(el('line', {class: 'grid', x1: sx(t), x2: sx(t), y1: T, y2: B}));
    f.append(el('text', {x: sx(t), y: B + 16, 'text-anchor': 'middle'}, text));
  }
  for (const t of ticks(y0, y1, ys, Math.max(2, Math.round((B - T) / 45)))) {
    f.append(el('line', {class: 'grid', x1: L, x2: R, y1: sy(t), y2: sy(t)}));
    f.append(el('text', {x: L - 6, y: sy(t) + 4, 'text-anchor': 'end'}, fmt(inv(t, ys))));
  }
  f.append(el('text', {class: 'axis', x: (L + R) / 2, y: H - 6, 'text-anchor': 'middle'}, d.xl));
  f.append(el('text', {class: 'axis', transform: `translate(14 ${(T + B) / 2}) rotate(-90)`,
                       'text-anchor': 'middle'}, d.yl));
  for (const p of svg.querySelectorAll('path[data-pts]'))
    p.setAttribute('d', p.dataset.pts.split(';').filter(Boolean).map(seg => 'M' + seg.split(' ')
      .map(q => { const [x, y] = q.split(',').map(Number); return sx(x) + ',' + sy(y); })
      .join('L') + (p.classList.contains('band') ? 'Z' : '')).join(''));
  for (const g of svg.querySelectorAll('.guide')) {
    const v = +g.dataset.v;
    g.setAttribute('d', g.dataset.axis === 'x' ? `M${sx(v)},${T}V${B}` : `M${L},${sy(v)}H${R}`);
  }
  for (const q of svg.querySelectorAll('.pt')) {
    q.setAttribute('x', sx(+q.dataset.x)); q.setAttribute('y', sy(+q.dataset.y));
  }
  for (const q of svg.querySelectorAll('.ann')) {
    q.setAttribute('x', sx(+q.dataset.x) + 7); q.setAttribute('y', sy(+q.dataset.y) - 5);
  }
  c.box = [L, R, T, B];
}
function local(svg, e) {
  const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(svg.getScreenCTM().inverse());
  return [p.x, p.y];
}
function hover(c, e) {
  const svg = c.querySelector('svg'), [mx, my] = local(svg, e), k = svg.getScreenCTM().a || 1;
  let best = null, bd = 24 / k;
  for (const q of svg.querySelectorAll('.series:not(.off) .pt')) {
    const dd = Math.hypot(q.x.baseVal.value - mx, q.y.baseVal.value - my);
    if (dd < bd) { bd = dd; best = q; }
  }
  svg.querySelectorAll('.pt.hot').forEach(q => q.classList.remove('hot'));
  if (!best) { tip.style.display = 'none'; return; }
  best.classList.add('hot');
  tip.textContent = best.dataset.t;
  tip.style.display = 'block';
  const r = best.getBoundingClientRect(), w = tip.offsetWidth;
  const left = Math.min(scrollX + r.right + 8, scrollX + innerWidth - w - 4);
  tip.style.left = Math.max(4, left) + 'px';
  tip.style.top = scrollY + r.bottom + 6 + 'px';
}
for (const c of document.querySelectorAll('.chart')) {
  const svg = c.querySelector('svg'), zoom = svg.querySelector('.zoom');
  c.home = c.dataset.dom.split(' ').map(Number); c.dom = c.home.slice();
  let start = null;
  svg.addEventListener('pointermove', e => {
    if (!start) return hover(c, e);
    const [x, y] = local(svg, e);
    const [a, b] = start;
    set(zoom, {x: Math.min(x, a), y: Math.min(y, b),
               width: Math.abs(x - a), height: Math.abs(y - b)});
  });
  svg.addEventListener('pointerdown', e => {
    if (e.pointerType !== 'mouse' || e.button !== 0) return hover(c, e);
    start = local(svg, e);
    svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener('pointerup', e => {
    if (!start) return;
    const [x, y] = local(svg, e), [L, R, T, B] = c.box, [x0, x1, y0, y1] = c.dom;
    const ix = v => x0 + (Math.min(R, Math.max(L, v)) - L) / (R - L) * (x1 - x0);
    const iy = v => y0 + (B - Math.min(B, Math.max(T, v))) / (B - T) * (y1 - y0);
    if (Math.abs(x - start[0]) > 8 && Math.abs(y - start[1]) > 8) {
      c.dom = [ix(Math.min(x, start[0])), ix(Math.max(x, start[0])),
               iy(Math.max(y, start[1])), iy(Math.min(y, start[1]))];
      draw(c);
    }
    start = null;
    set(zoom, {width: 0, height: 0});
  });
  svg.addEventListener('pointerleave', () => { if (!start) tip.style.display = 'none'; });
  svg.addEventListener('dblclick', () => { c.dom = c.home.slice(); draw(c); });
  draw(c);
  c.w = c.clientWidth;
  // redrawn in the next frame: drawing inside the observer's callback resizes what it observes
  // ("ResizeObserver loop completed with undelivered notifications" at 400 px)
  new ResizeObserver(() => requestAnimationFrame(() => {
    if (c.clientWidth !== c.w) { c.w = c.clientWidth; draw(c); }
  })).observe(c);
}
// a legend button shows / hides its series in every panel of its figure
for (const lg of document.querySelectorAll('.charts + .legend')) {
  lg.addEventListener('click', e => {
    const b = e.target.closest('button.key');
    if (!b) return;
    const on = b.getAttribute('aria-pressed') !== 'true';
    b.setAttribute('aria-pressed', on);
    lg.previousElementSibling.querySelectorAll(`.series[data-s="${b.dataset.s}"]`)
      .forEach(g => g.classList.toggle('off', !on));
  });
}
})();
"""
