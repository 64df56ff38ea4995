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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from modescape.report.figures.analysis import (
    FAMILY_COLORS,
    LABEL,
    METRIC_AXES,
    SMALL,
    TITLE,
    CurveStyle,
    ensemble_curves_figure,
    grid_axes,
    member_color,
    new_figure,
)

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


def _lighter(color, amount: float = 0.55) -> tuple[float, float, float, float]:
    """`color` mixed with white: the sample clouds of a member next to its trajectory."""
    r, g, b, _ = to_rgba(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount, 1.0)


# ---- subspace sampling -----------------------------------------------------------------------
def diversity_accuracy_figure(
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
) -> Figure:
    """The paper's diversity–accuracy plane: x = accuracy (%), y = D(θ, θ_ref) / (1 − acc).

    kind, method, member, accuracy, norm_diversity: [rows], the columns of subspace/plane.csv
    (kind "sample": one sample of `method`; kind "member": an independent member). The reference
    sits at (a*, 0). upper / lower: [G] reference curves at accuracies `curve_accuracy` [G].
    """
    kind, method = np.asarray(kind, dtype=str), np.asarray(method, dtype=str)
    member = np.asarray(member, dtype=int)
    acc = np.asarray(accuracy, dtype=float) * 100
    div = np.asarray(norm_diversity, dtype=float)
    fig = new_figure(8.4, 6.0)
    ax = fig.add_subplot()
    grid = np.asarray(curve_accuracy, dtype=float) * 100
    if len(grid):
        ax.plot(
            grid, upper, "--", color="black", lw=1.4, label="upper reference: independent errors"
        )
        ax.plot(
            grid, lower, ":", color="black", lw=1.6, label="lower reference: perturbed reference"
        )
    samples = kind == "sample"
    for i, m in enumerate(dict.fromkeys(method[samples])):
        rows = samples & (method == m)
        ax.scatter(
            acc[rows],
            div[rows],
            s=16,
            alpha=0.75,
            color=method_color(m, i),
            label=f"{method_label(m)} samples",
            zorder=2,
        )
    others = np.flatnonzero(kind == "member")
    _plane_members(ax, acc[others], div[others], member[others])
    ax.scatter(
        [reference_accuracy * 100],
        [0.0],
        s=260,
        marker="*",
        color=member_color(reference_member),
        edgecolor="black",
        linewidth=0.8,
        zorder=5,
        label=f"reference: member {reference_member} ({100 * reference_accuracy:.1f}%)",
    )
    _finish_plane(fig, ax, div, np.asarray(upper, dtype=float), bool(others.size))
    return fig


def _finish_plane(fig: Figure, ax, div: np.ndarray, upper: np.ndarray, members: bool) -> None:
    finite = np.concatenate([div[np.isfinite(div)], upper[np.isfinite(upper)]])
    top = float(finite.max()) if finite.size else 1.0
    ax.set_ylim(-0.03 * top, 1.08 * top)
    ax.set_xlabel("accuracy (%)", fontsize=LABEL)
    ax.set_ylabel("disagreement with reference / (1 − accuracy)", fontsize=LABEL)
    fig.suptitle("Diversity–accuracy plane (reference: one member's final weights)", fontsize=TITLE)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if members:  # the members' legend entry in neutral grey, not the first member's colour
        i = labels.index("independent members")
        handles[i] = Line2D([], [], ls="", marker="D", ms=10, mfc="#bbbbbb", mec="black")
    fig.legend(handles, labels, fontsize=SMALL, loc="outside right center")


def _plane_members(ax, acc: np.ndarray, div: np.ndarray, member: np.ndarray) -> None:
    """The independent members in the plane: diamonds in member colours, labelled m<i>."""
    if not member.size:
        return
    ax.scatter(
        acc,
        div,
        s=150,
        marker="D",
        color=[member_color(int(m)) for m in member],
        edgecolor="black",
        linewidth=1.0,
        zorder=4,
        label="independent members",
    )
    for a, d, m in zip(acc, div, member):
        ax.annotate(f"m{m}", (a, d), xytext=(7, 5), textcoords="offset points", fontsize=SMALL)


