"""`modescape swag`: SWA, SWAG (low-rank and diagonal), MultiSWAG and MC dropout beside the deep
ensemble, as their authors define them (analysis/swag.py).

SWA, SWAG and MultiSWAG read each member's collection-phase statistics
(`members/m000/swag.safetensors`, written when the run was trained with `train.collect`); MC
dropout needs dropout layers (e.g. the seed variants) and uses each member's final snapshot.
Every sample's BatchNorm statistics are recomputed (networks with BatchNorm), as SWAG's
reference code does after each sample. Test predictions are cached per method and member under
`swag/preds/<method>/`, keyed by every setting they depend on (the study's and the sha256 of the
statistics or snapshot they came from). Results (paths under `<run>/swag/`):

    preds/<method>/m000/probs.npy  probs[samples, N, C]: swa 1, swag / swag_diag n_samples,
                  mc_dropout mc_passes (MultiSWAG pools the swag samples: no file of its own)
    curves.csv    family, size, metric, mean, std: ensembles of k members' models of each family
                  (a member's SWAG model averages its samples; the swag family at k = M is
                  MultiSWAG of M members), "deep" = the deep ensemble of final snapshots
    samples.csv   method, size, metric, mean, std: one member's predictive against its number of
                  samples (mean over members)
    plane.csv     kind, method, member, sample, accuracy, norm_diversity: member 0's samples
                  and the other members against member 0's final snapshot (the paper's
                  diversity–accuracy plane; the subspace study's columns)
    tsne.csv      kind, method, member, index, x, y: one joint t-SNE of the trajectories and up
                  to 10 samples per method and member
    summary.json  `store.schema.SwagSummary`
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modescape.analysis.ensembles import ensemble_curve
from modescape.analysis.metrics import METRICS, evaluate, evaluate_ensemble
from modescape.analysis.plane import diversity_accuracy_points, reference_curves
from modescape.analysis.swag import (
    SwagConfig,
    SwagMoments,
    dropout_layers,
    mc_dropout_probs,
    swa_weights,
    swag_samples,
)
from modescape.analysis.trajectories import embed_trajectories, fixed_subset, function_space_points
from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.options import SwagMethod
from modescape.registry import Flag, split_list
from modescape.seeding import derive_seed
from modescape.store import schema as S
from modescape.store.manifest import write_study_summary
from modescape.studies.cache import open_cache
from modescape.studies.context import BN_TRAIN_EXAMPLES, ResultWriter, RunContext, open_context

logger = logging.getLogger(__name__)

FOLDER = S.SWAG
EVALUATED = ("swa", "swag", "swag_diag", "mc_dropout")  # methods with predictions of their own
SAMPLE_SIZES = (1, 2, 5, 10, 20, 30, 50, 100)


def run_swag(
    path: str | Path | RunContext, config: SwagConfig | None = None, *, allow_partial: bool = False
) -> S.SwagSummary:
    """Evaluate every method of `config` around every finished member and compare them
    (`allow_partial`: the finished members of an unfinished run)."""
    start = time.perf_counter()
    config = config or SwagConfig()
    ctx = open_context(path)
    members = ctx.run.require_complete(allow_partial)
    wanted, skipped, moments = _plan(ctx, config, members)  # every refusal before any work
    out = ResultWriter(ctx.path / FOLDER, ctx.run)
    out.json("config.json", asdict(config))
    probs, collection = _predictions(ctx, config, members, out, wanted, moments)
    labels = ctx.run.labels("test")
    finals = ctx.run.final_predictions("test", members)
    # a member's model of a family averages its samples in float64, kept in float64 (rounded to
    # float32, near-equal classes become ties that move the accuracy)
    models = {"deep": finals} | {
        m: np.stack([probs[m][i].mean(axis=0, dtype=np.float64) for i in members]) for m in probs
    }
    out.csv(S.SWAG_CURVES, ["family", "size", "metric", "mean", "std"], _curves(models, labels))
    out.csv(
        "samples.csv", ["method", "size", "metric", "mean", "std"], _sample_curves(probs, labels)
    )
    header = ["kind", "method", "member", "sample", "accuracy", "norm_diversity"]
    out.csv(S.SWAG_PLANE, header, _plane(probs, members, finals, labels))
    tsne_rows, tsne = _tsne(ctx, members, probs, labels, config)
    out.csv(S.SWAG_TSNE, ["kind", "method", "member", "index", "x", "y"], tsne_rows)
    summary = S.SwagSummary(
        config=asdict(config),
        members=members,
        table=_table(config, models, probs, labels, collection),
        collection=collection,
        batchnorm=f"recomputed per sample on {BN_TRAIN_EXAMPLES} training examples"
        if ctx.has_batchnorm
        else "none in this architecture",
        skipped=skipped,
        files=out.files,
        tsne=tsne,
        plane=_reference_curves(finals[0], labels),
    )
    summary.elapsed_s = round(time.perf_counter() - start, 3)
    write_study_summary(ctx.run, FOLDER, summary.to_dict())
    return summary


def _plan(
    ctx: RunContext, config: SwagConfig, members: list[int]
) -> tuple[set[str], dict[str, str], dict[int, tuple[SwagMoments, dict[str, Any], str]]]:
    """The methods to evaluate, those skipped and why, and each member's SWAG statistics;
    refuses in one line, before any prediction is computed or written, a method that the
    collection phase cannot support (a Gaussian needs two iterates; SWAG's low-rank part two
    deviation columns, Maddox et al. 2019)."""
    wanted = set(config.methods)
    if SwagMethod.MULTISWAG in wanted:
        wanted.add(SwagMethod.SWAG)  # MultiSWAG pools the members' SWAG samples
    skipped: dict[str, str] = {}
    if SwagMethod.MC_DROPOUT in wanted and not dropout_layers(ctx.build_model()):
        wanted.discard(SwagMethod.MC_DROPOUT)
        skipped["mc_dropout"] = "the architecture has no dropout layers (try model.variant=seed)"
        logger.warning("swag: MC dropout skipped: %s", skipped["mc_dropout"])
    moments: dict[int, tuple[SwagMoments, dict[str, Any], str]] = {}
    if wanted & {"swa", "swag", "swag_diag"}:
        moments = {m: ctx.swag_moments(m) for m in members}
    gaussians = sorted(wanted & {"swag", "swag_diag", "multiswag"})
    for m, (mom, _, _) in moments.items():
        short = mom.n < 2 or ("swag" in wanted and mom.rank < 2)
        if gaussians and short:
            keep = [x for x in config.methods if x not in ("swag", "swag_diag", "multiswag")]
            raise ModescapeError(
                f"{', '.join(gaussians)} need at least 2 collected iterates (SWAG also 2 "
                f"deviation columns); member {m} has {mom.n} (rank {mom.rank}): lengthen the "
                "collection phase (--set train.collect.epochs=N, or train.collect.every_steps) "
                f"or leave them out (--methods {','.join(keep) or 'swa,mc_dropout'})"
            )
    return wanted, skipped, moments


def _predictions(
    ctx: RunContext,
    config: SwagConfig,
    members: list[int],
    out: ResultWriter,
    wanted: set[str],
    moments: dict[int, tuple[SwagMoments, dict[str, Any], str]],
) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, Any]]:
    """probs[samples, N, C] per evaluated method and member (cached), and what the collection
    phase collected."""
    collection = {}
    if moments:
        meta = moments[members[0]][1]
        collection = {"iterates": [moments[m][0].n for m in members], **meta["settings"]}
        collection["lr"] = meta["lr"]
    probs: dict[str, dict[int, np.ndarray]] = {}
    for method in [m for m in EVALUATED if m in wanted]:
        probs[method] = {}
        for m in members:
            source = moments[m][2] if m in moments and method != "mc_dropout" else ""
            if method == "mc_dropout":
                snap = ctx.run.snapshot_path(m, ctx.run.snapshot_epochs(m)[-1])
                source = ctx.run.expected_digest(ctx.run._rel(snap)) or ""
            settings = _settings(config, method, m, source)
            folder = f"preds/{method}/m{m:03d}"
            rel = S.SWAG_PREDS.format(method=method, member=m)
            fresh, digest = open_cache(out.root / folder, settings)
            out.files[f"{folder}/settings.json"] = digest
            cached = out.root / rel
            if not (fresh and cached.exists()):
                out.npy(rel, _evaluate(ctx, config, method, m, moments.get(m)))
            probs[method][m] = out.written_npy(rel)
    return probs, collection


def _settings(config: SwagConfig, method: str, member: int, source: str) -> dict[str, Any]:
    """Every setting one method's predictions of one member depend on."""
    per_method: dict[str, dict[str, Any]] = {
        "swa": {},
        "swag": {"n_samples": config.n_samples, "scale": config.scale},
        "swag_diag": {"n_samples": config.n_samples, "scale": config.diag_scale},
        "mc_dropout": {"passes": config.mc_passes},
    }
    return per_method[method] | {
        "method": method,
        "member": member,
        "seed": config.seed,
        "source": source,
    }


