"""The report sections of the analysis study (`modescape analyze`): weight space, function
space, trajectories, ensembles and training curves (the paper's Figures 2-5). Each is a function
of a `ReportContext` returning a `Section` or None; their places on the page are declared in the
study's registry entry (`modescape.registry`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modescape.report import references
from modescape.report.base import Plot, ReportContext, Section, Table
from modescape.report.figures import heatmap
from modescape.report.figures.curves import (
    AgreementWithFinal,
    DistanceFromInit,
    EnsembleCurves,
    TrainingCurves,
)
from modescape.report.figures.data import rounded
from modescape.report.figures.described import charted_plot, described_plot
from modescape.report.figures.embedding import Trajectories
from modescape.report.figures.reliability import reliability_diagrams
from modescape.report.sections.run import curve_value
from modescape.report.wording import count, near_one, pct, points, warned
from modescape.store import schema as S

dataset_name = references.run_dataset
compare = references.section_table


# ---- sections -------------------------------------------------------------------------------
def weight_section(ctx: ReportContext) -> Section | None:
    if not ctx.has(S.COSINE):
        return None
    s, M, E = ctx.summary, ctx.members, ctx.epochs
    cos = ctx.npy(S.COSINE)
    late_min = float(np.min(s.cosine.consecutive_late_min_per_member))
    sel = s.parameters
    reading = [
        f"Cosine similarity of one flat vector of {sel.count:,} raw parameters "
        f"(selection '{sel.selection}'; BatchNorm running statistics are never included)."
    ]
    if len(M) > 1:
        across = s.cosine.across_members_mean
        late = near_one(late_min)
        shape = ""
        if abs(across) < 0.1:
            shape = " (nearly orthogonal)"
        elif abs(across) > 0.5:
            shape = " (far from orthogonal)"
        if late_min > across:
            contrast = f"while consecutive late snapshots of one trajectory have at least {late}"
        else:
            contrast = (
                f"and consecutive late snapshots of one trajectory are no more similar ({late})"
            )
        reading.append(
            f"Final weights of different members have cosine similarity {across:.2f} on average"
            f"{shape}, {contrast}."
        )
    else:
        reading.append(f"Consecutive late snapshots reach cosine similarity {near_one(late_min)}.")
    plots = _matrix_plots(
        "cosine", cos, M, E, "Every snapshot against every other; white lines separate members."
    )
    if ctx.has(S.DISTANCE):
        distance = DistanceFromInit.from_matrix(ctx.npy(S.DISTANCE), M, E)
        caption = "How far each member's weights move from their initial values."
        plots.append(charted_plot("distance_from_init", distance, caption))
    cos_20_40 = _cosine_20_40(cos, M, E)
    rows = [
        ("cosine_members", cosine_members_cell(s, M)),
        (
            "cosine_late",
            f"{cos_20_40:.3f}" if cos_20_40 is not None else "n/a (no epochs 20 and 40)",
        ),
    ]
    return Section(
        "weights",
        "Weight space",
        reading,
        plots,
        [compare(ctx, "weights", rows)],
        reproduces="Fort et al. (2019), Figure 2 (left: cosine similarity along one trajectory) "
        "and Figure 3 (left: cosine similarity across independent members).",
    )


def cosine_members_cell(s: S.AnalysisSummary, M: list[int]) -> str:
    """The members' mean cosine, with the weights it is over when they are not the seed
    notebooks' selection (kernels and BatchNorm scales), which the seed rows were computed on."""
    if len(M) < 2:
        return "n/a"
    value = f"{s.cosine.across_members_mean:.3f}"
    selection = s.parameters.selection
    if selection in (None, "kernels_bn"):
        return value
    return (
        f"{value} (over {selection} parameters; the seed notebooks' cosines are over kernels "
        "and BatchNorm scales: analyze --params kernels_bn)"
    )


def _cosine_20_40(cos: np.ndarray, M: list[int], E: list[int]) -> float | None:
    """Mean over members of cos(epoch 20, epoch 40) within one trajectory (the seed's number)."""
    if 20 not in E or 40 not in E:
        return None
    i, j, n = E.index(20), E.index(40), len(E)
    return float(np.mean([cos[k * n + i, k * n + j] for k in range(len(M))]))


