"""The dataset-shift section (Fort et al. 2019, CIFAR-10-C; box plots after Ovadia et al. 2019):
metrics and diversity under corruptions of growing severity. Reads `<run>/shift/` through
`ctx.study`; None when `modescape shift` has not run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modescape.report import references
from modescape.report.base import ReportContext, Section, Table
from modescape.report.figures import analysis as figures
from modescape.report.figures import studies as figures_study
from modescape.report.figures.data import rounded
from modescape.report.figures.described import charted_plot, described_plot
from modescape.report.figures.shift import ShiftBoxes, corruption_strip
from modescape.report.wording import (
    count,
    join,
    pct,
    ratio,
    severity_name,
    sig,
    span,
    warned,
    where,
)
from modescape.store import schema as S

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
    keep &= ~np.char.startswith(c["family"].astype(str), "member_")  # each member alone: prose
    caption = (
        f"Each box: the {count(len(s.corruptions), 'corruption')} at one severity (median, "
        "quartiles, whiskers to 1.5 IQR); clean is one value per family."
    )
    boxes = ShiftBoxes.from_columns(c, keep, styles)
    plots = [described_plot("shift_boxplots", boxes, caption)]
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
    js_styles |= {
        f: (
            styles[f][0],
            f"{figures_study.method_label(f.removeprefix('subspace_'))} samples",
        )
        for f in subspaces
    }
    diversity = figures_study.ShiftDiversity(sevs, by.js, js_styles)
    data_caption = "Jensen–Shannon diversity (nats), mean over corruptions; severity 0 is clean."
    plots.append(
        charted_plot("shift_diversity", diversity, diversity.caption(), data_caption=data_caption)
    )
    if s.example_corruptions and res.has(S.SHIFT_EXAMPLES):
        strip = corruption_strip(res.npy(S.SHIFT_EXAMPLES), s.example_corruptions)
        caption = "The first test example under each corruption (as generated for the sweep)."
        plots.append(described_plot("shift_examples", strip, caption))
    ref = _subspace_reference(ctx)
    reading = _shift_reading(s, K, subspaces, ref) + warned(s.warnings)
    tables = [_comparison(ctx, by, K, subspaces), _shift_table(by, K, subspaces)]
    return Section(
        "shift",
        "Dataset shift",
        reading,
        plots,
        tables,
        reproduces="Fort et al. (2019), the dataset-shift figure (accuracy and Brier score on "
        "CIFAR-10-C at "
        "severities 0-5: ensembles against subspace models); box plots as in Ovadia et al. "
        "(2019).",
    )


def _subspace_reference(ctx: ReportContext) -> int:
    """The member whose samples the shift study's subspace models are (the subspace reference)."""
    res = ctx.study(S.SUBSPACE)
    return int(res.summary.reference) if res is not None else ctx.members[0]


def _comparison(ctx: ReportContext, by: S.BySeverity, K: int, subspaces: list[str]) -> Table:
    m = by.metrics
    sevs = [int(v) for v in by.severities]
    ens = m.get(f"ensemble_{K}")
    if not ens:
        return references.section_table(ctx, "shift", [("shift_ensemble", "no ensemble")])
    this_run = f"{K}-member ensemble most accurate {where(ensemble_best(by, K), sevs)}"
    return references.section_table(ctx, "shift", [("shift_ensemble", this_run)])


def ensemble_best(by: Any, K: int) -> list[bool]:
    """Per severity: is the K-member ensemble more accurate than every other family evaluated
    (each member alone included: under strong shift one member can beat the ensemble)?"""
    m = by.metrics
    ens = m[f"ensemble_{K}"]
    others = [f for f in m if not f.startswith("ensemble_")]
    return [
        all(ens["accuracy"][i] > m[f]["accuracy"][i] for f in others)
        for i in range(len(by.severities))
    ]


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
        whose = "every member's samples" if m == "multiswag" else "one member's samples"
        styles[f] = (
            figures_study.method_color(m, i),
            f"{figures_study.method_label(m)} model ({whose})",
        )
    return styles


def _shift_table(by: S.BySeverity, K: int, subspaces: list[str]) -> Table:
    metrics = by.metrics
    keys = ["single", f"ensemble_{K}" if K else "", "weight_average", *subspaces]
    rows = [
        [k, mt, *(rounded(mt, v) for v in metrics[k][mt])]
        for k in keys
        if k in metrics
        for mt in metrics[k]
    ]
    rows += [[f, "js", *(sig(x) for x in v)] for f, v in by.js.items()]
    return Table(
        "shift",
        ["family", "metric", *(f"severity_{int(v)}" for v in by.severities)],
        rows,
        "Means over corruptions per severity (severity_0: the clean test set).",
    )


