"""Accuracy, NLL, Brier score and ECE of one predictor.

Every function takes `probs[examples, classes]` (rows are probability vectors, e.g. one model's
softmax outputs or an ensemble's mean) and `labels int[examples]`, as numpy arrays or torch
tensors, and returns Python floats. Computation is in float64 whatever the input dtype, so the
numbers do not depend on whether the caller kept float32 or float64 predictions.

Conventions, stated once:
- the prediction is `argmax` over classes; ties go to the lowest class index (as in torch);
- NLL is `−mean_n log p_n[y_n]` in float64 with no clamp: a clamp (e.g. at 1e-12, −log ≈ 27.6)
  understates the loss of confidently wrong predictions, which strong dataset shift produces.
  With logits, `nll_from_logits` takes log-softmax in float64; an ensemble's NLL is the
  log-mean-exp over members of their log-probabilities (`ensemble_nll`). The one exception is a
  probability of exactly 0, which a float32 softmax stores when the true class trails by more
  than ~103 nats: its true value is below float32's range, so it counts as float32's smallest
  positive 2^-149 (103.3 nats, the least loss it can have: the NLL is then a lower bound, and a
  warning says how many examples); `nll_from_logits` has no such limit;
- Brier is `mean_n Σ_c (p_c − 1[c = y])²`, not divided by C, so it lies in [0, 2];
- ECE uses `n_bins` equal-width bins of the confidence `max_c p_c`, closed on the right:
  (0, 1/B], (1/B, 2/B], ..., ((B−1)/B, 1] (Guo et al. 2017), ECE = Σ_b |B_b|/N · |acc_b − conf_b|.
  torchmetrics closes its bins on the left instead; the two agree unless a confidence falls
  exactly on a bin edge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from modescape.errors import ModescapeError

ArrayLike = np.ndarray | torch.Tensor

ECE_BINS = 15
FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)  # 2^-149
log = logging.getLogger(__name__)


def as_numpy(x: ArrayLike, dtype: type | np.dtype | None = None) -> np.ndarray:
    """A numpy view/copy of an array or (CPU or GPU) tensor, optionally cast to `dtype`."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x if dtype is None else x.astype(dtype, copy=False)


