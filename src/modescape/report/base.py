"""What every report section is built from: `Plot`, `Table`, `Section`, the `ReportContext`
a section reads the run through (the shared wording is `report/wording.py`).

Sections themselves live in `report/sections/<study>.py` (`run.py`: the run's own overview);
each study's registry entry (`modescape.registry`) places its sections on the page, and
`report/html.py` writes the page. Study summaries are read as the typed records of
`modescape.store.schema`, never as loose dicts.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from modescape.errors import ModescapeError
from modescape.report import wording
from modescape.store import schema as S
from modescape.store.files import load_npy, read_json
from modescape.store.records import MemberInfo
from modescape.store.run import Run


@dataclass
class Table:
    """One table: written to tables/<name>.csv and shown in the page."""

    name: str
    header: list[str]
    rows: list[list[Any]]
    caption: str = ""
    align_numbers: bool = True  # right-align numeric cells; False: a left-aligned text table
    collapsed: bool = False  # shown folded (its caption and row count) until opened: long tables


class ChartKind(StrEnum):
    LINE = "line"  # series drawn as lines (with markers), e.g. ensemble accuracy vs size
    SCATTER = "scatter"  # series drawn as points, e.g. t-SNE, the diversity-accuracy plane


class LineStyle(StrEnum):
    """How a series' points are joined, in the PNG and in the page's chart alike."""

    SOLID = "solid"
    DASHED = "dashed"
    DOTTED = "dotted"
    NONE = "none"  # points only


class Marker(StrEnum):
    """The mark at each point (matplotlib's marker codes, so a figure uses them as they are)."""

    CIRCLE = "o"
    DOT = "."
    SQUARE = "s"
    DIAMOND = "D"
    STAR = "*"
    NONE = "none"  # the line only (the page still shows the point's value on hover)


# matplotlib's line-style codes -> LineStyle
MPL_LINES = {
    "-": LineStyle.SOLID,
    "--": LineStyle.DASHED,
    ":": LineStyle.DOTTED,
    "": LineStyle.NONE,
    "None": LineStyle.NONE,
    "none": LineStyle.NONE,
}


@dataclass
class Series:
    """One named series of a chart: points (x[i], y[i]), optional ± err[i] band or bars, and how
    it is drawn (colour, line style, marker), which the PNG and the page's chart both follow.

    `line` / `marker` None: the chart kind's default (LINE: solid with circles; SCATTER: circles
    only). `point_colors`: one colour per point (members in their own colours) instead of
    `color`; `filled` False: open markers (white inside)."""

    name: str
    x: list[float]
    y: list[float]
    err: list[float] | None = None
    color: str | None = None  # "#rrggbb"; None: the chart's palette
    labels: list[str] | None = None  # per-point hover text (e.g. "m0 e12"), else "x, y"
    line: LineStyle | None = None
    marker: Marker | None = None
    point_colors: list[str] | None = None
    filled: bool = True

    def __post_init__(self) -> None:
        # A value with no number (None: e.g. a normalised diversity where accuracy is 1) is a gap
        # in the chart, as NaN is; left as None it broke drawing (float(None)).
        for name in ("x", "y", "err"):
            values = getattr(self, name)
            if values is not None:
                setattr(self, name, [math.nan if v is None else v for v in values])
        if self.line is not None:
            self.line = LineStyle(MPL_LINES.get(self.line, self.line))
        if self.marker is not None:
            self.marker = Marker(self.marker)


@dataclass
class Chart:
    """One panel of a figure as data: the plotted series and how each is drawn. The page draws
    it as inline SVG with hover values, zoom and series toggling (`render/interactive.py`); the
    PNG/PDF draw the same object with matplotlib (`figures/chart.py`), so the two cannot differ.

    `keys`: legend-only entries (e.g. "dashed: test") shown instead of one entry per series
    where the figure's legend is compact; `panel`: which axes of the figure this chart is (a
    multi-panel figure shows its first panel interactively); `y_clip`: the range a ± band may
    not leave (an accuracy band stops at 100%)."""

    kind: ChartKind
    x_label: str
    y_label: str
    series: list[Series]
    x_log: bool = False
    y_log: bool = False
    y_range: tuple[float, float] | None = None  # None: from the data
    keys: list[Series] = field(default_factory=list)
    panel: int = 0
    y_clip: tuple[float, float] | None = None
    title: str = ""


def series_line(chart: Chart, s: Series) -> LineStyle:
    """The line style a series is drawn with (its own, or its chart kind's default)."""
    if s.line is not None:
        return s.line
    return LineStyle.SOLID if chart.kind == ChartKind.LINE else LineStyle.NONE


def series_marker(chart: Chart, s: Series) -> Marker:
    return s.marker if s.marker is not None else Marker.CIRCLE


@dataclass
class Plot:
    """One figure of a section: written to figures/<name>.png|pdf, its numbers to
    figures/<name>.csv (`data`), embedded in the page, interactive when it has a `chart`."""

    name: str
    figure: Figure
    caption: str = ""
    data: Table | None = None  # the numbers drawn, snake_case header, rounded to what they mean
    chart: Chart | None = None


@dataclass
class Section:
    id: str  # HTML anchor
    title: str
    reading: list[str] = field(default_factory=list)  # plain-language paragraphs (plain text)
    figures: list[Plot] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    # The figure(s) of Fort et al. (2019) / the seed notebooks this section reproduces, one line
    # shown under the title, e.g. "Fort et al. (2019), Figure 3 (function space similarity)".
    reproduces: str = ""


class Results:
    """Readers for one results folder of a run (analysis/, subspace/, shift/, landscape/).

    Every read is checked against the sha256 the run's manifest recorded when the study wrote
    the file (`Run.verified`): a changed byte is one ModescapeError naming the file, unless the
    run was opened with trust (`--trust`)."""

    def __init__(self, root: Path, run: Run):
        self.root = Path(root)
        self.run = run

    def has(self, rel: str) -> bool:
        """Whether the study wrote file or folder `rel`. One the run's manifest records but that
        is gone is a ModescapeError naming it: a section is never dropped because a file was
        lost, only because its study did not write it."""
        f = self.root / rel
        if f.exists():
            return True
        key = f.relative_to(self.run.path).as_posix()
        recorded = self.run.manifest.files
        if key in recorded or any(k.startswith(key + "/") for k in recorded):
            raise ModescapeError(
                f"{f} is missing, but the run's manifest records it: restore it, or rerun the "
                "study that wrote it"
            )
        return False

    def path(self, rel: str) -> Path:
        """The verified path of a file in the folder (for readers other than these)."""
        return self.run.verified(self.root / rel)

    def npy(self, rel: str) -> np.ndarray:
        return load_npy(self.path(rel))

    def json(self, rel: str) -> Any:
        return read_json(self.path(rel))

    def csv(self, rel: str) -> dict[str, np.ndarray]:
        """Columns of a CSV file: numeric columns as float arrays (NaN for blanks), else str."""
        f = self.path(rel)
        try:
            with open(f, newline="") as fh:
                rows = list(csv.reader(fh))
        except FileNotFoundError:
            raise ModescapeError(f"missing file {f}") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise ModescapeError(f"corrupt CSV file {f}: {e}") from None
        if not rows:
            raise ModescapeError(f"empty CSV file {f}")
        header, body = rows[0], rows[1:]
        if any(len(r) != len(header) for r in body):
            raise ModescapeError(f"corrupt CSV file {f}: rows of unequal length")
        return {name: _column([r[i] for r in body]) for i, name in enumerate(header)}


class StudyResults(Results):
    """Readers for one study's folder and its summary, typed (`store.schema`)."""

    def __init__(self, root: Path, run: Run, summary: Any):
        super().__init__(root, run)
        self.summary = summary


class ReportContext(Results):
    """What a section function may read: the run, the analysis summary and analysis files
    (`has`, `npy`, `json`, `csv` take paths inside analysis/; `study` opens the other folders).
    `notices` are the page's banner lines (an incomplete run says so)."""

    def __init__(self, run: Run):
        super().__init__(run.path / S.ANALYSIS, run)
        self.analysis = self.root
        if not (self.analysis / S.SUMMARY).exists():
            raise ModescapeError(
                f"run {run.path} has not been analysed yet (no analysis/summary.json); "
                f"run `modescape analyze {run.path}` first"
            )
        self.summary = S.AnalysisSummary.from_dict(self.json(S.SUMMARY))

    @property
    def members(self) -> list[int]:
        return list(self.summary.members)

    @property
    def epochs(self) -> list[int]:
        return list(self.summary.epochs)

    def study(self, name: str) -> StudyResults | None:
        """Readers for `<run>/<name>/` and its typed summary when its summary.json exists (the
        study ran), else None."""
        root = self.run.path / name
        if not (root / S.SUMMARY).exists():
            rel = f"{name}/{S.SUMMARY}"
            if rel in self.run.manifest.files:  # it ran: never drop its section
                raise ModescapeError(
                    f"{self.run.path / rel} is missing, but the run's manifest records that the "
                    f"{name} study wrote it: restore the file, or rerun the study"
                )
            return None
        return StudyResults(root, self.run, self.run.study(name))

    @cached_property
    def member_infos(self) -> list[MemberInfo]:
        return [self.run.member_info(m) for m in self.members]

    @cached_property
    def notices(self) -> list[str]:
        """Banner lines for the top of the page: the run is incomplete (members not finished,
        or left out of the analysis)."""
        states = {m: self.run.member_info(m).state for m in self.run.members}
        unfinished = [f"m{m} {state}" for m, state in states.items() if state != "finished"]
        left_out = [m for m in self.run.members if m not in self.members]
        out = []
        if unfinished:
            out.append(
                f"This run is incomplete: {wording.count(len(unfinished), 'member')} of "
                f"{len(states)} not finished ({', '.join(unfinished)}); the results below use "
                f"{wording.count(len(self.members), 'finished member')} only."
            )
        elif left_out:
            out.append(
                f"The analysis covers {wording.count(len(self.members), 'member')} of "
                f"{len(states)}; rerun `modescape analyze` to include all of them."
            )
        return out


SectionFn = Callable[[ReportContext], Section | None]


def _column(values: list[str]) -> np.ndarray:
    try:
        return np.array([float(v) if v != "" else math.nan for v in values])
    except ValueError:
        return np.array(values, dtype=str)
