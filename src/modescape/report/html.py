"""`modescape report`: one self-contained HTML page with every figure and table of a run.

    <run>/report/index.html          the page: interactive SVG charts and base64 PNGs (none for
                                     a figure its chart shows whole), inline CSS and script,
                                     nothing fetched from the network
    <run>/report/figures/<name>.png  every figure (2x DPI), also as .pdf, its numbers as .csv
    <run>/report/tables/<name>.csv   every table (summary, members, ensembles)
    <run>/report/data.json           every figure's numbers and plotted series

The page itself (layout, table of contents, figure numbers, print and dark styles) is
`report/render/page.py`; the charts of Plots that carry `charts` (one per panel) are
`report/render/interactive.py`.

The page is a list of sections, in page order: the run's overview (`report/sections/run.py`),
then every section that a registered study declares (`modescape.registry`: `Study.pages`, each
a function of a `ReportContext` in `report/sections/<study>.py` at a position of the page). A
section function returns a `Section`, or None when the results it shows are absent, so a report
of a run that lacks an optional study simply has fewer sections. `Plot`, `Table`, `Section` and
`ReportContext` live in `report/base.py`. The report computes nothing a study should have
written: it reads the studies' files (the corruption examples included).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from modescape.registry import resolve, studies
from modescape.report.base import Plot, ReportContext, Section, SectionFn
from modescape.report.figures import analysis as figures
from modescape.report.render.interactive import chart_data
from modescape.report.render.page import (
    FigureBlock,
    csv_bytes,
    figure_html,
    page_html,
    section_html,
    table_html,
)
from modescape.report.sections.run import run_section
from modescape.store.files import atomic_write_bytes, killpoint, write_json
from modescape.store.manifest import replace_folder_files
from modescape.store.run import load_run

logger = logging.getLogger(__name__)


def section_functions() -> list[SectionFn]:
    """The page's section functions in page order: the run's overview, then the sections every
    registered study declares (`Study.pages`), by their position (ties: registry order)."""
    pages = [page for s in studies() for page in s.pages]
    ordered = sorted(range(len(pages)), key=lambda i: (pages[i].order, i))
    return [run_section, *(resolve(pages[i].build) for i in ordered)]


# ---- writing --------------------------------------------------------------------------------
PNG_SCALE = 2  # page PNGs are rendered at 2× DPI and shown at their 1× CSS size


def write_report(
    run_path: str | Path,
    out_dir: str | Path | None = None,
) -> Path:
    """Write index.html, figures/*.png|pdf|csv, tables/*.csv and data.json; return the path of
    index.html.

    Every figure's numbers go to figures/<name>.csv (when its Plot has `data`) and every
    figure's data and plotted series to data.json.
    """
    start = time.perf_counter()
    ctx = ReportContext(load_run(run_path))
    out = Path(out_dir) if out_dir is not None else ctx.run.path / "report"
    sections = [sec for fn in section_functions() if (sec := fn(ctx)) is not None]
    images: dict[str, bytes] = {}
    written: dict[str, str] = {}  # path below `out` -> sha256, for the run's manifest
    for sec in sections:
        for plot in sec.figures:
            files = figures.render_figure(plot.figure, scale=PNG_SCALE)
            for fmt, data in files.items():
                killpoint("report.write")
                rel = f"figures/{plot.name}.{fmt}"
                written[rel] = atomic_write_bytes(out / rel, data)
            if plot.data is not None:
                rel = f"figures/{plot.name}.csv"
                written[rel] = atomic_write_bytes(out / rel, csv_bytes(plot.data))
            images[plot.name] = files["png"]
        for table in sec.tables:
            rel = f"tables/{table.name}.csv"
            written[rel] = atomic_write_bytes(out / rel, csv_bytes(table))
    written["data.json"] = write_json(out / "data.json", report_data(ctx.run.path.name, sections))
    page = render_html(ctx, sections, images)
    index = out / "index.html"
    killpoint("report.index")
    written["index.html"] = atomic_write_bytes(index, page.encode())
    _record_report(ctx.run.path, out, written)
    size = len(page.encode()) / 2**20
    logger.info(
        "report: %d figures in %.1f s, page %.1f MB -> %s",
        len(images), time.perf_counter() - start, size, index,
    )  # fmt: skip
    return index


def _record_report(run_path: Path, out: Path, written: dict[str, str]) -> None:
    """The report's files in the run's manifest (as `report/...`), so `modescape verify` checks
    them like every other file; a report written elsewhere (`out_dir`) is not the run's."""
    if out.resolve() != (run_path / "report").resolve():
        return
    replace_folder_files(run_path, "report", {f"report/{k}": v for k, v in written.items()})


def report_data(run: str, sections: list[Section]) -> dict[str, Any]:
    """data.json: for every figure, its number, section, caption, files, the table of numbers
    drawn (`columns`, `rows`) and the plotted series of its chart (NaN is written as null)."""
    out: list[dict[str, Any]] = []
    for sec in sections:
        for plot in sec.figures:
            entry: dict[str, Any] = {
                "number": len(out) + 1,
                "name": plot.name,
                "section": sec.id,
                "caption": plot.caption,
                "files": [f"figures/{plot.name}.{ext}" for ext in ("png", "pdf")],
            }
            if plot.data is not None:
                entry["files"].append(f"figures/{plot.name}.csv")
                entry["columns"] = list(plot.data.header)
                entry["rows"] = [list(r) for r in plot.data.rows]
            if plot.charts:  # one per panel, in the figure's order
                entry["charts"] = [chart_data(c) for c in plot.charts]
            out.append(entry)
    return {"run": run, "figures": out}


def figure_blocks(sections: list[Section], images: dict[str, bytes]) -> list[list[FigureBlock]]:
    """The page's figures of each section, with the links to their files."""
    blocks = []
    for sec in sections:
        row = []
        for plot in sec.figures:
            links = [("PNG", f"figures/{plot.name}.png"), ("PDF", f"figures/{plot.name}.pdf")]
            if plot.data is not None:
                links.append(("CSV", f"figures/{plot.name}.csv"))
            # Charts that show the whole figure (every panel, the same series: see
            # figures/chart.py) need no second, hidden copy of it as PNG on the page; the PNG
            # stays one click away.
            png = None if charts_show_all(plot) else images[plot.name]
            row.append(FigureBlock(plot.name, plot.caption, png, plot.charts, links))
        blocks.append(row)
    return blocks


def charts_show_all(plot: Plot) -> bool:
    """Whether the plot's charts draw everything its figure does (one chart per panel)."""
    return bool(plot.charts) and sum(ax.has_data() for ax in plot.figure.axes) == len(plot.charts)


def render_html(ctx: ReportContext, sections: list[Section], images: dict[str, bytes]) -> str:
    """The page as one string; everything taken from files is HTML-escaped."""
    body, number = [], 0
    for sec, figs in zip(sections, figure_blocks(sections, images)):
        parts = []
        for fig in figs:
            number += 1
            parts.append(figure_html(fig, number, PNG_SCALE))
        parts += [table_html(t, f"tables/{t.name}.csv") for t in sec.tables]
        body.append(section_html(sec.id, sec.title, parts, sec.reading, sec.reproduces))
    return page_html(
        f"modescape report: {ctx.run.path.name}",
        [f"Run: {ctx.run.path} · report written {time.strftime('%Y-%m-%d %H:%M')}"],
        [(s.id, s.title) for s in sections],
        body,
        ctx.notices,
    )
