"""The subspace section's words and tables on how samples were drawn and whom they are compared
with: the sampler mode and calibrated scales, the plane with every member as reference, and the
t-SNE caveats. Read from `SubspaceSummary` only (nothing is computed here).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modescape.report.base import Table
from modescape.report.figures import studies as figures_study
from modescape.report.figures.embedding import SampleEmbedding
from modescape.report.wording import join, num, span
from modescape.store import schema as S

# What each normalisation divides the disagreement by, in the report's words.
NORMALISATION_WORDS = {
    "sample": "the predictor's own error rate (the authors' notebook's normalisation)",
    "reference": "the reference's error rate",
}


def mode_reading(s: S.SubspaceSummary, methods: list[str]) -> list[str]:
    """How the samplers' scales were chosen, in one paragraph."""
    n = s.config["n_samples"]
    if s.mode == "paper":
        return [
            f"Sampler settings: \"paper\", the authors' notebook's diversity–accuracy section "
            f"as it is ({n} samples; random radius {s.config['random_scale']:g}·U(0,1), "
            f"diagonal s = {s.config['diagonal_scale']:g}·U(0,1), low-rank s = "
            f"{s.config['lowrank_scale']:g}, dropout p = {s.config['dropout_scale']:g}·U(0,1)). "
            "They were chosen for a CNN of about a million parameters; on another network the "
            "samples may barely move the model or wreck it."
        ]
    drop = 100 * s.config["target_drop"]
    text = (
        f'Sampler settings: "calibrated". For each sampler and member, a seeded bisection '
        f"found the scale at which samples lose {drop:g} accuracy points (measured on "
        f"{s.calibration_data or 'training examples'}, never the test set); the {n} samples "
        "then draw t·scale with t spread over (0, 1), so each cloud sweeps from the reference's "
        "accuracy downwards. The chosen scales are in the table below."
    )
    missed = [c for c in s.calibration if not c.reached and c.method in methods]
    if missed:
        names = join(sorted({f"{figures_study.method_label(c.method)}" for c in missed}))
        text += (
            f" No scale reached the target for {names} (see the table), which therefore "
            "draw at their configured scale instead: their clouds need not sweep that band."
        )
    return [text]


def lowrank_note(s: S.SubspaceSummary, methods: list[str]) -> list[str]:
    """What tells the two low-rank Gaussian samplers apart, when either is shown."""
    if not {"lowrank", "lowrank_scaled"} & set(methods):
        return []
    k = s.config.get("rank", "k")
    n = s.config.get("n_snapshots", "the last")
    return [
        f"Both low-rank Gaussian samplers draw θ = μ + z·V around the mean μ of the last {n} "
        f"snapshots, along their top {k} principal directions V, with z ~ N(0, s²I). "
        '"Low-rank" leaves the directions at unit length, as the authors\' notebook does, so '
        'every direction moves the weights equally far; "low-rank (scaled)" scales each '
        "direction by the snapshots' spread along it (SWAG-style), so s is measured in units of "
        "the trajectory's own late movement rather than of distance in weight space."
    ]


def tsne_reading(embedding: SampleEmbedding) -> list[str]:
    """Whose final snapshot each sampler's samples sit next to in its t-SNE map: t-SNE keeps
    neighbours, so "nearest final snapshot" can be read even though distances cannot."""
    parts = []
    for p in embedding.panels:
        ends = p.final_snapshots()
        samples = np.flatnonzero(p.kind == "sample")
        if len(ends) < 2 or not samples.size:
            continue
        owners = np.array(list(ends))
        centres = np.stack([ends[k] for k in owners])
        xy = np.stack([p.x[samples], p.y[samples]], axis=1)
        dist = np.linalg.norm(xy[:, None, :] - centres[None], axis=2)
        own = float(np.mean(owners[dist.argmin(axis=1)] == p.member[samples]))
        parts.append(f"{figures_study.method_label(p.method)} {100 * own:.0f}%")
    if not parts:
        return []
    return [
        "In the t-SNE maps each member's trajectory runs from its circle to its star, and the "
        "squares are the samples drawn around its final snapshot. Share of samples whose "
        f"nearest final snapshot in the map is their own member's: {join(parts)} (100%: "
        "every cloud stays by its own member, one mode each; t-SNE keeps neighbours, not "
        "distances)."
    ]


