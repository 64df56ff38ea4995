"""Subspace samplers and the diversity–accuracy plane (SPEC §7), against direct formulas,
numpy / scikit-learn / scipy references and Monte-Carlo simulations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.decomposition import PCA

from modescape.analysis.plane import diversity_accuracy_points, plane_summary, reference_curves
from modescape.analysis.samplers import (
    SAMPLERS,
    diagonal_gaussian,
    dropout_subspace,
    iter_samples,
    lowrank_basis,
    lowrank_gaussian,
    random_subspace,
    sample,
)
from modescape.analysis.subspace import SubspaceConfig, sample_subspace, subspace_model_probs
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed, torch_generator


def trajectory(S: int = 10, P: int = 200, seed: int = 0) -> torch.Tensor:
    """Snapshots drifting along a few directions with different spreads, plus a little noise."""
    g = torch_generator(seed)
    base = torch.randn(P, generator=g, dtype=torch.float64)
    drift = torch.randn(S, 4, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0, 0.5])
    dirs = torch.randn(4, P, generator=g, dtype=torch.float64)
    return base + drift @ dirs + 0.05 * torch.randn(S, P, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# random subspace


def test_random_subspace_radius_is_uniform_up_to_scale_and_direction_isotropic():
    anchor = torch.randn(64, dtype=torch.float64)
    scale = 3.0
    theta = random_subspace(anchor, 400, scale, seed=1)
    delta = (theta - anchor).numpy()
    t = np.linalg.norm(delta, axis=1)
    assert t.max() <= scale
    # t ~ scale·U(0,1): Kolmogorov–Smirnov against the uniform distribution on [0, scale].
    assert stats.kstest(t / scale, "uniform").pvalue > 1e-3
    # Gaussian directions normalised to the unit sphere: each coordinate has mean 0, var 1/P.
    v = delta / t[:, None]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-12)
    assert abs(v.mean()) < 5 / np.sqrt(v.size * 64)
    assert abs(v.var() * 64 - 1) < 0.05


def test_random_subspace_float32_keeps_unit_direction():
    anchor = torch.randn(100_000)
    theta = random_subspace(anchor, 3, 5.0, seed=0)
    assert theta.dtype == torch.float32
    t = torch.linalg.vector_norm((theta - anchor).double(), dim=1)
    assert torch.all(t <= 5.0 + 1e-4)
    assert torch.all(t > 0)


# ---------------------------------------------------------------------------------------------
# dropout subspace


def test_dropout_keeps_rescaled_entries_and_drops_fraction_p():
    P = 200_000
    anchor = torch.rand(P, dtype=torch.float64) + 0.5  # no zeros: a zero says "dropped"
    scale = 0.6
    theta = dropout_subspace(anchor, 6, scale, seed=3)
    for row in theta:
        dropped = row == 0
        ratio = (row[~dropped] / anchor[~dropped]).numpy()
        # one common factor c = 1/(1 − p) for every kept entry
        c = ratio[0]
        np.testing.assert_allclose(ratio, c, rtol=1e-12)
        p = 1 - 1 / c
        assert 0 <= p < scale
        # dropped fraction ≈ p (binomial, 5 standard deviations)
        frac = dropped.double().mean().item()
        assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / P) + 1e-9
        # kept entries are anchor / (1 − p) (to float64 rounding: p is recovered from c)
        np.testing.assert_allclose(row[~dropped], anchor[~dropped] / (1 - p), rtol=1e-14)


def test_dropout_probability_is_uniform_up_to_scale():
    anchor = torch.ones(4000, dtype=torch.float64)
    theta = dropout_subspace(anchor, 300, 0.4, seed=5)
    c = theta.max(dim=1).values.numpy()  # every kept entry is 1/(1 − p)
    p = 1 - 1 / c
    assert stats.kstest(p / 0.4, "uniform").pvalue > 1e-3


# ---------------------------------------------------------------------------------------------
# diagonal Gaussian


def test_diagonal_gaussian_matches_population_mean_and_std():
    snaps = trajectory(S=10, P=40)
    n, scale = 20_000, 1.5
    theta = diagonal_gaussian(snaps, n, scale, seed=2).numpy()
    mu = np.mean(snaps.numpy(), axis=0)
    sigma = np.std(snaps.numpy(), axis=0)  # ddof=0, as the authors' notebook
    z_mean = (theta.mean(0) - mu) / (scale * sigma / np.sqrt(n))
    assert np.abs(z_mean).max() < 5
    rel_std = theta.std(0) / (scale * sigma) - 1
    assert np.abs(rel_std).max() < 5 / np.sqrt(2 * n)


# ---------------------------------------------------------------------------------------------
# low-rank Gaussian


def test_lowrank_basis_agrees_with_sklearn_pca():
    snaps = trajectory(S=10, P=120)
    basis = lowrank_basis(snaps, 5)
    pca = PCA(n_components=5, svd_solver="full").fit(snaps.numpy())
    np.testing.assert_allclose(basis.mean.numpy(), pca.mean_, atol=1e-12)
    np.testing.assert_allclose(basis.singular_values.numpy(), pca.singular_values_, rtol=1e-9)
    # same directions up to sign
    cos = np.abs(np.sum(basis.components.numpy() * pca.components_, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)
    np.testing.assert_allclose(basis.components @ basis.components.T, np.eye(5), atol=1e-10)


@pytest.mark.parametrize("variant", ["paper", "scaled"])
def test_lowrank_samples_do_not_depend_on_eigenvector_signs(variant, monkeypatch):
    snaps = trajectory(S=8, P=120)
    want = lowrank_gaussian(snaps, 6, 1.5, rank=4, seed=3, variant=variant)
    eigh = torch.linalg.eigh

    def flipped(a):  # what another LAPACK may return: the same eigenvectors, some negated
        w, u = eigh(a)
        return w, u * torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0], dtype=u.dtype)

    monkeypatch.setattr(torch.linalg, "eigh", flipped)
    basis = lowrank_basis(snaps, 4)
    peak = basis.components.gather(1, basis.components.abs().argmax(1, keepdim=True))
    assert torch.all(peak > 0)
    assert torch.equal(lowrank_gaussian(snaps, 6, 1.5, rank=4, seed=3, variant=variant), want)


@pytest.mark.parametrize("variant", ["paper", "scaled"])
def test_lowrank_samples_lie_in_span_of_centred_snapshots(variant):
    snaps = trajectory(S=8, P=150)
    theta = lowrank_gaussian(snaps, 50, 2.0, rank=4, seed=0, variant=variant).numpy()
    centred = snaps.numpy() - snaps.numpy().mean(0)
    q, _ = np.linalg.qr(centred.T)  # orthonormal basis of the span, [P, S]
    dev = theta - snaps.numpy().mean(0)
    residual = dev - (dev @ q) @ q.T
    assert np.abs(residual).max() < 1e-9 * np.abs(dev).max()
    assert np.abs(dev).max() > 0.1


@pytest.mark.parametrize(("variant", "scale"), [("paper", 0.7), ("scaled", 1.3)])
def test_lowrank_spread_along_components(variant, scale):
    snaps = trajectory(S=10, P=100)
    n, k = 6000, 5
    theta = lowrank_gaussian(snaps, n, scale, rank=k, seed=11, variant=variant).numpy()
    pca = PCA(n_components=k, svd_solver="full").fit(snaps.numpy())
    coords = (theta - pca.mean_) @ pca.components_.T  # [n, k]
    # "paper": unit-norm components, not scaled; "scaled": s_i/√(S−1) = √(explained_variance_i)
    # (sklearn's variance uses ddof = 1)
    unit = np.ones(k) if variant == "paper" else np.sqrt(pca.explained_variance_)
    expected = scale * unit
    np.testing.assert_allclose(coords.std(0), expected, rtol=5 / np.sqrt(2 * n))
    # independent coordinates
    corr = np.corrcoef(coords.T) - np.eye(k)
    assert np.abs(corr).max() < 5 / np.sqrt(n)


def test_lowrank_scaled_spread_is_proportional_to_singular_values():
    snaps = trajectory(S=10, P=100)
    basis = lowrank_basis(snaps, 4)
    theta = lowrank_gaussian(snaps, 8000, 1.0, rank=4, seed=4, variant="scaled")
    coords = ((theta - basis.mean) @ basis.components.T).numpy()
    ratio = coords.std(0) / basis.singular_values.numpy()
    np.testing.assert_allclose(ratio, 1 / np.sqrt(9), rtol=0.05)


# ---------------------------------------------------------------------------------------------
# reproducibility


@pytest.mark.parametrize("method", SAMPLERS)
def test_same_seed_same_samples_any_chunking(method):
    snaps = trajectory(S=6, P=300).float()
    a = sample(method, snaps, 7, 0.5, seed=42, rank=3)
    b = sample(method, snaps, 7, 0.5, seed=torch_generator(42), rank=3)
    chunked = torch.cat(list(iter_samples(method, snaps, 7, 0.5, seed=42, rank=3, chunk=3)))
    assert a.shape == (7, 300) and a.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(a, chunked)
    assert not torch.equal(a, sample(method, snaps, 7, 0.5, seed=43, rank=3))
    assert not torch.equal(a[0], a[1])  # fresh draws per sample


def test_stratified_sweep_puts_one_radius_in_each_stratum():
    anchor = torch.randn(1, 50, dtype=torch.float64)
    n = 20
    r = sample("random", anchor, n, 4.0, seed=5, stratified=True)
    t = torch.linalg.vector_norm(r - anchor, dim=1) / 4.0
    strata = torch.floor(t * n).long()
    assert sorted(strata.tolist()) == list(range(n))  # exactly one t in each [k/n, (k+1)/n)
    assert strata.tolist() != list(range(n))  # in a random order, not sorted
    chunked = torch.cat(list(iter_samples("random", anchor, n, 4.0, 5, chunk=7, stratified=True)))
    assert torch.equal(chunked, r)


def test_sample_subspace_uses_last_snapshots_and_derived_seed():
    snaps = trajectory(S=14, P=80)
    cfg = SubspaceConfig(n_samples=5, n_snapshots=6, rank=3, seed=9)
    got = sample_subspace(cfg, "lowrank_scaled", snaps, member=2)
    seed = derive_seed(9, "subspace", "lowrank_scaled", 2)
    # calibrated mode (default): every sampler sweeps scale·U(0,1), stratified; `scale=` overrides
    kw = dict(rank=3, seed=seed, sweep=True, stratified=True)
    assert torch.equal(got, sample("lowrank_scaled", snaps[-6:], 5, 1.0, **kw))
    got = sample_subspace(cfg, "lowrank_scaled", snaps, member=2, scale=2.5)
    assert torch.equal(got, sample("lowrank_scaled", snaps[-6:], 5, 2.5, **kw))
    paper = SubspaceConfig(mode="paper", n_samples=5, n_snapshots=6, rank=3, seed=9)
    want = lowrank_gaussian(snaps[-6:], 5, 6.0, rank=3, seed=seed, variant="scaled")
    assert torch.equal(sample_subspace(paper, "lowrank_scaled", snaps, member=2), want)
    r = sample_subspace(cfg, "random", snaps, member=2)
    assert torch.all(torch.linalg.vector_norm(r - snaps[-1], dim=1) <= cfg.random_scale)
    assert not torch.equal(r, sample_subspace(cfg, "random", snaps, member=3))


# ---------------------------------------------------------------------------------------------
# the diversity–accuracy plane


def test_points_hand_computed():
    labels = np.array([0, 1, 2, 0])
    eye = np.eye(3, dtype=np.float32)
    ref = eye[[0, 1, 2, 1]]  # acc 3/4
    probs = np.stack([eye[[0, 1, 0, 0]], eye[[0, 1, 2, 0]], ref])
    acc, nd = diversity_accuracy_points(ref, probs, labels)
    np.testing.assert_allclose(acc, [0.75, 1.0, 0.75])
    # sample 0 disagrees with ref at 2 of 4 examples: 0.5 / (1 − 0.75) = 2
    assert nd[0] == pytest.approx(2.0)
    assert np.isnan(nd[1])  # perfect accuracy: undefined
    assert nd[2] == 0.0  # the reference itself sits at (a*, 0)


def test_reference_curves_endpoints():
    C, a_star = 10, 0.7
    grid = np.array([1 / C, 0.4, a_star])
    up, low = reference_curves(a_star, C, grid)
    np.testing.assert_allclose([up[0], low[0]], [1.0, 1.0], rtol=1e-12)
    assert low[2] == pytest.approx(0.0, abs=1e-15)
    assert np.all(up >= low)
    # spot value of the upper curve straight from SPEC's formula
    a = 0.4
    d_up = a_star * (1 - a) + a * (1 - a_star) + (1 - a_star) * (1 - a) * 8 / 9
    assert up[1] == pytest.approx(d_up / (1 - a))
    assert np.isnan(reference_curves(a_star, C, [1.0])[0][0])


def _predict_with_accuracy(labels, acc, C, rng):
    """Correct with probability acc, else a uniformly random wrong class."""
    correct = rng.random(len(labels)) < acc
    wrong = (labels + rng.integers(1, C, len(labels))) % C
    return np.where(correct, labels, wrong)


@pytest.mark.parametrize("C", [3, 10])
def test_upper_curve_is_disagreement_of_independent_predictors(C):
    rng = np.random.default_rng(0)
    N, a_star = 400_000, 0.8
    labels = rng.integers(0, C, N)
    ref = _predict_with_accuracy(labels, a_star, C, rng)
    for a in (0.4, 0.6, 0.8):
        other = _predict_with_accuracy(labels, a, C, rng)
        d_sim = np.mean(ref != other)
        up, _ = reference_curves(a_star, C, [a])
        assert up[0] * (1 - a) == pytest.approx(d_sim, abs=5 * np.sqrt(0.25 / N))


def test_lower_curve_is_disagreement_of_randomised_reference():
    rng = np.random.default_rng(1)
    N, C, a_star = 400_000, 10, 0.75
    labels = rng.integers(0, C, N)
    ref = _predict_with_accuracy(labels, a_star, C, rng)
    for a in (0.2, 0.5, 0.7):
        q = (a_star - a) / (a_star - 1 / C)  # fraction re-drawn uniformly over all C classes
        redraw = rng.random(N) < q
        pert = np.where(redraw, rng.integers(0, C, N), ref)
        _, low = reference_curves(a_star, C, [a])
        assert np.mean(pert == labels) == pytest.approx(a, abs=0.005)
        assert low[0] * (1 - a) == pytest.approx(np.mean(pert != ref), abs=5 * np.sqrt(0.25 / N))


def test_subspace_model_probs_groups_consecutive_samples():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=(6, 5)).astype(np.float32)
    got = subspace_model_probs(p, 3)
    assert got.shape == (2, 5, 4) and got.dtype == np.float64
    exact = (p[3].astype(np.float64) + p[4] + p[5]) / 3
    np.testing.assert_allclose(got[1], exact, rtol=1e-13)  # accumulated in float64, kept so
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-6)


def test_plane_summary_picks_most_diverse_sample_near_reference():
    labels = np.zeros(10, dtype=np.int64)
    eye = np.eye(2, dtype=np.float32)

    def preds(wrong):  # predicts class 1 on the listed examples
        out = np.zeros(10, dtype=np.int64)
        out[list(wrong)] = 1
        return eye[out]

    ref = preds([0, 1])  # acc 0.8
    samples = np.stack([preds([0, 1]), preds([0, 2]), preds([2, 3]), preds([5])])
    members = np.stack([preds([4, 5, 6])])
    s = plane_summary(ref, samples, members, labels, tol=0.0)
    # within 0 points: samples 0-2 (acc 0.8); diversities 0, 0.2/0.2 = 1, 0.4/0.2 = 2
    assert s.n_within_tol == 3
    assert s.best_sample_norm_div == pytest.approx(2.0)
    assert s.member_acc == pytest.approx((0.7,))
    assert s.member_norm_div == pytest.approx((0.5 / 0.3,))
    assert "2.00" in s.text() and "1.67" in s.text()
    assert plane_summary(ref, samples[3:], members[:0], labels, tol=0.0).n_within_tol == 0


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: sample("random", s, 0, 1.0, 0), "n must be"),
        (lambda s: sample("random", s, 2, 0.0, 0), "scale"),
        (lambda s: sample("diagonal", s, 2, -1.0, 0), "scale"),
        (lambda s: sample("dropout", s, 2, 1.0, 0), "< 1"),
        (lambda s: sample("lowrank", s, 2, 1.0, 0, rank=4), "rank must be"),
        (lambda s: sample("diagonal", s[:1], 2, 1.0, 0), "at least 2"),
        (lambda s: sample("gaussian", s, 2, 1.0, 0), "allowed: random, dropout"),
        (lambda s: sample("random", s, 2, 1.0, -1), "seed"),
        (lambda s: random_subspace(s, 2, 1.0, 0), r"flat tensor \[P\]"),
        (lambda s: lowrank_gaussian(s, 2, 1.0, 2, 0, variant="swag"), "allowed: paper, scaled"),
        (lambda s: lowrank_basis(s[:1].expand(4, -1).clone(), 2), "span fewer"),
        (lambda s: SubspaceConfig(rank=0), "rank must be an integer >= 1"),
        (lambda s: SubspaceConfig(methods=("random", "mc")), "allowed"),
        (lambda s: SubspaceConfig(dropout_scale=1.5), "< 1"),
        (lambda s: SubspaceConfig(n_snapshots=1), "n_snapshots"),
        (lambda s: sample_subspace(SubspaceConfig(n_samples=2), "diagonal", s, 0), "last 10"),
        (lambda s: reference_curves(0.05, 10, [0.5]), "ref_acc"),
        (lambda s: subspace_model_probs(np.ones((5, 2, 2)), 2), "groups"),
    ],
)
def test_validation_errors(call, match):
    snaps = trajectory(S=4, P=20)
    with pytest.raises(ModescapeError, match=match):
        call(snaps)
