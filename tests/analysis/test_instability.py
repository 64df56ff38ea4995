"""Instability measures against direct formulas on small hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modescape.analysis.instability import pair_level, pairs, stability_onset, stability_reading
from modescape.analysis.landscape import PathResult
from modescape.errors import ModescapeError


def _path(error: list[float], loss: list[float]) -> PathResult:
    e, lo = torch.tensor(error), torch.tensor(loss)
    return PathResult(
        alphas=torch.linspace(0, 1, len(error)), loss=lo, error=e, disagreement={},
        error_barrier=float(e.max() - (e[0] + e[-1]) / 2),
        loss_barrier=float(lo.max() - (lo[0] + lo[-1]) / 2), bn_policy="none",
    )  # fmt: skip


def test_pair_level_matches_direct_formulas():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(3, 50))  # [models, examples, classes]
    labels = rng.integers(0, 4, 50)
    w = rng.normal(size=(3, 20))
    paths = [_path([0.1, 0.3, 0.1], [1, 2, 1]), _path([0.2, 0.2, 0.2], [1, 1, 1]),
             _path([0.1, 0.2, 0.3], [1, 1.5, 1])]  # fmt: skip
    lv = pair_level(probs, labels, w, paths)
    pred = probs.argmax(-1)
    ij = pairs(3)
    assert lv.disagreement == pytest.approx(np.mean([(pred[i] != pred[j]).mean() for i, j in ij]))
    cos = [w[i] @ w[j] / np.linalg.norm(w[i]) / np.linalg.norm(w[j]) for i, j in ij]
    assert lv.cosine == pytest.approx(np.mean(cos))
    assert lv.l2 == pytest.approx(np.mean([np.linalg.norm(w[i] - w[j]) for i, j in ij]))
    assert lv.error_barrier == pytest.approx((0.2 + 0.0 + 0.1) / 3)  # max minus mean of the ends
    assert lv.error_barrier_max == pytest.approx(0.2)
    assert lv.loss_barrier == pytest.approx((1 + 0 + 0.5) / 3)
    assert lv.accuracy == pytest.approx(tuple((pred == labels).mean(1)))
    mix = probs.mean(0)
    h = lambda p: -(p * np.log(p + 1e-5)).sum(-1)  # noqa: E731  (the paper's JS, eps 1e-5)
    assert lv.js == pytest.approx((h(mix) - h(probs).mean(0)).mean(), rel=1e-6)


def test_pair_level_refuses_mismatched_inputs():
    probs = np.full((2, 3, 2), 0.5)
    with pytest.raises(ModescapeError, match="one path per pair"):
        pair_level(probs, np.zeros(3, dtype=int), np.ones((2, 4)), [])


def test_stability_onset_is_the_first_point_below_the_threshold():
    assert stability_onset([0, 1, 2, 3], [0.3, 0.05, 0.01, 0.03]) == 2.0
    assert stability_onset([0, 1], [0.3, 0.02]) is None  # "below", not "at"
    assert stability_onset([0, 1], [0.3, 0.2], threshold=0.25) == 1.0
    text = stability_reading([0, 1], [0.3, 0.01], [0.2, 0.01], None, None)
    assert "first falls below 2% at epoch 1" in text and "30.0%" in text
    assert "(stable from there on)" in text and "References" not in text
    # planted: the barrier dips below the threshold, then rises again: not called stable
    text = stability_reading([0, 1, 2, 3], [0.3, 0.05, 0.01, 0.03], [0.2] * 4, None, None)
    assert "first falls below 2% at epoch 2, but is above it again at epoch 3" in text
    assert "(stable" not in text
    one = stability_reading([2], [0.01], [0.05], None, None)  # one spawn point: said once
    assert one.count("epoch 2") == 2 and "; spawned at" not in one
