"""Seeded, stratified subsets of a split: small runs on real data.

`stratified_subset(labels, n, seed)` keeps `n` examples whose class proportions match the whole
split's as closely as integers allow (largest remainders), each class's examples drawn by a
seeded permutation. The indices come back sorted, so a subset keeps the split's order (the
validation split stays the *last* training examples) and the same settings always select the
same examples, on any machine.
"""

from __future__ import annotations

import numpy as np

from modescape.errors import ModescapeError
from modescape.seeding import derive_seed, numpy_rng


def class_quota(counts: np.ndarray, n: int) -> np.ndarray:
    """How many of each class a subset of `n` keeps: `n * counts / counts.sum()` rounded by
    largest remainders (ties to the lower class index), never more than a class holds."""
    total = int(counts.sum())
    exact = counts.astype(np.float64) * n / total
    quota = np.floor(exact).astype(np.int64)
    left = n - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))  # largest remainder first
    quota[order[:left]] += 1
    return np.minimum(quota, counts)


def stratified_subset(labels: np.ndarray, n: int, seed: int, what: str = "split") -> np.ndarray:
    """Sorted int64 indices of `n` examples of `labels [N]`, stratified by class (see module).

    `n` = 0 or `n` >= N keeps the whole split. The permutation of class c is drawn from
    `derive_seed(seed, what, c)`, so the train and test subsets are independent draws."""
    labels = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ModescapeError(f"{what} subset size must be an integer >= 0, got {n!r}")
    if n == 0 or n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota = class_quota(counts, int(n))
    keep = []
    for c, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == c)
        rng = numpy_rng(derive_seed(seed, "subset", what, int(c)))
        keep.append(members[rng.permutation(len(members))[:q]])
    return np.sort(np.concatenate(keep)).astype(np.int64)