def _evaluate(
    ctx: RunContext,
    config: SwagConfig,
    method: str,
    member: int,
    moments: tuple[SwagMoments, dict[str, Any], str] | None,
) -> np.ndarray:
    seed = derive_seed(config.seed, "swag", method, member)
    if method == "mc_dropout":
        model = ctx.run.model(member)
        return mc_dropout_probs(model, ctx.inputs("test"), config.mc_passes, seed).numpy()
    if moments is None:
        raise ModescapeError(f"swag: member {member} has no collected moments for {method}")
    m = moments[0]
    if method == "swa":
        weights = swa_weights(m)[None]
    elif method == "swag":
        weights = swag_samples(m, config.n_samples, seed, variant="full", scale=config.scale)
    else:
        weights = swag_samples(m, config.n_samples, seed, variant="diag", scale=config.diag_scale)
    # BatchNorm statistics recomputed for every weight vector (SWA's `update_bn`; SWAG per sample)
    return ctx.evaluate(ctx.with_recomputed_bn(weights.to(torch.float32)), "test")


def _curves(models: dict[str, np.ndarray], labels: np.ndarray) -> list[list[Any]]:
    rows = []
    for family, stack in models.items():
        curve = ensemble_curve(stack, labels, seed=0)
        for i, k in enumerate(curve.sizes):
            for metric in METRICS:
                rows.append([family, int(k), metric, curve.mean[metric][i], curve.std[metric][i]])
    return rows