def _matrix_plots(
    quantity: str, matrix: np.ndarray, M: list[int], E: list[int], caption: str
) -> list[Plot]:
    """The (members·epochs)² heatmap, the members' finals and member M[0]'s own trajectory, all
    on one colour scale: a reader compares the trajectory's block with the members' matrix."""
    finals = np.arange(len(M)) * len(E) + len(E) - 1
    members_m = matrix[np.ix_(finals, finals)]
    own = matrix[: len(E), : len(E)]
    limits = heatmap.shared_limits(quantity, matrix, members_m, own)
    scale = f" Colour scale {limits[0]:.2f}–{limits[1]:.2f}, shared by the three {quantity} maps."
    maps = [(f"{quantity}_all", heatmap.full_heatmap(matrix, M, E, quantity, limits=limits),
             caption)]  # fmt: skip
    if len(M) > 1:
        across = heatmap.across_members_heatmap(members_m, M, quantity, limits=limits)
        maps.append((f"{quantity}_members", across, "Final snapshots of the members."))
    own_map = heatmap.within_trajectory_heatmap(own, E, quantity, member=M[0], limits=limits)
    maps.append(
        (f"{quantity}_trajectory", own_map, f"Snapshots of member {M[0]} against each other.")
    )
    return [described_plot(name, h, text + scale, data_caption=text) for name, h, text in maps]


def function_section(ctx: ReportContext) -> Section | None:
    if not ctx.has(S.DISAGREEMENT):
        return None
    s, M, E = ctx.summary, ctx.members, ctx.epochs
    dis = ctx.npy(S.DISAGREEMENT)
    d = s.disagreement
    error = 1 - s.single["accuracy"]
    late = f"the last {d.late_window} snapshots of one trajectory"
    js = s.js_diversity
    if len(M) > 1:
        across, within = d.across_members_mean, d.late_within_mean
        reading = [
            f"Independent members disagree on {pct(across)} of {s.split} points; {late} on "
            f"{pct(within)}. The mean member's error rate is {pct(error)}, so "
            f"members disagree on {across / error:.2f}× as many points as the mean member gets "
            "wrong."
            if error > 0
            else f"Independent members disagree on {pct(across)} of points; {late} on "
            f"{pct(within)}.",
            (
                f"Predictions of different members differ {across / within:.1f}× more than late "
                "snapshots of one trajectory: independent initialisations reach functions one "
                "trajectory does not."
                if within > 0 and across > within
                else "Late snapshots of one trajectory disagree at least as much as independent "
                "members do here; the trajectories may not have converged."
            ),
            f"Jensen-Shannon diversity: {js.members:.3f} nats across members' final "
            f"predictions, {js.late_snapshots_mean:.3f} across {late} (mean over members).",
        ]
    else:
        reading = [f"One member only: {late} disagree on {pct(d.late_within_mean)}."]
    reading += warned([w for w in s.warnings if w.startswith("late window")])
    plots = _matrix_plots(
        "disagreement",
        dis,
        M,
        E,
        "Fraction of points where two snapshots predict different classes.",
    )
    if ctx.has(S.AGREEMENT_WITH_FINAL):
        plots.append(_agreement_with_final_plot(ctx.npy(S.AGREEMENT_WITH_FINAL), M, E))
    rows = [
        ("disagreement_members", f"{d.across_members_mean:.3f}" if len(M) > 1 else "n/a"),
        (
            "disagreement_late",
            f"{d.late_within_mean:.3f}"
            + ("" if d.late_window == 10 else f" (last {d.late_window} snapshots)"),
        ),
    ]
    return Section(
        "functions",
        "Function space",
        reading,
        plots,
        [compare(ctx, "functions", rows)],
        reproduces="Fort et al. (2019), Figure 2 (middle: disagreement along one trajectory) "
        "and Figure 3 (right: disagreement across independent members).",
    )


def _agreement_with_final_plot(agreement: np.ndarray, M: list[int], E: list[int]) -> Plot:
    caption = (
        "Each snapshot's agreement (1 − disagreement) with its own member's final "
        "predictions (solid) and with the other members' (dashed, mean)."
    )
    lines = AgreementWithFinal.from_matrix(agreement, M, E)
    return charted_plot("agreement_with_final", lines, caption)


