"""`modescape analyze`: every weight-space and function-space analysis of one run directory.

This is the thin I/O shell around the pure functions in `weightspace`, `functionspace`,
`ensembles`, `trajectories` and `metrics`: it reads snapshots and cached predictions from the run,
calls them, and writes the results under `<run>/analysis/` (names in `store.schema`):

    summary.json                   `AnalysisSummary`: headline numbers, settings, sha256 of files
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

Nothing is cached between calls: the analysis recomputes from the run's cached predictions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
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
    select_parameter_names,
    trajectory_matrices,
)
from modescape.errors import ModescapeError, check_choice
from modescape.registry import Flag
from modescape.store import schema as S
from modescape.store.manifest import write_study_summary
from modescape.store.run import Run
from modescape.studies.context import (
    BN_TRAIN_EXAMPLES,
    ResultWriter,
    RunContext,
    clamp_window,
    open_context,
)
from modescape.studies.limits import check_float, check_int

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisConfig:
    split: str = "test"  # predictions to analyse: "test" or "val"
    params: str = "all"  # weights compared: "all" (paper) | "kernels_bn" (seed) | "no_bn_bias"
    late: int = S.LATE_WINDOW  # "late snapshots" = the last n of each trajectory (notebook: 10)
    tsne_examples: int = 1024  # examples per point (seed notebooks: first 1,024 test images)
    tsne_subset: str = "first"  # "first" | "random" (seeded)
    tsne_perplexity: float = 30.0  # clamped below the number of points for small runs
    tsne_iter: int = 1000
    max_subsets: int = 100  # ensemble subsets per size before sampling
    weight_average: int = S.WEIGHT_AVERAGE_WINDOW  # snapshots averaged (the last n)
    seed: int = 0  # t-SNE, subset sampling

    def __post_init__(self) -> None:
        check_choice("split", self.split, ("test", "val"))
        check_choice("parameter selection", self.params, PARAM_SELECTIONS)
        check_int("analyze --late", self.late, 2)
        check_int("analyze --weight-average", self.weight_average, 1)
        check_int("analyze --tsne-examples", self.tsne_examples, 1)
        check_float("analyze --tsne-perplexity", self.tsne_perplexity, 1e-3, 1e4)
        check_int("analyze --tsne-iter", self.tsne_iter, 250)  # scikit-learn's least
        check_int("analyze --max-subsets", self.max_subsets, 1)
        check_int("analyze --seed", self.seed, 0, 2**32 - 1)  # NumPy and scikit-learn seeds


class LazySnapshot(Mapping[str, torch.Tensor]):
    """A snapshot file as a read-only mapping that reads one tensor at a time; a damaged,
    truncated or missing file is one ModescapeError naming it."""

    def __init__(self, path: Path):
        self.path = path
        with self._open() as f:
            self._keys = list(f.keys())

    def _open(self) -> Any:  # safetensors' safe_open handle (untyped)
        from safetensors import SafetensorError, safe_open

        try:
            return safe_open(str(self.path), framework="pt")
        except FileNotFoundError:
            raise ModescapeError(f"missing file {self.path}") from None
        except (SafetensorError, ValueError, OSError, RuntimeError) as e:
            raise ModescapeError(f"corrupt safetensors file {self.path}: {e}") from None

    def __getitem__(self, key: str) -> torch.Tensor:
        from safetensors import SafetensorError

        with self._open() as f:
            try:
                tensor: torch.Tensor = f.get_tensor(key)
                return tensor
            except (SafetensorError, ValueError, OSError, RuntimeError) as e:
                raise ModescapeError(f"corrupt safetensors file {self.path}: {e}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def common_epochs(run: Run, members: list[int]) -> list[int]:
    epochs = sorted(set.intersection(*(set(run.snapshot_epochs(m)) for m in members)))
    if len(epochs) < 2:
        raise ModescapeError(f"run {run.path} needs at least 2 snapshots per member to analyse")
    return epochs


@dataclass
class _Analysis:
    """What the stages of one analysis share: inputs, the writer, and their results."""

    ctx: RunContext
    config: AnalysisConfig
    members: list[int]
    epochs: list[int]
    labels: np.ndarray
    probs: np.ndarray  # [M, E, N, C]
    out: ResultWriter
    late: int  # rows of the late window (clamped)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def flat(self) -> np.ndarray:
        """probs[M·E, N, C]: row i·E + j is member i's snapshot j."""
        return self.probs.reshape(-1, *self.probs.shape[2:])


def analyze_run(
    path: str | Path | RunContext,
    config: AnalysisConfig | None = None,
    *,
    allow_partial: bool = False,
) -> S.AnalysisSummary:
    """Run every analysis on a run; write `<run>/analysis/`; return the summary."""
    a = _prepare(open_context(path), config or AnalysisConfig(), allow_partial)
    for stage in (_weights, _functions, _trajectories, _ensembles, _training):
        tick = time.perf_counter()
        stage(a)
        if stage is not _training:
            a.timings[f"{stage.__name__.strip('_')}_s"] = time.perf_counter() - tick
    summary = _summary(a)
    for warning in summary.warnings:
        logger.warning(warning)
    write_study_summary(a.ctx.run, S.ANALYSIS, summary.to_dict())
    return summary


