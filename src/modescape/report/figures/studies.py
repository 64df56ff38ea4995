"""Figures of the subspace-sampling and dataset-shift studies: the diversity–accuracy plane
(`DiversityAccuracyPlane`) and the diversity under shift (`ShiftDiversity`), each drawn from its
`Chart` with its CSV; the ensembles with subspace models (`subspace_ensembles_charts`, held by
`figures.curves.EnsembleCurves`); the JS diversity bars (`JsDiversityBars`). The samplers'
t-SNE is `figures/embedding.py`, the shift box plots and corruption strip `figures/shift.py`,
the loss landscape's figures `figures/landscape.py`.

Same rules as `report.figures.analysis`: no pyplot, nothing read from files, member i always in
`member_color(i)`. Samplers have their own colours (`METHOD_COLORS`, Dark2), so a sampler is never
mistaken for a member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from modescape.report.base import (
    LINEAR,
    LOG,
    AxisScale,
    Chart,
    ChartKind,
    LineStyle,
    Marker,
    Series,
    Table,
)
from modescape.report.figures.analysis import (
    FAMILY_COLORS,
    LABEL,
    SMALL,
    TITLE,
    CurveStyle,
    curves_figure,
    ensemble_curves_charts,
    member_color,
    new_figure,
)
from modescape.report.figures.chart import draw_chart, hex_color, legend_handles, points
from modescape.report.wording import frac, sig
from modescape.store.schema import ReferenceCurves

_DARK2 = colormaps["Dark2"]
Color = str | tuple[float, float, float, float]  # "#rrggbb" or RGBA, as matplotlib takes them
METHOD_COLORS: dict[str, Color] = {
    "random": _DARK2(0),
    "dropout": _DARK2(6),  # not Dark2(1): that orange is the snapshot family's colour
    "diagonal": _DARK2(2),
    "lowrank": _DARK2(3),
    "lowrank_scaled": _DARK2(5),
    # the literature's single-mode methods (`modescape swag`)
    "swa": "#8c564b",
    "swag": "#d62728",
    "swag_diag": "#e377c2",
    "mc_dropout": "#17becf",
    "multiswag": "#9467bd",
}
METHOD_LABELS = {
    "random": "random subspace",
    "dropout": "dropout subspace",
    "diagonal": "diagonal Gaussian",
    "lowrank": "low-rank Gaussian",
    "lowrank_scaled": "low-rank Gaussian (scaled)",
    "swa": "SWA",
    "swag": "SWAG",
    "multiswag": "MultiSWAG",
    "swag_diag": "SWAG-Diagonal",
    "mc_dropout": "MC dropout",
}


def method_color(method: str, i: int = 0) -> Color:
    """The colour of a sampler; an unknown one gets a Dark2 colour not used by the known ones."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    r, g, b, a = _DARK2((4, 7, 1)[i % 3])
    return (r, g, b, a)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def lighter(color: Color, amount: float = 0.55) -> tuple[float, float, float, float]:
    """`color` mixed with white: the sample clouds of a member next to its trajectory."""
    r, g, b, _ = to_rgba(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount, 1.0)


