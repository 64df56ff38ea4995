"""The instability section: children spawned from one member at several points of its training
(Frankle et al. 2020, arXiv:1912.05671; Fort et al. 2020, arXiv:2010.15110). Reads what
`modescape spawn` wrote to `<spawn run>/instability/`; computes nothing itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from modescape.report.base import Plot, ReportContext, Section
from modescape.report.figures.described import charted_plot, described_plot
from modescape.report.figures.spawn import Instability, spawn_trajectories
from modescape.report.wording import warned
from modescape.store import schema as S


def instability_caption(s: S.InstabilitySummary) -> str:
    """The caption of the instability CSV: what each measure is, the references it lists."""
    alphas = s.settings.get("alphas", "evenly spaced")  # as measured, not Frankle's default
    refs = [n for n, lv in (("within a trajectory", s.within),
                            ("across initialisations", s.across)) if lv is not None]  # fmt: skip
    return (
        "Between the children of each spawn point (mean over pairs): error and loss barrier on "
        f"the straight line ({alphas} evenly spaced points), disagreement, JS diversity, weight "
        "cosine and L2 distance"
        + (f"; then the reference{'s' if len(refs) > 1 else ''} ({', '.join(refs)})." if refs
           else "; no reference pair (see the notes).")
    )  # fmt: skip


def instability_plots(
    s: S.InstabilitySummary, coords: np.ndarray | None, index: np.ndarray | None
) -> list[Plot]:
    """The barrier/disagreement figure (with its CSV and charts) and, when written, the joint
    embedding of the children's and the parent's trajectories."""
    figure = Instability.from_summary(s)
    caption = (
        "Error barrier and disagreement between children spawned at each point, against the "
        "spawn point; dashed: the same measures within one trajectory and across "
        f"initialisations; dotted: the {figure.threshold:.0%} stability threshold (Frankle et "
        "al. 2020)"
        + ("" if s.onset is None else f"; vertical line: stable from epoch {s.onset:g}")
        + "; the spawn-point axis is linear up to the first spawn point after 0 (at most epoch "
        "1) and logarithmic beyond."
    )
    plots = [charted_plot("instability", figure, caption, data_caption=instability_caption(s))]
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
