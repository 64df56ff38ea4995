"""Report sections of the follow-up studies: loss landscape, subspace sampling and dataset shift
(the paper's sections 3-5). Each reads its own results folder and typed summary through
`ctx.study(name)` and returns None when that study has not been run (`modescape landscape`,
`subspace`, `shift`). Nothing is computed here that a study should have written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modescape.report import figures, subspace_text
from modescape.report import study_figures as figures_study
from modescape.report.base import (
    Plot,
    ReportContext,
    Section,
    StudyResults,
    Table,
    _count,
    _join,
    _num,
    _pct,
    _ratio,
    _severity_name,
    _span,
    _warned,
    _where,
)
from modescape.studies import schema as S


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
        f"{s.config['n_samples']} weight vectors per sampler are drawn around each member's "
        f"final weights. In the diversity–accuracy plane the reference is member {s.reference} "
        f"({_pct(s.reference_accuracy)} accuracy); a point's height is how often it disagrees "
        f"with the reference, divided by {norm} (1.0: as many disagreements as errors)."
    ]
    reading += subspace_text.mode_reading(s, methods)
    reading += subspace_text.every_reference_reading(s, methods)
    reading += _plane_reading(s, methods, plane)
    reading += _subspace_js_reading(s, methods, plane)
    c = res.csv(S.SUBSPACE_CURVES) if res.has(S.SUBSPACE_CURVES) else None
    if c is not None:
        reading += _subspace_ensemble_reading(c, methods)
    reading += _warned(s.warnings)
    plots = [_subspace_plane_plot(s, plane)]
    panels = {m: res.csv(f) for m in methods if res.has(f := S.SUBSPACE_TSNE.format(method=m))}
    if panels:
        reading += subspace_text.tsne_notes(s.tsne, list(panels))
        plots.append(
            Plot(
                "subspace_tsne",
                figures_study.subspace_tsne_figure(panels),
                "One joint t-SNE per sampler of all snapshots and that sampler's samples "
                "(softmax outputs on a fixed set of test examples); distances are not to scale.",
            )
        )
    if c is not None:
        plots.append(
            Plot(
                "subspace_ensembles",
                figures_study.subspace_ensembles_figure(
                    c["family"], c["size"], c["metric"], c["mean"], c["std"]
                ),
                "Dashed: the average of k samples around one trajectory (mean ± std over "
                "members); solid: ensembles of k members' models (mean ± std over subsets).",
            )
        )
    plots.append(_subspace_js_plot(s, methods))
    tables = [
        _subspace_table(s, methods, plane),
        subspace_text.calibration_table(s, methods),
        subspace_text.every_reference_table(s, methods),
    ]
    return Section(
        "subspace", "Subspace sampling", reading, plots, [t for t in tables if t is not None]
    )


def _subspace_plane_plot(s: S.SubspaceSummary, plane: dict[str, np.ndarray]) -> Plot:
    # No reference curves when the reference is no better than chance (a very short run).
    curves = s.reference_curves or {"accuracy": [], "upper": [], "lower": []}
    figure = figures_study.diversity_accuracy_figure(
        plane["kind"],
        plane["method"],
        plane["member"],
        plane["accuracy"],
        plane["norm_diversity"],
        reference_member=s.reference,
        reference_accuracy=s.reference_accuracy,
        curve_accuracy=np.asarray(curves["accuracy"]),
        upper=np.asarray(curves["upper"], dtype=float),
        lower=np.asarray(curves["lower"], dtype=float),
    )
    return Plot(
        "subspace_plane",
        figure,
        "Every sample around the reference and every other member; dashed: expected "
        "for errors independent of the reference's, dotted: the reference with a growing "
        "share of its predictions replaced by random classes.",
    )


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
    return Plot(
        "subspace_js",
        figures_study.js_diversity_figure(bars, colors),
        "Jensen–Shannon diversity of the members' final predictions, of one trajectory's "
        f"last {s.late_window} snapshots (mean over members), and of each sampler's samples "
        "(mean over members).",
    )


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
                p["n_samples"],
                p["n_within_tol"],
                _num(p["best_sample_norm_div"]),
                _num(p["best_sample_acc"]),
                float(acc.min()),
                float(acc.max()),
                s.js_diversity[m],
            ]
        )
    header = [
        "sampler",
        "samples",
        f"within {100 * s.plane[methods[0]]['tol']:g} points",
        "best normalised diversity",
        "its accuracy",
        "lowest accuracy",
        "highest accuracy",
        "JS diversity",
    ]
    err = "own" if s.normalisation == "sample" else "reference"
    caption = (
        f"Samples around member {s.reference}, against its accuracy {_pct(s.reference_accuracy)} "
        f"({s.mode} sampler settings; normalised diversity: D / {err} error)."
    )
    return Table("subspace", header, rows, caption)


def _plane_reading(
    s: S.SubspaceSummary, methods: list[str], plane: dict[str, np.ndarray]
) -> list[str]:
    first = s.plane[methods[0]]
    tol, a_star = f"{100 * first['tol']:g}", first["ref_acc"]
    members = [float(d) for d in first["member_norm_div"] if d is not None]
    close, far = [], []
    for m in methods:
        p = s.plane[m]
        label = figures_study.method_label(m)
        if p["n_within_tol"]:
            close.append(
                f"{label} {_pct(_num(p['best_sample_norm_div']), 0)} ({p['n_within_tol']} of "
                f"{p['n_samples']} samples that close)"
            )
        else:
            acc = plane["accuracy"][(plane["kind"] == "sample") & (plane["method"] == m)]
            far.append(f"{label} ({_span([100 * a for a in acc], '{:.1f}')}%)")
    text = []
    if close:
        text.append(
            f"At accuracy within {tol} points of the reference ({_pct(a_star)}), the most diverse "
            f"sample of each sampler disagrees with the reference on this share of its own "
            f"errors: {_join(close)}."
        )
    if far:
        text.append(
            f"No sample of the {_join(far)} comes within {tol} points of the reference's "
            "accuracy (ranges: the samples' accuracies)."
        )
    if members:
        best = [_num(s.plane[m]["best_sample_norm_div"]) for m in methods]
        best = [b for b in best if not math.isnan(b)]
        line = (
            f"Independent members reach {_span([100 * d for d in members], '{:.0f}')}% "
            f"(normalised diversity {_span(members)})"
        )
        if not best:
            line += ", with no sample at comparable accuracy to compare against."
        elif max(best) < min(members):
            line += ": no sample near the reference's accuracy is as diverse as any of them."
        else:
            beaten = sum(d <= max(best) for d in members)
            line += (
                f": the most diverse sample near the reference's accuracy "
                f"({max(best):.2f}) is at least as diverse as {_count(beaten, 'member')}."
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
        f"{_join(parts)}."
    )
    above = [m for m in methods if js[m] > js["independent_members"]]
    if above and len(s.members) > 1:
        member_acc = plane["accuracy"][plane["kind"] == "member"]
        mean_member = float(np.mean([s.reference_accuracy, *member_acc]))
        worse = []
        for m in above:
            acc = float(
                plane["accuracy"][(plane["kind"] == "sample") & (plane["method"] == m)].mean()
            )
            if acc < mean_member:
                worse.append(f"{figures_study.method_label(m)} {_pct(acc)}")
        if worse:
            text += (
                f" Samplers more diverse than the members buy it with accuracy: their samples "
                f"average {_join(worse)}, against {_pct(mean_member)} for a member."
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
        f"With {_count(M, 'member')}, the deep ensemble reaches {_pct(deep)} accuracy; "
        f"ensembles of subspace models reach {_span([100 * v for v in ens.values()], '{:.1f}')}%; "
        f"the best ({figures_study.method_label(best)}, {_pct(ens[best])}) {where}"
    )
    alone = {m: _curve_at(c, m, "accuracy", M) for m in methods}
    alone = {m: v for m, v in alone.items() if not math.isnan(v)}
    if alone:
        top = max(alone, key=alone.get)
        text += (
            f" {M} samples around a single trajectory reach at most {_pct(alone[top])} "
            f"({figures_study.method_label(top)})."
        )
    return [text]


def landscape_section(ctx: ReportContext) -> Section | None:
    res = ctx.study(S.LANDSCAPE)
    if res is None:
        return None
    s: S.LandscapeSummary = res.summary
    reading, plots = [], []
    for plane in s.planes:
        plot, text = _plane_plot(res, plane)
        plots.append(plot)
        reading.append(text)
    if s.paths and res.has(S.LANDSCAPE_PATHS):
        c = res.csv(S.LANDSCAPE_PATHS)
        drawn = []
        for p in s.paths:
            sel = np.flatnonzero(c["path"] == p.name)
            sel = sel[np.argsort(c["alpha"][sel])]
            drawn.append(p.to_dict() | {k: c[k][sel] for k in ("alpha", "loss", "error")})
        plots.append(
            Plot(
                "landscape_paths",
                figures_study.paths_figure(drawn),
                "Test error and loss along straight lines between two sets of weights; the "
                "barrier is the highest value minus the mean of the two endpoints.",
            )
        )
    names = (
        "Anchors: origin is the zero vector, m<i> member i's final weights, m<i>@e<k> its "
        "weights after epoch k, init<i> its initialisation, wa<i> its weight average."
    )
    reading[:0] = [names, *_paths_text(s.paths, s.alignment), *_warned(s.warnings)]
    if not plots:
        return None
    rows = [[p.name, p.kind, p.from_, p.to, p.error_barrier, p.loss_barrier] for p in s.paths]
    tables = [
        Table(
            "landscape_paths",
            ["path", "kind", "from", "to", "error barrier", "loss barrier"],
            rows,
            "Barriers along linear paths.",
        )
    ]
    return Section(
        "landscape", "Loss-landscape cross-sections", reading, plots, tables if rows else []
    )


def _plane_plot(res: StudyResults, plane: S.PlaneEntry) -> tuple[Plot, str]:
    d = plane.dir
    anchors = res.json(f"{d}/{S.PLANE_ANCHORS}")
    names = list(anchors["names"])
    agreements = {
        n: res.npy(f"{d}/{_agreement_file(n)}")
        for n in names
        if res.has(f"{d}/{_agreement_file(n)}")
    }
    a, b = res.npy(f"{d}/a.npy"), res.npy(f"{d}/b.npy")
    coords = np.asarray(anchors["coords"], dtype=float)
    f = f"{d}/{S.PLANE_TRAJECTORIES}"
    traj = res.csv(f) if res.has(f) else None
    figure = figures_study.landscape_plane_figure(
        a,
        b,
        res.npy(f"{d}/loss.npy"),
        res.npy(f"{d}/accuracy.npy"),
        agreements,
        names,
        coords,
        traj,
        title=f"Plane through {_join(names)} ({plane.resolution}² points, "
        f"BatchNorm: {plane.bn_policy})",
    )
    plot = Plot(
        f"landscape_{plane.name}",
        figure,
        f"Plane through {_join(names)}; stars: the anchors; lines: every snapshot of "
        "each member projected onto the plane (circle: first snapshot).",
    )
    return plot, _plane_text(plane, anchors, agreements, a, b)


def _agreement_file(anchor: str) -> str:
    """agreement_<anchor>.npy, with '@' (as in m0@e5) written as '_' like landscape_study does."""
    return f"agreement_{anchor.replace('@', '_')}.npy"


def _points_up(barrier: float) -> str:
    p = 100 * barrier
    if p <= 0:
        return f"never rises above the mean of its endpoints' errors (error barrier {barrier:.3f})"
    if p < 0.05:
        return "rises by less than 0.1 points above the endpoints' mean error"
    return f"rises by {p:.1f} points above the endpoints' mean error (error barrier {barrier:.3f})"


def _paths_text(paths: list[S.PathEntry], alignment: dict | None) -> list[str]:
    text = [
        f"Between {p.from_} and {p.to} ({p.kind}) the test error "
        f"{_points_up(float(p.error_barrier))}; loss barrier {float(p.loss_barrier):.3f}."
        for p in paths
    ]
    across = [float(p.error_barrier) for p in paths if p.kind == "across members"]
    within = [float(p.error_barrier) for p in paths if p.kind == "within trajectory"]
    if across and within:
        if min(across) > max(within):
            text.append(
                "Every path between members crosses a higher error barrier than every path "
                "within one trajectory: the members sit in different low-loss regions."
            )
        else:
            text.append(
                "Some path within a trajectory has an error barrier at least as high as a path "
                "between members here."
            )
    if alignment:
        i, j = alignment["members"]
        cb, ca = float(alignment["cosine_before"]), float(alignment["cosine_after"])
        eb, ea = float(alignment["error_barrier_before"]), float(alignment["error_barrier_after"])
        text.append(
            f"Permuting member {j}'s units to match member {i}'s (its function is unchanged: "
            f"probabilities move by at most {float(alignment['max_abs_prob_diff']):.1e}) "
            f"{'raises' if ca > cb else 'does not raise'} the cosine similarity of their "
            f"weights ({cb:.3f} → {ca:.3f}) and {'lowers' if ea < eb else 'does not lower'} "
            f"the error barrier between them ({eb:.3f} → {ea:.3f})."
        )
    return text


def _plane_text(
    plane: S.PlaneEntry, anchors: dict, agreements: dict, a: np.ndarray, b: np.ndarray
) -> str:
    names = list(anchors["names"])
    coords = np.asarray(anchors["coords"], dtype=float)
    loss = ", ".join(f"{n} {float(v):.3f}" for n, v in zip(names, anchors["loss"]))
    text = f"Plane {plane.name}: test loss at the anchors {loss}."
    for name, agr in agreements.items():
        high = float(np.mean(agr >= 0.9))
        others = []
        for other, (x, y) in zip(names, coords):
            if other != name and other in agreements:
                # Agreement at the grid point nearest to the other anchor.
                v = agr[int(np.abs(b - y).argmin()), int(np.abs(a - x).argmin())]
                others.append(f"at {other} it is {_pct(float(v), 0)}")
        text += (
            f" Agreement with {name}'s predictions is 90% or more on {_pct(high, 0)} of the "
            f"plane" + (f"; {_join(others)}." if others else ".")
        )
    return text


SHIFT_FAMILY_COLORS = {
    "single": "#8fb3e0",
    "ensemble": figures.FAMILY_COLORS["deep"],
    "weight_average": figures.FAMILY_COLORS["weight_average"],
}


def shift_section(ctx: ReportContext) -> Section | None:
    res = ctx.study(S.SHIFT)
    if res is None:
        return None
    s: S.ShiftSummary = res.summary
    by = s.by_severity
    sevs = [int(v) for v in by.severities]
    c = res.csv(S.SHIFT_METRICS)
    ens_sizes = c["size"][c["family"] == "ensemble"]
    K = int(ens_sizes.max()) if ens_sizes.size else 0
    subspaces = [f for f in dict.fromkeys(c["family"]) if f.startswith("subspace_")]
    styles = _shift_styles(len(s.members), K, subspaces)
    keep = (c["family"] != "ensemble") | (c["size"] == K)
    plots = [
        Plot(
            "shift_boxplots",
            figures_study.shift_boxplot_figure(
                c["severity"][keep],
                c["family"][keep],
                c["metric"][keep],
                c["mean"][keep],
                styles,
            ),
            f"Each box: the {len(s.corruptions)} corruptions at one severity (median, quartiles, "
            "whiskers to 1.5 IQR); clean is one value per family.",
        )
    ]
    js_styles = {
        "members": (figures.FAMILY_COLORS["deep"], "independent members"),
        S.SHIFT_LATE_FAMILY: (
            figures.FAMILY_COLORS["snapshot"],
            f"member {s.members[0]}'s last {s.late_window} snapshots",
        ),
        "weight_average": (
            figures.FAMILY_COLORS["weight_average"],
            "weight averages of the members",
        ),
    }
    js_styles |= {f: (styles[f][0], f"{styles[f][1]}'s samples") for f in subspaces}
    plots.append(
        Plot(
            "shift_diversity",
            figures_study.shift_diversity_figure(sevs, by.js, js_styles),
            "Jensen–Shannon diversity within each family, averaged over corruptions.",
        )
    )
    if s.example_corruptions and res.has(S.SHIFT_EXAMPLES):
        plots.append(
            Plot(
                "shift_examples",
                figures_study.corruption_strip_figure(
                    res.npy(S.SHIFT_EXAMPLES), s.example_corruptions
                ),
                "The first test example under each corruption (as generated for the sweep).",
            )
        )
    reading = _shift_reading(s, K, subspaces) + _warned(s.warnings)
    return Section("shift", "Dataset shift", reading, plots, [_shift_table(by, K, subspaces)])


def _shift_styles(M: int, K: int, subspaces: list[str]) -> dict[str, tuple[Any, str]]:
    """family -> (colour, label) of the box plots."""
    styles: dict[str, tuple[Any, str]] = {
        "single": (SHIFT_FAMILY_COLORS["single"], f"single member (mean of {M})")
    }
    if K:
        styles["ensemble"] = (SHIFT_FAMILY_COLORS["ensemble"], f"ensemble of {K} members")
    styles["weight_average"] = (
        SHIFT_FAMILY_COLORS["weight_average"],
        "weight average (mean over members)",
    )
    for i, f in enumerate(subspaces):
        m = f.removeprefix("subspace_")
        styles[f] = (figures_study.method_color(m, i), f"{figures_study.method_label(m)} model")
    return styles


def _shift_table(by: S.BySeverity, K: int, subspaces: list[str]) -> Table:
    metrics = by.metrics
    keys = ["single", f"ensemble_{K}" if K else "", "weight_average", *subspaces]
    rows = [[k, mt, *metrics[k][mt]] for k in keys if k in metrics for mt in metrics[k]]
    rows += [[f, "js", *v] for f, v in by.js.items()]
    return Table(
        "shift",
        ["family", "metric", *(_severity_name(int(v)) for v in by.severities)],
        rows,
        "Means over corruptions per severity.",
    )


def _shift_reading(s: S.ShiftSummary, K: int, subspaces: list[str]) -> list[str]:
    by = s.by_severity
    sevs, m, js = [int(v) for v in by.severities], by.metrics, by.js
    names = [n.replace("_", " ") for n in s.corruptions]
    text = [
        f"Averages over {_count(len(names), 'corruption')} ({_join(names)}, "
        f"{s.source}) at severities {_join([str(v) for v in sevs if v])}; severity 0 is the "
        "clean test set."
    ]
    single = m["single"]["accuracy"]
    first, last = single[0], single[-1]
    verb = "falls" if last < first - 5e-4 else ("rises" if last > first + 5e-4 else "stays")
    line = (
        f"Mean single-member accuracy {verb} from {_pct(first)} ({_severity_name(sevs[0])}) to "
        f"{_pct(last)} at severity {sevs[-1]}"
    )
    ens = m.get(f"ensemble_{K}")
    if ens:
        gaps = [e - x for e, x in zip(ens["accuracy"], single)]
        ahead = [g > 0 for g in gaps]
        line += f"; the {K}-member ensemble is ahead {_where(ahead, sevs)}"
        if all(ahead):
            line += f" (by {_span([100 * g for g in gaps], '{:.1f}')} points)"
        line += "."
        nll = [e < x for e, x in zip(ens["nll"], m["single"]["nll"])]
        ece = [e < x for e, x in zip(ens["ece"], m["single"]["ece"])]
        text.append(line)
        text.append(
            f"The ensemble's NLL is lower than a single member's {_where(nll, sevs)}; its ECE "
            f"is lower {_where(ece, sevs)}. Single-member ECE goes from "
            f"{_pct(m['single']['ece'][0])} to {_pct(m['single']['ece'][-1])}."
        )
    else:
        text.append(line + ".")
    if subspaces:
        best = max(subspaces, key=lambda f: m[f]["accuracy"][-1])
        label = figures_study.method_label(best.removeprefix("subspace_"))
        text.append(
            f"At severity {sevs[-1]} the best subspace model ({label}) reaches "
            f"{_pct(m[best]['accuracy'][-1])}, against {_pct(last)} for a single member"
            + (f" and {_pct(ens['accuracy'][-1])} for the ensemble." if ens else ".")
        )
    if "members" in js and len(s.members) > 1:
        text.append(_shift_js_line(s, subspaces))
    return text


def _shift_js_line(s: S.ShiftSummary, subspaces: list[str]) -> str:
    """How independent members' JS diversity moves with severity, against the other families."""
    js = s.by_severity.js
    v = js["members"]
    verb = "rises" if v[-1] > v[0] else ("falls" if v[-1] < v[0] else "stays")
    line = f"Independent members' JS diversity {verb} from {v[0]:.3f} to {v[-1]:.3f}"
    ratios = []
    for f, what in [
        (S.SHIFT_LATE_FAMILY, f"member {s.members[0]}'s late snapshots"),
        *(
            (f, f"{figures_study.method_label(f.removeprefix('subspace_'))} samples")
            for f in subspaces
        ),
    ]:
        if f in js and all(x > 0 for x in js[f]):
            r = [a / b for a, b in zip(v, js[f])]
            lo, hi = _ratio(min(r)), _ratio(max(r))
            ratios.append(f"{lo if lo == hi else f'{lo}–{hi}'}× that of {what}")
    if ratios:
        line += f"; across severities it is {_join(ratios)}"
    return line + "."