def trajectory_section(ctx: ReportContext) -> Section | None:
    plots, reading = [], []
    emb = ctx.summary.embeddings
    tsne = emb.get("tsne", {})
    tsne_warnings = list(tsne.get("warnings") or [])
    # A t-SNE of few points or a collapsed one says little: the PCA picture leads then.
    pca_first = bool(tsne.get("lead_with_pca")) or bool(tsne_warnings)
    order = [("tsne", "t-SNE"), ("pca", "PCA")]
    for method, label in order[::-1] if pca_first else order:
        if not ctx.has(S.TRAJECTORY_CSV.format(method=method)):
            continue
        t = Trajectories.from_columns(ctx.csv(S.TRAJECTORY_CSV.format(method=method)), label)
        caption = f"{label} of all snapshots, one fit; circle: first snapshot, star: last."
        plots.append(described_plot(f"trajectories_{method}", t, caption, charts=[t.chart]))
    if not plots:
        return None
    info = emb.get("tsne") or emb.get("pca") or {}
    reading.append(
        f"Each point is one snapshot, represented by its softmax outputs on "
        f"{info.get('n_examples', 0):,} {ctx.summary.split} examples; all "
        f"{info.get('n_points', '?')} snapshots are embedded in one joint fit."
    )
    if pca_first:
        why = "; ".join(tsne_warnings) or "the embedding was flagged as unreliable"
        reading.append(
            f"The t-SNE picture says little here ({why}), so the PCA picture comes first; "
            "read the t-SNE one, if at all, only for which points are neighbours."
        )
    if "tsne" in emb:
        reading.append(
            f"t-SNE (perplexity {_g(tsne.get('perplexity'))}"
            f"{', clamped for the number of points' if tsne.get('perplexity_clamped') else ''}, "
            f"seed {tsne.get('seed', '?')}) keeps neighbours together but its distances are "
            "not to scale; compare which trajectories end near each other, not how far apart."
        )
    ratio = emb.get("pca", {}).get("explained_variance_ratio")
    if ratio:
        reading.append(
            f"PCA is linear: its two axes explain {pct(ratio[0])} and {pct(ratio[1])} of the "
            "variance of the predictions."
        )
    rows = [("trajectories_modes", _ends_apart(ctx))]
    return Section(
        "trajectories",
        "Trajectories in function space",
        reading,
        plots,
        [compare(ctx, "trajectories", rows)],
        reproduces="Fort et al. (2019), Figure 2 (right: t-SNE of the predictions along "
        "trajectories from independent initialisations); the seed notebooks' t-SNE.",
    )


def _ends_apart(ctx: ReportContext) -> str:
    """This run's side of the comparison in the run's own numbers (not the t-SNE picture, whose
    distances are not to scale): how far apart the ends are compared to one trajectory's end."""
    d = ctx.summary.disagreement
    if len(ctx.members) < 2:
        return "one member only"
    ratio = f"{d.across_members_mean / d.late_within_mean:.1f}×" if d.late_within_mean > 0 else "∞×"
    return (
        f"final predictions of two members disagree {ratio} as much as the late snapshots of "
        "one trajectory"
    )


def ensemble_section(ctx: ReportContext) -> Section | None:
    if not ctx.has(S.ENSEMBLE_CURVES):
        return None
    c = ctx.csv(S.ENSEMBLE_CURVES)
    caption = (
        "Mean ± standard deviation over member subsets (deep) or members (snapshot, "
        "weight average)."
    )
    plots = [charted_plot("ensemble_curves", EnsembleCurves.from_columns(c), caption)]
    if ctx.has(S.RELIABILITY):
        diagrams = reliability_diagrams(ctx.json(S.RELIABILITY))
        caption = "Accuracy against confidence; bottom: examples per bin."
        plots.append(described_plot("reliability", diagrams, caption))
    header = ["family", "size"] + [
        f"{mt}_{x}" for mt in ("accuracy", "nll", "brier", "ece") for x in ("mean", "std")
    ]
    table = Table("ensembles", header, _ensemble_rows(c), "Metrics against ensemble size.")
    return Section(
        "ensembles",
        "Ensembles",
        _ensemble_reading(ctx),
        plots,
        [_ensemble_comparison(ctx), table],
        reproduces="Fort et al. (2019), the ensemble-size figures (accuracy, Brier score and "
        "calibration "
        "against ensemble size: independent members vs ensembles from one trajectory); the "
        "seed notebooks' ensemble curves.",
    )


def _ensemble_comparison(ctx: ReportContext) -> Table:
    s, M = ctx.summary, len(ctx.members)
    k = s.ensemble_size_compared
    deep_10 = curve_value(ctx, "deep", 10)
    gap = s.ensemble["deep_k"]["accuracy"] - s.ensemble["snapshot_k"]["accuracy"]
    shown = round(100 * gap, 1)  # the word follows the number as printed ("0.0 points ahead")
    where = "ahead of" if shown > 0 else ("level with" if shown == 0 else "behind")
    rows = [
        ("single_accuracy", f"{pct(s.single['accuracy'], 2)} (mean of {M})"),
        (
            "deep_10_accuracy",
            pct(deep_10) if deep_10 is not None else f"n/a ({count(M, 'member')})",
        ),
        (
            "deep_beats_snapshot",
            f"{k} independent members {abs(shown):.1f} points {where} the last {k} "
            "snapshots of one trajectory",
        ),
    ]
    return compare(ctx, "ensembles", rows)


