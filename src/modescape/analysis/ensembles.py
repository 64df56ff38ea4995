"""Metrics against ensemble size: deep ensembles and snapshot ensembles (Fort et al. 2019).

An ensemble averages member probabilities, p_ens = mean_m p_m (in float64; its NLL is the
log-mean-exp of the members' log-probabilities, `metrics.evaluate_ensemble`). For a size k, the
deep-ensemble curve averages the metrics of every k-member subset when there are at most
`max_subsets` of them, else of `max_subsets` distinct subsets drawn at random; the draw for
size k uses the generator seeded with `derive_seed(seed, "ensemble_subsets", k)`, so it does not
depend on which other sizes were asked for. Standard deviations are over subsets (or members)
with ddof = 0, so a single subset has std 0. Weight averaging needs a model to evaluate, so it
lives with the caller (`weightspace.average_state_dicts` averages the weights).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from modescape.analysis.metrics import (
    METRICS,
    ArrayLike,
    as_numpy,
    check_probs_labels,
    evaluate_ensemble,
)
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed, numpy_rng

MAX_SUBSETS = 100


@dataclass
class EnsembleCurve:
    """Metrics of ensembles of each size: `mean[metric][i]` and `std[metric][i]` for `sizes[i]`.

    `count[i]` is how many ensembles (subsets, or members for snapshot curves) were averaged;
    `sampled[i]` says whether those were a random sample rather than all C(M, k) subsets;
    `subsets[i]` lists the member (or snapshot) indices of each, int [count, k].
    """

    sizes: np.ndarray
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    count: np.ndarray
    sampled: np.ndarray
    subsets: list[np.ndarray] = field(repr=False)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form (lists and plain numbers)."""
        return {
            "sizes": self.sizes.tolist(),
            "mean": {k: v.tolist() for k, v in self.mean.items()},
            "std": {k: v.tolist() for k, v in self.std.items()},
            "count": self.count.tolist(),
            "sampled": self.sampled.tolist(),
            "subsets": [s.tolist() for s in self.subsets],
            "settings": dict(self.settings),
        }


