"""`modescape analyze`: every weight-space and function-space analysis of one run directory.

This is the thin I/O shell around the pure functions in `weightspace`, `functionspace`,
`ensembles`, `trajectories` and `metrics`: it reads snapshots and cached predictions from the run,
calls them, and writes the results under `<run>/analysis/`:

    summary.json                   headline numbers, settings, sha256 of every file below
    index.csv                      row i of the (members·epochs)² matrices = (member, epoch)
    weights/cosine.npy             [M·E, M·E] raw cosine similarity of flat weight vectors
    weights/distance.npy           [M·E, M·E] L2 distances
    functions/disagreement.npy     [M·E, M·E] fraction of examples with different argmax
    functions/agreement_with_final.npy   [M·E, M] 1 − D against each member's final snapshot
    trajectories/tsne.csv, pca.csv member, epoch, x, y (one joint fit of all snapshots)
    ensembles/curves.csv           family, size, metric, mean, std, count
    ensembles/reliability.json     15 equal-width bins for a single member and the deep ensemble
    ensembles/weight_average.npy   probs [M, N, C] of each member's weight average
    training/curves.csv            per member and epoch: lr, train/val/test loss and accuracy
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modescape.analysis.ensembles import ensemble_curve, ensemble_probs, snapshot_ensemble_curves
from modescape.analysis.functionspace import agreement_with, disagreement_matrix, js_diversity
from modescape.analysis.metrics import METRICS, evaluate, reliability
from modescape.analysis.trajectories import embed_trajectories, fixed_subset, function_space_points
from modescape.analysis.weightspace import (
    PARAM_SELECTIONS,
    average_state_dicts,
    select_parameter_names,
    trajectory_matrices,
)
from modescape.config import _check_choice
from modescape.errors import ModescapeError
from modescape.store.files import save_npy, write_csv, write_json
from modescape.store.run import Run, load_run, write_study_summary


@dataclass(frozen=True)
class AnalysisConfig:
    split: str = "test"  # predictions to analyse: "test" or "val"
    params: str = "all"  # weights compared: "all" (paper) | "kernels_bn" (seed) | "no_bn_bias"
    late: int = 5  # "late snapshots" = the last n of each trajectory
    tsne_examples: int = 1024  # examples per point (seed notebooks: first 1,024 test images)
    tsne_subset: str = "first"  # "first" | "random" (seeded)
    tsne_perplexity: float = 30.0  # clamped below the number of points for small runs
    tsne_iter: int = 1000
    max_subsets: int = 100  # ensemble subsets per size before sampling
    weight_average: int = 10  # snapshots averaged (the last n of each trajectory)
    seed: int = 0  # t-SNE, subset sampling

    def __post_init__(self) -> None:
        _check_choice("split", self.split, ("test", "val"))
        _check_choice("parameter selection", self.params, PARAM_SELECTIONS)
        if self.late < 2 or self.weight_average < 1 or self.tsne_examples < 1:
            raise ModescapeError("late must be >= 2, weight_average and tsne_examples >= 1")


class LazySnapshot(Mapping):
    """A snapshot file as a read-only mapping that reads one tensor at a time."""

    def __init__(self, path: Path):
        from safetensors import safe_open

        self.path = path
        with safe_open(str(path), framework="pt") as f:
            self._keys = list(f.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            return f.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def common_epochs(run: Run, members: list[int]) -> list[int]:
    epochs = sorted(set.intersection(*(set(run.snapshot_epochs(m)) for m in members)))
    if len(epochs) < 2:
        raise ModescapeError(f"run {run.path} needs at least 2 snapshots per member to analyse")
    return epochs


def analyze_run(
    path: str | Path,
    config: AnalysisConfig | None = None,
    *,
    allow_partial: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Run every analysis on a run directory; write `<run>/analysis/`; return the summary."""
    config = config or AnalysisConfig()
    run = load_run(path)
    members = run.require_complete(allow_partial)
    if config.split not in run.splits:
        raise ModescapeError(f"run {run.path} has no {config.split!r} split (has {run.splits})")
    epochs = common_epochs(run, members)
    M, E = len(members), len(epochs)
    out = run.path / "analysis"
    files: dict[str, str] = {}
    timings: dict[str, float] = {}

    def save(rel: str, array: np.ndarray) -> None:
        files[rel] = save_npy(out / rel, array)

    def save_csv(rel: str, header: list[str], rows: list[list[Any]]) -> None:
        files[rel] = write_csv(out / rel, header, rows)

    tick = time.perf_counter()
    labels = run.labels(config.split)
    # probs[members, epochs, examples, classes]: 164 MB for 10 × 41 CIFAR-10 test sets.
    probs = np.stack(
        [np.stack([run.predictions(config.split, m, e) for e in epochs]) for m in members]
    )
    save_csv("index.csv", ["row", "member", "epoch"], _index_rows(members, epochs))

    # ---- weight space -----------------------------------------------------------------------
    log(f"weight space: {M} members x {E} snapshots ({config.params} parameters)")
    names = select_parameter_names(run.build_model(), config.params)
    snaps = [[LazySnapshot(run.verified(run.snapshot_path(m, e))) for e in epochs] for m in members]
    mats = trajectory_matrices(snaps, names)
    save("weights/cosine.npy", mats.cosine)
    save("weights/distance.npy", mats.distance)
    save("weights/norms.npy", mats.norms)
    timings["weights_s"] = time.perf_counter() - tick

    # ---- function space -------------------------------------------------------------------
    tick = time.perf_counter()
    log("function space: disagreement, agreement with final predictions, JS diversity")
    flat = probs.reshape(M * E, *probs.shape[2:])
    dis = disagreement_matrix(flat)
    save("functions/disagreement.npy", dis)
    save("functions/agreement_with_final.npy", agreement_with(flat, probs[:, -1]))
    timings["functions_s"] = time.perf_counter() - tick

    # ---- trajectories -----------------------------------------------------------------------
    tick = time.perf_counter()
    n_sub = min(config.tsne_examples, len(labels))
    idx = fixed_subset(len(labels), n_sub, config.seed, config.tsne_subset)
    points = function_space_points(flat, idx)
    log(f"trajectories: joint t-SNE of {len(points)} snapshots on {n_sub} examples")
    embeddings = {}
    for method in ("tsne", "pca"):
        emb = embed_trajectories(
            points,
            method,
            seed=config.seed,
            perplexity=config.tsne_perplexity,
            max_iter=config.tsne_iter,
        )
        rows = [[m, e, *xy] for (_, m, e), xy in zip(_index_rows(members, epochs), emb.coords)]
        save_csv(f"trajectories/{method}.csv", ["member", "epoch", "x", "y"], rows)
        embeddings[method] = emb.settings | {"examples": idx.tolist()[:16], "n_examples": n_sub}
    timings["trajectories_s"] = time.perf_counter() - tick

    # ---- ensembles ----------------------------------------------------------------------------
    tick = time.perf_counter()
    log("ensembles: deep, snapshot and weight-averaged")
    deep = ensemble_curve(probs[:, -1], labels, max_subsets=config.max_subsets, seed=config.seed)
    k_snap = min(E - 1, max(M, config.late))  # epoch 0 (initialisation) never joins
    snap = snapshot_ensemble_curves(probs[:, E - k_snap :], labels)
    wa_probs, wa_info = _weight_average_predictions(run, members, epochs, config)
    save("ensembles/weight_average.npy", wa_probs)
    wa = ensemble_curve(wa_probs, labels, max_subsets=config.max_subsets, seed=config.seed)
    curve_rows = []
    for family, curve in (("deep", deep), ("snapshot", snap), ("weight_average", wa)):
        for i, k in enumerate(curve.sizes):
            for metric in METRICS:
                mean, std = curve.mean[metric][i], curve.std[metric][i]
                curve_rows.append([family, int(k), metric, mean, std, int(curve.count[i])])
    save_csv(
        "ensembles/curves.csv", ["family", "size", "metric", "mean", "std", "count"], curve_rows
    )
    rel = {
        "single_member_0": asdict(reliability(probs[0, -1], labels)),
        f"deep_ensemble_{M}": asdict(reliability(ensemble_probs(probs[:, -1]), labels)),
    }
    files["ensembles/reliability.json"] = write_json(out / "ensembles/reliability.json", rel)
    timings["ensembles_s"] = time.perf_counter() - tick

    # ---- training curves --------------------------------------------------------------------
    keys = ["lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]
    rows = [[m, r["epoch"], *(r.get(k) for k in keys)] for m in members for r in run.metrics(m)]
    save_csv("training/curves.csv", ["member", "epoch", *keys], rows)

    summary = _summary(run, members, epochs, probs, labels, mats, dis, deep, snap, wa, config)
    summary |= {
        "config": asdict(config),
        "members": members,
        "epochs": epochs,
        "parameters": {"selection": config.params, "count": _count(run, names)},
        "embeddings": embeddings,
        "weight_average": wa_info,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "files": files,
    }
    write_study_summary(run, "analysis", summary)
    return summary


def _index_rows(members: list[int], epochs: list[int]) -> list[list[int]]:
    return [
        [i * len(epochs) + j, m, e] for i, m in enumerate(members) for j, e in enumerate(epochs)
    ]


def _count(run: Run, names: list[str]) -> int:
    sd = run.build_model().state_dict()
    return int(sum(sd[n].numel() for n in names))


def _off_diagonal(a: np.ndarray) -> np.ndarray:
    return a[~np.eye(len(a), dtype=bool)]


BN_TRAIN_EXAMPLES = 2048  # training examples per BatchNorm recomputation (a seeded subset)


def bn_training_subset(run: Run) -> torch.Tensor:
    """The fixed, shuffled training examples used to recompute BatchNorm statistics."""
    x = run.dataset().x_train
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:BN_TRAIN_EXAMPLES]]


