"""The report section of `modescape swag`: SWA, SWAG, MultiSWAG and MC dropout beside the deep
ensemble and, when `modescape subspace` has run, the paper's own samplers (Fort et al. 2019).

Reads swag/ (and subspace/) through `ctx.study`; computes nothing the study should have written.
The readings are built from the numbers and worded so they stay true whichever way they fall.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modescape.report.base import Plot, ReportContext, Section, Table
from modescape.report.figures.curves import EnsembleCurves
from modescape.report.figures.described import charted_plot, described_plot
from modescape.report.figures.embedding import joint_embedding
from modescape.report.figures.studies import DiversityAccuracyPlane, method_label
from modescape.report.wording import count, frac, pct, sig
from modescape.store import schema as S

NAMES = {
    "swa": "SWA",
    "swag": "SWAG",
    "swag_diag": "SWAG-Diagonal",
    "multiswag": "MultiSWAG",
    "mc_dropout": "MC dropout",
}


def swag_section(ctx: ReportContext) -> Section | None:
    res = ctx.study(S.SWAG)
    if res is None:
        return None
    s: S.SwagSummary = res.summary
    rows = {r.method: r for r in s.table}
    sub = ctx.study(S.SUBSPACE)
    reading = setup_reading(s) + table_reading(rows, len(s.members))
    plane = _merged_plane(res.csv(S.SWAG_PLANE), sub)
    reading += plane_reading(plane)
    reading += [f"{NAMES.get(m, m)} was skipped: {why}." for m, why in s.skipped.items()]
    plots = [_curves_plot(res, sub), _plane_plot(s, plane), _tsne_plot(res.csv(S.SWAG_TSNE))]
    return Section(
        "swag",
        "SWA, SWAG, MultiSWAG and MC dropout",
        reading,
        [p for p in plots if p is not None],
        [_table(s)],
        reproduces="Maddox et al. (2019) Table 1 (NLL of SGD, SWA, SWAG, SWAG-Diagonal); "
        "Wilson & Izmailov (2020) Figure 3 (MultiSWAG against deep ensembles); "
        "Gal & Ghahramani (2016) MC dropout.",
    )


def setup_reading(s: S.SwagSummary) -> list[str]:
    c = s.collection
    out = []
    methods = {r.method for r in s.table}
    if c:
        every = "once per epoch" if not c["every_steps"] else f"every {c['every_steps']} steps"
        draws = []  # only the methods this run evaluated
        if "SWAG" in methods or "MultiSWAG" in methods:
            draws.append(f"SWAG draws {s.config['n_samples']} samples per member at scale "
                         f"{s.config['scale']}")  # fmt: skip
        if "SWAG-Diagonal" in methods:
            draws.append(f"SWAG-Diagonal {s.config['n_samples']} at {s.config['diag_scale']}")
        out.append(
            f"Each of the {count(len(s.members), 'member')} continued "
            f"{count(c['epochs'], 'epoch')} past its "
            f"schedule at a {c['schedule']} learning rate ({sig(c['lr'], 3)}), collecting "
            f"{', '.join(map(str, sorted(set(c['iterates']))))} iterates "
            f"({every}; up to the last {c['max_rank']} kept as SWAG's deviation columns)."
            + (f" {'; '.join(draws)}." if draws else "")
        )
    if "MC dropout" in methods:
        out.append(f"MC dropout averages {s.config['mc_passes']} passes.")
    out.append(f"BatchNorm: {s.batchnorm}.")
    return out


def table_reading(rows: dict[str, S.SwagRow], members: int) -> list[str]:
    """The orderings Maddox et al. 2019 and Wilson & Izmailov 2020 report, checked on these
    numbers: SWAG's NLL below SWA's and the single model's; MultiSWAG at least as good as the
    deep ensemble of the same size; and where MC dropout falls."""
    out = []
    single = rows["single model"]
    if "SWAG" in rows and "SWA" in rows:
        sw, sa = rows["SWAG"].nll, rows["SWA"].nll
        holds = sw < sa and sw < single.nll
        out.append(
            f"SWAG's test NLL is {sw:.3f}, SWA's {sa:.3f} and the single model's "
            f"{single.nll:.3f}: the ordering Maddox et al. (2019) report (SWAG below both) "
            f"{'holds' if holds else 'does not hold'} here."
        )
    if "MultiSWAG" in rows:
        mu, de = rows["MultiSWAG"], rows["deep ensemble"]
        better = mu.nll <= de.nll
        out.append(
            f"MultiSWAG over {count(members, 'member')} reaches NLL {mu.nll:.3f} and accuracy "
            f"{pct(mu.accuracy)}, the deep ensemble of the same {count(members, 'member')} "
            f"{de.nll:.3f} and {pct(de.accuracy)}: MultiSWAG is "
            f"{'at least as good as' if better else 'worse than'} the deep ensemble in NLL "
            f"(Wilson & Izmailov 2020 report it at least as good), at "
            f"{mu.forwards // max(de.forwards, 1)}× its test-time forward passes."
        )
    if "MC dropout" in rows:
        mc = rows["MC dropout"]
        d = mc.nll - single.nll
        out.append(
            f"MC dropout changes the single model's NLL by {d:+.3f} ({mc.nll:.3f}) and its "
            f"accuracy from {pct(single.accuracy)} to {pct(mc.accuracy)}, without any "
            f"extra training."
        )
    return out


def _merged_plane(plane: dict[str, np.ndarray], sub: Any) -> dict[str, np.ndarray]:
    """swag/plane.csv, plus the paper's samplers' points when the subspace study used the same
    reference (member 0)."""
    if sub is None or sub.summary.reference != 0 or not sub.has(S.SUBSPACE_PLANE):
        return plane
    other = sub.csv(S.SUBSPACE_PLANE)
    keep = np.asarray(other["kind"], dtype=str) == "sample"
    return {k: np.concatenate([np.asarray(plane[k]), np.asarray(other[k])[keep]]) for k in plane}


def plane_reading(plane: dict[str, np.ndarray]) -> list[str]:
    """How far each method's samples around member 0 move in function space, against the other
    independent members (normalised diversity: disagreement over error)."""
    kind, method = np.asarray(plane["kind"], dtype=str), np.asarray(plane["method"], dtype=str)
    div = np.asarray(plane["norm_diversity"], dtype=float)
    members = div[(kind == "member") & np.isfinite(div)]
    parts: list[tuple[str, float]] = []  # compared unrounded, printed rounded
    for m in dict.fromkeys(method[kind == "sample"]):
        d = div[(kind == "sample") & (method == m) & np.isfinite(div)]
        if d.size:
            parts.append((NAMES.get(m, method_label(m)), float(np.median(d))))
    if not parts:
        return []
    text = (
        "In the diversity–accuracy plane around member 0 the median normalised diversity is "
        + ", ".join(f"{name} {value:.2f}" for name, value in parts)
    )
    if members.size:
        lo = float(min(members))
        near = [f"{name} {value:.2f}" for name, value in parts if value >= lo]
        text += f"; the independent members sit at {np.median(members):.2f} (lowest {lo:.2f}). " + (
            "No method's median reaches the lowest independent member"
            if not near
            else f"At or above the lowest member: {', '.join(near)}"
        )
    return [text + "."]


def _curves_plot(res: Any, sub: Any) -> Plot:
    """Metrics against size: k members' models of each method (solid; SWAG's at k = M is
    MultiSWAG) and k samples around one member (dashed), with the paper's samplers if run."""
    c, smp = res.csv(S.SWAG_CURVES), res.csv(S.SWAG_SAMPLES)
    fam = [f if f == "deep" else f"{f}+ensemble" for f in np.asarray(c["family"], dtype=str)]
    cols = {
        "family": fam + [str(m) for m in smp["method"]],
        "size": np.concatenate([c["size"], smp["size"]]),
        "metric": list(c["metric"]) + list(smp["metric"]),
        "mean": np.concatenate([c["mean"], smp["mean"]]),
        "std": np.concatenate([c["std"], smp["std"]]),
    }
    if sub is not None and sub.has(S.SUBSPACE_CURVES):
        o = sub.csv(S.SUBSPACE_CURVES)
        keep = np.asarray(o["family"], dtype=str) != "deep"
        for k in cols:
            cols[k] = np.concatenate([np.asarray(cols[k]), np.asarray(o[k])[keep]])
    caption = (
        "Solid: ensembles of k members' models of each method (a member's SWAG model averages "
        "its samples, so SWAG's solid line at k members is MultiSWAG; mean ± std over member "
        "subsets). Dashed: one member's predictive against its number of samples or passes "
        "(mean ± std over members). The paper's subspace samplers are included when "
        "`modescape subspace` has run."
    )
    curves = EnsembleCurves.from_columns(cols, subspace=True)
    return charted_plot("swag_ensembles", curves, caption)


