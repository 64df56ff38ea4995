"""Instability of spawned children: how far apart children of one spawn point end up.

For children trained from one parent state with different data order (Frankle, Dziugaite, Roy
& Carbin 2020, arXiv:1912.05671; Fort et al. 2020, arXiv:2010.15110): the error and loss barrier
on the straight line between each pair (`landscape.interpolate_path`, max over α of the error
minus the mean of the ends; Frankle et al. evaluate 30 evenly spaced α), their disagreement and
Jensen–Shannon diversity (`functionspace`), and the raw cosine and L2 distance of their weights
(`weightspace`). The same measures for two reference pairs place them: two snapshots of one
trajectory (within a mode) and independent members (different initialisations).

Frankle et al. call a spawn point *stable* when the error barrier is below 2%; the onset of
stability is the first spawn point whose mean barrier over pairs is below that threshold.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from modescape.analysis.functionspace import disagreement_matrix, js_diversity
from modescape.analysis.landscape import PathResult
from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.analysis.weightspace import cosine_matrix, distance_matrix
from modescape.errors import ModescapeError
from modescape.results import PairLevel

FRANKLE_ALPHAS = 30  # evenly spaced α on each path, ends included (Frankle et al. 2020)
STABLE_BARRIER = 0.02  # "stable": error barrier below 2% (Frankle et al. 2020)


def pairs(n: int) -> list[tuple[int, int]]:
    """All unordered pairs (i, j), i < j, of n models."""
    return list(itertools.combinations(range(n), 2))


def pair_level(
    probs: ArrayLike,
    labels: ArrayLike,
    flat_weights: ArrayLike,
    paths: Sequence[PathResult],
) -> PairLevel:
    """Measures of a group of ≥ 2 models: `probs[models, examples, classes]` (final test
    predictions), `labels[examples]`, `flat_weights[models, parameters]` and one linear path
    per pair, in `pairs(models)` order."""
    p = as_numpy(probs, np.float64)
    w = as_numpy(flat_weights, np.float64)
    n = p.shape[0]
    if n < 2 or w.shape[0] != n:
        raise ModescapeError(f"a pair level needs >= 2 models with weights, got {n} and {len(w)}")
    if len(paths) != len(pairs(n)):
        raise ModescapeError(f"need one path per pair ({len(pairs(n))}), got {len(paths)}")
    iu = np.triu_indices(n, 1)
    err = np.array([path.error_barrier for path in paths])
    acc = (p.argmax(-1) == as_numpy(labels, np.int64)[None]).mean(1)
    return PairLevel(
        error_barrier=float(err.mean()),
        error_barrier_max=float(err.max()),
        loss_barrier=float(np.mean([path.loss_barrier for path in paths])),
        disagreement=float(disagreement_matrix(p)[iu].mean()),
        js=float(js_diversity(p)),
        cosine=float(cosine_matrix(w)[iu].mean()),
        l2=float(distance_matrix(w)[iu].mean()),
        accuracy=tuple(float(a) for a in acc),
        pairs=len(paths),
    )


def stability_onset(
    points: Sequence[float], barriers: Sequence[float], threshold: float = STABLE_BARRIER
) -> float | None:
    """The first spawn point (in the order given, earliest first) whose error barrier is below
    `threshold`; None when none is."""
    if len(points) != len(barriers):
        raise ModescapeError(f"{len(points)} spawn points but {len(barriers)} barriers")
    return next((float(k) for k, b in zip(points, barriers, strict=True) if b < threshold), None)


def stability_reading(
    points: Sequence[float],
    barriers: Sequence[float],
    disagreements: Sequence[float],
    within: PairLevel | None,
    across: PairLevel | None,
    threshold: float = STABLE_BARRIER,
) -> str:
    """The finding in words: where the barrier falls below `threshold`, and how the earliest
    and latest spawn points compare with the two reference levels."""
    onset = stability_onset(points, barriers, threshold)
    first, last = 0, len(points) - 1
    text = (
        f"Children spawned at epoch {points[first]:g} end with an error barrier of "
        f"{barriers[first]:.1%} and disagree on {disagreements[first]:.1%} of test examples"
    )
    if last != first:
        text += f"; spawned at epoch {points[last]:g}: {barriers[last]:.1%} and "
        text += f"{disagreements[last]:.1%}"
    text += ". "
    if onset is None:
        text += f"No spawn point reaches a barrier below {threshold:.0%} (never stable here). "
    else:
        again = [p for p, b in zip(points, barriers) if p > onset and b >= threshold]
        text += f"The barrier first falls below {threshold:.0%} at epoch {onset:g}" + (
            f", but is above it again at epoch {again[0]:g} (not stable from there on). "
            if again
            else " (stable from there on). "
        )
    refs = []  # each reference the run has (a one-member parent has no independent members)
    if within is not None:
        refs.append(
            f"two snapshots of one trajectory {within.error_barrier:.1%} barrier, "
            f"{within.disagreement:.1%} disagreement"
        )
    if across is not None:
        refs.append(
            f"independent members {across.error_barrier:.1%} barrier, "
            f"{across.disagreement:.1%} disagreement"
        )
    if refs:
        text += f"References: {'; '.join(refs)}."
    return text.strip()
