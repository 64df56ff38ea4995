"""A figure that is not a `Chart` (heatmaps, contour planes, embeddings, bars, box plots) is
built once as a typed description: a frozen dataclass holding the arrays it shows with their
axes, labels, colour scales and panels. The PNG/PDF (`figure()`, matplotlib) and the CSV
(`table()`) are both drawn from that one object, so the numbers in the CSV are the numbers in
the picture; `described_plot` turns one into the `Plot` a section lists.

A figure drawn from `Chart`s (lines and scatters) is a description too (`Charted`): its
`charts()` are the page's panels (SVG) and the very objects `figure()` draws for the PNG/PDF, and
its `table()` holds the numbers of the same arrays; `charted_plot` makes its `Plot`.
"""

from __future__ import annotations

from typing import Protocol

from matplotlib.figure import Figure

from modescape.report.base import Chart, Plot, Table


class Described(Protocol):
    """What every figure description offers: its matplotlib figure and its numbers."""

    def figure(self) -> Figure: ...

    def table(self, name: str, caption: str = "") -> Table: ...


class Charted(Described, Protocol):
    """A description drawn from charts: `charts()` (one per panel, in the figure's order) is the
    same list of objects on every call, the one `figure()` draws."""

    def charts(self) -> list[Chart]: ...


def described_plot(
    name: str,
    description: Described,
    caption: str,
    *,
    data_caption: str | None = None,
    charts: list[Chart] | None = None,
) -> Plot:
    """The section's `Plot` of `description`: figures/<name>.png|pdf and figures/<name>.csv,
    both drawn from it (`data_caption`: the CSV table's caption, default `caption`); `charts`:
    the page's interactive panels, when the description is drawn from charts."""
    table = description.table(name, caption if data_caption is None else data_caption)
    return Plot(name, description.figure(), caption, data=table, charts=list(charts or []))


def charted_plot(
    name: str, description: Charted, caption: str, *, data_caption: str | None = None
) -> Plot:
    """The section's `Plot` of a chart figure: PNG/PDF, CSV and the page's panels, all from
    `description` (see `described_plot`)."""
    return described_plot(
        name, description, caption, data_caption=data_caption, charts=description.charts()
    )
