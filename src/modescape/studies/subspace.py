"""`modescape subspace`: subspace sampling around every member's trajectory (Fort et al. 2019).

For each sampler and each member, `n_samples` weight vectors are drawn around the member's final
snapshot (seeded per method and member), evaluated in batches, and their test predictions cached
as `<run>/subspace/preds/<method>/m000.npy` (probs[samples, examples, classes]); an interrupted
call resumes at the next (method, member) and a repeated one computes nothing. Results:

    subspace/plane.csv        kind, method, member, sample, accuracy, norm_diversity (vs member 0)
    subspace/curves.csv       family, size, metric, mean, std (ensembles with subspaces)
    subspace/tsne_<method>.csv  kind, member, index, x, y: trajectories + that method's clouds
    subspace/summary.json     JS diversity per family, plane summaries, reference curves, settings
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modescape.analysis.engine.batched import (
    evaluate_many,
    has_batchnorm,
    param_names,
    recompute_bn_buffers,
)
from modescape.analysis.ensembles import ensemble_curve
from modescape.analysis.functionspace import js_diversity
from modescape.analysis.metrics import METRICS, evaluate
from modescape.analysis.subspace import (
    SubspaceConfig,
    diversity_accuracy_points,
    plane_summary,
    reference_curves,
    sample_subspace,
)
from modescape.analysis.trajectories import embed_trajectories, fixed_subset, function_space_points
from modescape.errors import ModescapeError
from modescape.store.files import load_npy, read_json, save_npy, write_csv, write_json
from modescape.store.run import Run, load_run, write_study_summary
from modescape.studies.weights_functions import (
    BN_TRAIN_EXAMPLES,
    bn_training_subset,
    weight_average_state,
    with_recomputed_bn,
)


def trajectory_matrix(run: Run, member: int, names: list[str]) -> torch.Tensor:
    """Flat weight vectors of every snapshot after initialisation: [S, P] (float32)."""
    epochs = [e for e in run.snapshot_epochs(member) if e > 0]
    return torch.stack(
        [torch.cat([run.state_dict(member, e)[n].reshape(-1) for n in names]) for e in epochs]
    )


def subspace_samples(run: Run, config: SubspaceConfig, method: str, member: int) -> torch.Tensor:
    """The (re)generated samples of one method around one member: [n_samples, P]."""
    names = param_names(run.build_model())
    return sample_subspace(config, method, trajectory_matrix(run, member, names), member)


def run_subspace(
    path: str | Path,
    config: SubspaceConfig | None = None,
    *,
    reference: int = 0,
    allow_partial: bool = False,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Sample, evaluate and analyse every subspace method around every member."""
    config = config or SubspaceConfig()
    run = load_run(path)
    members = run.require_complete(allow_partial)
    if reference not in members:
        raise ModescapeError(f"reference member {reference} is not among the finished {members}")
    out = run.path / "subspace"
    files: dict[str, str] = {"config.json": write_json(out / "config.json", asdict(config))}
    labels = run.labels("test")
    x = run.dataset().x_test
    model = run.build_model()
    names = param_names(model)
    bn_x = bn_training_subset(run) if has_batchnorm(model) else None
    trajectories: dict[int, torch.Tensor] = {}  # read each member's snapshots once, not per method

    sample_probs: dict[str, dict[int, np.ndarray]] = {}
    for method in config.methods:
        sample_probs[method] = {}
        log(f"subspace: {config.n_samples} {method} samples around each of {len(members)} members")
        for m in members:
            f = out / "preds" / method / f"m{m:03d}.npy"
            if not f.exists():
                if m not in trajectories:
                    trajectories[m] = trajectory_matrix(run, m, names)
                samples = sample_subspace(config, method, trajectories[m], m)
                buffers = None if bn_x is None else recompute_bn_buffers(model, samples, bn_x)
                probs = evaluate_many(model, samples, x, buffers=buffers).numpy()
                files[str(f.relative_to(out))] = save_npy(f, probs.astype(np.float32))
            sample_probs[method][m] = load_npy(f)

    finals = run.final_predictions("test", members)
    ref = finals[members.index(reference)]
    others = np.delete(finals, members.index(reference), axis=0)

    # ---- diversity–accuracy plane (reference = one member's final snapshot) -------------------
    rows, plane = [], {}
    for method in config.methods:
        acc, div = diversity_accuracy_points(ref, sample_probs[method][reference], labels)
        rows += [["sample", method, reference, i, a, d] for i, (a, d) in enumerate(zip(acc, div))]
        plane[method] = asdict(
            plane_summary(ref, sample_probs[method][reference], others, labels, tol=0.02)
        )
    if len(others):
        acc, div = diversity_accuracy_points(ref, others, labels)
        other_ids = [m for m in members if m != reference]
        rows += [["member", "independent", m, 0, a, d] for m, a, d in zip(other_ids, acc, div)]
    header = ["kind", "method", "member", "sample", "accuracy", "norm_diversity"]
    files["plane.csv"] = write_csv(out / "plane.csv", header, rows)
    ref_acc = float(evaluate(ref, labels)["accuracy"])
    curves = None  # the reference curves exist only for a reference better than chance
    if ref_acc > 1.0 / ref.shape[-1]:
        grid = np.linspace(1.0 / ref.shape[-1], ref_acc, 50)
        upper, lower = reference_curves(ref_acc, ref.shape[-1], grid)
        curves = {"accuracy": grid.tolist(), "upper": upper.tolist(), "lower": lower.tolist()}

    # ---- Jensen–Shannon diversity of each family ---------------------------------------------
    late = [
        np.stack([run.predictions("test", m, e) for e in run.snapshot_epochs(m)[-5:]])
        for m in members
    ]
    js = {
        "independent_members": float(js_diversity(finals)) if len(members) > 1 else 0.0,
        "late_snapshots": float(np.mean([js_diversity(p) for p in late])),
    }
    for method in config.methods:
        js[method] = float(np.mean([js_diversity(p) for p in sample_probs[method].values()]))

    # ---- ensembles with subspaces -------------------------------------------------------------
    curve_rows = _curve_rows(run, members, finals, sample_probs, labels)
    header = ["family", "size", "metric", "mean", "std"]
    files["curves.csv"] = write_csv(out / "curves.csv", header, curve_rows)

    # ---- joint t-SNE of trajectories and each method's clouds --------------------------------
    tsne = {}
    for method in config.methods:
        coords_rows, settings = _joint_tsne(run, members, sample_probs[method], labels)
        files[f"tsne_{method}.csv"] = write_csv(
            out / f"tsne_{method}.csv", ["kind", "member", "index", "x", "y"], coords_rows
        )
        tsne[method] = settings

    summary = {
        "config": asdict(config),
        "members": members,
        "reference": reference,
        "reference_accuracy": ref_acc,
        "batchnorm": f"recomputed per sample on {BN_TRAIN_EXAMPLES} training examples"
        if has_batchnorm(model)
        else "none in this architecture",
        "plane": plane,
        "reference_curves": curves,
        "js_diversity": js,
        "tsne": tsne,
        "files": files,
    }
    write_study_summary(run, "subspace", summary)
    return summary