def with_recomputed_bn(
    run: Run, model: torch.nn.Module, flat: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    """State dicts for flat parameter vectors [K, P], BatchNorm statistics recomputed per point."""
    from modescape.analysis.engine.batched import buffer_names, param_names, recompute_bn_buffers

    base = model.state_dict()
    sds = [base | unflatten_named(v, param_names(model), model) for v in flat]
    bnames = buffer_names(model)
    if bnames:
        buffers = recompute_bn_buffers(model, flat, bn_training_subset(run))
        sds = [sd | unflatten_named(b, bnames, model) for sd, b in zip(sds, buffers)]
    return sds


def unflatten_named(
    vector: torch.Tensor, names: list[str], model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    from modescape.analysis.engine.batched import shapes_of, unflatten

    return unflatten(vector, names, shapes_of(model, names))


def weight_average_state(run: Run, member: int, last: int = 10) -> dict[str, torch.Tensor]:
    """Mean of the member's last `last` snapshots after initialisation (SPEC §6).

    BatchNorm statistics are recomputed for the averaged weights (`BN_TRAIN_EXAMPLES`).
    """
    from modescape.analysis.engine.batched import flatten_params, has_batchnorm, param_names

    window = [e for e in run.snapshot_epochs(member) if e > 0][-last:]
    avg = average_state_dicts([run.state_dict(member, e) for e in window])
    model = run.build_model()
    if has_batchnorm(model):
        avg = with_recomputed_bn(run, model, flatten_params(avg, param_names(model))[None])[0]
    return avg


def _weight_average_predictions(
    run: Run, members: list[int], epochs: list[int], config: AnalysisConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    from modescape.analysis.engine.batched import evaluate_many, has_batchnorm

    model = run.build_model()
    x = getattr(run.dataset(), f"x_{config.split}")
    states = [weight_average_state(run, m, config.weight_average) for m in members]
    window = [e for e in epochs if e > 0][-config.weight_average :]
    info: dict[str, Any] = {"epochs_averaged": window}
    if has_batchnorm(model):
        info["batchnorm"] = f"recomputed on {BN_TRAIN_EXAMPLES} training examples"
    return evaluate_many(model, states, x).numpy().astype(np.float32), info


def _summary(run, members, epochs, probs, labels, mats, dis, deep, snap, wa, config) -> dict:
    M, E = len(members), len(epochs)
    late = min(max(2, min(config.late, E - 1)), E)  # a short run: the last two snapshots
    finals = np.arange(M) * E + E - 1
    single = [evaluate(probs[i, -1], labels) for i in range(M)]
    late_dis, late_cos = [], []
    for i in range(M):
        rows = np.arange(i * E + E - late, i * E + E)
        late_dis.append(float(_off_diagonal(dis[np.ix_(rows, rows)]).mean()))
        late_cos.append(float(min(mats.cosine[r, r + 1] for r in rows[:-1])))
    across_dis = _off_diagonal(dis[np.ix_(finals, finals)]) if M > 1 else np.array([np.nan])
    across_cos = _off_diagonal(mats.cosine[np.ix_(finals, finals)]) if M > 1 else np.array([np.nan])
    k = min(M, len(snap.sizes))
    at = {
        "deep": {mt: float(deep.mean[mt][M - 1]) for mt in METRICS},
        "deep_k": {mt: float(deep.mean[mt][k - 1]) for mt in METRICS},
        "snapshot_k": {mt: float(snap.mean[mt][k - 1]) for mt in METRICS},
        "weight_average": {mt: float(wa.mean[mt][0]) for mt in METRICS},
    }
    return {
        "run": str(run.path),
        "split": config.split,
        "n_examples": len(labels),
        "single": {mt: float(np.mean([s[mt] for s in single])) for mt in METRICS},
        "single_per_member": single,
        "ensemble": at,
        "ensemble_size_compared": k,
        "disagreement": {
            "across_members_mean": float(np.mean(across_dis)),
            "across_members_min": float(np.min(across_dis)),
            "late_within_mean": float(np.mean(late_dis)),
            "late_within_per_member": late_dis,
            "late_window": late,
        },
        "cosine": {
            "across_members_mean": float(np.mean(across_cos)),
            "across_members_max": float(np.max(across_cos)),
            "consecutive_late_min_per_member": late_cos,
        },
        "js_diversity": {
            "members": float(js_diversity(probs[:, -1])) if M > 1 else 0.0,
            "late_snapshots_mean": float(
                np.mean([js_diversity(probs[i, E - late :]) for i in range(M)])
            ),
        },
    }
