import numpy as np
import pytest
import torch
from scipy.stats import entropy

from modescape.analysis import functionspace as fs
from modescape.errors import ModescapeError


def random_probs(m: int, n: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(c, 0.5), size=(m, n))
    return p.astype(np.float32)


def test_disagreement_matrix_matches_double_loop(monkeypatch):
    p = random_probs(7, 301, 5, 0)
    preds = p.argmax(-1)
    expected = np.array([[np.mean(preds[i] != preds[j]) for j in range(7)] for i in range(7)])
    np.testing.assert_allclose(fs.disagreement_matrix(p), expected, atol=1e-15)
    np.testing.assert_allclose(fs.disagreement_matrix(torch.from_numpy(preds)), expected)
    # Tiny blocks exercise the accumulation over example blocks (and a ragged last block).
    monkeypatch.setattr(fs, "_BLOCK_ELEMENTS", 7 * 2 * 5 * 13)
    np.testing.assert_allclose(fs.disagreement_matrix(p), expected, atol=1e-15)
    d = fs.disagreement_matrix(p)
    assert np.all(np.diag(d) == 0) and np.array_equal(d, d.T) and d.max() > 0.3


def test_disagreement_hand_case():
    a = np.array([0, 1, 2, 2])
    b = np.array([0, 2, 2, 1])
    assert fs.disagreement(a, b) == 0.5
    pa = np.eye(3)[a]
    assert fs.disagreement(pa, torch.tensor(b)) == 0.5
    np.testing.assert_allclose(
        fs.disagreement_matrix(np.stack([pa, np.eye(3)[b]])), [[0, 0.5], [0.5, 0]]
    )
    with pytest.raises(ModescapeError, match="example counts"):
        fs.disagreement(a, b[:3])
    with pytest.raises(ModescapeError, match="integer predictions"):
        fs.disagreement_matrix(a.astype(np.float32))


def test_agreement_with_references():
    p = random_probs(6, 200, 4, 1)
    refs = p[[2, 5]]
    got = fs.agreement_with(p, refs)
    preds = p.argmax(-1)
    expected = np.array([[np.mean(preds[i] == preds[r]) for r in (2, 5)] for i in range(6)])
    np.testing.assert_allclose(got, expected, atol=1e-15)
    assert got.shape == (6, 2) and got[2, 0] == 1.0 and got[5, 1] == 1.0
    one = fs.agreement_with(p, p[3])  # a single reference [N, C] gives [M, 1]
    np.testing.assert_allclose(one, (preds == preds[3]).mean(1, keepdims=True), atol=1e-15)
    np.testing.assert_allclose(fs.agreement_with(preds, preds[3]), fs.agreement_with(p, p[3]))


def test_normalized_diversity():
    assert fs.normalized_diversity(0.2, 0.6) == pytest.approx(0.5)
    out = fs.normalized_diversity(np.array([0.1, 0.0, 0.3]), np.array([0.8, 1.0, 1.0]))
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and np.isnan(out[2])


def test_js_matches_scipy_entropy_reference(monkeypatch):
    p = random_probs(5, 123, 6, 2).astype(np.float64)
    p /= p.sum(-1, keepdims=True)  # scipy normalises its inputs: give it exact rows

    def h(q):
        # H(q) = −Σ q log(q + ε) through scipy: entropy(q, q + ε) = Σ q log(q / ((q + ε) / S))
        # with S = Σ (q + ε) = 1 + Cε, so H(q) = entropy(q, q + ε) + entropy(q) − log S.
        eps = 1e-5
        return entropy(q, q + eps) + entropy(q) - np.log(1 + len(q) * eps)

    expected = np.mean(
        [h(p[:, n].mean(0)) - np.mean([h(p[m, n]) for m in range(5)]) for n in range(123)]
    )
    # scipy's Shannon entropy is the eps → 0 limit; ours must be close to it but not equal.
    shannon = np.mean(
        [
            entropy(p[:, n].mean(0)) - np.mean([entropy(p[m, n]) for m in range(5)])
            for n in range(123)
        ]
    )
    got = fs.js_diversity(p)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(shannon, abs=1e-3) and got != pytest.approx(shannon, abs=1e-9)
    monkeypatch.setattr(fs, "_BLOCK_ELEMENTS", 5 * 6 * 10)  # blocks of 10 examples
    assert fs.js_diversity(torch.from_numpy(p)) == pytest.approx(expected, rel=1e-12)


def test_js_identical_and_opposite_predictors():
    p = random_probs(1, 50, 10, 3)
    assert fs.js_diversity(np.repeat(p, 4, axis=0)) == pytest.approx(0.0, abs=1e-12)
    # Two confident predictors that disagree on every example: mean is (½, ½, 0, ...).
    # JS = −log(0.5 + ε) + log(1 + ε), which is log 2 up to O(ε).
    onehots = np.stack([np.eye(3)[[0, 1]], np.eye(3)[[1, 2]]])
    expected = -np.log(0.5 + fs.JS_EPS) + np.log(1 + fs.JS_EPS)
    assert fs.js_diversity(onehots) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(np.log(2), abs=2e-5)


def test_js_is_nonnegative_despite_eps():
    rng = np.random.default_rng(4)
    for _ in range(5):
        p = rng.dirichlet(np.full(10, 0.05), size=(3, 40))  # many near-zero probabilities
        assert fs.js_diversity(p) >= 0.0