def where_drawn(s: S.SubspaceSummary, methods: list[str]) -> str:
    """Where each sampler's weight vectors are centred: the member's final weights (random,
    dropout) or the mean of its last snapshots (the Gaussians)."""
    at_final = [figures_study.method_label(m) for m in methods if m in ("random", "dropout")]
    at_mean = [figures_study.method_label(m) for m in methods if m not in ("random", "dropout")]
    n = s.config["n_samples"]
    parts = []
    if at_final:
        parts.append(f"around each member's final weights ({', '.join(at_final)})")
    if at_mean:
        parts.append(
            f"around the mean of each member's last {s.config['n_snapshots']} snapshots "
            f"({', '.join(at_mean)}: Gaussians fitted to those snapshots)"
        )
    return f"{n} weight vectors per sampler are drawn " + " and ".join(parts) + "."


def calibration_table(s: S.SubspaceSummary, methods: list[str]) -> Table | None:
    """The calibrated scale of each sampler (range over members), or None in "paper" mode."""
    if not s.calibration:
        return None
    rows = []
    for m in methods:
        cals = [c for c in s.calibration if c.method == m]
        if not cals:
            continue
        scales = [c.scale for c in cals]
        rows.append(
            [
                figures_study.method_label(m),
                span(scales, "{:.3g}"),
                span([100 * c.reference_accuracy for c in cals], "{:.1f}"),
                span([100 * c.centre_accuracy for c in cals], "{:.1f}"),
                span([100 * c.probe_accuracy for c in cals], "{:.1f}"),
                fresh_samples_cell(cals),
                f"{sum(c.reached for c in cals)} of {len(cals)}",
            ]
        )
    header = [
        "sampler",
        "scale (range over members)",
        "reference accuracy %",
        "centre accuracy %",
        "accuracy at full scale % (probes)",
        "fresh samples at full scale %: mean ± std [min, max]",
        "target reached",
    ]
    caption = (
        f"Calibrated scales, {len(s.members)} members each; accuracies on "
        f"{s.calibration_data or 'training examples'}. Centre: the cloud's centre (the mean of "
        "the last snapshots for the Gaussian samplers); when it is below the reference, no "
        "sample of that sampler comes as close to it. The calibration aims the mean of a few "
        "probes at the target; fresh samples drawn at the same scale (pooled over members) "
        "show how far single samples scatter around it."
    )
    return Table("subspace_scales", header, rows, caption, align_numbers=False)


def every_reference_reading(s: S.SubspaceSummary, methods: list[str]) -> list[str]:
    """Normalised diversity, every member as reference (mean ± std), in the report's default."""
    by_norm = s.every_reference.get(s.normalisation)
    if not by_norm:
        return []
    members = by_norm["independent"]
    n = len(members.reference_acc)
    tol = f"{100 * members.tol:g}"
    samples = [
        f"{figures_study.method_label(m)} {_pm(by_norm[m].sample_mean, by_norm[m].sample_std)}"
        for m in methods
        if m in by_norm and not math.isnan(num(by_norm[m].sample_mean))
    ]
    text = (
        f"With each of the {n} members as reference in turn (a result should not hinge on "
        f"which member is the reference), normalised diversity, the disagreement divided by "
        f"{NORMALISATION_WORDS.get(s.normalisation, s.normalisation)}, is "
        f"{_pm(members.mean, members.std)} for independent members (mean ± std over references)"
    )
    if samples:
        text += (
            f"; the most diverse sample within {tol} points of its reference reaches "
            f"{join(samples)}."
        )
    else:
        text += f"; no sample comes within {tol} points of its reference."
    return [text, *weakest_reference_note(s, members)]