# ---- subspace sampling -----------------------------------------------------------------------
def diversity_accuracy_chart(
    kind: Sequence[str] | np.ndarray,
    method: Sequence[str] | np.ndarray,
    member: np.ndarray,
    accuracy: np.ndarray,
    norm_diversity: np.ndarray,
    *,
    reference_member: int,
    reference_accuracy: float,
    curve_accuracy: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    sample: np.ndarray | None = None,
) -> Chart:
    """The paper's diversity–accuracy plane: x = accuracy (%), y = D(θ, θ_ref) / (1 − acc).

    kind, method, member, accuracy, norm_diversity: [rows], the columns of subspace/plane.csv
    (kind "sample": sample number `sample` of `method`; kind "member": an independent member).
    The reference sits at (a*, 0). upper / lower: [G] reference curves at accuracies
    `curve_accuracy` [G]: dashed (errors independent of the reference's) and dotted (the
    reference perturbed).
    """
    kind, method = np.asarray(kind, dtype=str), np.asarray(method, dtype=str)
    member = np.asarray(member, dtype=int)
    acc = np.asarray(accuracy, dtype=float)
    div = np.asarray(norm_diversity, dtype=float)
    index = np.full(len(kind), np.nan) if sample is None else np.asarray(sample, dtype=float)
    series = []
    grid = np.asarray(curve_accuracy, dtype=float)
    if len(grid):
        for values, label, ls in (
            (upper, "upper reference: independent errors", LineStyle.DASHED),
            (lower, "lower reference: perturbed reference", LineStyle.DOTTED),
        ):
            series.append(
                Series(
                    label,
                    points(sig(100 * a, 5) for a in grid),
                    points(frac(v) for v in np.asarray(values, dtype=float)),
                    color="#000000",
                    line=ls,
                    marker=Marker.NONE,
                )
            )
    samples = kind == "sample"
    for i, m in enumerate(dict.fromkeys(method[samples])):
        sel = np.flatnonzero(samples & (method == m))
        series.append(
            Series(
                f"{method_label(m)} samples",
                points(sig(100 * acc[j], 5) for j in sel),
                points(frac(div[j]) for j in sel),
                color=hex_color(method_color(m, i)),
                labels=[f"{m} around m{member[j]}, sample {_sample(index[j])}" for j in sel],
                line=LineStyle.NONE,
            )
        )
    others = np.flatnonzero(kind == "member")
    if others.size:
        series.append(
            Series(
                "independent members",
                points(sig(100 * acc[j], 5) for j in others),
                points(frac(div[j]) for j in others),
                labels=[f"m{member[j]}" for j in others],
                line=LineStyle.NONE,
                marker=Marker.DIAMOND,
                annotate=True,  # each member named beside its diamond
                point_colors=[hex_color(member_color(int(member[j]))) for j in others],
            )
        )
    series.append(
        Series(
            f"reference: member {reference_member} ({100 * reference_accuracy:.1f}%)",
            points([sig(100 * reference_accuracy, 5)]),
            [0.0],
            labels=[f"m{reference_member}"],
            color=hex_color(member_color(reference_member)),
            line=LineStyle.NONE,
            marker=Marker.STAR,
        )
    )
    values = np.array([v for s in series for v in s.y], dtype=float)
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return Chart(
        ChartKind.SCATTER,
        "accuracy (%)",
        "disagreement with reference / (1 − accuracy)",
        series,
        title="Diversity–accuracy plane (reference: one member's final weights)",
        y_range=(-0.03 * top, 1.08 * top),  # the reference's 0 clear of the frame
    )


def _sample(v: float) -> str:
    return str(int(v)) if np.isfinite(v) else "None"


def diversity_accuracy_figure(*args: Any, **kwargs: Any) -> Figure:
    """`diversity_accuracy_chart` drawn (same arguments; see there)."""
    return plane_figure(diversity_accuracy_chart(*args, **kwargs))


def plane_figure(chart: Chart) -> Figure:
    """The diversity–accuracy plane of `chart`: the members labelled m<i>, the legend right."""
    fig = new_figure(8.4, 6.0)
    ax = fig.add_subplot()
    artists = draw_chart(ax, Chart(**{**vars(chart), "title": ""}))
    fig.suptitle(chart.title, fontsize=TITLE)
    ax.grid(alpha=0.3)
    fig.legend(handles=legend_handles(chart, artists), fontsize=SMALL, loc="outside right center")
    return fig