def _prepare(ctx: RunContext, config: AnalysisConfig, allow_partial: bool) -> _Analysis:
    run = ctx.run
    members = run.require_complete(allow_partial)
    if config.split not in run.splits:
        raise ModescapeError(f"run {run.path} has no {config.split!r} split (has {run.splits})")
    epochs = common_epochs(run, members)
    for m in members:  # read (and verify) every metrics file before anything is written
        run.metrics(m)
    E = len(epochs)
    after_init = sum(e > 0 for e in epochs)  # an imported run may start after epoch 1
    late, warning = clamp_window("late window", config.late, after_init, minimum=2, flag="--late")
    # probs[members, epochs, examples, classes]: 164 MB for 10 × 41 CIFAR-10 test sets.
    probs = np.stack(
        [np.stack([run.predictions(config.split, m, e) for e in epochs]) for m in members]
    )
    a = _Analysis(
        ctx, config, members, epochs, run.labels(config.split), probs,
        ResultWriter(run.path / S.ANALYSIS, run), min(max(late, 2), E),
    )  # fmt: skip
    a.warnings += [warning] if warning else []
    a.out.csv(S.INDEX_CSV, ["row", "member", "epoch"], _index_rows(members, epochs))
    return a


def _weights(a: _Analysis) -> None:
    M, E = len(a.members), len(a.epochs)
    logger.info(f"weight space: {M} members x {E} snapshots ({a.config.params} parameters)")
    names = select_parameter_names(a.ctx.build_model(), a.config.params)
    run = a.ctx.run
    snaps = [
        [LazySnapshot(run.verified(run.snapshot_path(m, e))) for e in a.epochs] for m in a.members
    ]
    mats = trajectory_matrices(snaps, names)
    a.out.npy(S.COSINE, mats.cosine)
    a.out.npy(S.DISTANCE, mats.distance)
    a.out.npy(S.NORMS, mats.norms)
    sd = a.ctx.build_model().state_dict()
    a.results |= {"mats": mats, "n_params": int(sum(sd[n].numel() for n in names))}


def _functions(a: _Analysis) -> None:
    what = "disagreement, agreement with final predictions, JS diversity"
    logger.info(f"function space: {what}")
    dis = disagreement_matrix(a.flat)
    a.out.npy(S.DISAGREEMENT, dis)
    a.out.npy(S.AGREEMENT_WITH_FINAL, agreement_with(a.flat, a.probs[:, -1]))
    a.results["dis"] = dis


def _trajectories(a: _Analysis) -> None:
    config = a.config
    n_sub = min(config.tsne_examples, len(a.labels))
    idx = fixed_subset(len(a.labels), n_sub, config.seed, config.tsne_subset)
    points = function_space_points(a.flat, idx)
    if len(points) < 3:  # one member of one epoch: nothing to embed; the other stages still hold
        a.warnings.append(
            f"trajectories: the run has {len(points)} snapshots in all, an embedding needs at "
            "least 3; none drawn (train more epochs or members)"
        )
        a.results["embeddings"] = {}
        return
    logger.info(f"trajectories: joint t-SNE of {len(points)} snapshots on {n_sub} examples")
    embeddings = {}
    for method in ("tsne", "pca"):
        emb = embed_trajectories(
            points,
            method,
            seed=config.seed,
            perplexity=config.tsne_perplexity,
            max_iter=config.tsne_iter,
        )
        index = _index_rows(a.members, a.epochs)
        rows = [[m, e, *xy] for (_, m, e), xy in zip(index, emb.coords)]
        a.out.csv(S.TRAJECTORY_CSV.format(method=method), ["member", "epoch", "x", "y"], rows)
        embeddings[method] = emb.settings | {"examples": idx.tolist()[:16], "n_examples": n_sub}
    a.results["embeddings"] = embeddings


def _ensembles(a: _Analysis) -> None:
    logger.info("ensembles: deep, snapshot and weight-averaged")
    probs, labels, config = a.probs, a.labels, a.config
    M, E = len(a.members), len(a.epochs)
    deep = ensemble_curve(probs[:, -1], labels, max_subsets=config.max_subsets, seed=config.seed)
    k_snap = min(E - 1, max(M, a.late))  # epoch 0 (initialisation) never joins
    snap = snapshot_ensemble_curves(probs[:, E - k_snap :], labels)
    wa_probs, wa_info = _weight_average_predictions(a)
    a.out.npy(S.WEIGHT_AVERAGE_PROBS, wa_probs)
    wa = ensemble_curve(wa_probs, labels, max_subsets=config.max_subsets, seed=config.seed)
    curve_rows = []
    for family, curve in (("deep", deep), ("snapshot", snap), ("weight_average", wa)):
        for i, k in enumerate(curve.sizes):
            for metric in METRICS:
                mean, std = curve.mean[metric][i], curve.std[metric][i]
                curve_rows.append([family, int(k), metric, mean, std, int(curve.count[i])])
    a.out.csv(S.ENSEMBLE_CURVES, ["family", "size", "metric", "mean", "std", "count"], curve_rows)
    rel = {
        "single_member_0": asdict(reliability(probs[0, -1], labels)),
        f"deep_ensemble_{M}": asdict(reliability(ensemble_probs(probs[:, -1]), labels)),
    }
    a.out.json(S.RELIABILITY, rel)
    a.results |= {"deep": deep, "snap": snap, "wa": wa, "wa_info": wa_info}


