"""The analysis study's figures (heatmaps, trajectories, ensemble curves, reliability, training
curves), and the styles and rendering every figure of the report shares (`member_color`, font
sizes, `render_figure`). Each figure is a pure function of arrays returning a matplotlib `Figure`.

Figures are built with `matplotlib.figure.Figure` directly, never `pyplot`: no global state, no
GUI backend, so they can be drawn from any thread on a headless machine. Nothing here reads
files; the report's sections load the study results and pass arrays in. `save_figure` writes PNG and
PDF atomically.

Colours: member i is always `member_color(i)` (tab10, cycling after 10), in every figure.
Ensemble families have their own fixed colours (`FAMILY_COLORS`), so they are never confused
with members.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from modescape.errors import choice_error
from modescape.store.files import atomic_write_bytes

DPI = 120
TITLE = 12  # font sizes in points
LABEL = 10
SMALL = 8

# quantity -> (colour-bar label, colour map). Cosine uses a fixed [0, 1]-ish range (see _limits).
QUANTITIES = {
    "cosine": ("cosine similarity of weights", "viridis"),
    "disagreement": ("disagreement (fraction of test points)", "magma"),
    "distance": ("L2 distance between weights", "cividis"),
}
NAMES = {"cosine": "Cosine similarity", "disagreement": "Disagreement", "distance": "L2 distance"}
FAMILY_COLORS = {"deep": "#1f3b73", "snapshot": "#d95f02", "weight_average": "#7a7a7a"}
FAMILY_LABELS = {
    "deep": "deep ensemble (independent members)",
    "snapshot": "snapshot ensemble (last k of one trajectory)",
    "weight_average": "ensemble of weight averages",
}
CurveStyle = tuple[object, str, str]  # (matplotlib colour, line style, legend label)
# metric -> (panel title, y label, scale applied to the values)
METRIC_AXES = {
    "accuracy": ("Accuracy", "accuracy (%)", 100.0),
    "nll": ("Negative log-likelihood", "NLL (nats per example)", 1.0),
    "brier": ("Brier score", "Brier score (range 0-2)", 1.0),
    "ece": ("Expected calibration error", "ECE (%, 15 bins)", 100.0),
}


# metric -> the values it can take, in the units drawn (METRIC_AXES scale): a ± std band or an
# axis must not run past them (an ECE axis at -10% reads as a bug)
METRIC_DOMAIN = {
    "accuracy": (0.0, 100.0),
    "nll": (0.0, np.inf),
    "brier": (0.0, 2.0),
    "ece": (0.0, 100.0),
}


def clip_to_domain(metric: str, values: np.ndarray) -> np.ndarray:
    """`values` (in drawn units) clipped to what `metric` can take; unknown metrics unchanged."""
    lo, hi = METRIC_DOMAIN.get(metric, (-np.inf, np.inf))
    return np.clip(np.asarray(values, dtype=float), lo, hi)


def clip_axis(ax, metric: str) -> None:
    """Keep a metric's y axis inside its domain (after autoscaling from the data)."""
    lo, hi = METRIC_DOMAIN.get(metric, (-np.inf, np.inf))
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, lo), min(top, hi))


def member_color(member: int) -> tuple[float, float, float, float]:
    """The colour of member `member` in every figure (tab10, cycling)."""
    return colormaps["tab10"](member % 10)


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def grid_axes(fig: Figure, n: int, ncols: int) -> list:
    """Exactly n axes in rows of `ncols` (no empty axes left over)."""
    rows = -(-n // ncols)
    return [fig.add_subplot(rows, ncols, i + 1) for i in range(n)]


def _tick_positions(n: int, max_ticks: int = 12) -> np.ndarray:
    """Indices of at most ~max_ticks evenly spaced ticks over n cells, always including the last."""
    step = max(1, int(np.ceil(n / max_ticks)))
    ticks = np.arange(0, n, step)
    if ticks[-1] != n - 1 and n - 1 - ticks[-1] >= step / 2:
        ticks = np.append(ticks, n - 1)
    return ticks


def _limits(quantity: str, matrix: np.ndarray) -> tuple[float, float]:
    finite = matrix[np.isfinite(matrix)]
    top = float(finite.max()) if finite.size else 1.0
    if quantity == "cosine":  # cosine can be negative, but trained weights rarely are
        return min(0.0, float(finite.min()) if finite.size else 0.0), 1.0
    return 0.0, top if top > 0 else 1.0


def shared_limits(quantity: str, *matrices: np.ndarray) -> tuple[float, float]:
    """One (vmin, vmax) for heatmaps a reader compares side by side, so that one colour means
    one value in all of them (0.10 is never orange in one and black in another)."""
    flat = [np.asarray(m, dtype=float).ravel() for m in matrices]
    return _limits(quantity, np.concatenate(flat) if flat else np.array([]))


def _check_quantity(quantity: str) -> None:
    if quantity not in QUANTITIES:
        raise choice_error("heatmap quantity", quantity, tuple(QUANTITIES))


def _heatmap(
    matrix: np.ndarray,
    quantity: str,
    title: str,
    axis_label: str,
    labels: Sequence[str],
    ticks: np.ndarray,
    size: float = 5.6,
    limits: tuple[float, float] | None = None,
) -> Figure:
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    cbar_label, cmap = QUANTITIES[quantity]
    vmin, vmax = limits or _limits(quantity, matrix)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.85).set_label(cbar_label, fontsize=LABEL)
    ax.set_xticks(ticks, [labels[t] for t in ticks])
    ax.set_yticks(ticks, [labels[t] for t in ticks])
    ax.set_xlabel(axis_label, fontsize=LABEL)
    ax.set_ylabel(axis_label, fontsize=LABEL)
    ax.set_title(title, fontsize=TITLE)
    return fig


