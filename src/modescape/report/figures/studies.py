"""Figures of the subspace-sampling and dataset-shift studies (the loss landscape's are in
`report/figures/landscape.py`).

Same rules as `report.figures.analysis`: pure functions of arrays returning a
`matplotlib.figure.Figure` (no pyplot, nothing read from files), member i always in
`member_color(i)`. Samplers have their own colours (`METHOD_COLORS`, Dark2), so a sampler is never
mistaken for a member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from modescape.report.base import Chart, ChartKind, LineStyle, Marker, Series
from modescape.report.figures.analysis import (
    FAMILY_COLORS,
    LABEL,
    METRIC_AXES,
    SMALL,
    TITLE,
    CurveStyle,
    curves_figure,
    ensemble_curves_charts,
    member_color,
    new_figure,
)
from modescape.report.figures.chart import draw_chart, hex_color, legend_handles
from modescape.report.wording import frac, sig

_DARK2 = colormaps["Dark2"]
METHOD_COLORS = {
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


def method_color(method: str, i: int = 0) -> tuple[float, float, float, float]:
    """The colour of a sampler; an unknown one gets a Dark2 colour not used by the known ones."""
    return METHOD_COLORS.get(method, _DARK2((4, 7, 1)[i % 3]))


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def lighter(color, amount: float = 0.55) -> tuple[float, float, float, float]:
    """`color` mixed with white: the sample clouds of a member next to its trajectory."""
    r, g, b, _ = to_rgba(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount, 1.0)


# ---- subspace sampling -----------------------------------------------------------------------
def diversity_accuracy_chart(
    kind: Sequence[str],
    method: Sequence[str],
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
                    [sig(100 * a, 5) for a in grid],
                    [frac(v) for v in np.asarray(values, dtype=float)],
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
                [sig(100 * acc[j], 5) for j in sel],
                [frac(div[j]) for j in sel],
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
                [sig(100 * acc[j], 5) for j in others],
                [frac(div[j]) for j in others],
                labels=[f"m{member[j]}" for j in others],
                line=LineStyle.NONE,
                marker=Marker.DIAMOND,
                point_colors=[hex_color(member_color(int(member[j]))) for j in others],
            )
        )
    series.append(
        Series(
            f"reference: member {reference_member} ({100 * reference_accuracy:.1f}%)",
            [sig(100 * reference_accuracy, 5)],
            [0.0],
            labels=[f"m{reference_member}"],
            color=hex_color(member_color(reference_member)),
            line=LineStyle.NONE,
            marker=Marker.STAR,
        )
    )
    return Chart(
        ChartKind.SCATTER,
        "accuracy (%)",
        "disagreement with reference / (1 − accuracy)",
        series,
        title="Diversity–accuracy plane (reference: one member's final weights)",
    )


def _sample(v: float) -> str:
    return str(int(v)) if np.isfinite(v) else "None"


def diversity_accuracy_figure(*args, **kwargs) -> Figure:
    """`diversity_accuracy_chart` drawn (same arguments; see there)."""
    return plane_figure(diversity_accuracy_chart(*args, **kwargs))


def plane_figure(chart: Chart) -> Figure:
    """The diversity–accuracy plane of `chart`: the members labelled m<i>, the legend right."""
    fig = new_figure(8.4, 6.0)
    ax = fig.add_subplot()
    artists = draw_chart(ax, Chart(**{**vars(chart), "title": ""}))
    for s in chart.series:
        if s.marker == Marker.DIAMOND and s.labels:
            for a, d, text in zip(s.x, s.y, s.labels):
                ax.annotate(text, (a, d), xytext=(7, 5), textcoords="offset points", fontsize=SMALL)
    values = np.array([v for s in chart.series for v in s.y], dtype=float)
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    ax.set_ylim(-0.03 * top, 1.08 * top)
    fig.suptitle(chart.title, fontsize=TITLE)
    ax.grid(alpha=0.3)
    fig.legend(handles=legend_handles(chart, artists), fontsize=SMALL, loc="outside right center")
    return fig


def subspace_ensembles_charts(
    family: Sequence[str],
    size: np.ndarray,
    metric: Sequence[str],
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
    plain = {"marker": Marker.NONE}
    keys = [Series("deep ensemble", [], [], color=hex_color(FAMILY_COLORS["deep"]), **plain)]
    if "weight_average+ensemble" in styles:
        keys.append(
            Series(
                "weight averages", [], [], color=hex_color(FAMILY_COLORS["weight_average"]), **plain
            )
        )
    keys += [
        Series(method_label(m), [], [], color=hex_color(method_color(m, i)), **plain)
        for i, m in enumerate(methods)
    ]
    keys += [
        Series("solid: ensemble of k members' models", [], [], color="#000000", **plain),
        Series("dashed: k samples around one member (mean over members)", [], [],
               color="#000000", line=LineStyle.DASHED, **plain),
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


def subspace_curve_styles(family: Sequence[str]) -> dict[str, CurveStyle]:
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


def js_diversity_figure(values: Mapping[str, float], colors: Mapping[str, object]) -> Figure:
    """Horizontal bars of Jensen–Shannon diversity (nats), one per family, values printed.

    values: label -> JS; colors: label -> colour. The axis is logarithmic when the values span
    more than 30×, so small diversities stay visible next to large ones.
    """
    labels = list(values)
    v = np.array([values[k] for k in labels], dtype=float)
    fig = new_figure(8.0, 0.45 * len(labels) + 1.4)
    ax = fig.add_subplot()
    pos = np.arange(len(labels))[::-1]
    ax.barh(pos, v, color=[colors.get(k, "#888888") for k in labels], edgecolor="black", lw=0.5)
    positive = v[v > 0]
    log = positive.size > 1 and positive.max() / positive.min() > 30
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


# ---- dataset shift ---------------------------------------------------------------------------
def shift_boxplot_figure(
    severity: np.ndarray,
    family: Sequence[str],
    metric: Sequence[str],
    value: np.ndarray,
    styles: Mapping[str, tuple[object, str]],
) -> Figure:
    """Box plots over corruptions (Ovadia et al. 2019): one panel per metric, one group of boxes
    per severity (0 = clean), one box per family in `styles` (family -> (colour, label)).

    severity, family, metric, value: [rows], one row per (corruption, severity, family, metric).
    """
    severity, value = np.asarray(severity, dtype=int), np.asarray(value, dtype=float)
    family, metric = np.asarray(family, dtype=str), np.asarray(metric, dtype=str)
    sevs = sorted(set(severity.tolist()))
    fams = [f for f in styles if f in set(family)]
    n = len(fams)
    width = 0.8 / max(n, 1)
    fig = new_figure(12.0, 8.4)
    axes = fig.subplots(2, 2).ravel()
    for ax, (name, (title, ylabel, scale)) in zip(axes, METRIC_AXES.items()):
        for j, fam in enumerate(fams):
            data, pos, single, single_pos = [], [], [], []
            for g, s in enumerate(sevs):
                sel = (family == fam) & (metric == name) & (severity == s)
                x = g - 0.4 + width * (j + 0.5)
                if sel.any() and np.ptp(value[sel]) > 0:
                    data.append(value[sel] * scale)
                    pos.append(x)
                elif sel.any():  # one value (clean: the same for every corruption): a marker
                    single.append(value[sel][0] * scale)
                    single_pos.append(x)
            _family_boxes(ax, data, pos, single, single_pos, width, styles[fam][0])
        ax.set_xticks(range(len(sevs)), ["clean" if s == 0 else str(s) for s in sevs])
        ax.set_xlim(-0.6, len(sevs) - 0.4)
        ax.set_xlabel("corruption severity", fontsize=LABEL)
        ax.set_ylabel(ylabel, fontsize=LABEL)
        ax.set_title(title, fontsize=TITLE)
        ax.grid(axis="y", alpha=0.3)
        for g in range(1, len(sevs)):
            ax.axvline(g - 0.5, color="#dddddd", lw=0.8, zorder=0)
    handles = [Patch(facecolor=styles[f][0], edgecolor="black", label=styles[f][1]) for f in fams]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(n, 4), fontsize=SMALL)
    fig.suptitle("Dataset shift: spread over corruptions at each severity", fontsize=TITLE)
    return fig


def _family_boxes(ax, data, pos, single, single_pos, width: float, color) -> None:
    """One family's boxes (spread over corruptions) and square markers (a single value)."""
    if single:
        ax.scatter(
            single_pos,
            single,
            s=28,
            marker="s",
            color=color,
            edgecolor="black",
            linewidth=0.6,
            zorder=3,
        )
    if not data:
        return
    ax.boxplot(
        data,
        positions=pos,
        widths=width * 0.85,
        patch_artist=True,
        manage_ticks=False,
        showfliers=True,
        boxprops={"facecolor": color, "edgecolor": "black", "linewidth": 0.6},
        medianprops={"color": "black", "linewidth": 1.0},
        whiskerprops={"linewidth": 0.6},
        capprops={"linewidth": 0.6},
        flierprops={"markersize": 2.5, "markeredgecolor": color},
    )


