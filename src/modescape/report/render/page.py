"""The page both `modescape report` and `modescape compare` write: layout, figures, tables.

One self-contained HTML file: inline CSS and script, figures as inline SVG charts
(`report/render/interactive.py`) or base64 PNGs, nothing fetched from the network. The page has

- a sticky table of contents (a side column on wide screens, a collapsible bar on narrow ones);
- numbered figures ("Figure 3") with `id="fig-<name>"` anchors and a link mark, each with links to
  its files (PNG, PDF, CSV) and an Enlarge button (tap a PNG to enlarge it too);
- tables that turn into one card per row on narrow screens (nothing wider than a 400 px phone);
- print and dark-mode (`prefers-color-scheme`) stylesheets.

Every string from a run is HTML-escaped here or in `interactive.py`.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import struct
from base64 import b64encode
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modescape.report.base import Chart, Table
from modescape.report.render.interactive import CHART_CSS, CHART_JS, figure_svg
from modescape.report.wording import near_one

esc = html.escape


@dataclass
class FigureBlock:
    """One figure of a page: interactive charts (one per panel), a PNG, or both (the PNG then
    sits under the charts in a <details>); `links` are (text, href) of its files."""

    name: str
    caption: str
    png: bytes | None = None
    charts: list[Chart] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return 0, 0
    w, h = struct.unpack(">II", png[16:24])
    return int(w), int(h)


def img_html(png: bytes, alt: str, scale: int = 1) -> str:
    """A base64 PNG shown at its CSS size (pixels / scale: sharp on high-density screens)."""
    w, h = png_size(png)
    size = f' width="{w // scale}" height="{h // scale}"' if w and h else ""
    data = b64encode(png).decode()
    return f'<img class="zoomable" src="data:image/png;base64,{data}"{size} alt="{esc(alt)}">'


def figure_html(fig: FigureBlock, number: int, png_scale: int = 1) -> str:
    anchor = f"fig-{fig.name}"
    body = ""
    if fig.charts:
        body = figure_svg(fig.charts, uid=fig.name, title=fig.caption)
    elif fig.png is not None:
        body = img_html(fig.png, fig.caption, png_scale)
    files = " · ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in fig.links)
    static = ""
    if fig.charts and fig.png is not None:
        static = (
            '<details class="static"><summary>Static figure (PNG, as in the files)</summary>'
            f"{img_html(fig.png, fig.caption, png_scale)}</details>"
        )
    return (
        f'<figure class="fig" id="{esc(anchor)}">{body}'
        f'<figcaption><a class="anchor" href="#{esc(anchor)}" title="Link to this figure">'
        f"Figure {number}</a>. {esc(fig.caption)}"
        f' <span class="files">{files}</span> '
        '<button type="button" class="enlarge" aria-label="Enlarge">Enlarge</button>'
        f"{static}</figcaption></figure>"
    )


def csv_bytes(table: Table) -> bytes:
    """A table as CSV (its header row, then its rows as they are)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return buf.getvalue().encode()


def cell_text(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else near_one(float(value), 4, "g")
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) < 10**12 else str(value)  # seeds stay unformatted
    return str(value)


# Where a long identifier or path may wrap: after "/" and "_", after a "." that a letter
# follows (train.augment.flip, not 0.25), and before a "+" (a dirty checkout's commit,
# "<sha>+dirty", where a browser breaks anyway); nowhere else, so no word breaks mid-token.
_BREAKS = re.compile(r"([/_]|\.(?=[A-Za-z]))")


def breakable(text: str) -> str:
    """`text` HTML-escaped, with <wbr> at the points an identifier or path may wrap."""
    return _BREAKS.sub(r"\1<wbr>", esc(text)).replace("+", "<wbr>+")


def _td(value: Any, label: str, align_numbers: bool = True) -> str:
    numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    css = ' class="num"' if numeric and align_numbers else ""
    return f'<td{css} data-label="{esc(label)}">{breakable(cell_text(value))}</td>'