def weakest_reference_note(s: S.SubspaceSummary, members: S.ReferenceSweepRecord) -> list[str]:
    """When the weakest member as reference puts independent members above 1 (outside the
    paper's 0.85–1.0), say so and why, with the strongest reference's value beside it."""
    accs, per = members.reference_acc, members.per_reference
    if len(accs) < 2 or len(per) != len(accs):
        return []
    lo, hi = int(np.argmin(accs)), int(np.argmax(accs))
    if not num(per[lo]) > 1.0:
        return []
    who = s.members[lo] if lo < len(s.members) else lo
    best = s.members[hi] if hi < len(s.members) else hi
    return [
        f"With the weakest member as reference (member {who}, {100 * accs[lo]:.1f}% test "
        f"accuracy) independent members reach {per[lo]:.2f}, above 1 and the paper's "
        "0.85–1.0 (Fort et al. 2019), which compares members of about equal accuracy; with "
        f"the most accurate (member {best}, {100 * accs[hi]:.1f}%) they reach {per[hi]:.2f}. "
        "A weaker reference disagrees with stronger members on many of its own errors, which "
        f"dividing by {NORMALISATION_WORDS.get(s.normalisation, 'an error rate')} does not "
        "remove."
    ]


def every_reference_table(s: S.SubspaceSummary, methods: list[str]) -> Table | None:
    """Mean ± std over references, both normalisations, members and each sampler."""
    if not s.every_reference:
        return None
    norms = [n for n in ("sample", "reference") if n in s.every_reference]
    rows: list[list[Any]] = []
    first = s.every_reference[norms[0]]
    for key in ["independent", *[m for m in methods if m in first]]:
        label = "independent members" if key == "independent" else figures_study.method_label(key)
        cells = []
        for norm in norms:
            r = s.every_reference[norm][key]
            if key == "independent":
                cells.append(_pm(r.mean, r.std))
            else:
                cells.append(_pm(r.sample_mean, r.sample_std))
        rows.append([label, *cells])
    header = ["", *[f"D / {'own' if n == 'sample' else 'reference'} error" for n in norms]]
    tol = f"{100 * first['independent'].tol:g}"
    caption = (
        f"Normalised diversity with every member as reference in turn, mean ± std over "
        f"references: independent members, and each sampler's most diverse sample within {tol} "
        f"points of its own reference. The text and the plane use D / "
        f"{'own' if s.normalisation == 'sample' else 'reference'} error."
    )
    return Table("subspace_references", header, rows, caption, align_numbers=False)


def tsne_notes(tsne: dict[str, dict[str, Any]], methods: list[str]) -> list[str]:
    """Why a sampler's t-SNE picture should not be trusted (its recorded warnings), if any."""
    notes = []
    for m in methods:
        warns = tsne.get(m, {}).get("warnings") or []
        if warns or tsne.get(m, {}).get("lead_with_pca"):
            why = "; ".join(warns) or "flagged as unreliable"
            notes.append(f"{figures_study.method_label(m)}: {why}")
    if not notes:
        return []
    return [
        "The t-SNE pictures below say little here (" + "; ".join(notes) + "); read the plane "
        "and the Jensen–Shannon diversity instead."
    ]


def _pm(mean: float | None, std: float | None) -> str:
    m, sd = num(mean), num(std)
    return "n/a" if math.isnan(m) else f"{m:.2f} ± {sd:.2f}"


def fresh_samples_cell(cals: list[S.CalibrationRecord]) -> str:
    """Mean ± std [min, max] (%) of the fresh samples at the calibrated scale, over members."""
    acc = [100 * a for c in cals for a in c.check_accuracies]
    if not acc:
        return "not recorded"
    mean = sum(acc) / len(acc)
    std = (sum((a - mean) ** 2 for a in acc) / len(acc)) ** 0.5
    return f"{mean:.1f} ± {std:.1f} [{min(acc):.1f}, {max(acc):.1f}] (n = {len(acc)})"
