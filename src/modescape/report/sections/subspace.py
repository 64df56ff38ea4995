"""The report section of the subspace study (`modescape subspace`, the paper's section 4): the
diversity–accuracy plane, the samplers' t-SNE, JS diversity and ensembles. It reads the study's
folder and typed summary through `ctx.study("subspace")` and returns None when the study has not
run; its wording helpers are `sections/subspace_text.py`. Nothing is computed here that the
study should have written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modescape.report import references
from modescape.report.base import Plot, ReportContext, Section, Table
from modescape.report.figures import analysis as figures
from modescape.report.figures import studies as figures_study
from modescape.report.figures.curves import EnsembleCurves
from modescape.report.figures.described import charted_plot, described_plot
from modescape.report.figures.embedding import sampler_embeddings
from modescape.report.figures.studies import DiversityAccuracyPlane
from modescape.report.sections import subspace_text
from modescape.report.wording import count, frac, join, num, pct, sig, span, warned
from modescape.store import schema as S


def _curve_at(c: dict[str, np.ndarray], family: str, metric: str, size: int) -> float:
    sel = (c["family"] == family) & (c["metric"] == metric) & (c["size"] == size)
    return float(c["mean"][sel][0]) if sel.any() else math.nan


def subspace_section(ctx: ReportContext) -> Section | None:
    res = ctx.study(S.SUBSPACE)
    if res is None:
        return None
    s: S.SubspaceSummary = res.summary
    methods = [m for m in s.config["methods"] if m in s.plane]
    plane = res.csv(S.SUBSPACE_PLANE)
    norm = subspace_text.NORMALISATION_WORDS.get(s.normalisation, s.normalisation)
    reading = [
        subspace_text.where_drawn(s, methods)
        + f" In the diversity–accuracy plane the reference is member {s.reference} "
        f"({pct(s.reference_accuracy)} accuracy); a point's height is how often it disagrees "
        f"with the reference, divided by {norm} (1.0: as many disagreements as errors)."
    ]
    reading += subspace_text.mode_reading(s, methods)
    reading += subspace_text.lowrank_note(s, methods)
    reading += subspace_text.every_reference_reading(s, methods)
    reading += _plane_reading(s, methods, plane)
    reading += _subspace_js_reading(s, methods, plane)
    c = res.csv(S.SUBSPACE_CURVES) if res.has(S.SUBSPACE_CURVES) else None
    if c is not None:
        reading += _subspace_ensemble_reading(c, methods)
    reading += warned(s.warnings)
    plots = [_subspace_plane_plot(s, plane)]
    panels = {m: res.csv(f) for m in methods if res.has(f := S.SUBSPACE_TSNE.format(method=m))}
    if panels:
        embedding = sampler_embeddings(panels)
        reading += subspace_text.tsne_reading(embedding)
        reading += subspace_text.tsne_notes(s.tsne, list(panels))
        caption = (
            "One joint t-SNE per sampler of all snapshots and that sampler's samples "
            "(softmax outputs on a fixed set of test examples); circle: first snapshot, star: "
            "final snapshot, squares: the samples drawn around it; distances are not to scale."
        )
        plots.append(described_plot("subspace_tsne", embedding, caption))
    if c is not None:
        caption = (
            "Dashed: the average of k samples around one member (mean ± std over members); "
            "solid: ensembles of k members' models (mean ± std over subsets). Bands are "
            "clipped to each metric's range."
        )
        curves = EnsembleCurves.from_columns(c, subspace=True)
        plots.append(charted_plot("subspace_ensembles", curves, caption))
    plots.append(_subspace_js_plot(s, methods))
    tables = [
        _comparison(ctx, s, methods, c),
        _subspace_table(s, methods, plane),
        subspace_text.calibration_table(s, methods),
        subspace_text.every_reference_table(s, methods),
    ]
    return Section(
        "subspace",
        "Subspace sampling",
        reading,
        plots,
        [t for t in tables if t is not None],
        reproduces="Fort et al. (2019): the t-SNE of trajectories with subspace samples, "
        "the diversity–accuracy plane and the ensembles of subspace models; the authors' "
        "notebook's samplers and normalisation.",
    )


def _comparison(
    ctx: ReportContext,
    s: S.SubspaceSummary,
    methods: list[str],
    c: dict[str, np.ndarray] | None,
) -> Table:
    by_norm = s.every_reference.get(s.normalisation) or {}
    members = by_norm.get("independent")
    norm_div = (
        f"{num(members.mean):.2f} ± {num(members.std):.2f} (every member as reference)"
        if members is not None and not math.isnan(num(members.mean))
        else "n/a"
    )
    best = [num(s.plane[m].best_sample_norm_div) for m in methods]
    best = [b for b in best if not math.isnan(b)]
    band = (
        f"most diverse sample near the reference's accuracy: {max(best):.2f}"
        if best
        else "no sample near the reference's accuracy"
    )
    rows = [("norm_diversity_members", norm_div), ("subspace_band", band)]
    if c is not None:
        M = int(c["size"][c["family"] == "deep"].max()) if (c["family"] == "deep").any() else 0
        deep = _curve_at(c, "deep", "accuracy", M)
        alone = {m: _curve_at(c, m, "accuracy", M) for m in methods}
        alone = {m: v for m, v in alone.items() if not math.isnan(v)}
        if M and alone:
            top = max(alone, key=alone.get)
            rows.append(
                (
                    "deep_beats_subspace",
                    f"{M} members {pct(deep)}; {M} samples around one member at most "
                    f"{pct(alone[top])} ({figures_study.method_label(top)}, mean over members)",
                )
            )
    return references.section_table(ctx, "subspace", rows)


def _subspace_plane_plot(s: S.SubspaceSummary, plane: dict[str, np.ndarray]) -> Plot:
    # No reference curves when the reference is no better than chance (a very short run).
    points = DiversityAccuracyPlane.from_columns(
        plane, s.reference, s.reference_accuracy, s.reference_curves
    )
    caption = (
        "Every sample around the reference and every other member; dashed: expected "
        "for errors independent of the reference's, dotted: the reference with a growing "
        "share of its predictions replaced by random classes."
    )
    return charted_plot("subspace_plane", points, caption)


def _subspace_js_plot(s: S.SubspaceSummary, methods: list[str]) -> Plot:
    js = s.js_diversity
    bars = {
        "independent members": js["independent_members"],
        "late snapshots": js["late_snapshots"],
    }
    colors: dict[str, Any] = {
        "independent members": figures.FAMILY_COLORS["deep"],
        "late snapshots": figures.FAMILY_COLORS["snapshot"],
    }
    for i, m in enumerate(methods):
        bars[figures_study.method_label(m)] = js[m]
        colors[figures_study.method_label(m)] = figures_study.method_color(m, i)
    caption = (
        "Jensen–Shannon diversity of the members' final predictions, of one trajectory's "
        f"last {s.late_window} snapshots (mean over members), and of each sampler's samples "
        "(mean over members)."
    )
    return described_plot("subspace_js", figures_study.JsDiversityBars(bars, colors), caption)


def _subspace_table(
    s: S.SubspaceSummary, methods: list[str], plane: dict[str, np.ndarray]
) -> Table:
    rows = []
    for m in methods:
        p = s.plane[m]
        acc = plane["accuracy"][(plane["kind"] == "sample") & (plane["method"] == m)]
        rows.append(
            [
                m,
                p.n_samples,
                p.n_within_tol,
                frac(p.best_sample_norm_div),
                frac(p.best_sample_acc),
                frac(acc.min()),
                frac(acc.max()),
                sig(s.js_diversity[m]),
            ]
        )
    header = [
        "sampler",
        "samples",
        f"within_{100 * s.plane[methods[0]].tol:g}_points",
        "best_norm_diversity",
        "best_norm_diversity_accuracy",
        "lowest_accuracy",
        "highest_accuracy",
        "js_diversity",
    ]
    err = "own" if s.normalisation == "sample" else "reference"
    caption = (
        f"Samples around member {s.reference}, against its accuracy {pct(s.reference_accuracy)} "
        f"({s.mode} sampler settings; normalised diversity: D / {err} error)."
    )
    return Table("subspace", header, rows, caption)


def _plane_reading(
    s: S.SubspaceSummary, methods: list[str], plane: dict[str, np.ndarray]
) -> list[str]:
    first = s.plane[methods[0]]
    tol, a_star = f"{100 * first.tol:g}", first.ref_acc
    members = [float(d) for d in first.member_norm_div if d is not None]
    close, far = [], []
    for m in methods:
        p = s.plane[m]
        label = figures_study.method_label(m)
        if p.n_within_tol:
            close.append(
                f"{label} {pct(num(p.best_sample_norm_div), 0)} ({p.n_within_tol} of "
                f"{p.n_samples} samples that close)"
            )
        else:
            acc = plane["accuracy"][(plane["kind"] == "sample") & (plane["method"] == m)]
            far.append(f"{label} ({span([100 * a for a in acc], '{:.1f}')}%)")
    text = []
    if close:
        text.append(
            f"At accuracy within {tol} points of the reference ({pct(a_star)}), the most diverse "
            f"sample of each sampler disagrees with the reference on this share of its own "
            f"errors: {join(close)}."
        )
    if far:
        text.append(
            f"No sample of the {join(far)} comes within {tol} points of the reference's "
            "accuracy (ranges: the samples' accuracies)."
        )
    if members:
        best = [num(s.plane[m].best_sample_norm_div) for m in methods]
        best = [b for b in best if not math.isnan(b)]
        line = (
            f"Independent members reach {span([100 * d for d in members], '{:.0f}')}% "
            f"(normalised diversity {span(members)})"
        )
        if not best:
            line += ", with no sample at comparable accuracy to compare against."
        elif max(best) < min(members):
            line += ": no sample near the reference's accuracy is as diverse as any of them."
        else:
            beaten = sum(d <= max(best) for d in members)
            line += (
                f": the most diverse sample near the reference's accuracy "
                f"({max(best):.2f}) is at least as diverse as {count(beaten, 'member')}."
            )
        text.append(line)
    return text


def _subspace_js_reading(
    s: S.SubspaceSummary, methods: list[str], plane: dict[str, np.ndarray]
) -> list[str]:
    js = s.js_diversity
    parts = [f"{figures_study.method_label(m)} {js[m]:.3g}" for m in methods]
    text = (
        f"Jensen–Shannon diversity: independent members {js['independent_members']:.3g}, one "
        f"trajectory's last {s.late_window} snapshots {js['late_snapshots']:.3g}; samples of "
        f"{join(parts)}."
    )
    above = [m for m in methods if js[m] > js["independent_members"]]
    if above and len(s.members) > 1:
        # the plane's samples are drawn around the reference only: compare them with the
        # reference's own accuracy, not with the mean member
        worse = []
        for m in above:
            acc = float(
                plane["accuracy"][(plane["kind"] == "sample") & (plane["method"] == m)].mean()
            )
            if acc < s.reference_accuracy:
                worse.append(f"{figures_study.method_label(m)} {pct(acc)}")
        if worse:
            text += (
                f" Samplers more diverse than the members buy it with accuracy: their samples "
                f"around member {s.reference} average {join(worse)}, against "
                f"{pct(s.reference_accuracy)} for member {s.reference} itself."
            )
    return [text]


def _subspace_ensemble_reading(c: dict[str, np.ndarray], methods: list[str]) -> list[str]:
    deep_sizes = c["size"][c["family"] == "deep"]
    if deep_sizes.size == 0:
        return []
    M = int(deep_sizes.max())
    deep = _curve_at(c, "deep", "accuracy", M)
    ens = {m: _curve_at(c, f"{m}+ensemble", "accuracy", M) for m in methods}
    ens = {m: v for m, v in ens.items() if not math.isnan(v)}
    if not ens:
        return []
    best = max(ens, key=ens.get)
    gap = ens[best] - deep
    if abs(gap) < 0.0005:
        where = "is level with the deep ensemble."
    else:
        where = f"is {abs(100 * gap):.1f} points {'ahead of' if gap > 0 else 'behind'} it."
    text = (
        f"With {count(M, 'member')}, the deep ensemble reaches {pct(deep)} accuracy; "
        f"ensembles of subspace models reach {span([100 * v for v in ens.values()], '{:.1f}')}%; "
        f"the best ({figures_study.method_label(best)}, {pct(ens[best])}) {where}"
    )
    alone = {m: _curve_at(c, m, "accuracy", M) for m in methods}
    alone = {m: v for m, v in alone.items() if not math.isnan(v)}
    if alone:
        top = max(alone, key=alone.get)
        text += (
            f" The average of {M} samples around one member reaches at most "
            f"{pct(alone[top])} ({figures_study.method_label(top)}, mean over members), "
            f"against {pct(_curve_at(c, 'deep', 'accuracy', 1))} for the mean single member."
        )
    return [text]