def table_html(table: Table, href: str | None = None) -> str:
    """A table with its caption and CSV link; cells carry their column name for the narrow
    (one card per row) layout."""
    # snake_case headers may break after an underscore (a narrow column, not a wide table)
    head = "".join(f"<th>{esc(str(h)).replace('_', '_<wbr>')}</th>" for h in table.header)
    labels = [str(h) for h in table.header]
    rows = "".join(
        "<tr>" + "".join(_td(v, lab, table.align_numbers) for v, lab in zip(row, labels)) + "</tr>"
        for row in table.rows
    )
    link = f' <a href="{esc(href)}">CSV</a>' if href else ""
    cards = " cards" if len(table.header) > 1 else ""  # one card per row on narrow screens
    if len(table.header) == 2:  # a list of pairs: a card is the key over its value
        cards += " kv" + (" pairs" if len(table.rows) > 8 else "")  # long: two pairs per row
    body = f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if table.collapsed:  # the caption stays in view; the rows open on demand
        n = len(table.rows)
        return (
            f'<details class="table{cards}"><summary>{esc(table.caption)} '
            f"({n:,} row{'' if n == 1 else 's'}){link}</summary><table>{body}</details>"
        )
    return (
        f'<div class="table{cards}"><table><caption>{esc(table.caption)}{link}</caption>'
        f"{body}</div>"
    )


def section_html(
    sec_id: str, title: str, parts: list[str], reading: list[str] = (), reproduces: str = ""
) -> str:
    """A section: title with its anchor, the 'Reproduces:' line, readings, then `parts` (HTML)."""
    out = [
        f'<section id="{esc(sec_id)}"><h2>{esc(title)} '
        f'<a class="anchor" href="#{esc(sec_id)}" title="Link to this section">¶</a></h2>'
    ]
    if reproduces:
        out.append(f'<p class="reproduces">Reproduces: {esc(reproduces)}</p>')
    out += [f'<p class="reading">{esc(p)}</p>' for p in reading]
    return "".join(out + parts) + "</section>"


def page_html(
    title: str, meta: list[str], toc: list[tuple[str, str]], body: list[str], notices=()
) -> str:
    """The whole page. `meta` lines and `notices` are plain text; `toc` is (id, title) pairs;
    `body` the sections' HTML."""
    items = "".join(f'<li><a href="#{esc(i)}">{esc(t)}</a></li>' for i, t in toc)
    if any('<div class="chart"' in b for b in body):
        meta = [*meta, HINT]
    return _PAGE.format(
        title=esc(title),
        meta="".join(f'<p class="meta{" hint" * (m == HINT)}">{esc(m)}</p>' for m in meta),
        notices="".join(f'<p class="notice">{esc(n)}</p>' for n in notices),
        toc=items,
        body="\n".join(body),
        css=_CSS + CHART_CSS,
        js=CHART_JS + _PAGE_JS,
    )


HINT = (
    "Charts: hover or tap a point for its values, drag to zoom (double-click resets), click a "
    "legend entry to hide or show its series; tap a picture or Enlarge to see it full size."
)

