"""The diversity–accuracy plane and normalised diversity, with every member as reference.

A reference is one member's final snapshot (accuracy a*); every other predictor (a subspace
sample around it, or another independent member) is a point (acc, D(θ, θ_ref) / err), with the
error `err` chosen by `Normalisation`:

- "sample"    (default): err = 1 − acc, the predictor's own error, as the authors' notebook
  (`cifar10_medium_cnn_experiments.ipynb`, "diversity vs. accuracy" section) and the paper's Fig. 5;
- "reference":           err = 1 − a*, the reference's error; for independent members of similar
  accuracy both are close, and this one does not reward a predictor for being wrong.

A result should not hinge on which member is the reference, so `reference_sweep` uses every member
as reference in turn and reports mean ± std over references (population std, ddof = 0);
`every_reference` does it under both normalisations.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modescape.analysis.functionspace import agreement_with, normalized_diversity
from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.errors import ModescapeError, choice_error


class Normalisation(enum.StrEnum):
    """Which error divides the disagreement D in the plane's normalised diversity."""

    SAMPLE = "sample"  # D / (1 − acc of the predictor): the notebook's
    REFERENCE = "reference"  # D / (1 − acc of the reference)


def _normalisation(value: str) -> Normalisation:
    try:
        return Normalisation(value)
    except ValueError:
        raise choice_error("normalisation", value, [n.value for n in Normalisation]) from None


