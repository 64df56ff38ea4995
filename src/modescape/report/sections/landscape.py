"""The loss-landscape section: planes through three weight vectors (Fort et al. 2019, the
loss-landscape plane), barriers along linear paths and the permutation alignment of two
members. Reads `<run>/landscape/` through `ctx.study`; None when `modescape landscape` has not run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modescape.report import references
from modescape.report.base import Plot, ReportContext, Section, StudyResults, Table
from modescape.report.figures import landscape as landscape_figures
from modescape.report.figures.described import charted_plot, described_plot
from modescape.report.figures.landscape import LinearPath, LinearPaths
from modescape.report.wording import frac, join, num, pct, sig, warned
from modescape.store import schema as S

LINE_COLUMNS = ("alpha", "error", "loss")  # of landscape/paths.csv, per path


def landscape_section(ctx: ReportContext) -> Section | None:
    res = ctx.study(S.LANDSCAPE)
    if res is None:
        return None
    s: S.LandscapeSummary = res.summary
    reading, plots, valleys = [], [], []
    for plane in s.planes:
        plot, text, valley = _plane_plot(res, plane)
        plots.append(plot)
        reading.append(text)
        valleys += valley
    if s.paths and res.has(S.LANDSCAPE_PATHS):
        c = res.csv(S.LANDSCAPE_PATHS)
        drawn = []
        for p in s.paths:
            sel = np.flatnonzero(c["path"] == p.name)
            sel = sel[np.argsort(c["alpha"][sel])]
            alpha, error, loss = (np.asarray(c[k][sel], dtype=float) for k in LINE_COLUMNS)
            drawn.append(
                LinearPath(p.name, p.kind, alpha, error, loss, p.error_barrier, p.loss_barrier)
            )
        caption = (
            "Test error and loss along straight lines between two sets of weights; the "
            "barrier is the highest value minus the mean of the two endpoints."
        )
        plots.append(charted_plot("landscape_paths", LinearPaths(drawn), caption))
    names = (
        "Anchors: origin is the zero vector, m<i> member i's final weights, m<i>@e<k> its "
        "weights after epoch k, init<i> its initialisation, wa<i> its weight average."
    )
    reading[:0] = [names, *paths_text(s.paths, s.alignment), *warned(s.warnings)]
    if not plots:
        return None
    rows = [
        [p.name, p.kind, p.from_, p.to, frac(p.error_barrier), sig(p.loss_barrier)] for p in s.paths
    ]
    tables = [_comparison(ctx, s, valleys)]
    if rows:
        tables.append(
            Table(
                "landscape_paths",
                ["path", "kind", "from", "to", "error_barrier", "loss_barrier"],
                rows,
                "Barriers along linear paths.",
            )
        )
    return Section(
        "landscape",
        "Loss-landscape cross-sections",
        reading,
        plots,
        tables,
        reproduces="Fort et al. (2019), the loss-landscape figure (a radial cut through the origin "
        "and two "
        "independent optima: loss, accuracy and agreement with each optimum); barriers along "
        "linear paths as in Frankle et al. (2020).",
    )


def _comparison(ctx: ReportContext, s: S.LandscapeSummary, valleys: list[str]) -> Table:
    across = [float(p.error_barrier) for p in s.paths if p.kind == "across members"]
    within = [float(p.error_barrier) for p in s.paths if p.kind == "within trajectory"]
    this_run = "; ".join(valleys) if valleys else "no plane with two members' agreement maps"
    if across and within:
        this_run += (
            f"; error barrier between members {max(across):.3f}, within one trajectory "
            f"{max(within):.3f} (largest of each kind)"
        )
    return references.section_table(ctx, "landscape", [("landscape_valleys", this_run)])


def _plane_plot(res: StudyResults, plane: S.PlaneEntry) -> tuple[Plot, str, list[str]]:
    d = plane.dir
    anchors = res.json(f"{d}/{S.PLANE_ANCHORS}")
    names = list(anchors["names"])
    agreements = {
        n: res.npy(f"{d}/{_agreement_file(n)}")
        for n in names
        if res.has(f"{d}/{_agreement_file(n)}")
    }
    a, b = res.npy(f"{d}/a.npy"), res.npy(f"{d}/b.npy")
    loss, accuracy = res.npy(f"{d}/loss.npy"), res.npy(f"{d}/accuracy.npy")
    f = f"{d}/{S.PLANE_TRAJECTORIES}"
    traj = res.csv(f) if res.has(f) else None
    description = landscape_figures.landscape_plane(
        a,
        b,
        loss,
        accuracy,
        agreements,
        anchors,
        traj,
        title=f"Plane through {join(names)} ({plane.resolution}² points, "
        f"BatchNorm: {plane.bn_policy})",
    )
    refs = list(agreements)
    diff = (
        f" Agreement with {refs[0]} minus agreement with {refs[1]} is drawn on a diverging "
        "scale (red: closer to the first); the agreement maps share one data-driven range."
        if len(refs) >= 2
        else ""
    )
    caption = (
        f"Plane through {join(names)}; stars: the anchors; lines: every snapshot of each "
        f"member projected onto the plane (circle: first snapshot).{diff}"
    )
    plot = described_plot(f"landscape_{plane.name}", description, caption)
    text, valley = _plane_text(plane, description)
    return plot, text, valley


def _agreement_file(anchor: str) -> str:
    """agreement_<anchor>.npy, with '@' (as in m0@e5) written as '_' like landscape_study does."""
    return f"agreement_{anchor.replace('@', '_')}.npy"


# An error barrier below 2 points counts as linearly connected (Frankle et al. 2020).
SEPARATING_BARRIER = 0.02


def _points_up(barrier: float) -> str:
    p = 100 * barrier
    if p <= 0:
        return f"never rises above the mean of its endpoints' errors (error barrier {barrier:.3f})"
    if p < 0.05:
        return "rises by less than 0.1 points above the endpoints' mean error"
    return f"rises by {p:.1f} points above the endpoints' mean error (error barrier {barrier:.3f})"


def _change(before: float, after: float, what: str) -> str:
    """'lowers the error barrier (0.202 → 0.067)' / 'raises ...' / 'leaves ... unchanged'."""
    verb = "lowers" if after < before else ("raises" if after > before else "leaves")
    tail = " unchanged" if after == before else ""
    return f"{verb} the {what}{tail} ({before:.3f} → {after:.3f})"


def paths_text(paths: list[S.PathEntry], alignment: S.AlignmentRecord | None) -> list[str]:
    text = [
        f"Between {p.from_} and {p.to} ({p.kind}) the test error "
        f"{_points_up(float(p.error_barrier))}; loss barrier {float(p.loss_barrier):.3f}."
        for p in paths
    ]
    across = [float(p.error_barrier) for p in paths if p.kind == "across members"]
    within = [float(p.error_barrier) for p in paths if p.kind == "within trajectory"]
    if across and within:
        if min(across) > max(within):
            # "different regions" only with a barrier that counts (Frankle et al. 2020's 2%)
            apart = min(across) >= SEPARATING_BARRIER
            text.append(
                "Every path between members crosses a higher error barrier than every path "
                "within one trajectory"
                + (
                    ": the members sit in different low-loss regions."
                    if apart
                    else f", but the lowest between members ({100 * min(across):.1f} points) is "
                    f"below {100 * SEPARATING_BARRIER:.0f} points: linearly connected all the same."
                )
            )
        else:
            text.append(
                "Some path within a trajectory has an error barrier at least as high as a path "
                "between members here."
            )
    if alignment is not None:
        i, j = alignment.members
        cb, ca = alignment.cosine_before, alignment.cosine_after
        eb, ea = num(alignment.error_barrier_before), alignment.error_barrier_after
        line = (
            f"Permuting member {j}'s units to match member {i}'s{alignment_how(alignment)} "
            "(its function is unchanged: "
            f"probabilities move by at most {alignment.max_abs_prob_diff:.1e}) "
            f"{'raises' if ca > cb else 'does not raise'} the cosine similarity of their "
            f"weights ({cb:.3f} → {ca:.3f}), {_change(eb, ea, 'error barrier')}"
        )
        if alignment.loss_barrier_before is not None:
            lb, la = alignment.loss_barrier_before, alignment.loss_barrier_after
            line += f" and {_change(lb, la, 'loss barrier')} between them."
            if (ea < eb and la > lb) or (ea > eb and la < lb):
                line += " The two barriers move in opposite directions: read both."
        else:
            line += " between them (the loss barrier was not recorded)."
        text.append(line)
    return text


def alignment_how(alignment: S.AlignmentRecord) -> str:
    """How the permutation was found, where it is not the default (weight matching on the
    automatic or built-in spec): ' by activation matching', ' (permutations from spec.json)'."""
    how = " by activation matching" if alignment.method == "activations" else ""
    spec = alignment.spec
    if spec not in (None, "built-in", "automatic"):
        how += f" (permutations from the spec file {Path(str(spec)).name})"
    return how


def _plane_text(plane: S.PlaneEntry, p: landscape_figures.LandscapePlane) -> tuple[str, list[str]]:
    """The plane's reading, and for the comparison table each reference's agreement at the
    other reference ('agreement with m0 at m1: 31%')."""
    names, agreements, a, b = p.anchor_names, p.agreements, p.a, p.b
    loss = ", ".join(f"{n} {float(v):.3f}" for n, v in zip(names, p.anchor_loss))  # type: ignore[arg-type]
    text = f"Plane {plane.name}: test loss at the anchors {loss}."
    at: dict[str, tuple[int, int]] = {}
    for name, (x, y) in zip(names, p.anchor_coords):
        # the grid point nearest to the anchor (anchored grids put it on a node)
        at[name] = (int(np.abs(b - y).argmin()), int(np.abs(a - x).argmin()))
    valley = []
    for name, agr in agreements.items():
        high = float(np.mean(agr >= 0.9))
        others = []
        for other in names:
            if other != name and other in agreements:
                v = float(agr[at[other]])
                others.append(f"at {other} it is {pct(v, 0)}")
                valley.append(f"agreement with {name} at {other}: {pct(v, 0)}")
        text += (
            f" Agreement with {name}'s predictions is 90% or more on {pct(high, 0)} of the "
            f"plane" + (f"; {join(others)}." if others else ".")
        )
    refs = list(agreements)
    if len(refs) >= 2:
        text += " " + _difference_text(refs[0], refs[1], agreements, at)
    return text, valley


def _difference_text(
    first: str, second: str, agreements: dict, at: dict[str, tuple[int, int]]
) -> str:
    """How the plane splits between the two references (the figure's diverging panel)."""
    diff = np.asarray(agreements[first], dtype=float) - np.asarray(agreements[second], dtype=float)
    d1, d2 = float(diff[at[first]]), float(diff[at[second]])
    return (
        f"Agreement with {first} minus agreement with {second} is {100 * d1:+.0f} points at "
        f"{first} and {100 * d2:+.0f} at {second}; the plane agrees more with {first} on "
        f"{pct(float(np.mean(diff > 0)), 0)} of its points and more with {second} on "
        f"{pct(float(np.mean(diff < 0)), 0)}."
    )
