"""The diversity–accuracy plane with both normalisations and every member as reference (SPEC §7),
on hand-computed predictions."""

from __future__ import annotations

import numpy as np
import pytest

from modescape.analysis.plane import (
    Normalisation,
    diversity_accuracy_points,
    every_reference,
    plane_summary,
    reference_curves,
    reference_sweep,
)
from modescape.errors import ModescapeError

LABELS = np.zeros(10, dtype=np.int64)


def preds(wrong: list[int]) -> np.ndarray:
    """Two-class one-hot predictions of class 0 except class 1 on the listed examples: [10, 2]."""
    out = np.zeros(10, dtype=np.int64)
    out[wrong] = 1
    return np.eye(2, dtype=np.float32)[out]


# m0 acc 0.8, m1 acc 0.7, m2 acc 0.9; D(m0,m1) = 0.3, D(m0,m2) = 0.3, D(m1,m2) = 0.4
MEMBERS = np.stack([preds([0, 1]), preds([0, 2, 3]), preds([4])])


def test_points_under_both_normalisations():
    ref = MEMBERS[0]
    acc, own = diversity_accuracy_points(ref, MEMBERS[1:], LABELS)
    np.testing.assert_allclose(acc, [0.7, 0.9])
    np.testing.assert_allclose(own, [0.3 / 0.3, 0.3 / 0.1])
    _, by_ref = diversity_accuracy_points(ref, MEMBERS[1:], LABELS, "reference")
    np.testing.assert_allclose(by_ref, [0.3 / 0.2, 0.3 / 0.2])
    with pytest.raises(ModescapeError, match="normalisation"):
        diversity_accuracy_points(ref, MEMBERS[1:], LABELS, "member")


def test_reference_curves_under_the_reference_error():
    C, a_star = 10, 0.7
    grid = np.array([0.1, 0.4, 0.7])
    up_s, low_s = reference_curves(a_star, C, grid)
    up_r, low_r = reference_curves(a_star, C, grid, Normalisation.REFERENCE)
    # same disagreement, divided by 1 − a* instead of 1 − a
    np.testing.assert_allclose(up_r * (1 - a_star), up_s * (1 - grid))
    np.testing.assert_allclose(low_r * (1 - a_star), low_s * (1 - grid), atol=1e-15)
    assert np.isnan(reference_curves(1.0, C, grid, "reference")[0]).all()


def test_every_member_as_reference_by_hand():
    own = reference_sweep(MEMBERS, LABELS)
    want = [(1.0, 3.0), (1.5, 4.0), (1.5, 0.4 / 0.3)]  # D / (1 − acc of the other member)
    per_ref = [np.mean(w) for w in want]
    assert own.normalisation == "sample"
    np.testing.assert_allclose(own.per_reference, per_ref)
    assert own.mean == pytest.approx(np.mean(per_ref))
    assert own.std == pytest.approx(np.std(per_ref))
    assert np.isnan(np.diag(np.array(own.pairs))).all()
    assert own.pairs[1][2] == pytest.approx(4.0)
    np.testing.assert_allclose(own.reference_acc, [0.8, 0.7, 0.9])

    both = every_reference(MEMBERS, LABELS)
    assert set(both) == {"sample", "reference"}
    assert both["sample"].per_reference == own.per_reference
    ref = both["reference"]
    per_ref = [np.mean(w) for w in [(1.5, 1.5), (1.0, 0.4 / 0.3), (3.0, 4.0)]]
    np.testing.assert_allclose(ref.per_reference, per_ref)
    assert ref.mean == pytest.approx(np.mean(per_ref)) and ref.std == pytest.approx(np.std(per_ref))
    assert "reference's error" in ref.text() and "own error" in own.text()


def test_every_reference_with_subspace_samples():
    samples = [
        np.stack([preds([0, 1]), preds([0, 2]), preds([2, 3])]),  # around m0: best 0.4/0.2 = 2
        np.stack([preds([0, 2, 3])]),  # around m1: only itself, 0
        np.stack([preds([5, 6])]),  # around m2 (acc 0.9): acc 0.8, not within 0 points
    ]
    s = reference_sweep(MEMBERS, LABELS, sample_probs=samples, tol=0.0)
    assert s.sample_best[:2] == pytest.approx((2.0, 0.0)) and np.isnan(s.sample_best[2])
    assert (s.sample_mean, s.sample_std) == pytest.approx((1.0, 1.0))
    # same sample, reference normalisation: divided by m0's error 0.2 as well
    r = reference_sweep(MEMBERS, LABELS, sample_probs=samples, tol=0.0, normalisation="reference")
    assert r.sample_best[0] == pytest.approx(2.0)
    summary = plane_summary(MEMBERS[0], samples[0], MEMBERS[1:], LABELS, tol=0.0)
    assert summary.normalisation == "sample" and summary.best_sample_norm_div == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"member_probs": MEMBERS[:1]}, ">= 2 members"),
        ({"sample_probs": [MEMBERS]}, "one array per member"),
        ({"normalisation": "both"}, "normalisation"),
    ],
)
def test_sweep_validation(kwargs, match):
    args = {"member_probs": MEMBERS} | kwargs
    with pytest.raises(ModescapeError, match=match):
        reference_sweep(args.pop("member_probs"), LABELS, **args)
