"""The "Connectors" section: a low-loss curve between two members against the straight line
(Garipov et al. 2018), the functions along it (Fort, Hu & Lakshminarayanan 2019 v1: "connected
in loss, apart in function"), the plane it lies in, and ensembles of one connected region (curve
points, FGE) beside deep and snapshot ensembles and the subspace samplers. Reads
`<run>/connect/`; None when `modescape connect` has not run.
"""

from __future__ import annotations

import numpy as np

from modescape.report import references
from modescape.report.base import Plot, ReportContext, Section, StudyResults
from modescape.report.figures import connect as figs
from modescape.report.figures.described import described_plot
from modescape.report.wording import count
from modescape.store import schema as S

CONNECT = S.CONNECT


def _profile_plot(res: StudyResults, s: S.ConnectSummary) -> Plot:
    profile = figs.connect_profile(res.csv("profile.csv"), res.csv("line.csv"))
    caption = (
        f"Along t from {s.pair[0]} (t = 0) to {s.pair[1]} (t = 1): test error, training "
        "loss and agreement with each end, for the trained curve (solid) and the straight line "
        f"(dashed); {len(profile.curve.t)} values of t, BatchNorm: {s.bn_policy}."
    )
    return described_plot("connect_profile", profile, caption)


def _plane_plot(res: StudyResults, p: S.CurvePlane) -> Plot:
    maps = {
        column: res.npy(f"plane/{file}.npy")
        for column, file in (
            ("test_loss", "loss"),
            ("test_accuracy", "accuracy"),
            ("agreement_end0", "agreement_end0"),
            ("agreement_end1", "agreement_end1"),
        )
    }
    c = res.csv("plane/curve.csv")
    plane = figs.curve_plane(
        res.npy("plane/a.npy"),
        res.npy("plane/b.npy"),
        maps,
        p.anchor_coords,
        np.column_stack([c["a"], c["b"]]),
        np.column_stack([c["line_a"], c["line_b"]]),
        third="bend" if "bend" in p.third else "θ(0.5)",
    )
    caption = (
        f"The plane through the ends and the {p.third}: test loss, accuracy and agreement "
        f"with each end; the curve (solid) and the straight line (dashed) drawn on it. Largest "
        f"distance of a curve point from the plane: {p.max_off_plane:.3g} (weight-space L2)."
    )
    return described_plot("connect_plane", plane, caption)


def _ensembles(ctx: ReportContext, res: StudyResults) -> tuple[Plot, dict[str, float]]:
    e = res.csv("ensembles.csv")
    curves, best = {}, {}
    for kind, name in (("curve", "curve ensemble"), ("fge", "FGE")):
        sel = e["kind"] == kind
        if sel.any():
            curves[name] = (e["size"][sel], e["accuracy"][sel])
            best[name] = float(e["accuracy"][sel][-1])
    if ctx.has("ensembles/curves.csv"):
        c = ctx.csv("ensembles/curves.csv")
        for family, name in (("deep", "deep ensemble"), ("snapshot", "snapshot ensemble")):
            sel = (c["family"] == family) & (c["metric"] == "accuracy")
            if sel.any():
                curves[name] = (c["size"][sel], c["mean"][sel])
                best[name] = float(c["mean"][sel][-1])
    prof = res.csv("profile.csv")
    points = {"curve points": (1 - prof["test_error"], prof["diversity_nearer"])}
    if res.has("fge/points.csv"):
        f = res.csv("fge/points.csv")
        points["FGE"] = (f["accuracy"], f["diversity"])
    sub = ctx.study("subspace")
    if sub is not None and sub.has("plane.csv"):
        pl = sub.csv("plane.csv")
        for method in sorted(set(pl["method"][pl["kind"] == "sample"])):
            sel = (pl["kind"] == "sample") & (pl["method"] == method)
            points[f"subspace: {method}"] = (pl["accuracy"][sel], pl["norm_diversity"][sel])
        sel = pl["kind"] == "member"
        if sel.any():
            points["independent members"] = (pl["accuracy"][sel], pl["norm_diversity"][sel])
    caption = (
        "Left: test accuracy of ensembles against size: points along the curve (interior "
        "points t = (2i+1)/2k), FGE snapshots, and the deep and snapshot ensembles of the "
        "analysis. Right: the diversity–accuracy plane: each curve point's disagreement with the "
        "nearer end, each FGE snapshot's with its starting member, the subspace samples' and "
        "members' with member 0, each divided by the point's own test error."
    )
    ensembles = figs.ConnectEnsembles(curves, points)
    return described_plot("connect_ensembles", ensembles, caption), best