def _check_stack(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = as_numpy(probs)
    if p.ndim != 3 or p.shape[0] == 0:
        raise ModescapeError(f"probs must be [models, examples, classes], got shape {p.shape}")
    _, y = check_probs_labels(p[0], labels)
    return p, y


def _check_sizes(sizes, m: int) -> np.ndarray:
    out = np.arange(1, m + 1) if sizes is None else np.asarray(sizes, dtype=np.int64).reshape(-1)
    bad = [int(k) for k in out if not 1 <= k <= m]
    if bad or len(out) == 0:
        raise ModescapeError(f"ensemble sizes must lie in [1, {m}], got {out.tolist()}")
    return out


def ensemble_probs(probs: ArrayLike, members: ArrayLike | None = None) -> np.ndarray:
    """Mean predictive distribution of the chosen members: float64 [N, C] from probs[M, N, C]."""
    p = as_numpy(probs)
    if p.ndim != 3:
        raise ModescapeError(f"probs must be [models, examples, classes], got shape {p.shape}")
    idx = np.arange(p.shape[0]) if members is None else as_numpy(members).astype(np.int64)
    if idx.size == 0:
        raise ModescapeError("an ensemble needs at least one member")
    return p[idx].mean(axis=0, dtype=np.float64)


def choose_subsets(m: int, k: int, max_subsets: int, seed: int) -> tuple[np.ndarray, bool]:
    """Subsets of size k from m members: all C(m, k) if that is ≤ max_subsets (in lexicographic
    order), else `max_subsets` distinct random ones. Returns (int [n, k] sorted rows, sampled)."""
    if max_subsets < 1:
        raise ModescapeError(f"max_subsets must be at least 1, got {max_subsets}")
    if math.comb(m, k) <= max_subsets:
        return np.array(list(itertools.combinations(range(m), k)), dtype=np.int64), False
    rng = numpy_rng(derive_seed(seed, "ensemble_subsets", k))
    seen: set[tuple[int, ...]] = set()
    chosen = []
    # Rejection sampling terminates: there are more than max_subsets distinct subsets.
    while len(chosen) < max_subsets:
        subset = tuple(sorted(rng.choice(m, size=k, replace=False).tolist()))
        if subset not in seen:
            seen.add(subset)
            chosen.append(subset)
    return np.array(chosen, dtype=np.int64), True


def _summarise(sizes, per_size: list[list[dict]], subsets, sampled, settings) -> EnsembleCurve:
    mean = {
        name: np.array([np.mean([r[name] for r in rows]) for rows in per_size]) for name in METRICS
    }
    std = {
        name: np.array([np.std([r[name] for r in rows]) for rows in per_size]) for name in METRICS
    }
    return EnsembleCurve(
        sizes=np.asarray(sizes, dtype=np.int64),
        mean=mean,
        std=std,
        count=np.array([len(rows) for rows in per_size], dtype=np.int64),
        sampled=np.asarray(sampled, dtype=bool),
        subsets=subsets,
        settings=settings,
    )


def ensemble_curve(
    probs: ArrayLike,
    labels: ArrayLike,
    sizes: ArrayLike | None = None,
    max_subsets: int = MAX_SUBSETS,
    seed: int = 0,
) -> EnsembleCurve:
    """Deep-ensemble metrics (accuracy, nll, brier, ece) against size k, over member subsets.

    probs: [M, N, C] of independent members; labels: [N]; sizes: default 1..M.
    """
    p, y = _check_stack(probs, labels)
    m = p.shape[0]
    ks = _check_sizes(sizes, m)
    per_size, subsets, sampled = [], [], []
    for k in ks:
        chosen, was_sampled = choose_subsets(m, int(k), max_subsets, seed)
        per_size.append([evaluate_ensemble(p[s], y) for s in chosen])
        subsets.append(chosen)
        sampled.append(was_sampled)
    settings = {"kind": "deep", "max_subsets": max_subsets, "seed": seed, "std_ddof": 0}
    return _summarise(ks, per_size, subsets, sampled, settings)


def snapshot_ensemble_curve(
    traj_probs: ArrayLike, labels: ArrayLike, sizes: ArrayLike | None = None
) -> EnsembleCurve:
    """Snapshot ensembles of one trajectory: size k averages its last k snapshots.

    traj_probs: [E, N, C] in training order; sizes: default 1..E. One ensemble per size (std 0).
    """
    p, y = _check_stack(traj_probs, labels)
    e = p.shape[0]
    ks = _check_sizes(sizes, e)
    subsets = [np.arange(e - int(k), e, dtype=np.int64)[None] for k in ks]
    per_size = [[evaluate_ensemble(p[s[0]], y)] for s in subsets]
    return _summarise(ks, per_size, subsets, [False] * len(ks), {"kind": "snapshot", "std_ddof": 0})


def snapshot_ensemble_curves(
    probs: ArrayLike, labels: ArrayLike, sizes: ArrayLike | None = None
) -> EnsembleCurve:
    """`snapshot_ensemble_curve` of every member, summarised as mean ± std across members.

    probs: [members, E, N, C]. `subsets[i]` holds the snapshot indices used for size i (the same
    last-k window for every member) and `count` the number of members.
    """
    p = as_numpy(probs)
    if p.ndim != 4:
        raise ModescapeError(f"probs must be [members, epochs, examples, classes], got {p.shape}")
    curves = [snapshot_ensemble_curve(member, labels, sizes) for member in p]
    ks = curves[0].sizes
    per_size = [[{n: c.mean[n][i] for n in METRICS} for c in curves] for i in range(len(ks))]
    settings = {"kind": "snapshot", "std_ddof": 0, "across": "members"}
    return _summarise(ks, per_size, curves[0].subsets, [False] * len(ks), settings)