def _shift_reading(s: S.ShiftSummary, K: int, subspaces: list[str], ref: int) -> list[str]:
    by = s.by_severity
    sevs, m, js = [int(v) for v in by.severities], by.metrics, by.js
    names = [n.replace("_", " ") for n in s.corruptions]
    text = [
        f"Averages over {count(len(names), 'corruption')} ({join(names)}, "
        f"{s.source}) at severities {join([str(v) for v in sevs if v])}; severity 0 is the "
        "clean test set."
    ]
    single = m["single"]["accuracy"]
    first, last = single[0], single[-1]
    verb = "falls" if last < first - 5e-4 else ("rises" if last > first + 5e-4 else "stays")
    line = (
        f"Mean single-member accuracy {verb} from {pct(first)} ({severity_name(sevs[0])}) to "
        f"{pct(last)} at severity {sevs[-1]}"
    )
    ens = m.get(f"ensemble_{K}")
    if ens:
        gaps = [e - x for e, x in zip(ens["accuracy"], single)]
        ahead = [g > 0 for g in gaps]
        line += f"; the {K}-member ensemble is ahead {where(ahead, sevs)}"
        if all(ahead):
            line += f" (by {span([100 * g for g in gaps], '{:.1f}')} points)"
        line += "."
        nll = [e < x for e, x in zip(ens["nll"], m["single"]["nll"])]
        ece = [e < x for e, x in zip(ens["ece"], m["single"]["ece"])]
        text.append(line)
        text.append(
            f"The ensemble's NLL is lower than the mean single member's {where(nll, sevs)}; "
            f"its ECE is lower {where(ece, sevs)}. Mean single-member ECE goes from "
            f"{pct(m['single']['ece'][0])} to {pct(m['single']['ece'][-1])}."
        )
    else:
        text.append(line + ".")
    if subspaces:
        text.append(subspace_under_shift(s, subspaces, ref, ens))
    if "members" in js and len(s.members) > 1:
        text.append(shift_js_line(s, subspaces))
    return text


def subspace_under_shift(
    s: S.ShiftSummary, subspaces: list[str], ref: int, ens: dict | None
) -> str:
    """The best subspace model at the last severity against the member its samples surround,
    the mean member and the ensemble: each comparison worded from the numbers it cites."""
    m, sev = s.by_severity.metrics, int(s.by_severity.severities[-1])
    best = max(subspaces, key=lambda f: m[f]["accuracy"][-1])
    label = figures_study.method_label(best.removeprefix("subspace_"))
    sub = m[best]["accuracy"][-1]
    alone = m.get(f"member_{s.members.index(ref)}") if ref in s.members else None
    others = [(f"member {ref} alone", alone["accuracy"][-1])] if alone else []
    others.append(("the mean single member", m["single"]["accuracy"][-1]))
    if ens:
        others.append((f"the {len(s.members)}-member ensemble", ens["accuracy"][-1]))
    parts = [f"{pct(v)} for {who}" for who, v in others]
    line = (
        f"At severity {sev} the best subspace model, the average of {label} samples around "
        f"member {ref}, reaches {pct(sub)}, against {', '.join(parts)}"
    )
    ahead = [who for who, v in others if v > sub]
    behind = [who for who, v in others if v < sub]
    if ahead:
        line += f"; {' and '.join(ahead)} {'is' if len(ahead) == 1 else 'are'} ahead of it"
    if behind:
        line += f"; it is ahead of {' and '.join(behind)}"
    if alone and ens and alone["accuracy"][-1] > ens["accuracy"][-1]:
        line += f" (member {ref} alone beats the ensemble at this severity)"
    return line + "."


def shift_js_line(s: S.ShiftSummary, subspaces: list[str]) -> str:
    """How independent members' JS diversity moves with severity, against the other families."""
    js = s.by_severity.js
    v = js["members"]
    a, b = round(v[0], 3), round(v[-1], 3)  # the verb follows the numbers as printed
    verb = "rises" if b > a else ("falls" if b < a else "stays")
    line = f"Independent members' JS diversity {verb} from {a:.3f} to {b:.3f}"
    if verb == "stays":
        line = f"Independent members' JS diversity stays at {a:.3f}"
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
            lo, hi = ratio(min(r)), ratio(max(r))
            ratios.append(f"{lo if lo == hi else f'{lo}–{hi}'}× that of {what}")
    if ratios:
        line += f"; across severities it is {join(ratios)}"
    return line + "."
