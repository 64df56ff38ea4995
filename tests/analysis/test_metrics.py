import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss
from torchmetrics.functional.classification import multiclass_accuracy
from torchmetrics.functional.classification import multiclass_calibration_error as tm_ece

from modescape.analysis import metrics
from modescape.errors import ModescapeError


def random_probs(n: int, c: int, seed: int, temperature: float = 1.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 3.0 / temperature
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, c, size=n)
    # Make the predictor better than chance so that accuracy and ECE are not trivial.
    labels[: n // 2] = p[: n // 2].argmax(axis=1)
    return p.astype(np.float32), labels.astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1])
def test_against_sklearn_and_torchmetrics(seed):
    p, y = random_probs(2000, 10, seed)
    tp, ty = torch.from_numpy(p), torch.from_numpy(y)
    assert metrics.accuracy(p, y) == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-12)
    tm_acc = multiclass_accuracy(tp, ty, num_classes=10, average="micro")
    assert metrics.accuracy(tp, ty) == pytest.approx(float(tm_acc), abs=1e-6)
    p64 = p.astype(np.float64)
    p64 /= p64.sum(axis=1, keepdims=True)  # exact rows for sklearn, which checks them
    # sklearn clips to [ε, 1 − ε] with ε = float64 machine epsilon; we clip at 1e-12 below only.
    assert metrics.nll(p64, y) == pytest.approx(log_loss(y, p64, labels=range(10)), rel=1e-8)
    assert metrics.nll(p, y) == pytest.approx(metrics.nll(p64, y), rel=1e-6)
    onehot = np.eye(10)[y]
    assert metrics.brier(p64, y) == pytest.approx(
        np.mean(np.sum((p64 - onehot) ** 2, 1)), rel=1e-12
    )
    expected = float(tm_ece(tp, ty, num_classes=10, n_bins=15, norm="l1"))
    assert metrics.ece(p, y) == pytest.approx(expected, abs=1e-6)
    assert metrics.ece(tp, ty) > 0.01  # non-trivial, so the comparison means something


def test_hand_case():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    y = np.array([0, 2, 0, 1])
    assert metrics.accuracy(p, y) == 0.5
    assert metrics.nll(p, y) == pytest.approx(-(np.log(0.7 * 0.3 * 0.5 * 0.2)) / 4)
    sq = [0.09 + 0.04 + 0.01, 0.01 + 0.36 + 0.49, 0.25 + 0.0625 + 0.0625, 0.04 + 0.64 + 0.36]
    assert metrics.brier(p, y) == pytest.approx(np.mean(sq))
    # Confidences 0.7, 0.6, 0.5, 0.6 with 15 bins:
    # 0.5 ∈ (7/15, 8/15] bin 7; 0.6 ∈ (8/15, 9/15] bin 8; 0.7 ∈ (10/15, 11/15] bin 10.
    rel = metrics.reliability(p, y)
    assert rel.counts[[7, 8, 10]].tolist() == [1, 2, 1] and rel.counts.sum() == 4
    assert rel.accuracy[8] == 0.0 and rel.confidence[8] == pytest.approx(0.6)
    assert np.isnan(rel.accuracy[0])
    # |1 − 0.5|·1/4 + |0 − 0.6|·2/4 + |1 − 0.7|·1/4
    assert metrics.ece(p, y) == pytest.approx(0.125 + 0.3 + 0.075)


def test_brier_range_and_nll_unclamped():
    wrong = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.brier(wrong, np.array([1, 0])) == pytest.approx(2.0)
    assert metrics.brier(wrong, np.array([0, 1])) == 0.0
    # p = 0 (a float32 softmax's underflow): float32's smallest positive, a lower bound
    assert metrics.nll(wrong, np.array([1, 0])) == pytest.approx(149 * np.log(2))
    members = np.stack([wrong, wrong[::-1]])  # the other member gives the true class p = 1
    assert metrics.ensemble_nll(members, np.array([1, 0])) == pytest.approx(np.log(2))