def _ensemble_reading(ctx: ReportContext) -> list[str]:
    s = ctx.summary
    e, single, M = s.ensemble, s.single, len(ctx.members)
    k = s.ensemble_size_compared
    deep, snap, deep_k = e["deep"], e["snapshot_k"], e["deep_k"]
    n_avg = len(s.weight_average.epochs_averaged)
    wa_n = f"the last {n_avg}" if n_avg else "the last"
    base = single["accuracy"]
    wa = e["weight_average"]
    verdict = "."
    if deep["ece"] != single["ece"]:
        verdict = " (better calibrated)." if deep["ece"] < single["ece"] else " (worse calibrated)."
    return [
        f"A {M}-member deep ensemble reaches {pct(deep['accuracy'])} accuracy vs "
        f"{pct(base)} for the mean single member (it {points(deep['accuracy'] - base)}); "
        f"NLL {deep['nll']:.3f} vs {single['nll']:.3f}, "
        f"Brier {deep['brier']:.3f} vs {single['brier']:.3f}."
        if M > 1
        else f"With one member there is no deep ensemble: the member reaches {pct(base)} "
        f"accuracy, NLL {single['nll']:.3f}, Brier {single['brier']:.3f}.",
        f"A snapshot ensemble of the last {count(k, 'snapshot')} of one trajectory reaches "
        f"{pct(snap['accuracy'])} (mean over members; it {points(snap['accuracy'] - base)} "
        f"relative to the mean single member), against {pct(deep_k['accuracy'])} for "
        f"{count(k, 'independent member')}. Averaging the weights of {wa_n} snapshots gives "
        f"one model with {pct(wa['accuracy'])} (mean over members; it "
        f"{points(wa['accuracy'] - base)}).",
        *warned([w for w in s.warnings if w.startswith("weight average")]),
        f"Calibration (ECE, 15 equal-width bins): {pct(single['ece'])} for the mean single "
        f"member, {pct(deep['ece'])} for the deep ensemble"
        + verdict
        + " Bars above the diagonal in the reliability diagram mean under-confidence.",
    ]


def _ensemble_rows(c: dict[str, np.ndarray]) -> list[list[Any]]:
    rows = []
    for fam in dict.fromkeys(c["family"]):
        for size in sorted({int(x) for x in c["size"][c["family"] == fam]}):
            sel = (c["family"] == fam) & (c["size"] == size)
            vals = {
                str(mt): (mu, sd)
                for mt, mu, sd in zip(c["metric"][sel], c["mean"][sel], c["std"][sel])
            }
            row = [str(fam), size]
            for mt in ("accuracy", "nll", "brier", "ece"):
                mu, sd = vals.get(mt, (None, None))
                row += [rounded(mt, mu), rounded(mt, sd)]
            rows.append(row)
    return rows


def training_section(ctx: ReportContext) -> Section | None:
    if not ctx.has(S.TRAINING_CURVES):
        return None
    c = ctx.csv(S.TRAINING_CURVES)
    training = TrainingCurves.from_columns(c)  # loss, accuracy
    keys = list(training.curves)
    last = c["epoch"] == c["epoch"].max()
    reading = []
    if {"train_acc", "test_acc"} <= set(keys):
        tr, te = np.nanmean(c["train_acc"][last]), np.nanmean(c["test_acc"][last])
        reading.append(
            f"After the last epoch members average {pct(tr)} training accuracy and "
            f"{pct(te)} test accuracy (gap {100 * (tr - te):.1f} points; training accuracy "
            "is measured during the epoch, with dropout)."
        )
    styles = {"train": "solid", "test": "dashed", "val": "dotted"}
    shown = [f"{ls} {split}" for split, ls in styles.items() if f"{split}_loss" in keys]
    caption = f"Per member: {', '.join(shown)}."
    plots = [charted_plot("training_curves", training, caption)]
    return Section(
        "training",
        "Training curves",
        reading,
        plots,
        reproduces="The seed notebooks' training logs (loss and accuracy per epoch); the paper "
        "trains 40 epochs with a learning rate halved every 10.",
    )


def _g(x: Any) -> str:
    return "?" if x is None else f"{float(x):.3g}"
