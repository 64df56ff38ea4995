"""`modescape compare RUN_A RUN_B [...]`: one page that puts two or more analysed runs side by side.

    <out>/index.html          the page (same layout and interactive charts as the report)
    <out>/figures/<name>.csv  the numbers of every chart, one row per plotted point
    <out>/tables/<name>.csv   the settings that differ, every setting, the numbers at a glance
    <out>/data.json           the runs and every chart's plotted series

The page holds a config diff (the settings that differ, every setting one click away), the
at-a-glance numbers in one table (a column per run; study numbers when a run has the study), and
overlaid curves: ensemble accuracy and NLL against size, training curves, the diversity–accuracy
plane (runs with a subspace study), accuracy under shift (runs with a shift study) and the
profiles along each run's trained curve (runs with a connector study).

Everything is read through the typed readers (`load_run`, `ReportContext`, the studies' summaries
in `store.schema`), each file checked against its recorded sha256: nothing is recomputed. Runs
are labelled by their directory name, with as many parent folders as it takes to tell them apart.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modescape.errors import ModescapeError
from modescape.report import provenance
from modescape.report.base import Chart, ChartKind, LineStyle, Marker, ReportContext, Series, Table
from modescape.report.figures.analysis import SPLIT_LINES
from modescape.report.render.interactive import PALETTE, chart_data
from modescape.report.render.page import (
    FigureBlock,
    csv_bytes,
    figure_html,
    page_html,
    section_html,
    table_html,
)
from modescape.report.wording import sig
from modescape.store import schema as S
from modescape.store.files import atomic_write_bytes, write_json
from modescape.store.run import load_run

logger = logging.getLogger(__name__)


@dataclass
class ChartPlot:
    """One chart of the comparison and the table of its numbers (figures/<name>.csv)."""

    name: str
    caption: str
    chart: Chart
    data: Table


@dataclass
class CompareSection:
    id: str
    title: str
    reading: list[str]
    charts: list[ChartPlot]
    tables: list[Table]
    extra: str = ""  # HTML after the tables (the full settings in a <details>)
    written: list[Table] = field(default_factory=list)  # also written to tables/ (in `extra`)


def compare_runs(runs: Sequence[str | Path], out: str | Path = "comparison") -> Path:
    """Write a page comparing two or more analysed runs to `out`; return the path of its
    index.html. A missing run, a run not analysed yet or fewer than two runs is one
    ModescapeError."""
    start = time.perf_counter()
    if len(runs) < 2:
        raise ModescapeError(f"compare needs at least two runs, got {len(runs)}")
    ctxs = [ReportContext(load_run(r)) for r in runs]
    labels = run_labels([c.run.path for c in ctxs])
    out = Path(out)
    sections = [s for s in _sections(ctxs, labels) if s is not None]
    for sec in sections:
        for c in sec.charts:
            atomic_write_bytes(out / "figures" / f"{c.name}.csv", csv_bytes(c.data))
        for t in sec.tables + sec.written:
            atomic_write_bytes(out / "tables" / f"{t.name}.csv", csv_bytes(t))
    write_json(out / "data.json", _data(ctxs, labels, sections))
    body, number = [], 0
    for sec in sections:
        parts = []
        for c in sec.charts:
            number += 1
            links = [("CSV", f"figures/{c.name}.csv")]
            parts.append(
                figure_html(FigureBlock(c.name, c.caption, charts=[c.chart], links=links), number)
            )
        parts += [table_html(t, f"tables/{t.name}.csv") for t in sec.tables]
        body.append(section_html(sec.id, sec.title, [*parts, sec.extra], sec.reading))
    page = page_html(
        f"modescape comparison: {' vs '.join(labels)}",
        [f"{label}: {c.run.path}" for label, c in zip(labels, ctxs)]
        + [f"written {time.strftime('%Y-%m-%d %H:%M')}"],
        [(s.id, s.title) for s in sections],
        body,
        [f"{label}: {n}" for label, c in zip(labels, ctxs) for n in c.notices],
    )
    index = out / "index.html"
    atomic_write_bytes(index, page.encode())
    logger.info(
        f"compare: {len(ctxs)} runs, {number} charts in {time.perf_counter() - start:.1f} s "
        f"-> {index}"
    )
    return index


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Directory names, with parent folders added until they differ ('a/run', 'b/run'); equal
    paths get ' (2)', ' (3)'."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = 1
    while depth < max(len(p) for p in parts):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
        depth += 1
    labels = [p[-1] for p in parts]  # the same folder given twice
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _sections(ctxs: list[ReportContext], labels: list[str]) -> list[CompareSection | None]:
    return [
        _settings_section(ctxs, labels),
        _glance_section(ctxs, labels),
        _ensemble_section(ctxs, labels),
        _training_section(ctxs, labels),
        _subspace_section(ctxs, labels),
        _shift_section(ctxs, labels),
        _connect_section(ctxs, labels),
        _instability_section(ctxs, labels),
    ]


# ---- settings and numbers ---------------------------------------------------------------------
def flat_config(ctx: ReportContext) -> dict[str, Any]:
    """The run's resolved config and each study's settings as dotted keys: 'train.lr' for the
    run's, '<study>.<key>' for a study's (`provenance.config_table`, the report's table)."""
    rows = provenance.config_table(ctx).rows
    return {key if scope == "run" else f"{scope}.{key}": value for scope, key, value in rows}


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def _settings_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection:
    configs = [flat_config(c) for c in ctxs]
    keys = list(dict.fromkeys(k for cfg in configs for k in cfg))
    rows = [[k, *(_text(cfg.get(k, "")) for cfg in configs)] for k in keys]
    differ = [r for r in rows if len(set(r[1:])) > 1]
    header = ["setting", *labels]
    diff = Table("settings_differ", header, differ, "Settings that differ.", align_numbers=False)
    every = Table(
        "settings", header, rows, "Every setting of the runs' configs and of their studies.", False
    )
    reading = [
        f"{len(differ)} of {len(rows)} settings differ between the runs."
        if differ
        else f"The runs' configs are identical ({len(rows)} settings); only chance differs."
    ]
    extra = (
        f'<details class="all-settings"><summary>Show all {len(rows)} settings</summary>'
        f"{table_html(every, 'tables/settings.csv')}</details>"
    )
    tables = [diff] if differ else []
    return CompareSection("settings", "Settings", reading, [], tables, extra, [every])


def _f(x: Any) -> float:
    """A plotted value rounded to 4 significant digits, as in the chart's CSV (NaN stays)."""
    v = sig(x)
    return math.nan if v is None else v


def _r(x: Any) -> Any:
    """A number rounded to 4 significant digits (NaN and None: blank)."""
    if x is None:
        return ""
    if isinstance(x, float | np.floating):
        v = sig(x)
        return "" if v is None else v
    return x


def glance_rows(ctx: ReportContext) -> dict[str, Any]:
    """The numbers at a glance of one run: quantity -> value (rounded; studies when present)."""
    s, cfg = ctx.summary, ctx.run.config
    e = s.ensemble
    M, K = len(ctx.members), s.ensemble_size_compared
    rows: dict[str, Any] = {
        "dataset": ctx.run.data_summary.name or cfg.data.name,
        "architecture": f"{cfg.model.arch} ({cfg.model.variant})",
        "recipe": cfg.train.recipe,
        "members": M,
        "epochs": ctx.epochs[-1],
        "base seed": cfg.seed,
        "analysis split (examples)": f"{s.split} ({s.n_examples:,})",
        "mean single accuracy": _r(s.single["accuracy"]),
        "deep ensemble accuracy (all members)": _r(e["deep"]["accuracy"]),
        "mean single NLL": _r(s.single["nll"]),
        "deep ensemble NLL": _r(e["deep"]["nll"]),
        "mean single ECE": _r(s.single["ece"]),
        "deep ensemble ECE": _r(e["deep"]["ece"]),
        "snapshots in the snapshot ensemble": K,
        "snapshot ensemble accuracy": _r(e["snapshot_k"]["accuracy"]),
        "weight average accuracy": _r(e["weight_average"]["accuracy"]),
        "disagreement across members": _r(s.disagreement.across_members_mean),
        "late window (snapshots)": s.disagreement.late_window,
        "late disagreement within a trajectory": _r(s.disagreement.late_within_mean),
        "cosine across members": _r(s.cosine.across_members_mean),
        "JS diversity across members": _r(s.js_diversity.members),
    }
    sub = ctx.study(S.SUBSPACE)
    if sub is not None:
        for method, v in sub.summary.js_diversity.items():
            rows[f"subspace: JS diversity, {method.replace('_', ' ')}"] = _r(v)
    shift = ctx.study(S.SHIFT)
    if shift is not None:
        by = shift.summary.by_severity
        sev = by.severities[-1]
        rows["shift: highest severity"] = sev
        sizes = [int(f.split("_")[1]) for f in by.metrics if f.startswith("ensemble_")]
        rows["shift: single accuracy at the highest severity"] = _r(
            by.metrics["single"]["accuracy"][-1]
        )
        if sizes:
            rows["shift: largest ensemble (members)"] = max(sizes)
            rows["shift: largest ensemble's accuracy at the highest severity"] = _r(
                by.metrics[f"ensemble_{max(sizes)}"]["accuracy"][-1]
            )
    land = ctx.study(S.LANDSCAPE)
    if land is not None:
        for kind in ("across members", "within trajectory", "aligned"):
            paths = [p for p in land.summary.paths if p.kind == kind]
            if paths:
                rows[f"landscape: error barrier, {kind} ({paths[0].name})"] = _r(
                    paths[0].error_barrier
                )
    inst = ctx.study(S.INSTABILITY)
    if inst is not None:
        onset = inst.summary.onset
        rows["spawn: onset of stability (epoch)"] = "never" if onset is None else onset
        first, last = inst.summary.points[0], inst.summary.points[-1]
        for p in (first, last):
            rows[f"spawn: error barrier, children of epoch {p.at:g}"] = _r(p.level.error_barrier)
            rows[f"spawn: disagreement, children of epoch {p.at:g}"] = _r(p.level.disagreement)
    return rows


def _glance_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection:
    per_run = [glance_rows(c) for c in ctxs]
    keys = list(dict.fromkeys(k for r in per_run for k in r))
    rows = [[k, *(r.get(k, "") for r in per_run)] for k in keys]
    table = Table(
        "at_a_glance",
        ["quantity", *labels],
        rows,
        "Each run's summary numbers (blank: the run lacks that study).",
    )
    acc = [(lab, c.summary.ensemble["deep"]["accuracy"]) for lab, c in zip(labels, ctxs)]
    each = ", ".join(f"{lab} {100 * a:.1f}%" for lab, a in acc)
    # accuracies on different data (MNIST-1D and CIFAR-10, or other test sets) rank nothing
    tested = {(r["dataset"], r["analysis split (examples)"]) for r in per_run}
    if len(tested) > 1:
        what = "; ".join(
            f"{lab}: {r['dataset']}, {r['analysis split (examples)']}"
            for lab, r in zip(labels, per_run)
        )
        reading = [
            f"The runs are evaluated on different data ({what}), so their accuracies are not "
            f"comparable and none is ranked: deep ensembles reach {each}."
        ]
    else:
        best = max(acc, key=lambda a: a[1])
        reading = [
            f"The deep ensemble of {best[0]} is the most accurate ({100 * best[1]:.1f}%); {each}."
        ]
    return CompareSection("glance", "At a glance", reading, [], [table])


# ---- charts -------------------------------------------------------------------------------------
def _ensemble_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection | None:
    have = [(lab, c) for lab, c in zip(labels, ctxs) if c.has(S.ENSEMBLE_CURVES)]
    if not have:
        return None
    charts = []
    for metric, nice in (("accuracy", "accuracy"), ("nll", "NLL")):
        series, rows = [], []
        for lab, c in have:
            t = c.csv(S.ENSEMBLE_CURVES)
            sel = (t["family"] == "deep") & (t["metric"] == metric)
            order = np.argsort(t["size"][sel])
            size, mean, std = (t[k][sel][order] for k in ("size", "mean", "std"))
            series.append(
                Series(lab, list(size), [_f(m) for m in mean], [_f(d) for d in std],
                       color=run_color(labels, lab))
            )  # fmt: skip
            rows += [[lab, int(k), _r(m), _r(d)] for k, m, d in zip(size, mean, std)]
        chart = Chart(ChartKind.LINE, "ensemble size", nice, series)
        data = Table(f"ensemble_{metric}", ["run", "size", f"{metric}_mean", f"{metric}_std"], rows)
        charts.append(
            ChartPlot(
                f"ensemble_{metric}",
                f"Deep ensemble {nice} against ensemble size, one line per run (mean ± standard "
                "deviation over member subsets).",
                chart,
                data,
            )
        )
    return CompareSection("ensembles", "Ensembles", [], charts, [])


def _training_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection | None:
    have = [(lab, c) for lab, c in zip(labels, ctxs) if c.has(S.TRAINING_CURVES)]
    if not have:
        return None
    charts = []
    for quantity, nice in (("acc", "accuracy"), ("loss", "loss")):
        series, rows = [], []
        for lab, c in have:
            t = c.csv(S.TRAINING_CURVES)
            epochs = sorted({int(e) for e in t["epoch"]})
            for split in ("train", "val", "test"):
                col = t.get(f"{split}_{quantity}")
                if col is None or not np.isfinite(col).any():
                    continue
                means = [_nanmean(col[t["epoch"] == e]) for e in epochs]
                series.append(
                    Series(
                        f"{lab}: {split}",
                        epochs,
                        [_f(m) for m in means],
                        color=run_color(labels, lab),
                        line=SPLIT_LINES[split],
                    )
                )
                rows += [[lab, split, e, _r(m)] for e, m in zip(epochs, means)]
        if not series:
            continue
        chart = Chart(ChartKind.LINE, "epoch", f"{nice} (mean over members)", series)
        name = f"training_{quantity}"
        data = Table(name, ["run", "split", "epoch", f"{nice}_mean"], rows)
        caption = (
            f"Training curves: {nice} after each epoch, mean over each run's members (training "
            "accuracy is measured during the epoch)."
        )
        charts.append(ChartPlot(name, caption, chart, data))
    return CompareSection("training", "Training curves", [], charts, []) if charts else None


def run_color(labels: list[str], label: str) -> str:
    """One colour per run in every overlay; what differs within a run (split, family) is the
    line style or marker."""
    return PALETTE[labels.index(label) % len(PALETTE)]


def _nanmean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _subspace_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection | None:
    have = [(lab, res) for lab, c in zip(labels, ctxs) if (res := c.study(S.SUBSPACE))]
    if not have:
        return None
    series, rows = [], []
    for lab, res in have:
        t = res.csv(S.SUBSPACE_PLANE)
        for method in dict.fromkeys(t["method"]):
            sel = t["method"] == method
            acc, div = t["accuracy"][sel], t["norm_diversity"][sel]
            name = "independent members" if method == "independent" else f"{method} samples"
            marker = Marker.DIAMOND if method == "independent" else Marker.CIRCLE
            series.append(
                Series(
                    f"{lab}: {name}",
                    [_f(a) for a in acc],
                    [_f(d) for d in div],
                    color=run_color(labels, lab),
                    marker=marker,
                )
            )
            rows += [[lab, method, _r(a), _r(d)] for a, d in zip(acc, div)]
    chart = Chart(ChartKind.SCATTER, "accuracy", "normalised diversity", series)
    data = Table("subspace_plane", ["run", "method", "accuracy", "norm_diversity"], rows)
    caption = (
        "Diversity–accuracy plane: each subspace sample and each independent member against its "
        "run's reference member (normalised diversity as in each run's subspace study)."
    )
    refs = ", ".join(f"{lab}: member {res.summary.reference}" for lab, res in have)
    reading = [f"Reference members: {refs}."]
    if len(have) < len(ctxs):
        reading.append("Runs without a subspace study are left out of this chart.")
    return CompareSection(
        "subspace",
        "Subspace sampling",
        reading,
        [ChartPlot("subspace_plane", caption, chart, data)],
        [],
    )


def _shift_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection | None:
    have = [(lab, res) for lab, c in zip(labels, ctxs) if (res := c.study(S.SHIFT))]
    if not have:
        return None
    series, rows = [], []
    for lab, res in have:
        by = res.summary.by_severity
        for fam, m in by.metrics.items():
            if fam != "single" and not fam.startswith("ensemble_"):
                continue
            name = "single member" if fam == "single" else f"ensemble of {fam.split('_')[1]}"
            acc = [_f(a) for a in m["accuracy"]]
            line = LineStyle.DASHED if fam == "single" else LineStyle.SOLID
            series.append(
                Series(
                    f"{lab}: {name}",
                    list(by.severities),
                    acc,
                    color=run_color(labels, lab),
                    line=line,
                )
            )
            rows += [[lab, fam, int(v), _r(a)] for v, a in zip(by.severities, m["accuracy"])]
    chart = Chart(ChartKind.LINE, "corruption severity", "accuracy", series)
    data = Table("shift_accuracy", ["run", "family", "severity", "accuracy_mean"], rows)
    caption = (
        "Accuracy under corruption (mean over each run's corruptions; severity 0 is the clean "
        "test set), single members and ensembles."
    )
    corr = "; ".join(f"{lab}: {', '.join(res.summary.corruptions)}" for lab, res in have)
    reading = [f"Corruptions: {corr}."]
    if len(have) < len(ctxs):
        reading.append("Runs without a shift study are left out of this chart.")
    return CompareSection(
        "shift", "Dataset shift", reading, [ChartPlot("shift_accuracy", caption, chart, data)], []
    )


def _connect_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection | None:
    """Curve profiles overlaid: test error and agreement with the first end along t, per run
    with a connector study (`modescape connect`)."""
    have = [(lab, c.study(S.CONNECT)) for lab, c in zip(labels, ctxs)]
    have = [(lab, res) for lab, res in have if res is not None and res.has("profile.csv")]
    if not have:
        return None
    charts = []
    for column, nice in (("test_error", "test error"), ("agreement_end0", "agreement with end 0")):
        series, rows = [], []
        for lab, res in have:
            p = res.csv("profile.csv")
            series.append(Series(lab, [_f(t) for t in p["t"]], [_f(v) for v in p[column]],
                                 color=run_color(labels, lab)))  # fmt: skip
            rows += [[lab, _r(t), _r(v)] for t, v in zip(p["t"], p[column])]
        chart = Chart(ChartKind.LINE, "t along the curve", nice, series)
        data = Table(f"connect_{column}", ["run", "t", column], rows)
        caption = f"{nice.capitalize()} along each run's trained curve (t = 0: its first end)."
        charts.append(ChartPlot(f"connect_{column}", caption, chart, data))
    reading = [
        f"{lab}: test-error barrier {res.summary.error_barrier:.3f} along the curve "
        f"{'-'.join(res.summary.pair)}, {res.summary.line_error_barrier:.3f} along the line."
        for lab, res in have
    ]
    return CompareSection("connect", "Connectors", reading, charts, [])


def _instability_section(ctxs: list[ReportContext], labels: list[str]) -> CompareSection | None:
    """The error barrier between spawned children against the spawn point, one line per spawn
    run (`modescape spawn`), with each run's across-initialisation level."""
    have = [(lab, res) for lab, c in zip(labels, ctxs) if (res := c.study(S.INSTABILITY))]
    if not have:
        return None
    series, rows, reading = [], [], []
    for lab, res in have:
        s = res.summary
        at = [float(p.at) for p in s.points]
        barrier = [_f(p.level.error_barrier) for p in s.points]
        color = run_color(labels, lab)
        series.append(Series(f"{lab}: children", at, barrier, color=color))
        if s.across is not None:
            series.append(
                Series(
                    f"{lab}: across initialisations",
                    at,
                    [_f(s.across.error_barrier)] * len(at),
                    color=color,
                    line=LineStyle.DASHED,
                    marker=Marker.NONE,
                )
            )
        rows += [[lab, p.at, _r(p.level.error_barrier), _r(p.level.disagreement)]
                 for p in s.points]  # fmt: skip
        onset = "never" if s.onset is None else f"from epoch {s.onset:g}"
        reading.append(f"{lab}: stable (barrier below 2%) {onset}.")
    chart = Chart(ChartKind.LINE, "spawn point (epochs)", "error barrier", series)
    data = Table("instability", ["run", "spawn_epoch", "error_barrier", "disagreement"], rows)
    caption = (
        "Error barrier on the straight line between children spawned from one member at each "
        "point of its training (mean over pairs), with each run's across-initialisation level."
    )
    return CompareSection(
        "instability", "Spawned children", reading,
        [ChartPlot("instability", caption, chart, data)], [],
    )  # fmt: skip


def _data(
    ctxs: list[ReportContext], labels: list[str], sections: list[CompareSection]
) -> dict[str, Any]:
    figs = []
    for sec in sections:
        for c in sec.charts:
            figs.append(
                {
                    "number": len(figs) + 1,
                    "name": c.name,
                    "section": sec.id,
                    "caption": c.caption,
                    "files": [f"figures/{c.name}.csv"],
                    "columns": list(c.data.header),
                    "rows": [list(r) for r in c.data.rows],
                    "charts": [chart_data(c.chart)],  # the report's shape: one per panel
                }
            )
    runs = [{"label": lab, "path": str(c.run.path)} for lab, c in zip(labels, ctxs)]
    return {"runs": runs, "figures": figs}