def _curve_rows(run, members, finals, sample_probs, labels) -> list[list[Any]]:
    """Metric vs ensemble size k = 1..M for every family of the paper's comparison."""
    rows = []

    def add(family: str, curve) -> None:
        for i, k in enumerate(curve.sizes):
            for mt in METRICS:
                rows.append([family, int(k), mt, curve.mean[mt][i], curve.std[mt][i]])

    M = len(members)
    add("deep", ensemble_curve(finals, labels))
    wa = _weight_average_probs(run, members)
    add("weight_average+ensemble", ensemble_curve(wa, labels))
    for method, by_member in sample_probs.items():
        # A subspace model averages its samples; with ensembling, k members' subspace models.
        models = np.stack([by_member[m].mean(0) for m in members])
        add(f"{method}+ensemble", ensemble_curve(models, labels))
        # Alone: k samples around one trajectory, averaged over members (mean ± std).
        per_size = []
        for k in range(1, M + 1):
            scores = [evaluate(by_member[m][:k].mean(0), labels) for m in members]
            per_size.append(scores)
        for i, scores in enumerate(per_size):
            for mt in METRICS:
                vals = [s[mt] for s in scores]
                rows.append([method, i + 1, mt, float(np.mean(vals)), float(np.std(vals))])
    return rows


def _weight_average_probs(run: Run, members: list[int]) -> np.ndarray:
    """Each member's weight-average predictions: from `modescape analyze` when it ran, else new."""
    f = run.path / "analysis" / "ensembles" / "weight_average.npy"
    if f.exists() and read_json(run.path / "analysis" / "summary.json")["members"] == members:
        return load_npy(f)
    states = [weight_average_state(run, m) for m in members]
    return evaluate_many(run.build_model(), states, run.dataset().x_test).numpy()


def _joint_tsne(run, members, probs_by_member, labels) -> tuple[list[list[Any]], dict]:
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


def subspace_state_dicts(run: Run, max_samples: int | None = None) -> dict[str, list[dict]]:
    """State dicts of the reference member's samples per method (the first `max_samples` of
    each, the same ones `modescape subspace` evaluated), for the dataset-shift sweep.

    Empty when `modescape subspace` has not been run on this run.
    """
    f = run.path / "subspace" / "summary.json"
    if not f.exists():
        return {}
    summary = read_json(f)
    cfg = summary["config"] | {"methods": tuple(summary["config"]["methods"])}
    config = SubspaceConfig(**cfg)
    model = run.build_model()
    return {
        f"subspace_{method}": with_recomputed_bn(
            run, model, subspace_samples(run, config, method, summary["reference"])[:max_samples]
        )
        for method in config.methods
    }