def check_probs_labels(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate `probs[N, C]` and `labels[N]`; return them as float64 and int64 numpy arrays."""
    p = as_numpy(probs, np.float64)
    y = as_numpy(labels)
    if p.ndim != 2:
        raise ModescapeError(f"probs must be [examples, classes], got shape {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ModescapeError(f"labels must be [examples] = [{p.shape[0]}], got shape {y.shape}")
    if p.shape[0] == 0:
        raise ModescapeError("no examples to evaluate")
    if not np.issubdtype(y.dtype, np.integer):
        raise ModescapeError(f"labels must be integers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ModescapeError(f"labels must lie in [0, {p.shape[1] - 1}]")
    return p, y.astype(np.int64, copy=False)


def accuracy(probs: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of examples whose argmax class is the label."""
    p, y = check_probs_labels(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Negative log-likelihood `−mean_n log p_n[y_n]` in nats (float64; p = 0: see above)."""
    p, y = check_probs_labels(probs, labels)
    return float(-np.mean(_log_true(p[np.arange(len(y)), y])))


def _log_true(p_true: np.ndarray) -> np.ndarray:
    """log p in float64, a p of exactly 0 (below float32's range) taken as 2^-149."""
    zero = p_true <= 0
    if zero.any():
        log.warning(
            "%d of %d true-class probabilities are 0 (a float32 softmax underflowed): each "
            "counts as 2^-149, so the NLL is a lower bound",
            int(zero.sum()), zero.size,
        )  # fmt: skip
        p_true = np.where(zero, FLOAT32_TINY, p_true)
    return np.log(p_true)


def nll_from_logits(logits: ArrayLike, labels: ArrayLike) -> float:
    """`nll` of `softmax(logits[N, C])`, from log-softmax in float64 (exact where a float32
    softmax would round the true class's probability to 0)."""
    z = torch.as_tensor(as_numpy(logits, np.float64))
    _, y = check_probs_labels(z.numpy(), labels)
    logp = torch.log_softmax(z, dim=1)
    return float(-logp[torch.arange(len(y)), torch.from_numpy(y)].mean())


def ensemble_log_probs(log_probs: ArrayLike) -> np.ndarray:
    """log of the members' mean distribution, float64 [N, C] from log_probs[M, N, C]:
    log-mean-exp over members (no probability is formed, so none underflows)."""
    lp = as_numpy(log_probs, np.float64)
    if lp.ndim != 3 or lp.shape[0] == 0:
        raise ModescapeError(f"log_probs must be [models, examples, classes], got {lp.shape}")
    top = lp.max(axis=0)
    finite = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return finite + np.log(np.exp(lp - finite).mean(axis=0))


def ensemble_nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """NLL of the members' mean distribution from probs[M, N, C]: `−mean_n log mean_m
    p_m,n[y_n]`, as the log-mean-exp of the members' log-probabilities in float64."""
    p = as_numpy(probs, np.float64)
    if p.ndim != 3 or p.shape[0] == 0:
        raise ModescapeError(f"probs must be [models, examples, classes], got shape {p.shape}")
    _, y = check_probs_labels(p[0], labels)
    true = p[:, np.arange(len(y)), y][:, :, None]  # [M, N, 1]: only the true class is needed
    if (true.max(axis=0) > 0).all():  # a member's 0 is then no limit: log-mean-exp is exact
        with np.errstate(divide="ignore"):
            return float(-np.mean(ensemble_log_probs(np.log(true))))
    return float(-np.mean(ensemble_log_probs(_log_true(true))))


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Brier score `mean_n Σ_c (p_nc − 1[c = y_n])²` (no division by C; range [0, 2])."""
    p, y = check_probs_labels(probs, labels)
    sq = np.square(p).sum(axis=1)
    # Σ_c (p_c − δ_cy)² = Σ_c p_c² − 2 p_y + 1, without building a one-hot matrix.
    return float(np.mean(sq - 2.0 * p[np.arange(len(y)), y] + 1.0))


@dataclass(frozen=True)
class Reliability:
    """Per-bin statistics for a reliability diagram; bins are (edges[b], edges[b+1]].

    `accuracy` and `confidence` are NaN for empty bins.
    """

    edges: np.ndarray  # [B + 1]
    counts: np.ndarray  # int64 [B]
    accuracy: np.ndarray  # [B], mean correctness of the examples in each bin
    confidence: np.ndarray  # [B], mean max-probability of the examples in each bin

    @property
    def ece(self) -> float:
        """Σ_b |B_b|/N · |acc_b − conf_b| over non-empty bins."""
        n = self.counts.sum()
        full = self.counts > 0
        gap = np.abs(self.accuracy[full] - self.confidence[full])
        return float(np.sum(self.counts[full] / n * gap))


def reliability(probs: ArrayLike, labels: ArrayLike, n_bins: int = ECE_BINS) -> Reliability:
    """Bin examples by confidence `max_c p_c` into `n_bins` equal-width right-closed bins."""
    if n_bins < 1:
        raise ModescapeError(f"n_bins must be at least 1, got {n_bins}")
    p, y = check_probs_labels(probs, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" puts a confidence equal to an edge into the bin below it: right-closed bins.
    # Confidence 0 cannot happen for a probability vector, but clip so it would land in bin 0.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / counts
    return Reliability(
        edges=edges, counts=counts.astype(np.int64), accuracy=acc, confidence=mean_conf
    )


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error with `n_bins` equal-width right-closed confidence bins."""
    return reliability(probs, labels, n_bins).ece


METRICS = ("accuracy", "nll", "brier", "ece")


def evaluate(probs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """All four metrics of one predictor: {"accuracy", "nll", "brier", "ece"}."""
    p, y = check_probs_labels(probs, labels)
    return {"accuracy": accuracy(p, y), "nll": nll(p, y), "brier": brier(p, y), "ece": ece(p, y)}


def evaluate_ensemble(probs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """`evaluate` of the members' mean distribution, from probs[M, N, C]: the mean taken in
    float64 (a float32 mean rounds near-equal classes into ties that move the accuracy), the NLL
    by `ensemble_nll`."""
    p = as_numpy(probs)
    if p.ndim != 3 or p.shape[0] == 0:
        raise ModescapeError(f"probs must be [models, examples, classes], got shape {p.shape}")
    out = evaluate(p.mean(axis=0, dtype=np.float64), labels)
    return out | {"nll": ensemble_nll(p, labels)}