def subspace_tsne_figure(panels: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Joint t-SNE per sampler: trajectories as lines (circle = first snapshot, star = final
    snapshot), samples as a lighter cloud of squares in the same member's colour.

    panels: method -> columns of subspace/tsne_<method>.csv: kind ("trajectory" | "sample"),
    member, index (epoch order or sample number), x, y, each [points].
    """
    n = len(panels)
    ncols = min(n, 3)
    fig = new_figure(4.0 * ncols + 0.4, 3.9 * (-(-n // ncols)) + 0.6)
    axes = grid_axes(fig, n, ncols)
    members: set[int] = set()
    for ax, (m, cols) in zip(axes, panels.items()):
        kind = np.asarray(cols["kind"], dtype=str)
        mem, idx = np.asarray(cols["member"], dtype=int), np.asarray(cols["index"], dtype=int)
        x, y = np.asarray(cols["x"], dtype=float), np.asarray(cols["y"], dtype=float)
        for k in np.unique(mem):
            members.add(int(k))
            c = member_color(int(k))
            cloud = (kind == "sample") & (mem == k)
            # the samples as a cloud: translucent squares in a lighter shade, edged in the
            # member's colour so overlapping clouds of two members stay apart
            ax.scatter(
                x[cloud], y[cloud], s=22, marker="s", color=_lighter(c), edgecolor=c,
                linewidth=0.5, alpha=0.8, zorder=1,
            )  # fmt: skip
            rows = np.flatnonzero((kind == "trajectory") & (mem == k))
            rows = rows[np.argsort(idx[rows], kind="stable")]
            ax.plot(x[rows], y[rows], "-", color=c, lw=1.3, zorder=2)
            if rows.size:
                ax.scatter(
                    x[rows[:1]],
                    y[rows[:1]],
                    s=36,
                    marker="o",
                    facecolor="white",
                    edgecolor=c,
                    linewidth=1.6,
                    zorder=3,
                )
                ax.scatter(
                    x[rows[-1:]], y[rows[-1:]], s=150, marker="*", color=c, edgecolor="black",
                    linewidth=0.6, zorder=4,
                )  # fmt: skip
        ax.set_title(method_label(m), fontsize=TITLE - 1)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Line2D([], [], color=member_color(k), lw=2, label=f"member {k}") for k in sorted(members)
    ]
    handles += [
        Line2D(
            [], [], ls="", marker="o", mfc="white", mec="black", mew=1.6, label="first snapshot"
        ),
        Line2D([], [], ls="", marker="*", ms=11, color="black", label="final snapshot"),
        Line2D(
            [], [], ls="", marker="s", mfc=_lighter("black"), mec="black", mew=0.5,
            label="samples around the final snapshot",
        ),
    ]  # fmt: skip
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=SMALL
    )
    fig.suptitle(
        "Trajectories and subspace samples in function space (one t-SNE per sampler)",
        fontsize=TITLE,
    )
    return fig


def subspace_ensembles_figure(
    family: Sequence[str],
    size: np.ndarray,
    metric: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
) -> Figure:
    """Metrics against size for deep ensembles, weight averages and subspace models.

    Columns of subspace/curves.csv. Family "<method>" (dashed): k samples around one trajectory;
    "<method>+ensemble" (solid): k members' subspace models; "deep", "weight_average+ensemble".
    """
    styles = subspace_curve_styles(family)
    methods = [
        f for f in dict.fromkeys(np.asarray(family, dtype=str)) if "+" not in f and f != "deep"
    ]
    fig = ensemble_curves_figure(
        family,
        size,
        metric,
        mean,
        std,
        styles=styles,
        title="Ensembles with subspace models (mean ± std over subsets or members)",
    )
    fig.set_size_inches(12.5, 8.0)
    legend = fig.axes[0].get_legend()
    if legend is not None:
        legend.remove()
    # A compact legend: one entry per colour (family or sampler) and one per line style,
    # not one per (sampler, kind) pair.
    handles = [Line2D([], [], color=FAMILY_COLORS["deep"], lw=2, label="deep ensemble")]
    if "weight_average+ensemble" in styles:
        handles.append(
            Line2D([], [], color=FAMILY_COLORS["weight_average"], lw=2, label="weight averages")
        )
    handles += [
        Line2D([], [], color=method_color(m, i), lw=2, label=method_label(m))
        for i, m in enumerate(methods)
    ]
    handles += [
        Line2D([], [], color="black", ls="-", lw=1.5, label="solid: ensemble of k members' models"),
        Line2D(
            [], [], color="black", ls="--", lw=1.5,
            label="dashed: k samples around one member (mean over members)",
        ),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=SMALL)
    return fig


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


def shift_diversity_figure(
    severities: Sequence[int],
    js: Mapping[str, Sequence[float]],
    styles: Mapping[str, tuple[object, str]],
) -> Figure:
    """JS diversity (mean over corruptions) against severity, one line per family in `styles`."""
    sev = np.asarray(severities, dtype=int)
    fig = new_figure(8.6, 4.8)
    ax = fig.add_subplot()
    shown = []
    for fam, (color, label) in styles.items():
        if fam in js:
            v = np.asarray(js[fam], dtype=float)
            ax.plot(sev, v, "-o", color=color, ms=4, lw=1.6, label=label)
            shown.append(v)
    values = np.concatenate(shown) if shown else np.ones(1)
    positive = values[values > 0]
    if positive.size > 1 and positive.max() / positive.min() > 30:
        ax.set_yscale("log")
    ax.set_xticks(sev, ["clean" if s == 0 else str(s) for s in sev])
    ax.set_xlabel("corruption severity", fontsize=LABEL)
    ax.set_ylabel("Jensen–Shannon diversity (nats)", fontsize=LABEL)
    ax.set_title("Diversity under shift (mean over corruptions)", fontsize=TITLE)
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=SMALL, loc="outside right center")
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
    "subspace_tsne_figure",
]