def test_nll_below_1e_12_is_minus_log_p():
    """True-class probabilities of 1e-15 .. 1e-30 (float32 holds them): −log p, not a clamp's
    27.6; from logits through log-softmax in float64, and for ensembles log-mean-exp."""
    p_true = np.array([1e-15, 1e-20, 1e-30, 0.5])
    probs = np.stack([p_true, 1 - p_true], axis=1).astype(np.float32)
    y = np.zeros(4, dtype=np.int64)
    direct = -np.mean(np.log(probs[:, 0].astype(np.float64)))
    assert metrics.nll(probs, y) == pytest.approx(direct, rel=1e-12)
    assert metrics.nll(probs, y) > 37  # a 1e-12 clamp would give 21.0
    logits = np.array([[-80.0, 0.0], [0.0, 0.0]])  # p_true = sigmoid(-80) ≈ 1.8e-35
    expected = np.mean([np.logaddexp(0, 80.0), np.log(2)])
    assert metrics.nll_from_logits(logits, np.array([0, 0])) == pytest.approx(expected, rel=1e-12)
    # ensembles: −log of the mean probability; one member at 1e-30, one at 1e-20
    members = np.stack([probs, probs[[1, 0, 2, 3]]])  # [2, 4, 2]
    mean_true = members[:, :, 0].astype(np.float64).mean(axis=0)
    assert metrics.ensemble_nll(members, y) == pytest.approx(-np.mean(np.log(mean_true)), 1e-12)
    logp = np.log(members.astype(np.float64))
    np.testing.assert_allclose(
        np.exp(metrics.ensemble_log_probs(logp)), members.astype(np.float64).mean(0), rtol=1e-12
    )
    assert metrics.evaluate_ensemble(members, y)["nll"] == metrics.ensemble_nll(members, y)


def test_ensemble_mean_is_float64():
    """Three members whose float32 mean rounds two classes into a tie (argmax: class 0), while
    the exact mean prefers class 1."""
    members = np.array(
        [[[0.5, 0.5]], [[0.49999997, 0.5]], [[0.49999994, 0.50000006]]], dtype=np.float32
    )
    m32 = members.mean(axis=0)
    assert m32[0, 0] == m32[0, 1]  # the float32 tie this guards against
    assert metrics.evaluate_ensemble(members, np.array([1]))["accuracy"] == 1.0


def test_ece_bins_closed_on_the_right():
    # Confidence exactly 0.6 = 9/15 belongs to bin 8, (8/15, 9/15], not bin 9.
    p = np.array([[0.6, 0.4], [1.0, 0.0]])
    rel = metrics.reliability(p, np.array([0, 0]))
    assert rel.counts[8] == 1 and rel.counts[9] == 0 and rel.counts[14] == 1
    assert rel.edges[0] == 0.0 and rel.edges[-1] == 1.0 and len(rel.edges) == 16
    # Two bins: 0.5 sits in the first, (0, 0.5].
    rel2 = metrics.reliability(np.array([[0.5, 0.5]]), np.array([1]), n_bins=2)
    assert rel2.counts.tolist() == [1, 0]


def test_evaluate_and_validation():
    p, y = random_probs(100, 4, 3)
    out = metrics.evaluate(p, y)
    assert set(out) == set(metrics.METRICS)
    assert out["ece"] == metrics.ece(p, y) and out["nll"] == metrics.nll(p, y)
    with pytest.raises(ModescapeError, match="labels must lie"):
        metrics.accuracy(p, np.full(100, 4))
    with pytest.raises(ModescapeError, match="examples, classes"):
        metrics.accuracy(p[None], y)
    with pytest.raises(ModescapeError, match="labels must be"):
        metrics.nll(p, y[:-1])
    with pytest.raises(ModescapeError, match="integers"):
        metrics.nll(p, y.astype(np.float32))
