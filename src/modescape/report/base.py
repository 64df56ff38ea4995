"""What every report section is built from: `Plot`, `Table`, `Section`, the `ReportContext`
a section reads the run through, and the helpers that turn numbers into words.

Sections themselves live in `report/html.py` (training and analysis) and `report/sections.py`
(the follow-up studies); `html.py` registers them in `SECTIONS` and writes the page. Study
summaries are read as the typed records of `modescape.studies.schema`, never as loose dicts.
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
from modescape.store.files import load_npy, read_json
from modescape.store.run import Run
from modescape.studies import schema as S


@dataclass
class Table:
    """One table: written to tables/<name>.csv and shown in the page."""

    name: str
    header: list[str]
    rows: list[list[Any]]
    caption: str = ""
    align_numbers: bool = True  # right-align numeric cells; False: a left-aligned text table


class ChartKind(StrEnum):
    LINE = "line"  # series drawn as lines (with markers), e.g. ensemble accuracy vs size
    SCATTER = "scatter"  # series drawn as points, e.g. t-SNE, the diversity-accuracy plane


@dataclass
class Series:
    """One named series of a chart: points (x[i], y[i]), optional ± err[i] band or bars."""

    name: str
    x: list[float]
    y: list[float]
    err: list[float] | None = None
    color: str | None = None  # "#rrggbb"; None: the chart's palette
    labels: list[str] | None = None  # per-point hover text (e.g. "m0 e12"), else "x, y"

    def __post_init__(self) -> None:
        # A value with no number (None: e.g. a normalised diversity where accuracy is 1) is a gap
        # in the chart, as NaN is; left as None it broke drawing (float(None)).
        for name in ("x", "y", "err"):
            values = getattr(self, name)
            if values is not None:
                setattr(self, name, [math.nan if v is None else v for v in values])


@dataclass
class Chart:
    """The interactive twin of a figure: the plotted series, drawn in the page as inline SVG with
    hover values, zoom and series toggling (the PNG/PDF stay the files for papers)."""

    kind: ChartKind
    x_label: str
    y_label: str
    series: list[Series]
    x_log: bool = False
    y_log: bool = False
    y_range: tuple[float, float] | None = None  # None: from the data


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
        recorded = self.run.manifest.get("files", {})
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
    """Readers for one study's folder and its summary, typed (`studies.schema`)."""

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
            if rel in self.run.manifest.get("files", {}):  # it ran: never drop its section
                raise ModescapeError(
                    f"{self.run.path / rel} is missing, but the run's manifest records that the "
                    f"{name} study wrote it: restore the file, or rerun the study"
                )
            return None
        data = self.run.read_json(f"{name}/{S.SUMMARY}")
        kind = S.SUMMARY_TYPES.get(name)
        return StudyResults(root, self.run, kind.from_dict(data) if kind else data)

    @cached_property
    def member_infos(self) -> list[dict[str, Any]]:
        return [self.run.member_info(m) for m in self.members]

    @cached_property
    def notices(self) -> list[str]:
        """Banner lines for the top of the page: the run is incomplete (members not finished,
        or left out of the analysis)."""
        states = {m: self.run.member_info(m)["state"] for m in self.run.members}
        unfinished = [f"m{m} {state}" for m, state in states.items() if state != "finished"]
        left_out = [m for m in self.run.members if m not in self.members]
        out = []
        if unfinished:
            out.append(
                f"This run is incomplete: {_count(len(unfinished), 'member')} of "
                f"{len(states)} not finished ({', '.join(unfinished)}); the results below use "
                f"{_count(len(self.members), 'finished member')} only."
            )
        elif left_out:
            out.append(
                f"The analysis covers {_count(len(self.members), 'member')} of "
                f"{len(states)}; rerun `modescape analyze` to include all of them."
            )
        return out


SectionFn = Callable[[ReportContext], Section | None]


def _column(values: list[str]) -> np.ndarray:
    try:
        return np.array([float(v) if v != "" else math.nan for v in values])
    except ValueError:
        return np.array(values, dtype=str)


def _near_one(x: float, digits: int = 3, style: str = "f") -> str:
    """`x` with enough digits that a value just below 1 never prints as 1 (0.99996, not 1.000)."""
    while True:
        text = f"{x:.{digits}{style}}"
        if x == 1.0 or float(text) != 1.0 or digits >= 8:
            return text
        digits += 1


def _count(n: int, noun: str) -> str:
    """'1 member', '5 members'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def frac(x: Any, digits: int = 4) -> float | None:
    """A fraction (accuracy, disagreement, cosine, ECE) rounded to `digits` decimals for a CSV:
    0.3 not 0.30000001192 (float32 noise); None for a missing or non-finite value."""
    v = _finite(x)
    return None if v is None else round(v, digits)


def sig(x: Any, digits: int = 4) -> float | None:
    """A value on an open scale (loss, distance, JS diversity, t-SNE coordinate) rounded to
    `digits` significant digits; None for a missing or non-finite value."""
    v = _finite(x)
    if v is None or v == 0:
        return v
    return round(v, digits - 1 - math.floor(math.log10(abs(v))))


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _points(delta: float) -> str:
    """An accuracy difference (fractions) in words: 'gains 3.2 points' / 'loses ...'."""
    p = 100 * delta
    if abs(p) < 0.05:
        return "changes accuracy by less than 0.1 points"
    return f"{'gains' if p > 0 else 'loses'} {abs(p):.1f} points"


def _num(x: Any) -> float:
    """A JSON number, with null (written for NaN) back as NaN."""
    return math.nan if x is None else float(x)


def _span(values: list[float], fmt: str = "{:.2f}") -> str:
    """'0.12' or '0.12–0.34' (min–max)."""
    lo, hi = min(values), max(values)
    return (
        fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"
    )


def _ratio(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def _join(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _severity_name(s: int) -> str:
    return "clean" if s == 0 else str(s)


def _warned(warnings: list[str]) -> list[str]:
    """A study's window warnings as reading paragraphs, printed next to its figures."""
    return [f"Note: {w}." for w in warnings]


def _where(flags: list[bool], severities: list[int]) -> str:
    """'at every severity' / 'at no severity' / 'at severities clean and 1 but not at 2, 3'."""
    yes = [_severity_name(s) for s, f in zip(severities, flags) if f]
    no = [_severity_name(s) for s, f in zip(severities, flags) if not f]
    if not no:
        return "at every severity"
    if not yes:
        return "at no severity"
    return f"at severities {_join(yes)} but not at {_join(no)}"