def _sample_curves(probs: dict[str, dict[int, np.ndarray]], labels: np.ndarray) -> list[list[Any]]:
    """One member's predictive against its number of samples (random subsets of its samples,
    then the mean and std over members of each member's mean)."""
    rows = []
    for method, per_member in probs.items():
        n = next(iter(per_member.values())).shape[0]
        sizes = [k for k in SAMPLE_SIZES if k <= n] + ([n] if n not in SAMPLE_SIZES else [])
        curves = [
            ensemble_curve(p, labels, np.asarray(sizes), max_subsets=20)
            for p in per_member.values()
        ]
        for i, k in enumerate(sizes):
            for metric in METRICS:
                vals = [c.mean[metric][i] for c in curves]
                rows.append([method, k, metric, float(np.mean(vals)), float(np.std(vals))])
    return rows


def _plane(
    probs: dict[str, dict[int, np.ndarray]],
    members: list[int],
    finals: np.ndarray,
    labels: np.ndarray,
) -> list[list[Any]]:
    """The first member's samples of every method against its final snapshot, and the other
    members (the paper's independent solutions), in the subspace study's plane.csv columns."""
    ref, first = finals[0], members[0]
    rows = []
    for method, per_member in probs.items():
        acc, div = diversity_accuracy_points(ref, per_member[first], labels)
        rows += [["sample", method, first, j, a, d] for j, (a, d) in enumerate(zip(acc, div))]
    if len(members) > 1:
        acc, div = diversity_accuracy_points(ref, finals[1:], labels)
        rows += [["member", "independent", m, 0, a, d] for m, a, d in zip(members[1:], acc, div)]
    return [[*r[:4], float(r[4]), float(r[5]) if np.isfinite(r[5]) else None] for r in rows]


def _reference_curves(ref: np.ndarray, labels: np.ndarray) -> S.ReferencePlane:
    """The plane's reference curves around member 0 (none for a reference at chance level)."""
    ref_acc = float((ref.argmax(-1) == labels).mean())
    C = ref.shape[-1]
    if ref_acc <= 1.0 / C:
        return S.ReferencePlane(ref_acc, None)
    grid = np.linspace(1.0 / C, ref_acc, 50)
    upper, lower = reference_curves(ref_acc, C, grid)
    return S.ReferencePlane(
        ref_acc, S.ReferenceCurves(grid.tolist(), upper.tolist(), lower.tolist())
    )