def _training(a: _Analysis) -> None:
    keys = ["lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]
    run = a.ctx.run
    rows = [[m, r.epoch, *(r.value(k) for k in keys)] for m in a.members for r in run.metrics(m)]
    a.out.csv(S.TRAINING_CURVES, ["member", "epoch", *keys], rows)


def _index_rows(members: list[int], epochs: list[int]) -> list[list[int]]:
    return [
        [i * len(epochs) + j, m, e] for i, m in enumerate(members) for j, e in enumerate(epochs)
    ]


def _off_diagonal(a: np.ndarray) -> np.ndarray:
    return a[~np.eye(len(a), dtype=bool)]


def _weight_average_predictions(a: _Analysis) -> tuple[np.ndarray, S.WeightAverageInfo]:
    ctx, n = a.ctx, a.config.weight_average
    window, warning = ctx.weight_average_window(a.members[0], n)
    a.warnings += [warning] if warning else []
    states = [ctx.weight_average_state(m, n) for m in a.members]
    info = S.WeightAverageInfo(window)
    if ctx.has_batchnorm:
        info.batchnorm = f"recomputed on {BN_TRAIN_EXAMPLES} training examples"
    return ctx.evaluate(states, a.config.split), info


def _summary(a: _Analysis) -> S.AnalysisSummary:
    M, E, late, probs, labels = len(a.members), len(a.epochs), a.late, a.probs, a.labels
    mats, dis, deep, snap, wa = (a.results[k] for k in ("mats", "dis", "deep", "snap", "wa"))
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
    return S.AnalysisSummary(
        run=str(a.ctx.path),
        split=a.config.split,
        n_examples=len(labels),
        single={mt: float(np.mean([s[mt] for s in single])) for mt in METRICS},
        single_per_member=single,
        ensemble=at,
        ensemble_size_compared=k,
        disagreement=S.Disagreement(
            float(np.mean(across_dis)),
            float(np.min(across_dis)),
            float(np.mean(late_dis)),
            late_dis,
            late,
        ),
        cosine=S.Cosine(float(np.mean(across_cos)), float(np.max(across_cos)), late_cos),
        js_diversity=S.AnalysisJS(
            members=float(js_diversity(probs[:, -1])) if M > 1 else 0.0,
            late_snapshots_mean=float(
                np.mean([js_diversity(probs[i, E - late :]) for i in range(M)])
            ),
        ),
        config=asdict(a.config),
        members=a.members,
        epochs=a.epochs,
        parameters=S.ParameterSelection(a.config.params, a.results["n_params"]),
        embeddings=a.results["embeddings"],
        weight_average=a.results["wa_info"],
        timings_s={k: round(v, 3) for k, v in a.timings.items()},
        files=a.out.files,
        warnings=a.warnings,
    )


# ---- the study's declaration (`modescape.registry`): CLI flags and what the command prints ----
CLI_FLAGS = {
    "split": Flag(help="predictions to analyse"),
    "params": Flag(help="weights compared: all (paper), kernels + BN scale (seed), kernels only"),
    "late": Flag(help="how many last snapshots count as late"),
    "tsne_examples": Flag(help="examples per t-SNE point"),
    "tsne_subset": Flag(help="which examples: the first n (seed notebooks) or a seeded subset"),
    "tsne_perplexity": Flag(help="t-SNE perplexity (clamped for small runs)"),
    "tsne_iter": Flag(help="t-SNE iterations"),
    "max_subsets": Flag(help="ensemble subsets per size before sampling"),
    "weight_average": Flag(help="last snapshots averaged per member"),
    "seed": Flag(help="seed for t-SNE and subset sampling"),
}


def outcome(summary: S.AnalysisSummary, run: Path) -> list[str]:
    """What `modescape analyze` prints when done."""
    d, c = summary.disagreement, summary.cosine
    return [
        f"independent members disagree on {d.across_members_mean:.1%} of {summary.split} "
        f"examples; the last {d.late_window} snapshots of one trajectory on "
        f"{d.late_within_mean:.1%}; final weights cosine {c.across_members_mean:.3f}",
        f"results in {run / S.ANALYSIS}",
    ]