def shift_diversity_chart(
    severities: Sequence[int],
    js: Mapping[str, Sequence[float]],
    styles: Mapping[str, tuple[object, str]],
) -> Chart:
    """JS diversity (mean over corruptions) against severity, one line per family in `styles`;
    a logarithmic y axis when the values span more than 30×."""
    sev = [int(v) for v in severities]
    series = [
        Series(label, sev, [sig(x) for x in js[fam]], color=hex_color(color))
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
        y_log=log,
        title="Diversity under shift (mean over corruptions)",
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
    sev = sorted({int(v) for s in chart.series for v in s.x})
    ax.set_xticks(sev, ["clean" if v == 0 else str(v) for v in sev])
    ax.grid(alpha=0.3)
    fig.legend(handles=legend_handles(chart, artists), fontsize=SMALL, loc="outside right center")
    return fig


def corruption_strip_figure(strip: np.ndarray, names: Sequence[str]) -> Figure:
    """One example, clean and at severities 1–5, for each corruption: [len(names), 6, ...].

    uint8 images [K, 6, H, W, C] are shown as pictures; 1-D signals [K, 6, L] or [K, 6, 1, L]
    as line plots, with the clean signal in grey behind each corrupted one.
    """
    strip = np.asarray(strip)
    images = strip.dtype == np.uint8 and strip.ndim == 5
    K, cols = strip.shape[0], strip.shape[1]
    if not images:
        strip = strip.reshape(K, cols, -1).astype(float)
    fig = new_figure(1.75 * cols + 0.8, (1.55 if images else 1.15) * K + 0.7)
    axes = fig.subplots(K, cols, squeeze=False)
    for r in range(K):
        lo, hi = (strip[r].min(), strip[r].max()) if not images else (0, 1)
        pad = 0.05 * (hi - lo or 1.0)
        for c in range(cols):
            ax = axes[r, c]
            if images:
                img = strip[r, c]
                ax.imshow(
                    img[..., 0] if img.shape[-1] == 1 else img,
                    cmap="gray" if img.shape[-1] == 1 else None,
                    vmin=0,
                    vmax=255,
                    interpolation="nearest",
                )
            else:
                if c:
                    ax.plot(strip[r, 0], color="#bbbbbb", lw=1.0)
                ax.plot(strip[r, c], color="black" if c == 0 else "#c44e52", lw=1.1)
                ax.set_ylim(lo - pad, hi + pad)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {c}", fontsize=LABEL)
        axes[r, 0].set_ylabel(names[r].replace("_", " "), fontsize=LABEL)
    fig.suptitle("One test example under each corruption", fontsize=TITLE)
    return fig


__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "corruption_strip_figure",
    "diversity_accuracy_figure",
    "js_diversity_figure",
    "method_color",
    "method_label",
    "shift_boxplot_figure",
    "shift_diversity_figure",
    "subspace_curve_styles",
    "subspace_ensembles_figure",
]