@dataclass(frozen=True, eq=False)
class DiversityAccuracyPlane:
    """The diversity–accuracy plane of subspace/plane.csv (or swag/plane.csv): every sample and
    member (kind, method, member, sample, accuracy, norm_diversity [rows]) against the reference
    member's final weights, and the reference curves (none when the reference is no better than
    chance). Drawn by `diversity_accuracy_chart`; its CSV holds the same points and curves."""

    kind: np.ndarray  # str [rows]: "sample" | "member"
    method: np.ndarray  # str [rows]
    member: np.ndarray  # int [rows]
    accuracy: np.ndarray  # [rows]
    norm_diversity: np.ndarray  # [rows]
    sample: np.ndarray | None  # [rows] sample numbers (NaN for members); None: not written
    reference_member: int
    reference_accuracy: float
    curves: ReferenceCurves = field(default_factory=lambda: ReferenceCurves([], [], []))

    @classmethod
    def from_columns(
        cls,
        plane: Mapping[str, np.ndarray],
        reference_member: int,
        reference_accuracy: float,
        curves: ReferenceCurves | None,
    ) -> DiversityAccuracyPlane:
        sample = plane.get("sample")
        return cls(
            np.asarray(plane["kind"], dtype=str),
            np.asarray(plane["method"], dtype=str),
            np.asarray(plane["member"], dtype=int),
            np.asarray(plane["accuracy"], dtype=float),
            np.asarray(plane["norm_diversity"], dtype=float),
            None if sample is None else np.asarray(sample),
            reference_member,
            reference_accuracy,
            curves or ReferenceCurves([], [], []),
        )

    @cached_property
    def _charts(self) -> list[Chart]:
        chart = diversity_accuracy_chart(
            self.kind, self.method, self.member, self.accuracy, self.norm_diversity,
            reference_member=self.reference_member, reference_accuracy=self.reference_accuracy,
            curve_accuracy=np.asarray(self.curves.accuracy),
            upper=np.asarray(self.curves.upper, dtype=float),
            lower=np.asarray(self.curves.lower, dtype=float), sample=self.sample,
        )  # fmt: skip
        return [chart]

    def charts(self) -> list[Chart]:
        return self._charts

    def figure(self) -> Figure:
        return plane_figure(self.charts()[0])

    def table(self, name: str, caption: str = "") -> Table:
        """Every point (kind, method, member, sample, accuracy, norm_diversity; fractions to 4
        decimals), then the reference curves (kind "upper_curve" / "lower_curve")."""
        n = len(self.kind)
        sample = np.full(n, np.nan) if self.sample is None else self.sample
        rows: list[list[object]] = [
            [str(self.kind[i]), str(self.method[i]), int(self.member[i]),
             _int_or_none(sample[i]), frac(self.accuracy[i]), frac(self.norm_diversity[i])]
            for i in range(n)
        ]  # fmt: skip
        grid = np.asarray(self.curves.accuracy, dtype=float)
        if len(grid):
            for label, curve in (("upper", self.curves.upper), ("lower", self.curves.lower)):
                values = np.asarray(curve, dtype=float)
                rows += [[f"{label}_curve", "", None, None, frac(a), frac(v)]
                         for a, v in zip(grid, values)]  # fmt: skip
        header = ["kind", "method", "member", "sample", "accuracy", "norm_diversity"]
        return Table(name, header, rows, caption)


def _int_or_none(x: object) -> int | None:
    v = float(x)  # type: ignore[arg-type]
    return None if not np.isfinite(v) else int(v)


