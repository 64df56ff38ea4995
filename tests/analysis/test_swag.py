"""SWA, SWAG, MultiSWAG and MC dropout against their reference definitions (Maddox et al. 2019,
Wilson & Izmailov 2020, Gal & Ghahramani 2016), computed independently here."""

import numpy as np
import pytest
import torch
from torch import nn

from modescape.analysis import swag
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed


def _iterates(T: int = 30, P: int = 6, seed: int = 0) -> torch.Tensor:
    """A trajectory with correlated parameters and scales far from 1 (so σ and σ² differ)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(P, P, generator=g, dtype=torch.float64) * 0.05
    walk = torch.randn(T, P, generator=g, dtype=torch.float64) @ mix
    return (torch.linspace(-1, 1, P, dtype=torch.float64) + walk).float()


def _reference_moments(iterates: torch.Tensor, K: int):
    """The statistics written out directly: mean, population variance, and the deviation of
    each iterate from the running mean right after it was collected (last K kept)."""
    x = iterates.double()
    mean = x.mean(0)
    var = x.var(0, correction=0)
    running = x.cumsum(0) / torch.arange(1, len(x) + 1, dtype=torch.float64)[:, None]
    devs = (x - running)[-K:]
    return mean, var, devs


def test_moments_are_mean_variance_and_last_k_deviations():
    it = _iterates(T=30)
    m = swag.fit_moments(it, max_rank=20)
    mean, var, devs = _reference_moments(it, 20)
    assert m.n == 30 and m.rank == 20
    torch.testing.assert_close(m.mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(m.variance, var, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(m.deviations.double(), devs, rtol=0, atol=1e-6)


def test_swa_is_the_mean_of_the_collected_iterates():
    it = _iterates(T=7, P=50, seed=3)
    swa = swag.swa_weights(swag.fit_moments(it))
    assert swa.dtype == torch.float32
    torch.testing.assert_close(swa, it.double().mean(0).float(), rtol=0, atol=1e-7)
    # running (one at a time, as the trainer collects) equals the batch fit
    m = swag.empty_moments(50)
    for theta in it:
        m = swag.collect(m, theta)
    torch.testing.assert_close(swag.swa_weights(m), swa, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["full", "diag"])
def test_sample_covariance_matches_the_swag_covariance(variant):
    """Empirical covariance of 40,000 samples against ½(diag σ² + DDᵀ/(K−1)) (full) or diag σ²
    (diag). Each entry of an empirical covariance of n Gaussian samples has standard error
    √((Σ_ii Σ_jj + Σ_ij²)/n); the tolerance is 6 of them (a false failure ~1e-8 per entry)."""
    it = _iterates(T=30, P=6)
    m = swag.fit_moments(it, max_rank=20)
    n = 40_000
    s = swag.swag_samples(m, n, seed=11, variant=variant).double()
    expected = m.covariance(variant)
    # the construction by hand, independently of SwagMoments.covariance
    _, var, devs = _reference_moments(it, 20)
    by_hand = torch.diag(var) + (devs.T @ devs / 19 if variant == "full" else 0)
    torch.testing.assert_close(expected, swag.DEFAULT_SCALE[variant] * by_hand)
    emp = torch.cov(s.T, correction=1)
    d = torch.diag(expected)
    se = ((d[:, None] * d[None, :] + expected.square()) / n).sqrt()
    assert torch.all((emp - expected).abs() <= 6 * se), (emp - expected).abs() / se
    assert torch.all((s.mean(0) - m.mean).abs() <= 6 * (d / n).sqrt())
    if variant == "full":
        # The low-rank term couples parameters of different tensors: a z₂ per tensor would make
        # these (off-diagonal) entries 0. They are far larger than the tolerance here.
        off = expected[:3, 3:].abs().max()
        assert off > 20 * se[:3, 3:].max()
        assert (emp[:3, 3:] - expected[:3, 3:]).abs().max() < off / 3


def test_sigma_is_a_standard_deviation_not_a_variance():
    """The diag variant with one parameter of std 0.01: samples spread by 0.01, not 1e-4."""
    it = torch.tensor([[0.0], [0.02]])  # mean 0.01, population std 0.01
    s = swag.swag_samples(swag.fit_moments(it), 20_000, seed=0, variant="diag")
    assert abs(float(s.std()) - 0.01) < 0.0005


def test_samples_are_seeded_and_chunk_independent():
    m = swag.fit_moments(_iterates())
    a = swag.swag_samples(m, 5, seed=4)
    b = torch.stack(list(swag.iter_swag_samples(m, 5, seed=4)))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, swag.swag_samples(m, 5, seed=5))


def test_multiswag_pools_each_members_samples():
    members = [swag.fit_moments(_iterates(seed=s)) for s in range(3)]
    pooled = swag.pool_samples(members, 4, seed=9)
    assert pooled.shape == (12, 6)
    for i, m in enumerate(members):
        own = swag.swag_samples(m, 4, derive_seed(9, "multiswag", i))
        torch.testing.assert_close(pooled[4 * i : 4 * i + 4], own, rtol=0, atol=0)
        # each member's samples sit around its own mean
        assert (pooled[4 * i : 4 * i + 4].double().mean(0) - m.mean).abs().max() < 0.2
    rng = np.random.default_rng(0)
    per_member = [rng.dirichlet(np.ones(3), size=(4, 10)).astype(np.float32) for _ in range(3)]
    samples, predictive = swag.pool_predictions(per_member)
    assert samples.shape == (12, 10, 3)
    exact = np.concatenate(per_member).astype(np.float64).mean(0)
    assert predictive.dtype == np.float64
    np.testing.assert_allclose(predictive, exact, rtol=1e-13)  # accumulated in float64, kept so
    np.testing.assert_allclose(predictive.sum(-1), 1, atol=1e-5)


def test_too_few_iterates_is_one_clear_error():
    m = swag.fit_moments(_iterates(T=1))
    swag.swag_samples(m, 2, seed=0, variant="diag")  # diag needs one iterate (σ = 0 then)
    with pytest.raises(ModescapeError, match="collection phase"):
        swag.swag_samples(m, 2, seed=0, variant="full")
    with pytest.raises(ModescapeError, match="SWAG variant"):
        swag.swag_samples(m, 2, seed=0, variant="lowrank")


class _Net(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(p))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_mc_dropout_with_p0_is_the_deterministic_model():
    net = _Net(0.0)
    net.train()  # a training-mode model: BatchNorm must still use its running statistics
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    probs = swag.mc_dropout_probs(net, x, passes=3, seed=0)
    net.eval()
    with torch.no_grad():
        det = torch.softmax(net(x), 1)
    assert probs.shape == (3, 40, 3)
    for t in range(3):
        torch.testing.assert_close(probs[t], det, rtol=0, atol=1e-7)


def test_mc_dropout_passes_differ_are_seeded_and_leave_the_global_rng_alone():
    net = _Net(0.5)
    bn_before = net.body[1].running_mean.clone()
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    a = swag.mc_dropout_probs(net, x, passes=4, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a, swag.mc_dropout_probs(net, x, passes=4, seed=2), rtol=0, atol=0)
    assert not torch.allclose(a[0], a[1])
    assert torch.equal(net.body[1].running_mean, bn_before)  # BatchNorm stayed in eval mode
    with pytest.raises(ModescapeError, match="dropout layers"):
        swag.mc_dropout_probs(nn.Linear(5, 3), x, passes=2, seed=0)
