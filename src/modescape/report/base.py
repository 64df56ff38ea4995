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
    `color`; `filled` False: open markers (white inside); `annotate`: `labels` written beside
    the points."""

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
    annotate: bool = False  # each point's label written beside it (e.g. members m0, m1)

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


class AxisScale(StrEnum):
    """How an axis places values, in the PNG and on the page alike (matplotlib's scales)."""

    LINEAR = "linear"
    LOG = "log"  # base 10; a value <= 0 has no place on it
    SYMLOG = "symlog"  # linear within ±linthresh, base-10 logarithmic beyond (linscale 1)


@dataclass(frozen=True)
class Scale:
    """An axis scale: its kind and, for symlog, the half-width of its linear range."""

    kind: AxisScale = AxisScale.LINEAR
    linthresh: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AxisScale(self.kind))
        if not (math.isfinite(self.linthresh) and self.linthresh > 0):
            raise ValueError(f"a symlog linthresh must be a positive number, not {self.linthresh}")

    def forward(self, v: float) -> float:
        """A value on the axis's scale (NaN where it has no place): matplotlib's transform, so
        the page places points where the PNG does."""
        v = float(v)
        if self.kind == AxisScale.LOG:
            return math.log10(v) if v > 0 else math.nan
        if self.kind == AxisScale.SYMLOG and abs(v) > self.linthresh:
            # linscale 1 in base 10: the linear range spans 1 / (1 - 1/10) decades' width
            decades = math.log10(abs(v) / self.linthresh)
            return math.copysign(self.linthresh * (_SYMLOG_ADJ + decades), v)
        return v * _SYMLOG_ADJ if self.kind == AxisScale.SYMLOG else v

    def inverse(self, t: float) -> float:
        t = float(t)
        if self.kind == AxisScale.LOG:
            return 10**t
        if self.kind == AxisScale.SYMLOG:
            if abs(t) <= self.linthresh * _SYMLOG_ADJ:
                return t / _SYMLOG_ADJ
            return math.copysign(self.linthresh * 10 ** (abs(t) / self.linthresh - _SYMLOG_ADJ), t)
        return t


_SYMLOG_ADJ = 1.0 / (1.0 - 1.0 / 10.0)  # matplotlib's linscale / (1 - 1/base), linscale 1
LINEAR, LOG = Scale(), Scale(AxisScale.LOG)


def symlog(linthresh: float) -> Scale:
    return Scale(AxisScale.SYMLOG, linthresh)


@dataclass
class Guide:
    """A reference line across a chart at one value, e.g. the epoch from which spawned children
    are stable: `axis` "x" is a vertical line at x = value, "y" a horizontal one. Not a series
    (no points to hover); the legend lists it after the series."""

    axis: str
    value: float
    name: str
    color: str = "#333333"
    line: LineStyle = LineStyle.SOLID

    def __post_init__(self) -> None:
        if self.axis not in ("x", "y"):
            raise ValueError(f"a guide's axis is 'x' or 'y', not {self.axis!r}")
        self.line = LineStyle(MPL_LINES.get(self.line, self.line))


Range = tuple[float | None, float | None]  # an axis range; None: that end from the data


@dataclass
class Chart:
    """One panel of a figure as data: the plotted series and how each is drawn. The page draws
    it as inline SVG with hover values, zoom and series toggling (`render/interactive.py`); the
    PNG/PDF draw the same object with matplotlib (`figures/chart.py`), so the two cannot differ.
    A figure of several panels is a list of Charts (`Plot.charts`, in the figure's order).

    `keys`: legend-only entries (e.g. "dashed: test") shown instead of one entry per series
    where the figure's legend is compact; `x_scale` / `y_scale`: linear, log or symlog;
    `x_range` / `y_range`: fixed axis ends (None: that end from the data, padded 5% on the
    axis's scale, as matplotlib's margins); `y_clip`: the range neither a ± band nor the y axis
    may leave (an accuracy band stops at 100%); `x_ticks`: fixed (value, text) ticks;
    `guides`: reference lines; `title`: the panel's title."""

    kind: ChartKind
    x_label: str
    y_label: str
    series: list[Series]
    x_scale: Scale = LINEAR
    y_scale: Scale = LINEAR
    y_range: Range | None = None
    keys: list[Series] = field(default_factory=list)
    y_clip: tuple[float, float] | None = None
    title: str = ""
    x_range: Range | None = None
    x_ticks: list[tuple[float, str]] | None = None
    guides: list[Guide] = field(default_factory=list)

    def scale(self, axis: str) -> Scale:
        return self.x_scale if axis == "x" else self.y_scale

    def domain(self, axis: str) -> tuple[float, float]:
        """The axis's extent on its scale (`Scale.forward`): the data (± err, guides) padded 5%,
        then the fixed ends of x_range / y_range and the y_clip bounds. Both renderers draw
        exactly this extent."""
        sc = self.scale(axis)
        vals = []
        for s in self.series:
            v = s.x if axis == "x" else s.y
            vals += [sc.forward(a) for a in v]
            if axis == "y" and s.err is not None:
                lo, hi = self.y_clip or (-math.inf, math.inf)
                vals += [sc.forward(min(hi, a + e)) for a, e in zip(v, s.err)]
                vals += [sc.forward(max(lo, a - e)) for a, e in zip(v, s.err)]
        vals += [sc.forward(g.value) for g in self.guides if g.axis == axis]
        vals = [v for v in vals if math.isfinite(v)]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        pad = (hi - lo) * 0.05 or (abs(lo) * 0.05 or 0.5)
        lo, hi = lo - pad, hi + pad
        fixed = self.x_range if axis == "x" else self.y_range
        ends = [math.nan if v is None else sc.forward(v) for v in (fixed or (None, None))]
        lo = ends[0] if math.isfinite(ends[0]) else lo  # an end with no place (log 0): data's
        hi = ends[1] if math.isfinite(ends[1]) else hi
        if axis == "y" and self.y_clip is not None:
            bottom, top = (sc.forward(c) for c in self.y_clip)
            lo = max(lo, bottom) if math.isfinite(bottom) else lo
            hi = min(hi, top) if math.isfinite(top) else hi
        return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)  # never an empty extent

    def limits(self, axis: str) -> tuple[float, float]:
        """`domain` in data units (what matplotlib's set_xlim / set_ylim take)."""
        sc = self.scale(axis)
        lo, hi = self.domain(axis)
        return sc.inverse(lo), sc.inverse(hi)


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
    figures/<name>.csv (`data`), embedded in the page, interactive when it has `charts` (one
    per panel of `figure`, drawn from them; none: the page shows the PNG)."""

    name: str
    figure: Figure
    caption: str = ""
    data: Table | None = None  # the numbers drawn, snake_case header, rounded to what they mean
    charts: list[Chart] = field(default_factory=list)  # every panel, in the figure's order


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