_CSS = """
:root { --fg: #222; --bg: #fff; --muted: #555; --rule: #ccc; --grid: #eee; --accent: #1f5fbf;
        --reading: #f6f8fa; --reading-edge: #1f3b73; --notice: #fff4e5; --th: #f0f0f0; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #ddd; --bg: #16181c; --muted: #aaa; --rule: #444; --grid: #2a2d33;
          --accent: #7eb0ff; --reading: #1f232a; --reading-edge: #7eb0ff; --notice: #3a2a14;
          --th: #23272e; }
  img { background: #fff; }
}
* { box-sizing: border-box; }
html { scroll-padding-top: 56px; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: var(--fg); background: var(--bg); overflow-wrap: break-word; }
.page { max-width: 1100px; margin: 0 auto; padding: 0 16px 48px; }
main { min-width: 0; }
header { border-bottom: 1px solid var(--rule); margin-bottom: 8px; }
h1 { font-size: 1.6em; margin: 20px 0 4px; line-height: 1.25; }
h2 { font-size: 1.3em; margin-top: 40px; border-bottom: 1px solid var(--grid); }
a { color: var(--accent); }
a.anchor { text-decoration: none; }
h2 a.anchor { color: var(--muted); font-size: 0.8em; visibility: hidden; }
h2:hover a.anchor, h2 a.anchor:focus { visibility: visible; }
.meta { color: var(--muted); font-size: 0.9em; margin: 2px 0; }
.notice { background: var(--notice); border-left: 4px solid #c05600; padding: 8px 12px; }
.reproduces { color: var(--muted); font-style: italic; margin: 4px 0 8px; }
.reading { background: var(--reading); border-left: 4px solid var(--reading-edge);
           padding: 8px 12px; margin: 8px 0; }
.toc { position: sticky; top: 0; z-index: 10; background: var(--bg);
       border-bottom: 1px solid var(--rule); margin: 0 -16px; padding: 0 16px; }
.toc summary { cursor: pointer; padding: 8px 0; font-weight: 600; }
.toc ol { margin: 0; padding: 0 0 8px 1.4em; max-height: 70vh; overflow-y: auto; }
.toc li { margin: 2px 0; }
@media (min-width: 1100px) {
  .page { display: grid; grid-template-columns: 200px minmax(0, 1fr); gap: 32px;
          max-width: 1400px; }
  .toc { align-self: start; max-height: 100vh; overflow-y: auto; margin: 0; padding: 20px 0;
         border: none; }
  .toc summary { pointer-events: none; list-style: none; color: var(--muted); }
  .toc ol { max-height: none; }
}
figure { margin: 20px 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; cursor: zoom-in; }
figcaption, caption { color: var(--muted); font-size: 0.9em; text-align: left; }
figcaption .anchor { font-weight: 600; }
.enlarge { font: inherit; font-size: 0.85em; color: var(--accent); background: none;
           border: 1px solid var(--rule); border-radius: 4px; padding: 0 6px; cursor: pointer; }
details.static summary { cursor: pointer; margin-top: 4px; }
figure.full { position: fixed; inset: 0; z-index: 30; margin: 0; padding: 12px; overflow: auto;
              background: var(--bg); }
figure.full img { max-width: none; cursor: zoom-out; }
body.noscroll { overflow: hidden; }
.table { margin: 16px 0; max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid var(--rule); padding: 3px 8px; text-align: left;
         overflow-wrap: normal; }
th { background: var(--th); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
details.table summary { cursor: pointer; color: var(--muted); font-size: 0.9em; }
@media (min-width: 1100px) {  /* a long setting / value list in two pairs of columns */
  .pairs table { display: grid; grid-template-columns: repeat(2, max-content minmax(0, 1fr)); }
  .pairs caption { display: block; grid-column: 1 / -1; }
  .pairs thead { display: none; }
  .pairs tbody, .pairs tr { display: contents; }
}
@media (max-width: 700px) {
  .page { padding: 0 10px 32px; }
  .toc { margin: 0 -10px; padding: 0 10px; }
  /* a token wraps at its <wbr> points; only one longer than the whole line is broken */
  td, th { overflow-wrap: break-word; }
  .cards table, .cards caption, .cards tbody, .cards tr, .cards td { display: block; }
  .cards thead { display: none; }
  .cards tr { border-top: 1px solid var(--rule); padding: 4px 0; }
  .cards td, .cards td.num { border: none; padding: 1px 4px; text-align: left; }
  .cards td::before { content: attr(data-label) ": "; color: var(--muted); }
  .kv td::before { content: none; }
  .kv td:first-child { font-weight: 600; }
}
@media print {
  .toc, .enlarge, .hint, #tip, details.static { display: none; }
  .page { display: block; max-width: none; padding: 0; }
  body { font-size: 10.5pt; color: #000; background: #fff; }
  a { color: inherit; text-decoration: none; }
  h2 { break-after: avoid; }
  figure, .table tr, .reading { break-inside: avoid; }
  .legend .key { border: none; }
}
"""

_PAGE_JS = r"""
(() => {
const toc = document.querySelector('.toc details'), wide = matchMedia('(min-width: 1100px)');
const sync = () => { toc.open = wide.matches; };
sync(); wide.addEventListener('change', sync);
toc.addEventListener('click', e => {
  if (e.target.closest('a') && !wide.matches) toc.open = false;
});
function full(fig, on) {
  fig.classList.toggle('full', on);
  document.body.classList.toggle('noscroll', !!document.querySelector('figure.full'));
  const b = fig.querySelector('.enlarge');
  if (b) b.textContent = on ? 'Close' : 'Enlarge';
}
document.addEventListener('click', e => {
  const t = e.target.closest('.enlarge, img.zoomable');
  if (!t || t.closest('details.static:not([open])')) return;
  const fig = t.closest('figure');
  if (fig) full(fig, !fig.classList.contains('full'));
});
addEventListener('beforeprint', () => {  // a printed page shows the folded tables' rows
  document.querySelectorAll('details.table').forEach(d => { d.open = true; });
});
document.addEventListener('keydown', e => {
  if (e.key === 'Escape') document.querySelectorAll('figure.full').forEach(f => full(f, false));
});
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<style>{css}</style></head>
<body><div class="page">
<nav class="toc" aria-label="Contents"><details><summary>Contents</summary><ol>{toc}</ol>
</details></nav>
<main><header><h1>{title}</h1>
{meta}{notices}</header>
{body}
</main></div>
<div id="tip" role="status"></div>
<script>{js}</script>
</body></html>
"""