def _plane_plot(s: S.SwagSummary, plane: dict[str, np.ndarray]) -> Plot:
    ref = s.plane or S.ReferencePlane(float("nan"), None)
    points = DiversityAccuracyPlane.from_columns(plane, 0, ref.reference_accuracy, ref.curves)
    caption = (
        "Member 0's SWA, SWAG, SWAG-Diagonal and MC-dropout samples (and the paper's subspace "
        "samples, when run), and the other independent members, against member 0's final "
        "weights; dashed: errors independent of the reference's, dotted: the reference with "
        "random predictions mixed in."
    )
    return charted_plot("swag_plane", points, caption)


def _tsne_plot(t: dict[str, np.ndarray]) -> Plot | None:
    embedding = joint_embedding(t)
    if embedding is None:
        return None
    caption = (
        "One joint t-SNE of every trajectory and up to 10 samples of each method per member "
        "(softmax outputs on a fixed set of test examples), shown one method per panel; "
        "circle: first snapshot, star: final snapshot, squares: samples."
    )
    return described_plot("swag_tsne", embedding, caption)


def _table(s: S.SwagSummary) -> Table:
    header = ["method", "members", "accuracy", "nll", "brier", "ece", "test_forwards",
              "collect_epochs"]  # fmt: skip
    rows = [
        [r.method, r.members, frac(r.accuracy), sig(r.nll), sig(r.brier),
         frac(r.ece), r.forwards, r.collect_epochs]
        for r in s.table
    ]  # fmt: skip
    caption = (
        "Test metrics of each method: a single member's (mean over members) or the ensemble of "
        "all members (deep ensemble, MultiSWAG); cost in test-set forward passes and in "
        "collection-phase epochs on top of the members' schedules."
    )
    return Table("swag_methods", header, rows, caption)