def within_trajectory_heatmap(
    matrix: np.ndarray,
    epochs: Sequence[int],
    quantity: str,
    *,
    member: int = 0,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """Snapshot-vs-snapshot matrix [E, E] of one member's trajectory; ticks are epochs.
    `limits`: (vmin, vmax) shared with the heatmaps it is compared with (`shared_limits`)."""
    _check_quantity(quantity)
    matrix = np.asarray(matrix, dtype=float)
    name = NAMES[quantity]
    fig = _heatmap(
        matrix,
        quantity,
        f"{name} within the trajectory of member {member}",
        "epoch",
        [str(e) for e in epochs],
        _tick_positions(len(epochs)),
        limits=limits,
    )
    return fig


def across_members_heatmap(
    matrix: np.ndarray,
    members: Sequence[int],
    quantity: str,
    *,
    annotate_max: int = 10,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """Final-snapshot matrix [M, M] across members; cells are annotated when M <= annotate_max."""
    _check_quantity(quantity)
    matrix = np.asarray(matrix, dtype=float)
    name = NAMES[quantity]
    n = len(members)
    fig = _heatmap(
        matrix,
        quantity,
        f"{name} of final snapshots across members",
        "member",
        [f"m{m}" for m in members],
        np.arange(n),
        size=max(3.8, min(5.6, 0.6 * n + 2.5)),
        limits=limits,
    )
    if n <= annotate_max:
        ax = fig.axes[0]
        vmin, vmax = limits or _limits(quantity, matrix)
        for i in range(n):
            for j in range(n):
                dark = (matrix[i, j] - vmin) / (vmax - vmin) < 0.6
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=SMALL,
                    color="white" if dark else "black",
                )
    return fig


def full_heatmap(
    matrix: np.ndarray,
    members: Sequence[int],
    epochs: Sequence[int],
    quantity: str,
    *,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """The (members·epochs)² matrix, rows ordered member-major; lines separate the members.

    Ticks sit at each member's first and last snapshot (labelled `m<i> e<epoch>`) when there are
    few members, else at block centres (`m<i>`).
    """
    _check_quantity(quantity)
    matrix = np.asarray(matrix, dtype=float)
    M, E = len(members), len(epochs)
    if matrix.shape != (M * E, M * E):
        raise ValueError(f"matrix has shape {matrix.shape}, expected {(M * E, M * E)}")
    name = NAMES[quantity]
    fig = new_figure(7.4, 6.4)
    ax = fig.add_subplot()
    cbar_label, cmap = QUANTITIES[quantity]
    vmin, vmax = limits or _limits(quantity, matrix)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.85).set_label(cbar_label, fontsize=LABEL)
    for b in range(1, M):  # block separators between members
        ax.axhline(b * E - 0.5, color="white", lw=1.2)
        ax.axvline(b * E - 0.5, color="white", lw=1.2)
    centres = np.arange(M) * E + (E - 1) / 2
    ax.set_xticks(centres, [f"m{m}" for m in members])
    ax.set_yticks(centres, [f"m{m}" for m in members])
    ax.tick_params(length=0)
    ax.set_xlabel(f"member (each block: epochs {epochs[0]}-{epochs[-1]} in order)", fontsize=LABEL)
    ax.set_ylabel("member", fontsize=LABEL)
    ax.set_title(f"{name} between all snapshots of all members", fontsize=TITLE)
    return fig


def trajectory_figure(
    member: np.ndarray, epoch: np.ndarray, x: np.ndarray, y: np.ndarray, *, method: str = "t-SNE"
) -> Figure:
    """Function-space trajectories: one coloured line per member through its snapshots in epoch
    order; a circle marks the start (first epoch), a star the end (last epoch).

    member, epoch, x, y: [points], as in trajectories/tsne.csv and pca.csv.
    """
    member, epoch = np.asarray(member, dtype=int), np.asarray(epoch, dtype=int)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fig = new_figure(7.2, 6.0)
    ax = fig.add_subplot()
    for m in np.unique(member):
        rows = np.flatnonzero(member == m)
        rows = rows[np.argsort(epoch[rows], kind="stable")]
        c = member_color(int(m))
        ax.plot(x[rows], y[rows], "-", color=c, lw=1.5, marker=".", ms=5, label=f"member {m}")
        # Start/end as scatter collections so ax.lines holds exactly one line per member.
        ax.scatter(
            x[rows[0]],
            y[rows[0]],
            s=70,
            marker="o",
            facecolor="white",
            edgecolor=c,
            linewidth=2,
            zorder=3,
        )
        ax.scatter(
            x[rows[-1]],
            y[rows[-1]],
            s=180,
            marker="*",
            color=c,
            edgecolor="black",
            linewidth=0.6,
            zorder=3,
        )
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            mfc="white",
            mec="black",
            mew=2,
            ms=8,
            label=f"start (epoch {epoch.min()})",
        ),
        Line2D([], [], ls="", marker="*", color="black", ms=12, label=f"end (epoch {epoch.max()})"),
    ]
    ax.legend(handles=handles, fontsize=SMALL, loc="best", framealpha=0.85)
    ax.set_xlabel(f"{method} dimension 1", fontsize=LABEL)
    ax.set_ylabel(f"{method} dimension 2", fontsize=LABEL)
    ax.set_title(f"Trajectories in function space ({method} of predictions)", fontsize=TITLE)
    return fig