# Below this test-error barrier (2 points) a path counts as connected in loss: the threshold
# Frankle et al. (2020) use for linear mode connectivity, applied to the curve.
CONNECTED_BARRIER = 0.02


def _barrier_comparison(curve: float, line: float) -> str:
    """How the curve's barrier compares with the line's, in words that hold either way (compared
    as printed, in tenths of a point)."""
    c, ln = round(100 * curve, 1), round(100 * line, 1)
    if c < ln:
        return f"{line / curve:.1f}× lower" if c > 0 else "none left on the curve"
    if c == ln:
        return "the same"
    return "higher than the line's: the curve did not find a better path"


def connect_reading(s: S.ConnectSummary, best: dict[str, float]) -> list[str]:
    """The section's reading, in words generated from the numbers."""
    mid = s.midpoint
    ends_err = s.stats["test_error"]["max"] - s.error_barrier
    curve_b, line_b = s.error_barrier, s.line_error_barrier
    a, b = s.pair
    text = [
        f"A {s.config['shape']} curve with {s.config['bends']} bends (the two ends fixed) "
        f"was trained between {a} and {b} for {count(s.config['epochs'], 'epoch')} "
        f"({s.config['recipe']} recipe). Its test-error barrier is "
        f"{100 * curve_b:.1f} points against {100 * line_b:.1f} for the straight line "
        f"({_barrier_comparison(curve_b, line_b)}); its worst point errs on "
        f"{100 * s.stats['test_error']['max']:.1f}% of the test examples, the ends on "
        f"{100 * ends_err:.1f}% on average. It is {s.length:.1f} long in weight space, the "
        f"line {s.line_length:.1f}.",
    ]
    apart = (
        min(mid["disagreement_end0"], mid["disagreement_end1"]) >= 0.5 * mid["ends_disagreement"]
    )
    connected = curve_b < CONNECTED_BARRIER
    loss = (
        "connected in loss"
        if connected
        else f"not connected in loss (a barrier of {100 * curve_b:.1f} points remains)"
    )
    function = (
        "apart in function: the functions along the curve are not those of either end"
        if apart
        else "close in function: the curve's midpoint predicts much like one of the ends"
    )
    agrees = connected and apart
    text.append(
        f"At t = {mid['t']:.2f} the curve's network disagrees with {a} on "
        f"{100 * mid['disagreement_end0']:.1f}% and with {b} on "
        f"{100 * mid['disagreement_end1']:.1f}% of the test examples, while the ends disagree "
        f"with each other on {100 * mid['ends_disagreement']:.1f}%: {loss}, {function} — "
        + ("as the paper (v1) states." if agrees else "unlike the paper's claim (v1) for modes "
           "joined by such curves.")
    )  # fmt: skip
    if "curve ensemble" in best and "deep ensemble" in best:
        text.append(
            f"The largest ensemble of points along the curve reaches "
            f"{100 * best['curve ensemble']:.1f}% test accuracy, FGE "
            + (f"{100 * best['FGE']:.1f}%" if "FGE" in best else "(not run)")
            + f", the deep ensemble of all members {100 * best['deep ensemble']:.1f}%."
        )
    return text


def connect_section(ctx: ReportContext) -> Section | None:
    res = ctx.study(CONNECT)
    if res is None:
        return None
    s: S.ConnectSummary = res.summary
    best: dict[str, float] = {}
    plots = [_profile_plot(res, s)]
    if s.plane is not None and res.has("plane/curve.csv"):
        plots.append(_plane_plot(res, s.plane))
    if res.has("ensembles.csv"):
        plot, best = _ensembles(ctx, res)
        plots.append(plot)
    mid = s.midpoint
    this_run = (
        f"curve {100 * s.stats['test_error']['min']:.2f}-"
        f"{100 * s.stats['test_error']['max']:.2f}% (line up to "
        f"{100 * s.line_stats['test_error']['max']:.2f}%)"
    )
    apart = (
        f"midpoint disagrees with the ends on {100 * mid['disagreement_end0']:.1f}% / "
        f"{100 * mid['disagreement_end1']:.1f}% (ends: {100 * mid['ends_disagreement']:.1f}%)"
    )
    table = references.section_table(
        ctx, CONNECT,
        [("connect_vgg16", this_run), ("connect_preresnet", this_run),
         ("connect_functions", apart)],
        "Test error along the curve (min-max over t) against Garipov et al. (2018), Table 1.",
    )  # fmt: skip
    return Section(
        "connect",
        "Connectors: connected in loss, apart in function",
        connect_reading(s, best),
        plots,
        [table],
        reproduces="Garipov et al. (2018), Figure 1 and Table 1 (curves between modes); Fort et "
        "al. (2019) v1, the low-loss tunnel between optima and its predictions.",
    )
