"""Low-dimensional pictures of training trajectories in function space (the paper's t-SNE).

Each snapshot becomes one point: its softmax outputs on a fixed set of examples, flattened
(`function_space_points`). All trajectories, and any subspace samples, are embedded in ONE joint
fit with a fixed seed, so that distances between trajectories mean something. Embedding weights
instead of predictions is a known mistake: these functions expect predictions.

t-SNE settings are pinned and returned with the coordinates. The defaults are the authors'
notebook's (`PAPER_TSNE`: sklearn's TSNE of that time, random initialisation, learning rate 200,
perplexity 30, 1,000 iterations, early exaggeration 12; seeded), recorded as preset "paper".

Perplexity: it must stay below the number of points K, and more precisely sklearn's Barnes–Hut
t-SNE uses 3·perplexity + 1 nearest neighbours, which must fit in K points. So a requested
perplexity p with 3p + 1 > K is clamped to max(1, (K − 1)/3) (33 points at perplexity 30 are
embedded at perplexity 10.67); `settings["perplexity"]` records the value used and
`settings["perplexity_clamped"]` whether it was clamped.

A t-SNE picture of few points, or one whose points collapse (span below `MIN_TSNE_SPAN` units,
the sign of flat affinities), says little: `TrajectoryEmbedding.warnings` then says why and
`lead_with_pca` is set (also in `settings`), so a report can lead with the PCA picture.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.errors import ModescapeError, choice_error
from modescape.options import SubsetMode, values
from modescape.seeding import numpy_rng

EMBED_METHODS = ("tsne", "pca")
SUBSET_MODES = values(SubsetMode)
# The authors' notebook's t-SNE (sklearn defaults of 2019, random state fixed).
PAPER_TSNE: dict[str, float | str | int] = {
    "perplexity": 30.0, "learning_rate": 200.0, "init": "random", "max_iter": 1000,
    "early_exaggeration": 12.0, "metric": "euclidean",
}  # fmt: skip
MIN_TSNE_POINTS = 50  # fewer points: too few neighbourhoods for t-SNE to mean much
MIN_TSNE_SPAN = 2.0  # largest coordinate range below this: a collapsed embedding


@dataclass(frozen=True)
class TrajectoryEmbedding:
    """2-D coordinates of K points and everything needed to reproduce them.

    `warnings`: why a t-SNE picture is unreliable (too few points, collapsed); `lead_with_pca`
    is True when there is any, so a report shows the PCA picture first.
    """

    coords: np.ndarray  # float64 [K, 2]
    settings: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def lead_with_pca(self) -> bool:
        return bool(self.warnings)


def clamp_perplexity(perplexity: float, n_points: int) -> float:
    """The perplexity used for K points: p when 3p + 1 ≤ K, else max(1, (K − 1)/3)."""
    if not perplexity > 0:
        raise ModescapeError(f"perplexity must be > 0, got {perplexity}")
    p = float(perplexity)
    return p if 3 * p + 1 <= n_points else max(1.0, (n_points - 1) / 3)


def tsne_warnings(coords: ArrayLike) -> tuple[str, ...]:
    """Why a t-SNE embedding `coords[K, 2]` should not lead: fewer than MIN_TSNE_POINTS points,
    or a largest coordinate range below MIN_TSNE_SPAN (the points collapsed). Empty if neither."""
    c = as_numpy(coords, np.float64)
    out = []
    if c.shape[0] < MIN_TSNE_POINTS:
        out.append(f"only {c.shape[0]} points (t-SNE needs about {MIN_TSNE_POINTS})")
    span = float(np.ptp(c, axis=0).max()) if c.shape[0] else 0.0
    if span < MIN_TSNE_SPAN:
        out.append(f"degenerate embedding: the points span {span:.3g} units (< {MIN_TSNE_SPAN})")
    return tuple(out)


def fixed_subset(n_examples: int, size: int, seed: int = 0, mode: str = "first") -> np.ndarray:
    """Indices of the examples every snapshot is evaluated on: int64 [size], increasing.

    mode "first": 0..size−1 (seed notebooks: the first 1,024 test images); "random": a seeded
    draw without replacement (paper: 500 validation images), sorted.
    """
    if mode not in SUBSET_MODES:
        raise choice_error("subset mode", mode, SUBSET_MODES)
    if not 1 <= size <= n_examples:
        raise ModescapeError(f"subset size must lie in [1, {n_examples}], got {size}")
    if mode == "first":
        return np.arange(size, dtype=np.int64)
    return np.sort(numpy_rng(seed).choice(n_examples, size=size, replace=False)).astype(np.int64)


def function_space_points(probs: ArrayLike, example_idx: ArrayLike | None = None) -> np.ndarray:
    """Flatten predictions into points: `probs[..., examples, classes]` → `[..., len(idx)·classes]`.

    Typically probs is [models, examples, classes] (every snapshot of every member, stacked);
    leading axes are kept, e.g. [members, epochs, N, C] → [members, epochs, N'·C].
    """
    p = as_numpy(probs)
    if p.ndim < 2:
        raise ModescapeError(f"probs must have example and class axes, got shape {p.shape}")
    if example_idx is not None:
        p = np.take(p, as_numpy(example_idx).astype(np.int64), axis=-2)
    return p.reshape(*p.shape[:-2], -1)


def _tsne_iterations_name() -> str:
    # sklearn ≥ 1.5 calls it max_iter; older versions n_iter.
    return "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"


def _tsne(x: np.ndarray, seed: int, **given: object) -> tuple[np.ndarray, dict]:
    """sklearn's Barnes–Hut TSNE (angle 0.5) on x [K, D]: coords [K, 2] and what it used."""
    kwargs = dict(given)
    kwargs[_tsne_iterations_name()] = kwargs.pop("max_iter")
    tsne = TSNE(n_components=2, method="barnes_hut", angle=0.5, random_state=seed, **kwargs)
    coords = tsne.fit_transform(x)
    return coords, {
        "perplexity": float(given["perplexity"]),
        "n_components": 2,
        "angle": 0.5,
        "tsne_method": "barnes_hut",
        "kl_divergence": float(tsne.kl_divergence_),
        "n_iter_run": int(tsne.n_iter_),
        "learning_rate_used": float(tsne.learning_rate_),
    }


def embed_trajectories(
    points: ArrayLike,
    method: str = "tsne",
    seed: int = 0,
    perplexity: float = 30.0,
    learning_rate: float | str = 200.0,
    max_iter: int = 1000,
    early_exaggeration: float = 12.0,
    metric: str = "euclidean",
    init: str = "random",
) -> TrajectoryEmbedding:
    """Embed all points [K, D] jointly in 2-D with t-SNE or PCA.

    t-SNE: sklearn `TSNE` (Barnes–Hut, angle 0.5) with `random_state=seed` and the settings given
    (default: the notebook's, `PAPER_TSNE`); perplexity is clamped as the module docstring says,
    and `warnings` flags too few points or a collapsed picture. PCA: the first two principal
    components (sklearn `PCA`, full SVD, signs fixed by sklearn's `svd_flip`), with the explained
    variance ratios recorded. The t-SNE-only arguments are ignored for PCA.
    """
    if method not in EMBED_METHODS:
        raise choice_error("embedding method", method, EMBED_METHODS)
    x = as_numpy(points, np.float64)
    if x.ndim != 2:
        raise ModescapeError(f"points must be [points, features], got shape {x.shape}")
    k = x.shape[0]
    if k < 3:
        raise ModescapeError(f"need at least 3 points to embed, got {k}")
    settings: dict = {"method": method, "seed": seed, "n_points": k, "n_features": x.shape[1]}
    settings["sklearn_version"] = sklearn.__version__
    if method == "pca":
        pca = PCA(n_components=2, svd_solver="full", random_state=seed)
        coords = pca.fit_transform(x)
        settings["explained_variance_ratio"] = pca.explained_variance_ratio_.tolist()
        return TrajectoryEmbedding(coords=coords, settings=settings)

    given = {
        "perplexity": float(perplexity), "learning_rate": learning_rate, "init": init,
        "max_iter": max_iter, "early_exaggeration": early_exaggeration, "metric": metric,
    }  # fmt: skip
    coords, info = _tsne(x, seed, **(given | {"perplexity": clamp_perplexity(perplexity, k)}))
    warnings = tsne_warnings(coords)
    settings.update(given | info)
    settings.update(
        {
            "preset": "paper" if given == PAPER_TSNE else "custom",
            "warnings": list(warnings),
            "lead_with_pca": bool(warnings),
            "perplexity_requested": float(perplexity),
            "perplexity_clamped": info["perplexity"] != float(perplexity),
        }
    )
    return TrajectoryEmbedding(coords.astype(np.float64), settings, warnings)
