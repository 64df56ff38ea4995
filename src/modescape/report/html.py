"""`modescape report`: one self-contained HTML page with every figure and table of a run.

    <run>/report/index.html          the page: figures embedded as base64 PNG, inline CSS, no
                                     scripts, fonts or anything fetched from the network
    <run>/report/figures/<name>.png  every figure, also as .pdf
    <run>/report/tables/<name>.csv   every table (summary, members, ensembles)

The page is a list of sections. Each section is built by a function in `SECTIONS` from a
`ReportContext` (the run, the typed analysis summary and readers for the analysis files); it returns
a `Section`, or None when the results it shows are absent, so a report of a run that lacks an
optional analysis simply has fewer sections.

Adding a section: a function of the context, registered in `SECTIONS`. `ctx.has/npy/json/csv`
read analysis/; `ctx.study("subspace")` gives the same readers for another results folder and
its typed summary (`studies.schema`), or None when that study has not been run:

    def my_section(ctx: ReportContext) -> Section | None:
        res = ctx.study("my_study")
        if res is None:
            return None                       # study not run: no section
        s = res.summary
        return Section(
            "my_study", "My study",
            reading=[f"Samples disagree with the reference on {s.dis:.1%} of points."],
            figures=[Plot("my_plane", figures_study.some_figure(...), "What it shows.")],
        )

    SECTIONS.insert(5, my_section)             # page order = list order

The follow-up studies (loss landscape, subspace sampling, dataset shift) are built this way, in
`report/sections.py`; `Plot`, `Table`, `Section`, `ReportContext` and the wording helpers live in
`report/base.py` (and are importable from here). The report computes nothing a study should have
written: it reads the studies' files (the corruption examples included).
Readings are plain text (escaped when rendered); build their numbers from the analysis files,
and phrase them so they stay true whatever the numbers turn out to be.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modescape.report import figures
from modescape.report.base import (  # noqa: F401  (re-exported: the section-building API)
    Plot,
    ReportContext,
    Results,
    Section,
    SectionFn,
    Table,
    _count,
    _near_one,
    _pct,
    _points,
    _warned,
)
from modescape.report.sections import landscape_section, shift_section, subspace_section
from modescape.store.files import atomic_write_bytes, killpoint
from modescape.store.run import Run, load_run
from modescape.studies import schema as S

logger = logging.getLogger(__name__)

MEMBER_COLUMNS = ("member", "seed", "state", "epochs", "accuracy", "nll", "brier", "ece",
                  "min consecutive late cosine", "time (s)")  # fmt: skip


# ---- sections -------------------------------------------------------------------------------
def run_section(ctx: ReportContext) -> Section:
    run, s, cfg = ctx.run, ctx.summary, ctx.run.config
    data = run.data_summary
    n_params = _parameter_count(run)
    accs = [r["accuracy"] for r in s.single_per_member]
    known = [t for info in ctx.member_infos if (t := info.get("time_s")) is not None]
    M, E = len(ctx.members), ctx.epochs[-1]
    model = f"{cfg.model.arch} ({cfg.model.variant} variant, {n_params:,} parameters)"
    reading = [
        f"{_count(M, 'independent member')}, each a {model}, trained for {_count(E, 'epoch')} on "
        f"{data.get('name', '?')} "
        f"({data.get('n_train', 0):,} training / {data.get('n_test', 0):,} test examples) "
        f"with the {cfg.train.recipe} recipe ({cfg.train.optimizer}, learning rate "
        f"{cfg.train.lr:g}, batch {cfg.train.batch_size}).",
        f"On the {s.split} set ({s.n_examples:,} examples) a member reaches "
        f"{_pct(np.mean(accs))} accuracy on average (range {_pct(min(accs))} to "
        f"{_pct(max(accs))})."
        + (f" Training took {sum(known):.0f} s of member time in total." if known else ""),
        *_warned(s.warnings),
    ]
    late = f"late disagreement (last {s.disagreement.late_window})"
    tables = [
        Table(
            "summary",
            ["setting", "value"],
            _settings_rows(ctx, n_params),
            "Data, model, recipe and versions.",
            align_numbers=False,
        ),
        Table(
            "members",
            [*MEMBER_COLUMNS[:8], late, *MEMBER_COLUMNS[8:]],
            _member_rows(ctx),
            f"Final snapshot of each member on the {s.split} set.",
        ),
    ]
    return Section("run", "Run summary", reading, tables=tables)


def _settings_rows(ctx: ReportContext, n_params: int) -> list[list[Any]]:
    run, s, cfg = ctx.run, ctx.summary, ctx.run.config
    manifest, data = run.manifest, run.data_summary
    versions = manifest.get("versions", {})
    n = f"{data.get('n_train')} / {data.get('n_val')} / {data.get('n_test')}"
    return [
        ["run", str(run.path)],
        ["created", manifest.get("created", "")],
        ["dataset", data.get("name", "")],
        ["examples (train / val / test)", n],
        ["architecture", cfg.model.arch],
        ["variant", cfg.model.variant],
        ["parameters", n_params],
        ["recipe", cfg.train.recipe],
        [
            "optimizer, lr, schedule",
            f"{cfg.train.optimizer}, {cfg.train.lr:g}, {cfg.train.schedule}",
        ],
        ["batch size", cfg.train.batch_size],
        ["epochs", ctx.epochs[-1]],
        ["members", len(ctx.members)],
        ["base seed", cfg.seed],
        ["analysis split", s.split],
        ["weights compared", f"{s.parameters['selection']} ({s.parameters['count']:,})"],
    ] + [[f"version: {k}", v] for k, v in sorted(versions.items())]


def _member_rows(ctx: ReportContext) -> list[list[Any]]:
    s, seeds = ctx.summary, ctx.run.manifest.get("seeds", {})
    rows = []
    for i, m in enumerate(ctx.members):
        r, info = s.single_per_member[i], ctx.member_infos[i]
        t = info.get("time_s")
        rows.append(
            [
                m, seeds.get(f"member_{m}", ""), info["state"], info.get("epoch", ""),
                r["accuracy"], r["nll"], r["brier"], r["ece"],
                s.disagreement.late_within_per_member[i],
                s.cosine.consecutive_late_min_per_member[i],
                t if t is not None else "",
            ]
        )  # fmt: skip
    return rows


def weight_section(ctx: ReportContext) -> Section | None:
    if not ctx.has(S.COSINE):
        return None
    s, M, E = ctx.summary, ctx.members, ctx.epochs
    cos = ctx.npy(S.COSINE)
    late_min = float(np.min(s.cosine.consecutive_late_min_per_member))
    sel = s.parameters
    reading = [
        f"Cosine similarity of one flat vector of {sel['count']:,} raw parameters "
        f"(selection '{sel['selection']}'; BatchNorm running statistics are never included)."
    ]
    if len(M) > 1:
        across = s.cosine.across_members_mean
        late = _near_one(late_min)
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
        reading.append(f"Consecutive late snapshots reach cosine similarity {_near_one(late_min)}.")
    plots = _matrix_plots(
        "cosine", cos, M, E, "Every snapshot against every other; white lines separate members."
    )
    if ctx.has(S.DISTANCE):
        dist = ctx.npy(S.DISTANCE)
        plots.append(
            Plot(
                "distance_from_init",
                figures.distance_from_init_figure(dist, M, E),
                "How far each member's weights move from their initial values.",
            )
        )
    return Section("weights", "Weight space", reading, plots)


def _matrix_plots(
    quantity: str, matrix: np.ndarray, M: list[int], E: list[int], caption: str
) -> list[Plot]:
    """The (members·epochs)² heatmap, the members' finals and member M[0]'s own trajectory."""
    finals = np.arange(len(M)) * len(E) + len(E) - 1
    plots = [Plot(f"{quantity}_all", figures.full_heatmap(matrix, M, E, quantity), caption)]
    if len(M) > 1:
        members = figures.across_members_heatmap(matrix[np.ix_(finals, finals)], M, quantity)
        plots.append(Plot(f"{quantity}_members", members, "Final snapshots of the members."))
    own = figures.within_trajectory_heatmap(matrix[: len(E), : len(E)], E, quantity, member=M[0])
    plots.append(
        Plot(f"{quantity}_trajectory", own, f"Snapshots of member {M[0]} against each other.")
    )
    return plots


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
            f"Independent members disagree on {_pct(across)} of {s.split} points; {late} on "
            f"{_pct(within)}. A member's own error rate is {_pct(error)} on average, so "
            f"members disagree on {across / error:.2f}× as many points as they get wrong."
            if error > 0
            else f"Independent members disagree on {_pct(across)} of points; {late} on "
            f"{_pct(within)}.",
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
        reading = [f"One member only: {late} disagree on {_pct(d.late_within_mean)}."]
    reading += _warned([w for w in s.warnings if w.startswith("late window")])
    plots = _matrix_plots(
        "disagreement",
        dis,
        M,
        E,
        "Fraction of points where two snapshots predict different classes.",
    )
    if ctx.has(S.AGREEMENT_WITH_FINAL):
        plots.append(
            Plot(
                "agreement_with_final",
                figures.agreement_with_final_figure(ctx.npy(S.AGREEMENT_WITH_FINAL), M, E),
                "Each snapshot's agreement (1 − disagreement) with its own member's final "
                "predictions (solid) and with the other members' (dashed, mean).",
            )
        )
    return Section("functions", "Function space", reading, plots)


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
        t = ctx.csv(S.TRAJECTORY_CSV.format(method=method))
        fig = figures.trajectory_figure(t["member"], t["epoch"], t["x"], t["y"], method=label)
        plots.append(Plot(f"trajectories_{method}", fig, f"{label} of all snapshots, one fit."))
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
            f"t-SNE (perplexity {tsne.get('perplexity', '?')}"
            f"{', clamped for the number of points' if tsne.get('perplexity_clamped') else ''}, "
            f"seed {tsne.get('seed', '?')}) keeps neighbours together but its distances are "
            "not to scale; compare which trajectories end near each other, not how far apart."
        )
    ratio = emb.get("pca", {}).get("explained_variance_ratio")
    if ratio:
        reading.append(
            f"PCA is linear: its two axes explain {_pct(ratio[0])} and {_pct(ratio[1])} of the "
            "variance of the predictions."
        )
    return Section("trajectories", "Trajectories in function space", reading, plots)


def ensemble_section(ctx: ReportContext) -> Section | None:
    if not ctx.has(S.ENSEMBLE_CURVES):
        return None
    c = ctx.csv(S.ENSEMBLE_CURVES)
    plots = [
        Plot(
            "ensemble_curves",
            figures.ensemble_curves_figure(
                c["family"], c["size"], c["metric"], c["mean"], c["std"]
            ),
            "Mean ± standard deviation over member subsets (deep) or members (snapshot, "
            "weight average).",
        )
    ]
    if ctx.has(S.RELIABILITY):
        rel = ctx.json(S.RELIABILITY)
        # Single member first, then the ensemble, whatever order the JSON keys come in.
        order = sorted(rel, key=lambda key: (not key.startswith("single"), key))
        diagrams = {_reliability_title(key): rel[key] for key in order}
        plots.append(
            Plot(
                "reliability",
                figures.reliability_figure(diagrams),
                "Accuracy against confidence; bottom: examples per bin.",
            )
        )
    header = ["family", "size"] + [
        f"{mt} {x}" for mt in ("accuracy", "nll", "brier", "ece") for x in ("mean", "std")
    ]
    table = Table("ensembles", header, _ensemble_rows(c), "Metrics against ensemble size.")
    return Section("ensembles", "Ensembles", _ensemble_reading(ctx), plots, [table])


def _ensemble_reading(ctx: ReportContext) -> list[str]:
    s = ctx.summary
    e, single, M = s.ensemble, s.single, len(ctx.members)
    k = s.ensemble_size_compared
    deep, snap, deep_k = e["deep"], e["snapshot_k"], e["deep_k"]
    n_avg = len(s.weight_average.get("epochs_averaged", []))
    wa_n = f"the last {n_avg}" if n_avg else "the last"
    base = single["accuracy"]
    wa = e["weight_average"]
    verdict = "."
    if deep["ece"] != single["ece"]:
        verdict = " (better calibrated)." if deep["ece"] < single["ece"] else " (worse calibrated)."
    return [
        f"A {M}-member deep ensemble reaches {_pct(deep['accuracy'])} accuracy vs "
        f"{_pct(base)} for the mean single member (it {_points(deep['accuracy'] - base)}); "
        f"NLL {deep['nll']:.3f} vs {single['nll']:.3f}, "
        f"Brier {deep['brier']:.3f} vs {single['brier']:.3f}."
        if M > 1
        else f"With one member there is no deep ensemble: the member reaches {_pct(base)} "
        f"accuracy, NLL {single['nll']:.3f}, Brier {single['brier']:.3f}.",
        f"A snapshot ensemble of the last {_count(k, 'snapshot')} of one trajectory reaches "
        f"{_pct(snap['accuracy'])} (it {_points(snap['accuracy'] - base)} relative to a single "
        f"member), against {_pct(deep_k['accuracy'])} for {_count(k, 'independent member')}. "
        f"Averaging the weights of {wa_n} snapshots gives one model with "
        f"{_pct(wa['accuracy'])} (it {_points(wa['accuracy'] - base)}).",
        *_warned([w for w in s.warnings if w.startswith("weight average")]),
        f"Calibration (ECE, 15 equal-width bins): {_pct(single['ece'])} for a single member, "
        f"{_pct(deep['ece'])} for the deep ensemble"
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
            row = [fam, size]
            for mt in ("accuracy", "nll", "brier", "ece"):
                row += list(vals.get(mt, ("", "")))
            rows.append(row)
    return rows


def training_section(ctx: ReportContext) -> Section | None:
    if not ctx.has(S.TRAINING_CURVES):
        return None
    c = ctx.csv(S.TRAINING_CURVES)
    keys = [k for k in c if k.endswith(("_loss", "_acc")) and np.isfinite(c[k]).any()]
    fig = figures.training_curves_figure(c["member"], c["epoch"], {k: c[k] for k in keys})
    last = c["epoch"] == c["epoch"].max()
    reading = []
    if {"train_acc", "test_acc"} <= set(keys):
        tr, te = np.nanmean(c["train_acc"][last]), np.nanmean(c["test_acc"][last])
        reading.append(
            f"After the last epoch members average {_pct(tr)} training accuracy and "
            f"{_pct(te)} test accuracy (gap {100 * (tr - te):.1f} points; training accuracy "
            "is measured during the epoch, with dropout)."
        )
    styles = {"train": "solid", "test": "dashed", "val": "dotted"}
    shown = [f"{ls} {split}" for split, ls in styles.items() if f"{split}_loss" in keys]
    plots = [Plot("training_curves", fig, f"Per member: {', '.join(shown)}.")]
    return Section("training", "Training curves", reading, plots)


SECTIONS: list[SectionFn] = [
    run_section,
    weight_section,
    function_section,
    trajectory_section,
    landscape_section,
    ensemble_section,
    subspace_section,
    shift_section,
    training_section,
]


def _reliability_title(key: str) -> str:
    head, _, num = key.rpartition("_")
    if head == "single_member" and num.isdigit():
        return f"Single member (m{num})"
    if head == "deep_ensemble" and num.isdigit():
        return f"Deep ensemble of {num} members"
    return key.replace("_", " ")


def _parameter_count(run: Run) -> int:
    from modescape.models.architectures import count_parameters

    return count_parameters(run.build_model())


# ---- writing --------------------------------------------------------------------------------
def write_report(
    run_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    log: Callable[[str], Any] | None = None,
) -> Path:
    """Write index.html, figures/*.png|pdf and tables/*.csv; return the path of index.html.

    `log` is deprecated (the message goes to `logging`); a callable passed still gets it.
    """
    start = time.perf_counter()
    ctx = ReportContext(load_run(run_path))
    out = Path(out_dir) if out_dir is not None else ctx.run.path / "report"
    sections = [sec for fn in SECTIONS if (sec := fn(ctx)) is not None]
    images: dict[str, bytes] = {}
    for sec in sections:
        for plot in sec.figures:
            files = figures.render_figure(plot.figure)
            for fmt, data in files.items():
                killpoint("report.write")
                atomic_write_bytes(out / "figures" / f"{plot.name}.{fmt}", data)
            images[plot.name] = files["png"]
        for table in sec.tables:
            atomic_write_bytes(out / "tables" / f"{table.name}.csv", _csv_bytes(table))
    page = render_html(ctx, sections, images)
    index = out / "index.html"
    killpoint("report.index")
    atomic_write_bytes(index, page.encode())
    message = f"report: {len(images)} figures in {time.perf_counter() - start:.1f} s -> {index}"
    if log is not None:
        log(message)
    else:
        logger.info(message)
    return index


def _csv_bytes(table: Table) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return buf.getvalue().encode()


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else _near_one(float(value), 4, "g")
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) < 10**12 else str(value)  # seeds stay unformatted
    return str(value)


def _td(value: Any, align_numbers: bool = True) -> str:
    numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    css = ' class="num"' if numeric and align_numbers else ""
    return f"<td{css}>{html.escape(_cell(value))}</td>"


def render_html(ctx: ReportContext, sections: list[Section], images: dict[str, bytes]) -> str:
    """The page as one string; everything taken from files is HTML-escaped."""
    esc = html.escape
    title = f"modescape report: {ctx.run.path.name}"
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = []
    for sec in sections:
        parts = [f'<section id="{esc(sec.id)}"><h2>{esc(sec.title)}</h2>']
        parts += [f'<p class="reading">{esc(p)}</p>' for p in sec.reading]
        for plot in sec.figures:
            data = base64.b64encode(images[plot.name]).decode()
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(plot.caption)}">'
                f"<figcaption>{esc(plot.caption)} "
                f'<a href="figures/{esc(plot.name)}.png">PNG</a> · '
                f'<a href="figures/{esc(plot.name)}.pdf">PDF</a></figcaption></figure>'
            )
        for table in sec.tables:
            head = "".join(f"<th>{esc(str(h))}</th>" for h in table.header)
            rows = "".join(
                "<tr>" + "".join(_td(v, table.align_numbers) for v in row) + "</tr>"
                for row in table.rows
            )
            parts.append(
                f'<div class="table"><table><caption>{esc(table.caption)} '
                f'<a href="tables/{esc(table.name)}.csv">CSV</a></caption>'
                f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
            )
        body.append("".join(parts) + "</section>")
    return _PAGE.format(
        title=esc(title),
        run=esc(str(ctx.run.path)),
        created=esc(time.strftime("%Y-%m-%d %H:%M")),
        nav=nav,
        notices="".join(f'<p class="notice">{esc(n)}</p>' for n in ctx.notices),
        body="\n".join(body),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 0 24px 48px; }}
header {{ border-bottom: 1px solid #ddd; margin-bottom: 8px; }}
h1 {{ font-size: 1.6em; margin: 24px 0 4px; }}
h2 {{ font-size: 1.3em; margin-top: 40px; border-bottom: 1px solid #eee; }}
nav a {{ margin-right: 16px; }}
.meta {{ color: #666; font-size: 0.9em; word-break: break-all; }}
.notice {{ background: #fff4e5; border-left: 4px solid #c05600; padding: 8px 12px; }}
.reading {{ background: #f6f8fa; border-left: 4px solid #1f3b73; padding: 8px 12px;
           margin: 8px 0; }}
figure {{ margin: 20px 0; }}
figure img {{ max-width: 100%; height: auto; display: block; }}
figcaption, caption {{ color: #555; font-size: 0.9em; text-align: left; }}
.table {{ overflow-x: auto; margin: 16px 0; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
a {{ color: #1f5fbf; }}
</style></head>
<body>
<header><h1>{title}</h1>
<p class="meta">Run: {run} · report written {created}</p>
{notices}<nav>{nav}</nav></header>
{body}
</body></html>
"""