def diversity_accuracy_points(
    ref_probs: ArrayLike,
    probs: ArrayLike,
    labels: ArrayLike,
    normalisation: str = Normalisation.SAMPLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Points (acc, D(θ, θ_ref)/err) of K predictors against one reference.

    ref_probs: [N, C] (the reference, one member's final snapshot); probs: [K, N, C] (samples or
    other members); labels: int [N]. Returns float64 `acc[K]` and `norm_div[K]`; err is each
    predictor's own error ("sample") or the reference's ("reference"); norm_div is NaN where
    err == 0.
    """
    norm = _normalisation(normalisation)
    p, y = _check_plane_inputs(probs, labels)
    ref = as_numpy(ref_probs)
    if ref.shape != p.shape[1:]:
        raise ModescapeError(f"ref_probs must have shape {p.shape[1:]} ([N, C]), got {ref.shape}")
    acc = (p.argmax(axis=-1) == y).mean(axis=1, dtype=np.float64)
    d = 1.0 - agreement_with(p, ref)[:, 0]
    if norm is Normalisation.REFERENCE:
        ref_acc = float((ref.argmax(axis=-1) == y).mean())
        div = normalized_diversity(d, np.full_like(acc, ref_acc))
    else:
        div = normalized_diversity(d, acc)
    return acc, np.asarray(div, dtype=np.float64).reshape(-1)


def reference_curves(
    ref_acc: float,
    num_classes: int,
    acc_grid: ArrayLike,
    normalisation: str = Normalisation.SAMPLE,
) -> tuple[np.ndarray, np.ndarray]:
    """The plane's two reference curves at accuracies `acc_grid[G]`, plotted as d(a)/err.

    - upper, independent errors: d_up(a) = a*(1−a) + a(1−a*) + (1−a*)(1−a)(C−2)/(C−1), the
      expected disagreement of a predictor of accuracy a whose errors are independent of the
      reference's and uniform over the C − 1 wrong classes;
    - lower, perturbed reference: d_low(a) = (a* − a)/(a* + (a* − 1)/(C − 1)), the disagreement
      left when a fraction of the reference's predictions is replaced by uniformly random classes
      until its accuracy drops to a (meaningful for 1/C ≤ a ≤ a*; the formula is returned as is).

    err = 1 − a ("sample", both curves then equal 1 at a = 1/C) or 1 − a* ("reference").
    Returns float64 `(upper[G], lower[G])`; NaN where err == 0.
    """
    norm = _normalisation(normalisation)
    a_star = float(ref_acc)
    C = int(num_classes)
    if C < 2:
        raise ModescapeError(f"num_classes must be >= 2, got {num_classes}")
    if not 1.0 / C < a_star <= 1.0:
        raise ModescapeError(f"ref_acc must be in (1/C, 1] = ({1 / C:.4g}, 1], got {ref_acc}")
    a = as_numpy(acc_grid, np.float64)
    if np.any((a < 0) | (a > 1)):
        raise ModescapeError("acc_grid values must lie in [0, 1]")
    d_up = a_star * (1 - a) + a * (1 - a_star) + (1 - a_star) * (1 - a) * (C - 2) / (C - 1)
    d_low = (a_star - a) / (a_star + (a_star - 1) / (C - 1))
    err_acc = a if norm is Normalisation.SAMPLE else np.full_like(a, a_star)
    return (
        np.asarray(normalized_diversity(d_up, err_acc), dtype=np.float64),
        np.asarray(normalized_diversity(d_low, err_acc), dtype=np.float64),
    )


@dataclass(frozen=True)
class PlaneSummary:
    """How far subspace samples get from the reference, next to independent members.

    `best_sample_norm_div`: the largest normalised diversity among samples whose accuracy is
    within `tol` of the reference's (NaN when none is). `member_*`: one entry per member.
    """

    ref_acc: float
    tol: float
    n_samples: int
    n_within_tol: int
    best_sample_norm_div: float
    best_sample_acc: float
    member_acc: tuple[float, ...]
    member_norm_div: tuple[float, ...]
    normalisation: str = Normalisation.SAMPLE.value

    def text(self) -> str:
        pts = 100 * self.tol
        head = f"Reference accuracy {self.ref_acc:.3f}. "
        if self.n_within_tol:
            head += (
                f"Of {self.n_samples} subspace samples, {self.n_within_tol} are within "
                f"{pts:.1f} accuracy points of it; the most diverse of them reaches normalised "
                f"diversity {self.best_sample_norm_div:.2f} (accuracy {self.best_sample_acc:.3f})."
            )
        else:
            head += f"None of {self.n_samples} subspace samples is within {pts:.1f} points of it."
        if not self.member_norm_div:
            return head
        members = ", ".join(
            f"{d:.2f} (acc {a:.3f})" for a, d in zip(self.member_acc, self.member_norm_div)
        )
        return f"{head} Independent members: {members}."


def plane_summary(
    ref_probs: ArrayLike,
    sample_probs: ArrayLike,
    member_probs: ArrayLike,
    labels: ArrayLike,
    *,
    tol: float = 0.02,
    normalisation: str = Normalisation.SAMPLE,
) -> PlaneSummary:
    """Among samples within `tol` (absolute accuracy, 0.02 = 2 points) of the reference's
    accuracy, the largest normalised diversity, versus that of each independent member.

    ref_probs: [N, C]; sample_probs: [K, N, C]; member_probs: [M, N, C] (M may be 0); labels: [N].
    """
    norm = _normalisation(normalisation)
    if not 0 <= tol <= 1:
        raise ModescapeError(f"tol must be in [0, 1], got {tol}")
    ref = as_numpy(ref_probs)
    _, y = _check_plane_inputs(ref[None], labels)
    ref_acc = float((ref.argmax(-1) == y).mean())
    s_acc, s_div = diversity_accuracy_points(ref, sample_probs, labels, norm)
    near = (np.abs(s_acc - ref_acc) <= tol + 1e-12) & ~np.isnan(s_div)
    best = int(np.flatnonzero(near)[np.argmax(s_div[near])]) if near.any() else -1
    members = as_numpy(member_probs)
    if members.shape[0]:
        m_acc, m_div = diversity_accuracy_points(ref, members, labels, norm)
    else:
        m_acc, m_div = np.zeros(0), np.zeros(0)
    return PlaneSummary(
        ref_acc=ref_acc,
        tol=float(tol),
        n_samples=len(s_acc),
        n_within_tol=int(near.sum()),
        best_sample_norm_div=float(s_div[best]) if best >= 0 else float("nan"),
        best_sample_acc=float(s_acc[best]) if best >= 0 else float("nan"),
        member_acc=tuple(map(float, m_acc)),
        member_norm_div=tuple(map(float, m_div)),
        normalisation=norm.value,
    )


# ---------------------------------------------------------------------------------------------
# Every member as reference


@dataclass(frozen=True)
class ReferenceSweep:
    """Normalised diversity with each of M members as reference in turn, one normalisation.

    `pairs[r][j]`: member j's normalised diversity against reference r (NaN on the diagonal).
    `per_reference[r]`: mean over the other members; `mean`/`std` over references (ddof = 0).
    `sample_best[r]`: the largest normalised diversity of reference r's own subspace samples
    within `tol` of its accuracy (NaN when none is), with `sample_mean`/`sample_std` over the
    references that have one; all NaN/empty when no samples were given.
    """

    normalisation: str
    tol: float
    reference_acc: tuple[float, ...]
    pairs: tuple[tuple[float, ...], ...]
    per_reference: tuple[float, ...]
    mean: float
    std: float
    sample_best: tuple[float, ...] = ()
    sample_mean: float = float("nan")
    sample_std: float = float("nan")

    def text(self) -> str:
        M = len(self.reference_acc)
        own = self.normalisation == Normalisation.SAMPLE
        err = "the predictor's own error" if own else "the reference's error"
        out = (
            f"Normalised diversity D / ({err}), each of {M} members as reference in turn "
            f"(mean ± std over references): independent members {self.mean:.2f} ± {self.std:.2f}"
        )
        if self.sample_best and not np.isnan(self.sample_mean):
            out += (
                f"; most diverse subspace sample within {100 * self.tol:.1f} points of its "
                f"reference {self.sample_mean:.2f} ± {self.sample_std:.2f}"
            )
        return out + "."


def reference_sweep(
    member_probs: ArrayLike,
    labels: ArrayLike,
    *,
    sample_probs: Sequence[ArrayLike] | None = None,
    normalisation: str = Normalisation.SAMPLE,
    tol: float = 0.02,
) -> ReferenceSweep:
    """Every member as reference in turn under one normalisation.

    member_probs: [M, N, C] final predictions (M ≥ 2); labels: int [N]; sample_probs: optional,
    M arrays [K_r, N, C], the subspace samples around member r (compared with member r only).
    """
    norm = _normalisation(normalisation)
    members, y = _check_plane_inputs(member_probs, labels)
    M = members.shape[0]
    if M < 2:
        raise ModescapeError(f"every-reference diversity needs >= 2 members, got {M}")
    if sample_probs is not None and len(sample_probs) != M:
        raise ModescapeError(
            f"sample_probs must hold one array per member ({M}), got {len(sample_probs)}"
        )
    pairs = np.full((M, M), np.nan)
    best = np.full(M, np.nan)
    ref_acc = (members.argmax(-1) == y).mean(axis=1, dtype=np.float64)
    for r in range(M):
        others = [j for j in range(M) if j != r]
        _, div = diversity_accuracy_points(members[r], members[others], y, norm)
        pairs[r, others] = div
        if sample_probs is not None:
            s = plane_summary(
                members[r], sample_probs[r], members[:0], y, tol=tol, normalisation=norm
            )
            best[r] = s.best_sample_norm_div
    with warnings.catch_warnings():  # a row of NaN (others at 100%) is a NaN mean, said as such
        warnings.simplefilter("ignore", RuntimeWarning)
        per_ref = np.nanmean(pairs, axis=1)
        mean, std = float(np.nanmean(per_ref)), float(np.nanstd(per_ref))
    has = ~np.isnan(best)
    return ReferenceSweep(
        normalisation=norm.value,
        tol=float(tol),
        reference_acc=tuple(map(float, ref_acc)),
        pairs=tuple(tuple(map(float, row)) for row in pairs),
        per_reference=tuple(map(float, per_ref)),
        mean=mean,
        std=std,
        sample_best=tuple(map(float, best)) if sample_probs is not None else (),
        sample_mean=float(best[has].mean()) if has.any() else float("nan"),
        sample_std=float(best[has].std()) if has.any() else float("nan"),
    )


def every_reference(
    member_probs: ArrayLike,
    labels: ArrayLike,
    *,
    sample_probs: Sequence[ArrayLike] | None = None,
    tol: float = 0.02,
) -> dict[str, ReferenceSweep]:
    """`reference_sweep` under both normalisations: {"sample": ..., "reference": ...}."""
    return {
        n.value: reference_sweep(
            member_probs, labels, sample_probs=sample_probs, normalisation=n, tol=tol
        )
        for n in Normalisation
    }


def _check_plane_inputs(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = as_numpy(probs), as_numpy(labels)
    if p.ndim != 3 or p.shape[1] == 0:
        raise ModescapeError(f"probs must be [models, examples, classes], got shape {p.shape}")
    if y.shape != (p.shape[1],) or not np.issubdtype(y.dtype, np.integer):
        raise ModescapeError(f"labels must be int [{p.shape[1]}], got {y.dtype} {y.shape}")
    return p, y
