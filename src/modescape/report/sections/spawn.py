"""The instability section: children spawned from one member at several points of its training
(Frankle et al. 2020, arXiv:1912.05671; Fort et al. 2020, arXiv:2010.15110). Reads what
`modescape spawn` wrote to `<spawn run>/instability/`; computes nothing itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from modescape.report.base import (
    Plot,
    ReportContext,
    Section,
    Table,
)
from modescape.report.figures.described import described_plot
from modescape.report.figures.spawn import (
    instability_chart_figure,
    instability_charts,
    spawn_trajectories,
)
from modescape.report.wording import frac, sig, warned
from modescape.store import schema as S

MEASURES = ("error_barrier", "loss_barrier", "disagreement", "js", "cosine", "l2")


def instability_table(s: Any, name: str = "instability") -> Table:
    """One row per spawn point, then the two references: the numbers of the figure."""
    header = ["group", "spawn_epoch", "spawn_step", *MEASURES, "error_barrier_max", "pairs",
              "mean_child_accuracy"]  # fmt: skip
    rows = []
    groups = [(f"spawn {p.at:g}", p.at, p.step, p.level) for p in s.points]
    groups += [("within a trajectory", None, None, s.within)]
    groups += [("across initialisations", None, None, s.across)]
    for label, at, step, lv in groups:
        if lv is None:
            continue
        numbers = [sig(lv.l2) if k == "l2" else frac(getattr(lv, k)) for k in MEASURES]
        rows.append([label, at, step, *numbers, frac(lv.error_barrier_max), lv.pairs,
                     frac(float(np.mean(lv.accuracy)))])  # fmt: skip
    alphas = s.settings.get("alphas", "evenly spaced")  # as measured, not Frankle's default
    refs = [n for n, lv in (("within a trajectory", s.within),
                            ("across initialisations", s.across)) if lv is not None]  # fmt: skip
    caption = (
        "Between the children of each spawn point (mean over pairs): error and loss barrier on "
        f"the straight line ({alphas} evenly spaced points), disagreement, JS diversity, weight "
        "cosine and L2 distance"
        + (f"; then the reference{'s' if len(refs) > 1 else ''} ({', '.join(refs)})." if refs
           else "; no reference pair (see the notes).")
    )  # fmt: skip
    return Table(name, header, rows, caption)


def instability_plots(s: Any, coords: np.ndarray | None, index: np.ndarray | None) -> list[Plot]:
    """The barrier/disagreement figure (with its CSV and chart) and, when written, the joint
    embedding of the children's and the parent's trajectories."""
    ref = {
        name: None if lv is None else {"error_barrier": lv.error_barrier,
                                       "disagreement": lv.disagreement}
        for name, lv in (("within", s.within), ("across", s.across))
    }  # fmt: skip
    values = {
        "error_barrier": [p.level.error_barrier for p in s.points],
        "disagreement": [p.level.disagreement for p in s.points],
    }
    threshold = float(s.settings.get("threshold", 0.02))
    charts = instability_charts(
        [p.at for p in s.points], values, ref["within"], ref["across"], threshold, s.onset
    )
    fig = instability_chart_figure(charts)
    caption = (
        "Error barrier and disagreement between children spawned at each point, against the "
        "spawn point; dashed: the same measures within one trajectory and across "
        f"initialisations; dotted: the {threshold:.0%} stability threshold (Frankle et al. 2020)"
        + ("" if s.onset is None else f"; vertical line: stable from epoch {s.onset:g}")
        + "; the spawn-point axis is linear up to the first spawn point after 0 (at most epoch "
        "1) and logarithmic beyond."
    )
    plots = [
        Plot(
            "instability",
            fig,
            caption,
            data=instability_table(s, "instability_points"),
            charts=charts,
        )
    ]
    if coords is not None and index is not None:
        method = str(s.settings.get("embed", "pca")).upper().replace("TSNE", "t-SNE")
        caption = (
            "The parent's and the children's trajectories in function space, one joint "
            f"{method} of their test predictions; circles mark starts, squares ends."
        )
        trajectories = spawn_trajectories(coords, index, method)
        plots.append(described_plot("spawn_trajectories", trajectories, caption))
    return plots


def instability_reading(s: Any) -> list[str]:
    """The finding in words (written by the study) and what the references mean."""
    text = [s.reading]
    text.append(
        f"Children of member {s.member} of {s.parent} ({s.children} per spawn point) train "
        "from the parent's weights and optimiser state at the spawn point to the end of its "
        "schedule, each with its own data order, augmentation and dropout."
    )
    return text + warned(list(getattr(s, "warnings", None) or []))


def instability_section_from(s: Any, coords: Any = None, index: Any = None) -> Section:
    return Section(
        "instability", "When training commits to a mode: spawned children",
        reading=instability_reading(s), figures=instability_plots(s, coords, index),
        reproduces="Frankle et al. (2020), Figure 3 (instability against the spawn step)",
    )  # fmt: skip


def instability_section(ctx: ReportContext) -> Section | None:
    """The section of a spawn run measured by `modescape spawn` / `modescape instability`."""
    res = ctx.study(S.INSTABILITY)
    if res is None:
        return None
    coords = index = None
    if res.has(S.INSTABILITY_TRAJECTORIES) and res.has(S.INSTABILITY_TRAJECTORY_INDEX):
        coords = res.npy(S.INSTABILITY_TRAJECTORIES)
        index = res.npy(S.INSTABILITY_TRAJECTORY_INDEX)
    return instability_section_from(res.summary, coords, index)
