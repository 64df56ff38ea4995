"""Function-space diversity: disagreement, normalised diversity, Jensen–Shannon (Fort et al. 2019).

Inputs are `probs[models, examples, classes]` (numpy or torch). Functions that only need each
model's predicted class also accept the argmax labels `preds int[models, examples]` directly,
which is 10× smaller for CIFAR-10 and what a caller should keep when memory is tight.

Memory: nothing here builds an [M, M, N] tensor. Disagreement counts come from one-hot
predictions multiplied blockwise over examples (agreements of models i and j on a block =
O_i · O_j with O = one-hot[M, block·C]); float32 holds these counts exactly because a block never
has more than 2^24 examples. Jensen–Shannon is accumulated over example blocks in float64.
"""

from __future__ import annotations

import numpy as np

from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.errors import ModescapeError

JS_EPS = 1e-5  # the authors' notebook: H(p) = −Σ_c p_c log(p_c + 1e-5)
# Work arrays (one-hot float32, or float64 probabilities) hold about this many elements at once:
# 32 MB / 64 MB, whatever the number of models.
_BLOCK_ELEMENTS = 1 << 23


def predictions(probs: ArrayLike) -> np.ndarray:
    """Argmax class of each model on each example: `probs[..., C]` → int64 `[...]`."""
    p = as_numpy(probs)
    if p.ndim < 1:
        raise ModescapeError("probs must have a class axis")
    return p.argmax(axis=-1).astype(np.int64, copy=False)


def _as_preds(x: ArrayLike, ndim: int, what: str) -> tuple[np.ndarray, int | None]:
    """Accept probs (ndim + 1 axes, float) or predicted labels (ndim axes, int).

    Returns the labels and the class count when known (None for labels).
    """
    a = as_numpy(x)
    if a.ndim == ndim + 1 and np.issubdtype(a.dtype, np.floating):
        return a.argmax(axis=-1).astype(np.int64, copy=False), a.shape[-1]
    if a.ndim == ndim and np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64, copy=False), None
    raise ModescapeError(
        f"{what} must be float probs with {ndim + 1} axes or integer predictions with {ndim} axes, "
        f"got {a.dtype} of shape {a.shape}"
    )


def _agreement_counts(a: np.ndarray, b: np.ndarray, n_classes: int) -> np.ndarray:
    """Number of examples where a[i] and b[j] predict the same class: int64 [len(a), len(b)]."""
    n = a.shape[1]
    block = max(1, _BLOCK_ELEMENTS // ((a.shape[0] + b.shape[0]) * n_classes))
    counts = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    eye = np.eye(n_classes, dtype=np.float32)
    for start in range(0, n, block):
        oa = eye[a[:, start : start + block]].reshape(a.shape[0], -1)
        ob = oa if b is a else eye[b[:, start : start + block]].reshape(b.shape[0], -1)
        counts += np.rint(oa @ ob.T).astype(np.int64)
    return counts


def _cross_disagreement(a: np.ndarray, b: np.ndarray, n_classes: int | None) -> np.ndarray:
    if a.shape[1] != b.shape[1]:
        raise ModescapeError(f"example counts differ: {a.shape[1]} vs {b.shape[1]}")
    if a.shape[1] == 0:
        raise ModescapeError("no examples to compare")
    c = int(max(a.max(), b.max())) + 1 if n_classes is None else n_classes
    return 1.0 - _agreement_counts(a, b, c) / a.shape[1]


def disagreement_matrix(probs: ArrayLike) -> np.ndarray:
    """Pairwise disagreement D[i, j] = mean_n 1[f_i(x_n) ≠ f_j(x_n)]; labels play no part.

    probs: `[M, N, C]` probabilities, or int `[M, N]` predicted classes. Returns float64 [M, M],
    symmetric with a zero diagonal.
    """
    preds, c = _as_preds(probs, 2, "probs")
    return _cross_disagreement(preds, preds, c)


def disagreement(p1: ArrayLike, p2: ArrayLike) -> float:
    """Disagreement of two predictors, each `probs[N, C]` or int `preds[N]`."""
    a, _ = _as_preds(p1, 1, "p1")
    b, _ = _as_preds(p2, 1, "p2")
    if a.shape != b.shape:
        raise ModescapeError(f"example counts differ: {a.shape[0]} vs {b.shape[0]}")
    if a.size == 0:
        raise ModescapeError("no examples to compare")
    return float(np.mean(a != b))


def agreement_with(probs: ArrayLike, reference_probs: ArrayLike) -> np.ndarray:
    """Agreement 1 − D of every model with every reference: float64 `[models, refs]`.

    probs: `[M, N, C]` (or int `[M, N]`); reference_probs: `[R, N, C]` (or int `[R, N]`), or one
    reference `[N, C]` (or int `[N]`), which gives `[M, 1]`. E.g. each snapshot against each
    member's final prediction.
    """
    a, ca = _as_preds(probs, 2, "probs")
    ref = as_numpy(reference_probs)
    single = ref.ndim == (2 if np.issubdtype(ref.dtype, np.floating) else 1)
    b, cb = _as_preds(ref[None] if single else ref, 2, "reference_probs")
    if ca is not None and cb is not None and ca != cb:
        raise ModescapeError(f"class counts differ: {ca} vs {cb}")
    return 1.0 - _cross_disagreement(a, b, ca or cb)


def normalized_diversity(d: ArrayLike | float, acc: ArrayLike | float) -> np.ndarray | float:
    """D / (1 − acc), with acc the accuracy of the sample itself (the authors' notebook).

    Where acc == 1 the ratio is undefined and NaN is returned (no warning). Floats in, float out;
    arrays in, float64 array out (broadcast).
    """
    d_arr = as_numpy(d, np.float64)
    err = 1.0 - as_numpy(acc, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(err > 0, d_arr / np.where(err > 0, err, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def entropy_eps(p: np.ndarray, eps: float = JS_EPS) -> np.ndarray:
    """H(p) = −Σ_c p_c log(p_c + eps) over the last axis (the authors' notebook)."""
    return -np.sum(p * np.log(p + eps), axis=-1)


def js_diversity(probs: ArrayLike, eps: float = JS_EPS) -> float:
    """Jensen–Shannon diversity of M predictors, averaged over examples.

    JS = mean_n [ H(mean_m p_mn) − mean_m H(p_mn) ] with H(p) = −Σ_c p_c log(p_c + 1e-5), exactly
    as the authors' notebook (the 1e-5 keeps log finite at p = 0; it makes H slightly smaller than
    the Shannon entropy but H stays concave, so JS ≥ 0, and identical predictors give JS = 0 up to
    rounding).
    probs: `[M, N, C]`. Computed in float64 over blocks of examples.
    """
    p = as_numpy(probs)
    if p.ndim != 3:
        raise ModescapeError(f"probs must be [models, examples, classes], got shape {p.shape}")
    m, n, c = p.shape
    if m == 0 or n == 0:
        raise ModescapeError("js_diversity needs at least one model and one example")
    block = max(1, _BLOCK_ELEMENTS // (m * c))
    total = 0.0
    for start in range(0, n, block):
        chunk = p[:, start : start + block].astype(np.float64)
        total += float(np.sum(entropy_eps(chunk.mean(axis=0), eps)))
        total -= float(np.sum(entropy_eps(chunk, eps))) / m
    return total / n