def subspace_ensembles_charts(
    family: Sequence[str] | np.ndarray,
    size: np.ndarray,
    metric: Sequence[str] | np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
) -> list[Chart]:
    """Metrics against size for deep ensembles, weight averages and subspace models, one chart
    per metric (`ensemble_curves_charts`) with a compact legend: one key per colour (family or
    sampler) and one per line style, not one per (sampler, kind) pair.

    Columns of subspace/curves.csv. Family "<method>" (dashed): k samples around one trajectory;
    "<method>+ensemble" (solid): k members' subspace models; "deep", "weight_average+ensemble".
    """
    styles = subspace_curve_styles(family)
    methods = [
        f for f in dict.fromkeys(np.asarray(family, dtype=str)) if "+" not in f and f != "deep"
    ]
    none = Marker.NONE
    keys = [Series("deep ensemble", [], [], color=hex_color(FAMILY_COLORS["deep"]), marker=none)]
    if "weight_average+ensemble" in styles:
        keys.append(
            Series(
                "weight averages",
                [],
                [],
                color=hex_color(FAMILY_COLORS["weight_average"]),
                marker=none,
            )
        )
    keys += [
        Series(method_label(m), [], [], color=hex_color(method_color(m, i)), marker=Marker.NONE)
        for i, m in enumerate(methods)
    ]
    keys += [
        Series("solid: ensemble of k members' models", [], [], color="#000000", marker=Marker.NONE),
        Series("dashed: k samples around one member (mean over members)", [], [],
               color="#000000", line=LineStyle.DASHED, marker=Marker.NONE),
    ]  # fmt: skip
    charts = ensemble_curves_charts(family, size, metric, mean, std, styles)
    for chart in charts:
        chart.keys = keys
    return charts


def subspace_ensembles_figure(
    family: Sequence[str],
    size: np.ndarray,
    metric: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
) -> Figure:
    """`subspace_ensembles_charts` drawn as 2 × 2 panels (see there)."""
    charts = subspace_ensembles_charts(family, size, metric, mean, std)
    return subspace_curves_figure(charts)


def subspace_curves_figure(charts: Sequence[Chart]) -> Figure:
    title = "Ensembles with subspace models (mean ± std over subsets or members)"
    return curves_figure(charts, title, size=(12.5, 8.0))


def subspace_curve_styles(family: Sequence[str] | np.ndarray) -> dict[str, CurveStyle]:
    """(colour, line style, label) of each family of subspace/curves.csv, in drawing order."""
    fams = list(dict.fromkeys(np.asarray(family, dtype=str)))
    styles: dict[str, CurveStyle] = {}
    if "deep" in fams:
        styles["deep"] = (FAMILY_COLORS["deep"], "-", "deep ensemble")
    if "weight_average+ensemble" in fams:
        styles["weight_average+ensemble"] = (
            FAMILY_COLORS["weight_average"],
            "-",
            "ensemble of weight averages",
        )
    methods = [f for f in fams if "+" not in f and f != "deep"]
    for i, m in enumerate(methods):
        c = method_color(m, i)
        styles[m] = (c, "--", f"{method_label(m)}: k samples, one member")
        if f"{m}+ensemble" in fams:
            styles[f"{m}+ensemble"] = (c, "-", f"{method_label(m)}: ensemble of k models")
    return styles


@dataclass(frozen=True, eq=False)
class JsDiversityBars:
    """Horizontal bars of Jensen–Shannon diversity (nats), one per family, values printed.

    values: label -> JS; colors: label -> colour. The axis is logarithmic when the values span
    more than 30×, so small diversities stay visible next to large ones.
    """

    values: dict[str, float]
    colors: dict[str, object]

    @property
    def log(self) -> bool:
        v = np.array(list(self.values.values()), dtype=float)
        positive = v[v > 0]
        return bool(positive.size > 1 and positive.max() / positive.min() > 30)

    def figure(self) -> Figure:
        labels = list(self.values)
        v = np.array([self.values[k] for k in labels], dtype=float)
        fig = new_figure(8.0, 0.45 * len(labels) + 1.4)
        ax = fig.add_subplot()
        pos = np.arange(len(labels))[::-1]
        colors = [self.colors.get(k, "#888888") for k in labels]
        ax.barh(pos, v, color=colors, edgecolor="black", lw=0.5)
        log = self.log
        if log:
            ax.set_xscale("log")
        for p, x in zip(pos, v):
            ax.text(x, p, f" {x:.3g}", va="center", fontsize=SMALL)
        ax.set_yticks(pos, labels)
        ax.set_xlim(right=(v.max() * (4 if log else 1.15)) if v.size and v.max() > 0 else 1)
        ax.set_xlabel(
            "Jensen–Shannon diversity (nats)" + (", log scale" if log else ""), fontsize=LABEL
        )
        ax.set_title("Diversity of each family's predictions", fontsize=TITLE)
        ax.grid(axis="x", alpha=0.3)
        return fig

    def table(self, name: str, caption: str = "") -> Table:
        """One row per bar: its label and the diversity (4 significant digits)."""
        rows = [[label, sig(v)] for label, v in self.values.items()]
        return Table(name, ["family", "js_diversity_nats"], rows, caption)