def _tsne(
    ctx: RunContext,
    members: list[int],
    probs: dict[str, dict[int, np.ndarray]],
    labels: np.ndarray,
    config: SwagConfig,
) -> tuple[list[list[Any]], dict[str, Any]]:
    """A joint t-SNE of the trajectories and up to 10 samples of each method per member."""
    run = ctx.run
    idx = fixed_subset(len(labels), min(1024, len(labels)))
    traj = [(m, e, run.predictions("test", m, e)) for m in members for e in run.snapshot_epochs(m)]
    points = [function_space_points(p, idx) for _, _, p in traj]
    meta = [["trajectory", "", m, e] for m, e, _ in traj]
    for method, per_member in probs.items():
        for m, p in per_member.items():
            for i in range(min(10, p.shape[0])):
                points.append(function_space_points(p[i], idx))
                meta.append(["sample", method, m, i])
    emb = embed_trajectories(np.stack(points), "tsne", seed=config.seed)
    rows = [[*row, float(x), float(y)] for row, (x, y) in zip(meta, emb.coords)]
    return rows, emb.settings


def _table(
    config: SwagConfig,
    models: dict[str, np.ndarray],
    probs: dict[str, dict[int, np.ndarray]],
    labels: np.ndarray,
    collection: dict[str, Any],
) -> list[S.SwagRow]:
    """One row per method: the single model / member's method model (mean over members) and the
    MultiSWAG / deep ensemble of all members, with the cost in test-set forward passes."""
    M = models["deep"].shape[0]
    per_member = {k: next(iter(v.values())).shape[0] for k, v in probs.items()}
    epochs = collection.get("epochs", 0)

    def row(name: str, family: str, k: int, forwards: int, extra_epochs: int) -> S.SwagRow:
        if k == 1:
            scores = [evaluate(p, labels) for p in models[family]]
            metrics = {m: float(np.mean([s[m] for s in scores])) for m in METRICS}
        else:
            metrics = evaluate_ensemble(models[family], labels)  # log-mean-exp NLL
        values = {m: float(metrics[m]) for m in METRICS}
        return S.SwagRow(name, k, forwards, extra_epochs * k, **values)

    rows = [row("single model", "deep", 1, 1, 0), row("deep ensemble", "deep", M, M, 0)]
    if "swa" in probs:
        rows.append(row("SWA", "swa", 1, 1, epochs))
    if "swag" in probs:
        rows.append(row("SWAG", "swag", 1, per_member["swag"], epochs))
    if "swag_diag" in probs:
        rows.append(row("SWAG-Diagonal", "swag_diag", 1, per_member["swag_diag"], epochs))
    if "swag" in probs and SwagMethod.MULTISWAG in config.methods:
        rows.append(row("MultiSWAG", "swag", M, M * per_member["swag"], epochs))
    if "mc_dropout" in probs:
        rows.append(row("MC dropout", "mc_dropout", 1, per_member["mc_dropout"], 0))
    return rows


# ---- the study's declaration (`modescape.registry`) ----------------------------------------------
CLI_FLAGS = {
    "methods": Flag(help="comma-separated methods", parse=split_list, metavar="M1,M2"),
    "n_samples": Flag("--samples", "SWAG samples per member"),
    "scale": Flag(help="SWAG's covariance scale s"),
    "diag_scale": Flag(help="SWAG-Diagonal's variance scale"),
    "mc_passes": Flag(help="MC-dropout forward passes per member"),
    "seed": Flag(help="base seed of the samples"),
}


def applies(config: RunConfig) -> bool:
    """`modescape run` runs (and prices) the study only for runs with a collection phase: SWA
    and SWAG need its statistics (`train.collect`)."""
    return bool(config.train.collect.enabled)


def outcome(summary: S.SwagSummary, run: Path) -> list[str]:
    """What `modescape swag` prints when done: each method's accuracy and NLL."""
    lines = [
        f"{row.method:>15}: accuracy {row.accuracy:.4f}, NLL {row.nll:.4f}" for row in summary.table
    ]
    return [*lines, f"results in {run / S.SWAG}"]
