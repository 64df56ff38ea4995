"""`modescape subspace`: subspace sampling around every member's trajectory (Fort et al. 2019).

For each sampler and each member, `n_samples` weight vectors are drawn around the member's final
snapshot (seeded per method and member), evaluated in batches, and their test predictions cached
as `<run>/subspace/preds/<method>/m000.npy` (probs[samples, examples, classes]); an interrupted
call resumes at the next (method, member) and a repeated one computes nothing. Each
`preds/<method>/settings.json` holds the sampler settings its predictions were drawn with; other
settings (mode, target_drop, ...) empty that folder and draw again.

Scales (`SubspaceConfig.mode`): "paper" uses the notebook's plane-section settings as they are;
"calibrated" (default) first finds, per sampler and member, the scale at which samples lose
`target_drop` accuracy (`analysis.calibration.calibrate`), measured on a fixed seeded subset of
the TRAINING data (never test: the test split is what the plane reports), BatchNorm statistics
recomputed per sample; samples then draw t·scale, t ~ U(0,1). Each calibration is cached as
`preds/<method>/m000.calibration.json` and recorded in the summary. Results (`store.schema`):

    subspace/plane.csv        kind, method, member, sample, accuracy, norm_diversity (vs member 0)
    subspace/curves.csv       family, size, metric, mean, std (ensembles with subspaces)
    subspace/tsne_<method>.csv  kind, member, index, x, y: trajectories + that method's clouds
    subspace/summary.json     `SubspaceSummary`: JS diversity, plane summaries (member 0 and
                              every member as reference), reference curves, calibrations
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modescape.analysis.calibration import calibrate
from modescape.analysis.ensembles import EnsembleCurve, ensemble_curve
from modescape.analysis.functionspace import js_diversity
from modescape.analysis.metrics import METRICS, evaluate, evaluate_ensemble
from modescape.analysis.plane import (
    diversity_accuracy_points,
    every_reference,
    plane_summary,
    reference_curves,
)
from modescape.analysis.samplers import ALWAYS_SWEEP, SAMPLERS
from modescape.analysis.subspace import SamplerMode, SubspaceConfig, sample_subspace
from modescape.analysis.trajectories import embed_trajectories, fixed_subset, function_space_points
from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.progress import Progress
from modescape.registry import Flag, split_list
from modescape.store import schema as S
from modescape.store.manifest import write_study_summary
from modescape.store.run import Run
from modescape.studies.cache import open_cache
from modescape.studies.context import (
    BN_TRAIN_EXAMPLES,
    ResultWriter,
    RunContext,
    clamp_window,
    open_context,
    require_snapshots,
)

# probs[samples, examples, classes] of each sampler (method) around each member
SampleProbs = dict[str, dict[int, np.ndarray]]
logger = logging.getLogger(__name__)

CALIBRATION_EXAMPLES = 2048  # training examples the calibration accuracies are measured on
PLANE_TOL = 0.02  # "close to the reference": within 2 accuracy points


def sampler_settings(config: SubspaceConfig, method: str) -> dict[str, Any]:
    """Every setting the samples of `method` depend on (its own scale, not the other samplers'),
    which keys the cache of its predictions."""
    own = f"{method}_scale"
    settings = {
        k: v
        for k, v in asdict(config).items()
        if k != "methods" and not (k.endswith("_scale") and k != own)
    }
    # "scales" marks caches drawn before calibration existed (same fields, other scales) as stale.
    scales = "calibrated" if config.mode is SamplerMode.CALIBRATED else "config"
    return settings | {"method": method, "split": "test", "scales": scales}


def subspace_samples(
    run: Run | RunContext,
    config: SubspaceConfig,
    method: str,
    member: int,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """The (re)generated samples of one method around one member: [n_samples, P].

    scale: the calibrated scale (`SubspaceSummary.scale(method, member)`); None: the config's.
    """
    ctx = open_context(run)
    return sample_subspace(config, method, ctx.trajectory_matrix(member), member, scale=scale)


def calibration_data(ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed, seeded subset of training examples calibration is measured on: x [n, ...],
    y int [n] (n = min(CALIBRATION_EXAMPLES, training set))."""
    y = torch.as_tensor(ctx.dataset.y_train)
    # Seed 1: a different draw from the BatchNorm subset (seed 0), so the accuracy is not
    # measured on the very batches the statistics were recomputed on.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    idx = perm[:CALIBRATION_EXAMPLES]
    return ctx.train_inputs(idx), y[idx]


def accuracy_function(ctx: RunContext) -> Callable[[torch.Tensor], torch.Tensor]:
    """`accuracy_of(weights[K, P]) -> accuracies[K]` on `calibration_data`, BatchNorm statistics
    recomputed per weight vector where the network has BatchNorm."""
    from modescape.analysis.engine.batched import evaluate_many
    from modescape.analysis.engine.bn import recompute_bn_buffers

    x, y = calibration_data(ctx)
    model = ctx.build_model()

    def accuracy_of(weights: torch.Tensor) -> torch.Tensor:
        buffers = recompute_bn_buffers(model, weights, ctx.bn_subset) if ctx.has_batchnorm else None
        logits = evaluate_many(model, weights, x, output="logits", buffers=buffers)
        return (logits.argmax(-1) == y).double().mean(dim=1)

    return accuracy_of


def run_subspace(
    path: str | Path | RunContext,
    config: SubspaceConfig | None = None,
    *,
    reference: int = 0,
    allow_partial: bool = False,
    late: int = S.LATE_WINDOW,
    weight_average: int = S.WEIGHT_AVERAGE_WINDOW,
) -> S.SubspaceSummary:
    """Sample, evaluate and analyse every subspace method around every member.

    late: snapshots of one trajectory whose JS diversity is the baseline; weight_average: the
    window of the weight-averaged models in the ensemble curves.
    """
    start = time.perf_counter()
    ctx = open_context(path)
    members = ctx.run.require_complete(allow_partial)
    if reference not in members:
        raise ModescapeError(f"reference member {reference} is not among the finished {members}")
    # Every window and setting is settled before any sampling (clamped with a warning or refused).
    config, warnings = fit_to_run(config or SubspaceConfig(), ctx, members)
    late_epochs = ctx.late_epochs(members[0], late, "late window")[0]
    for m in members:
        windows = (
            ctx.late_epochs(m, late, "late window"),
            ctx.weight_average_window(m, weight_average),
        )
        warnings += [w for _, w in windows if w and w not in warnings]
    out = ResultWriter(ctx.path / S.SUBSPACE, ctx.run)
    out.json(S.SUBSPACE_CONFIG, asdict(config))
    sample_probs, calibrations = _sample_predictions(ctx, config, members, out)
    labels = ctx.run.labels("test")
    finals = ctx.run.final_predictions("test", members)
    ref = finals[members.index(reference)]
    plane = _plane(out, config, members, reference, finals, sample_probs, labels)
    sweeps = _every_reference(config, members, finals, sample_probs, labels)
    ref_acc = float(evaluate(ref, labels)["accuracy"])
    js = _js_diversity(ctx, config, members, finals, sample_probs, late)
    wa, wa_info = _weight_average_probs(ctx, members, weight_average)
    header = ["family", "size", "metric", "mean", "std"]
    out.csv(S.SUBSPACE_CURVES, header, _curve_rows(members, finals, wa, sample_probs, labels))
    tsne = {}
    for method in config.methods:
        coords_rows, tsne[method] = _joint_tsne(ctx.run, members, sample_probs[method], labels)
        header = ["kind", "member", "index", "x", "y"]
        out.csv(S.SUBSPACE_TSNE.format(method=method), header, coords_rows)
    summary = S.SubspaceSummary(
        config=asdict(config),
        members=members,
        reference=reference,
        reference_accuracy=ref_acc,
        batchnorm=f"recomputed per sample on {BN_TRAIN_EXAMPLES} training examples"
        if ctx.has_batchnorm
        else "none in this architecture",
        plane=plane,
        reference_curves=_reference_curves(ref, ref_acc),
        js_diversity=js,
        tsne=tsne,
        files=out.files,
        late_window=len(late_epochs),
        weight_average=wa_info,
        warnings=warnings,
        mode=config.mode.value,
        calibration=calibrations,
        calibration_data=f"{len(calibration_data(ctx)[1])} training examples (seeded subset)"
        if calibrations
        else "",
        every_reference=sweeps,
    )
    summary.elapsed_s = round(time.perf_counter() - start, 3)
    for warning in summary.warnings:
        logger.warning(warning)
    write_study_summary(ctx.run, S.SUBSPACE, summary.to_dict())
    return summary


def fit_to_run(
    config: SubspaceConfig, ctx: RunContext, members: list[int]
) -> tuple[SubspaceConfig, list[str]]:
    """`config` with its snapshot window and rank fitted to the run's trajectories (the rule of
    `clamp_window`, the flags named), and the warnings saying what changed. Refuses, in one line,
    Gaussian samplers on a run with fewer than 2 snapshots after initialisation."""
    gaussians = [m for m in config.methods if m not in ALWAYS_SWEEP]
    if not gaussians:
        return config, []
    available = min(len(ctx.epochs_after_init(m)) for m in members)
    others = ",".join(m for m in config.methods if m in ALWAYS_SWEEP) or "random,dropout"
    require_snapshots(
        f"subspace: the Gaussian samplers ({', '.join(gaussians)})", 2, available,
        f"leave them out: --methods {others}",
    )  # fmt: skip
    n, warning = clamp_window(
        "subspace snapshots", config.n_snapshots, available, minimum=2, flag="--snapshots"
    )
    warnings = [warning] if warning else []
    rank = config.rank
    if rank > n - 1:
        rank = n - 1
        warnings.append(
            f"subspace rank: --rank {config.rank} asked for {config.rank} principal directions, "
            f"but {n} snapshots span at most {n - 1}; used rank {rank}"
        )
    return replace(config, n_snapshots=n, rank=rank), warnings


def _sample_predictions(
    ctx: RunContext, config: SubspaceConfig, members: list[int], out: ResultWriter
) -> tuple[dict[str, dict[int, np.ndarray]], list[S.CalibrationRecord]]:
    """probs[n_samples, N, C] per method and member: cached under preds/, else drawn (at the
    calibrated scale in "calibrated" mode) and evaluated, BatchNorm statistics recomputed per
    sample. Also returns the calibrations (empty in "paper" mode)."""
    accuracy_of = accuracy_function(ctx) if config.mode is SamplerMode.CALIBRATED else None
    sample_probs: dict[str, dict[int, np.ndarray]] = {}
    calibrations: list[S.CalibrationRecord] = []
    units = "members' sample sets (calibration, sampling, evaluation)"
    bar = Progress(len(config.methods) * len(members), "subspace", units, logger=logger)
    for method in config.methods:
        sample_probs[method] = {}
        folder = out.root / "preds" / method
        _, digest = open_cache(folder, sampler_settings(config, method))
        out.files[f"preds/{method}/{S.SETTINGS}"] = digest
        around = f"around each of {len(members)} members"
        logger.info(f"subspace: {config.n_samples} {method} samples {around} ({config.mode})")
        for m in members:
            cal = _calibration(ctx, config, method, m, out, accuracy_of)
            calibrations += [cal] if cal is not None else []
            rel = S.SUBSPACE_PREDS.format(method=method, member=m)
            f = out.root / rel
            if not f.exists():
                scale = cal.scale if cal is not None else None
                samples = subspace_samples(ctx, config, method, m, scale=scale)
                # BatchNorm statistics recomputed per sample. Each sample sees the test set once:
                # the eager engine, not `ModelStack`, whose per-model freezing cost more than it
                # saved here (30 SmallCNN samples on 10,000 images: 9.9 s frozen, 5.8 s eager)
                # and whose TorchScript traces are never freed (~1.5 MB per model).
                out.npy(rel, ctx.evaluate(ctx.with_recomputed_bn(samples), "test"))
            sample_probs[method][m] = out.written_npy(rel)
            bar.update()
    bar.close()
    return sample_probs, calibrations


def _calibration(
    ctx: RunContext,
    config: SubspaceConfig,
    method: str,
    member: int,
    out: ResultWriter,
    accuracy_of: Callable[[torch.Tensor], torch.Tensor] | None,
) -> S.CalibrationRecord | None:
    """The calibrated scale of `method` around `member` (None in "paper" mode): cached in the
    method's settings-keyed folder, so a changed mode or target_drop calibrates again."""
    if accuracy_of is None:
        return None
    rel = S.SUBSPACE_CALIBRATION.format(method=method, member=member)
    if (out.root / rel).exists():
        return out.reuse_record(rel, S.CalibrationRecord)
    cal = calibrate(
        method,
        ctx.trajectory_matrix(member),
        member,
        config,
        accuracy_of,
        floor=1.0 / ctx.dataset.num_classes,  # a weak reference is not asked below chance
    )
    record = S.CalibrationRecord(**asdict(cal) | {"check_accuracies": list(cal.check_accuracies)})
    out.json(rel, record.to_dict())
    logger.info(
        "subspace: %s around member %d calibrated to scale %.4g (accuracy %.3f -> %.3f)",
        method, member, cal.scale, cal.reference_accuracy, cal.probe_accuracy,
    )  # fmt: skip
    return record


def _plane(
    out: ResultWriter,
    config: SubspaceConfig,
    members: list[int],
    reference: int,
    finals: np.ndarray,
    sample_probs: SampleProbs,
    labels: np.ndarray,
) -> dict[str, Any]:
    """The diversity–accuracy plane around one member's final snapshot: plane.csv, summaries."""
    ref = finals[members.index(reference)]
    others = np.delete(finals, members.index(reference), axis=0)
    rows, plane = [], {}
    for method in config.methods:
        acc, div = diversity_accuracy_points(ref, sample_probs[method][reference], labels)
        rows += [["sample", method, reference, i, a, d] for i, (a, d) in enumerate(zip(acc, div))]
        p = plane_summary(ref, sample_probs[method][reference], others, labels, tol=PLANE_TOL)
        plane[method] = S.PlaneRecord(
            **asdict(p)
            | {"member_acc": list(p.member_acc), "member_norm_div": list(p.member_norm_div)}
        )
    if len(others):
        acc, div = diversity_accuracy_points(ref, others, labels)
        other_ids = [m for m in members if m != reference]
        rows += [["member", "independent", m, 0, a, d] for m, a, d in zip(other_ids, acc, div)]
    header = ["kind", "method", "member", "sample", "accuracy", "norm_diversity"]
    out.csv(S.SUBSPACE_PLANE, header, rows)
    return plane


def _every_reference(
    config: SubspaceConfig,
    members: list[int],
    finals: np.ndarray,
    sample_probs: dict[str, dict[int, np.ndarray]],
    labels: np.ndarray,
) -> dict[str, dict[str, S.ReferenceSweepRecord]]:
    """Every member as reference in turn, under both normalisations: {normalisation:
    {"independent": the members' normalised diversity, <method>: the same with, per reference,
    its own samples' most diverse within PLANE_TOL of it}}. Empty with a single member."""
    if len(members) < 2:
        return {}
    out: dict[str, dict[str, S.ReferenceSweepRecord]] = {}
    for method in config.methods:
        clouds = [sample_probs[method][m] for m in members]
        sweeps = every_reference(finals, labels, sample_probs=clouds, tol=PLANE_TOL)
        for norm, sweep in sweeps.items():
            record = _sweep_record(sweep)
            bare = replace(record, sample_best=[], sample_mean=None, sample_std=None)
            out.setdefault(norm, {"independent": bare})[method] = record
    return out


def _sweep_record(sweep: Any) -> S.ReferenceSweepRecord:
    d = asdict(sweep)
    d = {k: [list(r) if isinstance(r, tuple) else r for r in v] if isinstance(v, tuple) else v
         for k, v in d.items()}  # fmt: skip
    return S.ReferenceSweepRecord(**{k: _nan_none(v) for k, v in d.items()})


def _nan_none(v: Any) -> Any:
    """NaN as None, as the summary's JSON stores it, so a fresh summary equals a read-back one."""
    if isinstance(v, float):
        return None if np.isnan(v) else v
    if isinstance(v, list):
        return [_nan_none(x) for x in v]
    return v


def _reference_curves(ref: np.ndarray, ref_acc: float) -> S.ReferenceCurves | None:
    """The plane's reference curves; they exist only for a reference better than chance."""
    if ref_acc <= 1.0 / ref.shape[-1]:
        return None
    grid = np.linspace(1.0 / ref.shape[-1], ref_acc, 50)
    upper, lower = reference_curves(ref_acc, ref.shape[-1], grid)
    return S.ReferenceCurves(grid.tolist(), upper.tolist(), lower.tolist())


def _js_diversity(
    ctx: RunContext,
    config: SubspaceConfig,
    members: list[int],
    finals: np.ndarray,
    sample_probs: SampleProbs,
    late: int,
) -> dict[str, float]:
    """Jensen–Shannon diversity of the members, of each trajectory's late window, of samples."""
    windows = [ctx.late_epochs(m, late, "late window") for m in members]  # warned up front
    traj = [
        np.stack([ctx.run.predictions("test", m, e) for e in epochs])
        for m, (epochs, _) in zip(members, windows)
    ]
    js = {
        "independent_members": float(js_diversity(finals)) if len(members) > 1 else 0.0,
        "late_snapshots": float(np.mean([js_diversity(p) for p in traj])),
    }
    for method in config.methods:
        js[method] = float(np.mean([js_diversity(p) for p in sample_probs[method].values()]))
    return js


def _curve_rows(
    members: list[int],
    finals: np.ndarray,
    wa: np.ndarray,
    sample_probs: SampleProbs,
    labels: np.ndarray,
) -> list[list[Any]]:
    """Metric vs ensemble size k = 1..M for every family of the paper's comparison."""
    rows: list[list[Any]] = []

    def add(family: str, curve: EnsembleCurve) -> None:
        for i, k in enumerate(curve.sizes):
            for mt in METRICS:
                rows.append([family, int(k), mt, curve.mean[mt][i], curve.std[mt][i]])

    M = len(members)
    add("deep", ensemble_curve(finals, labels))
    add("weight_average+ensemble", ensemble_curve(wa, labels))
    for method, by_member in sample_probs.items():
        # A subspace model averages its samples; with ensembling, k members' subspace models.
        models = np.stack([by_member[m].mean(0, dtype=np.float64) for m in members])
        add(f"{method}+ensemble", ensemble_curve(models, labels))
        # Alone: k samples around one trajectory, averaged over members (mean ± std); only
        # sizes the samples reach (k <= n_samples), so a row labelled k averages k samples.
        n_samples = min(len(by_member[m]) for m in members)
        for k in range(1, min(M, n_samples) + 1):
            # float64 mean (a float32 one rounds near-equal classes into ties), log-mean-exp NLL
            scores = [evaluate_ensemble(by_member[m][:k], labels) for m in members]
            for mt in METRICS:
                vals = [s[mt] for s in scores]
                rows.append([method, k, mt, float(np.mean(vals)), float(np.std(vals))])
    return rows


def _weight_average_probs(
    ctx: RunContext, members: list[int], window: int
) -> tuple[np.ndarray, S.WeightAverageInfo]:
    """Each member's weight-average test predictions [M, N, C]: those `modescape analyze` wrote
    when it averaged the same snapshots of the same members on the test split, else new."""
    epochs, _ = ctx.weight_average_window(members[0], window)  # warned up front
    info = S.WeightAverageInfo(epochs, source="computed")
    f = ctx.path / S.ANALYSIS / S.WEIGHT_AVERAGE_PROBS
    summary = ctx.path / S.ANALYSIS / S.SUMMARY
    if f.exists() and summary.exists():
        done = ctx.run.study(S.ANALYSIS)
        same = done.weight_average.epochs_averaged == epochs
        if done.members == members and done.split == "test" and same:
            rel = f"{S.ANALYSIS}/{S.WEIGHT_AVERAGE_PROBS}"
            return ctx.run.read_npy(rel), S.WeightAverageInfo(epochs, source=rel)
    states = [ctx.weight_average_state(m, window) for m in members]
    return ctx.evaluate(states, "test"), info


def _joint_tsne(
    run: Run, members: list[int], probs_by_member: dict[int, np.ndarray], labels: np.ndarray
) -> tuple[list[list[Any]], dict[str, Any]]:
    idx = fixed_subset(len(labels), min(1024, len(labels)))
    traj = [(m, e, run.predictions("test", m, e)) for m in members for e in run.snapshot_epochs(m)]
    points = [function_space_points(p, idx) for _, _, p in traj]
    meta = [["trajectory", m, e] for m, e, _ in traj]
    for m in members:
        for i, p in enumerate(probs_by_member[m]):
            points.append(function_space_points(p, idx))
            meta.append(["sample", m, i])
    emb = embed_trajectories(np.stack(points), "tsne", seed=0)
    return [[*row, *xy] for row, xy in zip(meta, emb.coords)], emb.settings


# ---- the study's declaration (`modescape.registry`) ----------------------------------------------
CLI_FLAGS = {
    "methods": Flag(help="comma-separated samplers", parse=split_list, metavar="M1,M2"),
    "n_samples": Flag("--samples", "samples per member and method"),
    "n_snapshots": Flag("--snapshots", "last snapshots for the Gaussians"),
    "rank": Flag(help="PCA components of the low-rank Gaussian"),
    "random_scale": Flag(help="radius scale of the random sampler"),
    "dropout_scale": Flag(help="drop-probability scale of the dropout sampler (< 1)"),
    "diagonal_scale": Flag(help="std scale of the diagonal Gaussian"),
    "lowrank_scale": Flag(help="scale of the low-rank Gaussian"),
    "lowrank_scaled_scale": Flag(help="scale of the SWAG-style low-rank Gaussian"),
    "seed": Flag(help="base seed of the samples"),
}


def pipeline_settings(config: RunConfig) -> SubspaceConfig:
    """The paper's subspace settings, shrunk to what a short run has (`modescape run --epochs 3`):
    the Gaussians need at least two snapshots after initialisation."""
    kept = config.train.epochs // config.train.snapshot_every
    if kept < 2:
        return SubspaceConfig(methods=("random", "dropout"), n_snapshots=2, rank=1)
    n = min(10, kept)
    return SubspaceConfig(methods=SAMPLERS, n_snapshots=n, rank=min(5, n - 1))


def outcome(summary: S.SubspaceSummary, run: Path) -> list[str]:
    """What `modescape subspace` prints when done."""
    js = summary.js_diversity
    lines = [f"{method:>15}: JS diversity {js[method]:.4f}" for method in summary.plane]
    lines.append(f"independent members: JS diversity {js['independent_members']:.4f}")
    return [*lines, f"results in {run / S.SUBSPACE}"]