# ---- dataset shift ---------------------------------------------------------------------------
def shift_diversity_chart(
    severities: Sequence[int],
    js: Mapping[str, Sequence[float]],
    styles: Mapping[str, tuple[object, str]],
) -> Chart:
    """JS diversity (mean over corruptions) against severity, one line per family in `styles`;
    a logarithmic y axis when the values span more than 30×."""
    sev: list[float] = [int(v) for v in severities]
    series = [
        Series(label, sev, points(sig(x) for x in js[fam]), color=hex_color(color))
        for fam, (color, label) in styles.items()
        if fam in js
    ]
    values = np.array([v for s in series for v in s.y] or [1.0], dtype=float)
    positive = values[values > 0]
    log = bool(positive.size > 1 and positive.max() / positive.min() > 30)
    return Chart(
        ChartKind.LINE,
        "corruption severity (0 = clean)",
        "Jensen–Shannon diversity (nats)",
        series,
        y_scale=LOG if log else LINEAR,
        title="Diversity under shift (mean over corruptions)",
        x_ticks=[(v, "clean" if v == 0 else str(v)) for v in sev],
    )


@dataclass(frozen=True, eq=False)
class ShiftDiversity:
    """JS diversity (mean over corruptions) against severity: `js` family -> [severities], the
    families drawn and tabulated those of `styles` (family -> (colour, legend label)) present in
    `js`, in its order."""

    severities: list[int]
    js: Mapping[str, Sequence[float]]
    styles: Mapping[str, tuple[object, str]]

    @cached_property
    def _charts(self) -> list[Chart]:
        return [shift_diversity_chart(self.severities, self.js, self.styles)]

    def charts(self) -> list[Chart]:
        return self._charts

    def caption(self) -> str:
        return shift_diversity_caption(self.charts()[0])

    def figure(self) -> Figure:
        return shift_diversity_chart_figure(self.charts()[0])

    def table(self, name: str, caption: str = "") -> Table:
        """One row per family: its diversity at each severity (4 significant digits)."""
        header = ["family", *(f"severity_{int(v)}" for v in self.severities)]
        rows = [[f, *(sig(x) for x in self.js[f])] for f in self.styles if f in self.js]
        return Table(name, header, rows, caption)


def shift_diversity_caption(chart: Chart) -> str:
    """The caption of `shift_diversity_chart`, naming its log axis when it has one."""
    log = chart.y_scale.kind == AxisScale.LOG
    return "Jensen–Shannon diversity within each family, averaged over corruptions" + (
        "; logarithmic y axis (the families' values span more than 30×)." if log else "."
    )


def shift_diversity_figure(
    severities: Sequence[int],
    js: Mapping[str, Sequence[float]],
    styles: Mapping[str, tuple[object, str]],
) -> Figure:
    """`shift_diversity_chart` drawn (see there)."""
    return shift_diversity_chart_figure(shift_diversity_chart(severities, js, styles))


def shift_diversity_chart_figure(chart: Chart) -> Figure:
    fig = new_figure(8.6, 4.8)
    ax = fig.add_subplot()
    artists = draw_chart(ax, chart)
    ax.grid(alpha=0.3)
    fig.legend(handles=legend_handles(chart, artists), fontsize=SMALL, loc="outside right center")
    return fig


__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "DiversityAccuracyPlane",
    "JsDiversityBars",
    "ShiftDiversity",
    "diversity_accuracy_figure",
    "method_color",
    "method_label",
    "shift_diversity_figure",
    "subspace_curve_styles",
    "subspace_ensembles_figure",
]
