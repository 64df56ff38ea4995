"""`modescape report`: one self-contained HTML page with every figure and table of a run.

    <run>/report/index.html          the page: figures embedded as base64 PNG, inline CSS, no
                                     scripts, fonts or anything fetched from the network
    <run>/report/figures/<name>.png  every figure, also as .pdf
    <run>/report/tables/<name>.csv   every table (summary, members, ensembles)

The page is a list of sections. Each section is built by a function in `SECTIONS` from a
`ReportContext` (the run, the typed analysis summary and readers for the analysis files); it returns
a `Section`, or None when the results it shows are absent, so a report of a run that lacks an
optional analysis simply has fewer sections.

Adding a section: a function of the context, registered in `SECTIONS`. `ctx.has/npy/json/csv`
read analysis/; `ctx.study("subspace")` gives the same readers for another results folder and
its typed summary (`studies.schema`), or None when that study has not been run:

    def my_section(ctx: ReportContext) -> Section | None:
        res = ctx.study("my_study")
        if res is None:
            return None                       # study not run: no section
        s = res.summary
        return Section(
            "my_study", "My study",
            reading=[f"Samples disagree with the reference on {s.dis:.1%} of points."],
            figures=[Plot("my_plane", figures_study.some_figure(...), "What it shows.")],
        )

    SECTIONS.insert(5, my_section)             # page order = list order

The follow-up studies (loss landscape, subspace sampling, dataset shift) are built this way, in
`report/sections.py`; `Plot`, `Table`, `Section`, `ReportContext` and the wording helpers live in
`report/base.py` (and are importable from here). The report computes nothing a study should have
written: it reads the studies' files (the corruption examples included).
Readings are plain text (escaped when rendered); build their numbers from the analysis files,
and phrase them so they stay true whatever the numbers turn out to be.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modescape.report import figures
from modescape.report.base import (  # noqa: F401  (re-exported: the section-building API)
    Plot,
    ReportContext,
    Results,
    Section,
    SectionFn,
    Table,
    _count,
    _near_one,
    _pct,
    _points,
    _warned,
)
from modescape.report.run_sections import (  # noqa: F401  (re-exported)
    MEMBER_COLUMNS,
    ensemble_section,
    function_section,
    run_section,
    training_section,
    trajectory_section,
    weight_section,
)
from modescape.report.sections import landscape_section, shift_section, subspace_section
from modescape.store.files import atomic_write_bytes, killpoint
from modescape.store.run import load_run

logger = logging.getLogger(__name__)

SECTIONS: list[SectionFn] = [
    run_section,
    weight_section,
    function_section,
    trajectory_section,
    landscape_section,
    ensemble_section,
    subspace_section,
    shift_section,
    training_section,
]


# ---- writing --------------------------------------------------------------------------------
def write_report(
    run_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    log: Callable[[str], Any] | None = None,
) -> Path:
    """Write index.html, figures/*.png|pdf and tables/*.csv; return the path of index.html.

    `log` is deprecated (the message goes to `logging`); a callable passed still gets it.
    """
    start = time.perf_counter()
    ctx = ReportContext(load_run(run_path))
    out = Path(out_dir) if out_dir is not None else ctx.run.path / "report"
    sections = [sec for fn in SECTIONS if (sec := fn(ctx)) is not None]
    images: dict[str, bytes] = {}
    for sec in sections:
        for plot in sec.figures:
            files = figures.render_figure(plot.figure)
            for fmt, data in files.items():
                killpoint("report.write")
                atomic_write_bytes(out / "figures" / f"{plot.name}.{fmt}", data)
            images[plot.name] = files["png"]
        for table in sec.tables:
            atomic_write_bytes(out / "tables" / f"{table.name}.csv", _csv_bytes(table))
    page = render_html(ctx, sections, images)
    index = out / "index.html"
    killpoint("report.index")
    atomic_write_bytes(index, page.encode())
    message = f"report: {len(images)} figures in {time.perf_counter() - start:.1f} s -> {index}"
    if log is not None:
        log(message)
    else:
        logger.info(message)
    return index


def _csv_bytes(table: Table) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return buf.getvalue().encode()


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else _near_one(float(value), 4, "g")
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) < 10**12 else str(value)  # seeds stay unformatted
    return str(value)


def _td(value: Any, align_numbers: bool = True) -> str:
    numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    css = ' class="num"' if numeric and align_numbers else ""
    return f"<td{css}>{html.escape(_cell(value))}</td>"


def render_html(ctx: ReportContext, sections: list[Section], images: dict[str, bytes]) -> str:
    """The page as one string; everything taken from files is HTML-escaped."""
    esc = html.escape
    title = f"modescape report: {ctx.run.path.name}"
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = []
    for sec in sections:
        parts = [f'<section id="{esc(sec.id)}"><h2>{esc(sec.title)}</h2>']
        parts += [f'<p class="reading">{esc(p)}</p>' for p in sec.reading]
        for plot in sec.figures:
            data = base64.b64encode(images[plot.name]).decode()
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(plot.caption)}">'
                f"<figcaption>{esc(plot.caption)} "
                f'<a href="figures/{esc(plot.name)}.png">PNG</a> · '
                f'<a href="figures/{esc(plot.name)}.pdf">PDF</a></figcaption></figure>'
            )
        for table in sec.tables:
            head = "".join(f"<th>{esc(str(h))}</th>" for h in table.header)
            rows = "".join(
                "<tr>" + "".join(_td(v, table.align_numbers) for v in row) + "</tr>"
                for row in table.rows
            )
            parts.append(
                f'<div class="table"><table><caption>{esc(table.caption)} '
                f'<a href="tables/{esc(table.name)}.csv">CSV</a></caption>'
                f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
            )
        body.append("".join(parts) + "</section>")
    return _PAGE.format(
        title=esc(title),
        run=esc(str(ctx.run.path)),
        created=esc(time.strftime("%Y-%m-%d %H:%M")),
        nav=nav,
        notices="".join(f'<p class="notice">{esc(n)}</p>' for n in ctx.notices),
        body="\n".join(body),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 0 24px 48px; }}
header {{ border-bottom: 1px solid #ddd; margin-bottom: 8px; }}
h1 {{ font-size: 1.6em; margin: 24px 0 4px; }}
h2 {{ font-size: 1.3em; margin-top: 40px; border-bottom: 1px solid #eee; }}
nav a {{ margin-right: 16px; }}
.meta {{ color: #666; font-size: 0.9em; word-break: break-all; }}
.notice {{ background: #fff4e5; border-left: 4px solid #c05600; padding: 8px 12px; }}
.reading {{ background: #f6f8fa; border-left: 4px solid #1f3b73; padding: 8px 12px;
           margin: 8px 0; }}
figure {{ margin: 20px 0; }}
figure img {{ max-width: 100%; height: auto; display: block; }}
figcaption, caption {{ color: #555; font-size: 0.9em; text-align: left; }}
.table {{ overflow-x: auto; margin: 16px 0; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
a {{ color: #1f5fbf; }}
</style></head>
<body>
<header><h1>{title}</h1>
<p class="meta">Run: {run} · report written {created}</p>
{notices}<nav>{nav}</nav></header>
{body}
</body></html>
"""
