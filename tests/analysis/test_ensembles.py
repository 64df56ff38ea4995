import itertools
import math

import numpy as np
import pytest
import torch

from modescape.analysis import ensembles, metrics
from modescape.errors import ModescapeError


def member_probs(m: int, n: int, c: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    logits = rng.normal(size=(m, n, c)) * 2.0
    logits[:, np.arange(n), labels] += 1.5  # members better than chance, with independent errors
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p.astype(np.float32), labels.astype(np.int64)


def test_ensemble_probs():
    p, _ = member_probs(4, 30, 5, 0)
    np.testing.assert_allclose(
        ensembles.ensemble_probs(p), p.astype(np.float64).mean(0), rtol=1e-12
    )
    np.testing.assert_allclose(
        ensembles.ensemble_probs(torch.from_numpy(p), [1, 3]),
        (p[1] + p[3]).astype(np.float64) / 2,
        rtol=1e-7,
    )


def test_full_and_single_member_sizes():
    p, y = member_probs(5, 400, 10, 1)
    curve = ensembles.ensemble_curve(p, y)
    assert curve.sizes.tolist() == [1, 2, 3, 4, 5]
    assert (
        curve.count.tolist() == [math.comb(5, k) for k in range(1, 6)] and not curve.sampled.any()
    )
    direct = metrics.evaluate(p.astype(np.float64).mean(0), y)
    singles = [metrics.evaluate(member, y) for member in p]
    for name in metrics.METRICS:
        assert curve.mean[name][-1] == pytest.approx(direct[name], rel=1e-12)
        assert curve.std[name][-1] == 0.0
        assert curve.mean[name][0] == pytest.approx(np.mean([s[name] for s in singles]), rel=1e-12)
        assert curve.std[name][0] == pytest.approx(np.std([s[name] for s in singles]), rel=1e-9)
    # The ensemble helps: NLL and Brier fall from single members to the full ensemble.
    assert curve.mean["nll"][-1] < curve.mean["nll"][0]
    assert curve.mean["brier"][-1] < curve.mean["brier"][0]


def test_three_model_hand_case():
    # Two examples, two classes; label 0 for both.
    p = np.array(
        [
            [[0.9, 0.1], [0.4, 0.6]],
            [[0.6, 0.4], [0.8, 0.2]],
            [[0.3, 0.7], [0.5, 0.5]],
        ]
    )
    y = np.array([0, 0])
    curve = ensembles.ensemble_curve(p, y, sizes=[2])
    assert curve.subsets[0].tolist() == [[0, 1], [0, 2], [1, 2]]
    # Pairs: {0,1} → [[.75,.25],[.6,.4]] acc 1; {0,2} → [[.6,.4],[.45,.55]] acc .5;
    # {1,2} → [[.45,.55],[.65,.35]] acc .5.
    assert curve.mean["accuracy"][0] == pytest.approx(2 / 3)
    nlls = [
        -(np.log(0.75) + np.log(0.6)) / 2,
        -(np.log(0.6) + np.log(0.45)) / 2,
        -(np.log(0.45) + np.log(0.65)) / 2,
    ]
    assert curve.mean["nll"][0] == pytest.approx(np.mean(nlls))
    assert curve.std["nll"][0] == pytest.approx(np.std(nlls))
    briers = [
        (2 * 0.25**2 + 2 * 0.4**2) / 2,
        (2 * 0.4**2 + 2 * 0.55**2) / 2,
        (2 * 0.55**2 + 2 * 0.35**2) / 2,
    ]
    assert curve.mean["brier"][0] == pytest.approx(np.mean(briers))


def test_subset_count_logic_and_seeded_sampling():
    chosen, sampled = ensembles.choose_subsets(10, 3, max_subsets=120, seed=0)
    assert not sampled and chosen.tolist() == [
        list(c) for c in itertools.combinations(range(10), 3)
    ]
    chosen, sampled = ensembles.choose_subsets(10, 3, max_subsets=119, seed=0)
    assert sampled and chosen.shape == (119, 3)
    assert len({tuple(r) for r in chosen.tolist()}) == 119  # distinct
    assert np.all(np.diff(chosen, axis=1) > 0)  # sorted rows, no repeated member
    again, _ = ensembles.choose_subsets(10, 3, max_subsets=119, seed=0)
    other, _ = ensembles.choose_subsets(10, 3, max_subsets=119, seed=1)
    assert np.array_equal(chosen, again) and not np.array_equal(chosen, other)

    p, y = member_probs(8, 100, 4, 2)
    a = ensembles.ensemble_curve(p, y, sizes=[4, 2], max_subsets=10, seed=5)
    b = ensembles.ensemble_curve(p, y, sizes=[4], max_subsets=10, seed=5)
    assert a.sampled.tolist() == [True, True] and a.count.tolist() == [10, 10]
    assert np.array_equal(a.subsets[0], b.subsets[0])  # the draw for k=4 ignores other sizes
    assert a.mean["nll"][0] == b.mean["nll"][0]
    assert a.to_dict()["sampled"] == [True, True]


def test_snapshot_ensembles():
    p, y = member_probs(6, 200, 5, 3)
    curve = ensembles.snapshot_ensemble_curve(p, y, sizes=[1, 3, 6])
    assert curve.subsets[1].tolist() == [[3, 4, 5]] and curve.count.tolist() == [1, 1, 1]
    for i, k in enumerate([1, 3, 6]):
        direct = metrics.evaluate(p[-k:].astype(np.float64).mean(0), y)
        for name in metrics.METRICS:
            assert curve.mean[name][i] == pytest.approx(direct[name], rel=1e-12)
            assert curve.std[name][i] == 0.0

    members = np.stack([member_probs(4, 200, 5, s)[0] for s in (4, 5, 6)])
    summary = ensembles.snapshot_ensemble_curves(members, y)
    per_member = [ensembles.snapshot_ensemble_curve(m, y).mean["nll"] for m in members]
    np.testing.assert_allclose(summary.mean["nll"], np.mean(per_member, 0), rtol=1e-12)
    np.testing.assert_allclose(summary.std["nll"], np.std(per_member, 0), rtol=1e-9)
    assert summary.count.tolist() == [3, 3, 3, 3]


def test_validation():
    p, y = member_probs(3, 10, 4, 7)
    with pytest.raises(ModescapeError, match=r"sizes must lie in \[1, 3\]"):
        ensembles.ensemble_curve(p, y, sizes=[0, 2])
    with pytest.raises(ModescapeError, match="models, examples, classes"):
        ensembles.ensemble_curve(p[0], y)
    with pytest.raises(ModescapeError, match="labels"):
        ensembles.ensemble_curve(p, y[:5])