def family_styles(family: Sequence[str]) -> dict[str, CurveStyle]:
    """The default (colour, line style, label) of each ensemble family present in `family`:
    deep, snapshot, weight_average in their `FAMILY_COLORS`, then others in member colours."""
    present = set(np.asarray(family, dtype=str).tolist())
    order = [f for f in FAMILY_COLORS if f in present] + sorted(present - set(FAMILY_COLORS))
    return {
        fam: (FAMILY_COLORS.get(fam, member_color(i)), "-", FAMILY_LABELS.get(fam, fam))
        for i, fam in enumerate(order)
    }


def ensemble_curves_figure(
    family: Sequence[str],
    size: np.ndarray,
    metric: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    *,
    styles: Mapping[str, CurveStyle] | None = None,
    title: str = "Ensembles: metrics against ensemble size (mean ± std over subsets)",
) -> Figure:
    """Accuracy, NLL, Brier and ECE against ensemble size, one line per family, ±1 std bands.

    The arguments are the columns of ensembles/curves.csv (one row per family, size, metric).
    `styles` maps family -> (colour, line style, legend label) and fixes the drawing order;
    families it leaves out are not drawn. Default: deep, snapshot, weight_average in their
    `FAMILY_COLORS`, then any other family in a member colour.
    """
    family, metric = np.asarray(family, dtype=str), np.asarray(metric, dtype=str)
    size = np.asarray(size, dtype=int)
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    if styles is None:
        styles = family_styles(family)
    fig = new_figure(10.0, 7.4)
    axes = fig.subplots(2, 2).ravel()
    for ax, (name, (panel, ylabel, scale)) in zip(axes, METRIC_AXES.items()):
        for fam, (c, ls, label) in styles.items():
            rows = np.flatnonzero((family == fam) & (metric == name))
            rows = rows[np.argsort(size[rows])]
            if rows.size == 0:
                continue
            k, mu, sd = size[rows], mean[rows] * scale, std[rows] * scale
            ax.plot(k, mu, ls, marker="o", color=c, ms=4, lw=1.8, label=label)
            band = clip_to_domain(name, mu - sd), clip_to_domain(name, mu + sd)
            ax.fill_between(k, *band, color=c, alpha=0.14, lw=0)
        clip_axis(ax, name)
        ax.set_title(panel, fontsize=TITLE)
        ax.set_xlabel("ensemble size (models averaged)", fontsize=LABEL)
        ax.set_ylabel(ylabel, fontsize=LABEL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(left=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=SMALL, loc="lower right")
    fig.suptitle(title, fontsize=TITLE)
    return fig


def reliability_figure(diagrams: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Reliability diagrams side by side, one per entry of `diagrams`.

    Each value holds `edges` [B+1], `counts` [B], `accuracy` [B] (NaN for empty bins) and
    `confidence` [B], as in ensembles/reliability.json. Top: accuracy per confidence bin against
    the diagonal; bottom: how many examples fall in each bin. ECE is recomputed from the bins.
    """
    n = len(diagrams)
    fig = new_figure(4.6 * n + 0.4, 5.6)
    grid = fig.add_gridspec(2, n, height_ratios=[3, 1])
    for col, (title, d) in enumerate(diagrams.items()):
        edges = np.asarray(d["edges"], dtype=float)
        counts = np.asarray(d["counts"], dtype=float)
        acc = np.asarray(d["accuracy"], dtype=float)
        conf = np.asarray(d["confidence"], dtype=float)
        full = counts > 0
        ece = float(np.sum(counts[full] / counts.sum() * np.abs(acc[full] - conf[full])))
        width, left = np.diff(edges), edges[:-1]
        top = fig.add_subplot(grid[0, col])
        bottom = fig.add_subplot(grid[1, col], sharex=top)
        top.bar(
            left,
            np.where(full, acc, 0.0),
            width=width,
            align="edge",
            color="#4c72b0",
            edgecolor="white",
            label="accuracy in bin",
        )
        top.plot([0, 1], [0, 1], "--", color="black", lw=1, label="perfect calibration")
        top.scatter(
            conf[full],
            acc[full],
            s=12,
            color="#c44e52",
            zorder=3,
            label="(mean confidence, accuracy)",
        )
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy in bin", fontsize=LABEL)
        top.set_title(f"{title}\nECE {ece:.1%} (15 equal-width bins)", fontsize=TITLE - 1)
        top.tick_params(labelbottom=False)
        top.legend(fontsize=SMALL, loc="upper left")
        bottom.bar(left, counts, width=width, align="edge", color="#8c8c8c", edgecolor="white")
        bottom.set_xlabel("confidence (max softmax probability)", fontsize=LABEL)
        bottom.set_ylabel("examples", fontsize=LABEL)
        bottom.yaxis.set_major_locator(MaxNLocator(3, integer=True))
    return fig


def training_curves_figure(
    member: np.ndarray,
    epoch: np.ndarray,
    curves: Mapping[str, np.ndarray],
) -> Figure:
    """Loss and accuracy against epoch for every member (train solid, val dotted, test dashed).

    member, epoch: [rows]; curves: e.g. {"train_loss": [rows], "test_acc": [rows], ...} with NaN
    where a value does not exist (epoch 0 has no training loss).
    """
    member, epoch = np.asarray(member, dtype=int), np.asarray(epoch, dtype=int)
    fig = new_figure(11.0, 4.6)
    axes = fig.subplots(1, 2)
    styles = {"train": "-", "val": ":", "test": "--"}
    for ax, kind in zip(axes, ("loss", "acc")):
        for m in np.unique(member):
            rows = np.flatnonzero(member == m)
            rows = rows[np.argsort(epoch[rows])]
            for split, ls in styles.items():
                values = curves.get(f"{split}_{kind}")
                if values is None:
                    continue
                v = np.asarray(values, dtype=float)[rows] * (100.0 if kind == "acc" else 1.0)
                ok = np.isfinite(v)
                if ok.any():
                    ax.plot(epoch[rows][ok], v[ok], ls, color=member_color(int(m)), lw=1.4)
        ax.set_xlabel("epoch", fontsize=LABEL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy loss (nats)", fontsize=LABEL)
    axes[0].set_title("Loss", fontsize=TITLE)
    axes[1].set_ylabel("accuracy (%)", fontsize=LABEL)
    axes[1].set_title("Accuracy", fontsize=TITLE)
    present = [s for s in styles if any(f"{s}_{k}" in curves for k in ("loss", "acc"))]
    handles = [
        Line2D([], [], color=member_color(int(m)), lw=2, label=f"member {m}")
        for m in np.unique(member)
    ]
    handles += [Line2D([], [], color="black", ls=styles[s], label=s) for s in present]
    fig.legend(handles=handles, loc="outside right center", fontsize=SMALL)
    return fig


def distance_from_init_figure(
    distance: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> Figure:
    """L2 distance of every snapshot from its own member's first snapshot, against epoch.

    distance: [M·E, M·E] (weights/distance.npy), rows ordered member-major.
    """
    distance = np.asarray(distance, dtype=float)
    M, E = len(members), len(epochs)
    if distance.shape != (M * E, M * E):
        raise ValueError(f"distance has shape {distance.shape}, expected {(M * E, M * E)}")
    fig = new_figure(7.0, 4.6)
    ax = fig.add_subplot()
    for i, m in enumerate(members):
        row = distance[i * E, i * E : (i + 1) * E]
        ax.plot(epochs, row, "-o", ms=3, color=member_color(int(m)), label=f"member {m}")
    ax.set_xlabel("epoch", fontsize=LABEL)
    ax.set_ylabel(f"L2 distance from epoch-{epochs[0]} weights", fontsize=LABEL)
    ax.set_title("Distance travelled from initialisation", fontsize=TITLE)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=SMALL, ncols=2 if M > 5 else 1)
    return fig


def agreement_with_final_figure(
    agreement: np.ndarray, members: Sequence[int], epochs: Sequence[int]
) -> Figure:
    """Along each trajectory: agreement with its own final prediction (solid) and the mean
    agreement with the other members' final predictions (dashed), against epoch.

    agreement: [M·E, M] (functions/agreement_with_final.npy), rows ordered member-major.
    """
    agreement = np.asarray(agreement, dtype=float)
    M, E = len(members), len(epochs)
    if agreement.shape != (M * E, M):
        raise ValueError(f"agreement has shape {agreement.shape}, expected {(M * E, M)}")
    fig = new_figure(7.0, 4.6)
    ax = fig.add_subplot()
    for i, m in enumerate(members):
        rows = agreement[i * E : (i + 1) * E]
        color = member_color(int(m))
        ax.plot(epochs, 100 * rows[:, i], "-", color=color, label=f"member {m}: own final")
        if M > 1:
            others = np.delete(rows, i, axis=1).mean(axis=1)
            ax.plot(epochs, 100 * others, "--", color=color, alpha=0.8)
    ax.set_xlabel("epoch", fontsize=LABEL)
    ax.set_ylabel("agreement with final predictions (%)", fontsize=LABEL)
    ax.set_title("Where each trajectory goes in function space", fontsize=TITLE)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if M > 1:
        ax.plot([], [], "--", color="gray", label="mean over other members' finals")
    ax.legend(fontsize=SMALL, ncols=2 if M > 5 else 1)
    return fig


def figure_bytes(fig: Figure, fmt: str, scale: float = 1) -> bytes:
    """Render `fig` as "png" (at `scale` × DPI: 2 for high-density screens) or "pdf"; returns the
    file's bytes."""
    if fmt not in ("png", "pdf"):
        raise choice_error("figure format", fmt, ("png", "pdf"))
    buf = io.BytesIO()
    # Fixed metadata keeps PDFs byte-identical across runs (no creation date).
    meta = {"Software": None} if fmt == "png" else {"CreationDate": None, "Producer": None}
    fig.savefig(buf, format=fmt, dpi=DPI * scale, metadata=meta)
    return buf.getvalue()


def render_figure(fig: Figure, scale: float = 1) -> dict[str, bytes]:
    """{"png": ..., "pdf": ...} of `fig` (the PNG at `scale` × DPI); the PDF reuses the layout
    computed for the PNG.

    Constrained layout is about half the cost of a figure, and repeating it can move artists by
    a hair, so the layout is frozen after the first render: both files show the same layout.
    """
    png = figure_bytes(fig, "png", scale)
    fig.set_layout_engine("none")
    return {"png": png, "pdf": figure_bytes(fig, "pdf")}


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write `<stem>.png` and `<stem>.pdf` atomically; return both paths."""
    stem = Path(stem)
    paths = []
    for fmt, data in render_figure(fig).items():
        path = stem.with_name(f"{stem.name}.{fmt}")
        atomic_write_bytes(path, data)
        paths.append(path)
    return paths


__all__ = [
    "METRIC_DOMAIN",
    "across_members_heatmap",
    "clip_axis",
    "clip_to_domain",
    "distance_from_init_figure",
    "ensemble_curves_figure",
    "family_styles",
    "figure_bytes",
    "full_heatmap",
    "grid_axes",
    "member_color",
    "reliability_figure",
    "render_figure",
    "save_figure",
    "shared_limits",
    "training_curves_figure",
    "trajectory_figure",
    "within_trajectory_heatmap",
]
