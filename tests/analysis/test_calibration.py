"""Sampler settings (paper / calibrated) and scale calibration, on a tiny MLP and synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modescape.analysis.calibration import (
    DROPOUT_MAX,
    calibrate,
    calibrate_methods,
    calibrate_scale,
)
from modescape.analysis.samplers import SAMPLERS, sample
from modescape.analysis.subspace import PAPER_PLANE, SamplerMode, SubspaceConfig, sample_subspace
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed, torch_generator

D, H, C, N = 6, 12, 4, 600
P = D * H + H + H * C + C


def _unflatten(w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """[K, P] -> W1 [K, H, D], b1 [K, H], W2 [K, C, H], b2 [K, C]."""
    sizes = (D * H, H, H * C, C)
    shapes = ((H, D), (H,), (C, H), (C,))
    parts = torch.split(w, sizes, dim=1)
    return tuple(p.reshape(len(w), *s) for p, s in zip(parts, shapes))


def _logits(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    W1, b1, W2, b2 = _unflatten(w)
    h = torch.relu(torch.einsum("khd,nd->knh", W1, x) + b1[:, None])
    return torch.einsum("kch,knh->knc", W2, h) + b2[:, None]


@pytest.fixture(scope="module")
def problem():
    """Four Gaussian blobs; a trajectory of 20 snapshots of full-batch gradient descent."""
    g = torch_generator(0)
    centres = 2.0 * torch.randn(C, D, generator=g, dtype=torch.float64)
    y = torch.arange(N) % C
    x = centres[y] + 1.2 * torch.randn(N, D, generator=g, dtype=torch.float64)
    w = (0.3 * torch.randn(1, P, generator=g, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.SGD([w], lr=0.2, momentum=0.9)
    snaps = []
    for _ in range(20):
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(_logits(w, x)[0], y).backward()
            opt.step()
        snaps.append(w.detach()[0].clone())

    def accuracy_of(weights: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (_logits(weights.double(), x).argmax(-1) == y).double().mean(-1)

    return torch.stack(snaps), accuracy_of


def test_paper_mode_is_the_notebooks_plane_section():
    cfg = SubspaceConfig(mode="paper")
    assert cfg.mode is SamplerMode.PAPER and cfg.n_samples == 50
    assert (cfg.random_scale, cfg.dropout_scale, cfg.diagonal_scale, cfg.lowrank_scale) == (
        70.0,
        0.1,
        10.0,
        6.0,
    )
    assert [cfg.sweeps(m) for m in ("random", "dropout", "diagonal", "lowrank")] == [
        True,
        True,
        True,
        False,
    ]
    assert PAPER_PLANE["n_samples"] == 50
    # an explicit field wins over the mode's value
    assert SubspaceConfig(mode="paper", n_samples=7).n_samples == 7


def test_calibrated_mode_defaults_and_roundtrip():
    cfg = SubspaceConfig()
    assert cfg.mode is SamplerMode.CALIBRATED and cfg.mode == "calibrated"
    assert cfg.dropout_scale == 0.1  # the notebook's p = 0.1·U(0,1), not 0.5
    assert all(cfg.sweeps(m) for m in SAMPLERS)
    from dataclasses import asdict

    assert SubspaceConfig(**asdict(cfg)) == cfg
    with pytest.raises(ModescapeError, match="subspace mode"):
        SubspaceConfig(mode="notebook")
    with pytest.raises(ModescapeError, match="target_drop"):
        SubspaceConfig(target_drop=1.5)


def _scales_per_sample(samples: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> np.ndarray:
    return ((samples - mu) / sigma).std(dim=1).numpy()


def test_paper_diagonal_draws_its_scale_per_sample_and_lowrank_does_not():
    g = torch_generator(3)
    snaps = torch.randn(10, 4000, generator=g, dtype=torch.float64)
    cfg = SubspaceConfig(mode="paper", n_snapshots=10)
    mu, sigma = snaps.mean(0), snaps.std(0, correction=0)
    s = _scales_per_sample(sample_subspace(cfg, "diagonal", snaps, 0), mu, sigma)
    assert s.max() <= 10.0 * 1.05 and s.min() < 2.0 and s.max() > 8.0  # 10·U(0,1), 50 draws
    low = sample_subspace(cfg, "lowrank", snaps, 0)
    assert low.shape == (50, 4000)
    # fixed s = 6 with unit components: ‖θ − μ‖² = 36·χ²_5, mean 180 (sd ≈ 9 for 50 draws)
    sq = ((low - mu) ** 2).sum(1)
    assert 140 < float(sq.mean()) < 220


def test_sweep_false_pins_random_and_dropout_at_their_scale():
    anchor = torch.rand(1, 500, generator=torch_generator(0), dtype=torch.float64) + 0.5
    r = sample("random", anchor, 5, 2.5, seed=1, sweep=False)
    radius = torch.linalg.vector_norm(r - anchor, dim=1)
    torch.testing.assert_close(radius, torch.full((5,), 2.5, dtype=torch.float64))
    d = sample("dropout", anchor, 5, 0.4, seed=1, sweep=False)
    kept = (d != 0).double().mean(1)
    assert torch.all((kept - 0.6).abs() < 0.1)
    torch.testing.assert_close(d[d != 0], (anchor.expand(5, -1) / 0.6)[d != 0])


@pytest.mark.parametrize("method", SAMPLERS)
def test_calibrated_cloud_spans_the_band(problem, method):
    traj, accuracy_of = problem
    cfg = SubspaceConfig(n_snapshots=10, rank=5, n_samples=40)
    cal = calibrate(method, traj, 0, cfg, accuracy_of, floor=1 / C)
    ref = cal.reference_accuracy
    assert ref > 0.8 and cal.reached
    assert cal.target_accuracy == pytest.approx(max(ref - 0.30, (ref + 1 / C) / 2))
    assert cal.probe_accuracy <= cal.target_accuracy
    if method == "dropout":
        assert 0 < cal.scale <= DROPOUT_MAX
    if method in ("random", "dropout"):
        assert cal.centre_accuracy == ref
    else:  # Gaussians are centred on the snapshots' mean
        assert cal.centre_accuracy == float(accuracy_of(traj[-10:].mean(0, keepdim=True))[0])
    assert calibrate_scale(method, traj, 0, cfg, accuracy_of, floor=1 / C) == cal.scale
    acc = accuracy_of(sample_subspace(cfg, method, traj, 0, scale=cal.scale))
    # the criterion of the paper's plane: from within 2 points of the reference to 15 below
    assert float(acc.max()) >= ref - 0.02, acc
    assert float(acc.min()) <= ref - 0.15, acc


def test_fresh_samples_at_the_calibrated_scale_are_reported(problem):
    """The check samples are drawn at the calibrated scale with their own seed: their mean and
    spread are those of an independent direct evaluation, and not the probes'."""
    traj, accuracy_of = problem
    cfg = SubspaceConfig(n_snapshots=10, rank=5, calibration_check=12)
    for method in ("random", "diagonal"):
        cal = calibrate(method, traj, 0, cfg, accuracy_of, floor=1 / C)
        assert len(cal.check_accuracies) == 12
        seed = derive_seed(cfg.seed, "calibration-check", method, 0)
        fresh = sample(method, traj[-10:], 12, cal.scale, seed, rank=5, sweep=False)
        direct = accuracy_of(fresh).double()
        assert cal.check_mean == pytest.approx(float(direct.mean()), abs=1e-12)
        assert cal.check_std == pytest.approx(float(direct.std(correction=0)), abs=1e-12)
        assert cal.check_std > 0  # single samples scatter: the spread is worth stating
        probe_seed = derive_seed(cfg.seed, "calibrate", method, 0)
        probes = sample(
            method, traj[-10:], cfg.calibration_probes, cal.scale, probe_seed, rank=5, sweep=False
        )
        assert not torch.equal(probes, fresh)
    with pytest.raises(ModescapeError, match="calibration_check"):
        SubspaceConfig(calibration_check=0)


def test_calibration_is_deterministic_and_says_when_it_cannot_reach(problem, caplog):
    traj, accuracy_of = problem
    cfg = SubspaceConfig(n_snapshots=10, rank=5)
    a = calibrate("random", traj, 1, cfg, accuracy_of)
    assert a == calibrate("random", traj, 1, cfg, accuracy_of)
    two = SubspaceConfig(methods=("random", "dropout"), n_snapshots=10, rank=5)
    every = calibrate_methods(two, traj, 1, accuracy_of)
    assert list(every) == ["random", "dropout"] and every["random"].scale == a.scale
    flat = traj[-1:].expand(10, -1).clone()  # σ = 0: no diagonal scale moves the model
    c = calibrate("diagonal", flat, 0, cfg, accuracy_of)
    assert not c.reached and "did not bracket" in caplog.text
    assert c.scale == cfg.scale("diagonal")  # not the search's last probe, 4^24 times larger
    with pytest.raises(ModescapeError, match="accuracy_of"):
        calibrate("random", traj, 0, cfg, lambda w: torch.zeros(1))


def test_two_snapshot_diagonal_has_the_variance_of_its_two_snapshots():
    """On a 2-snapshot window the diagonal Gaussian is centred on the midpoint with σ = |a − b|/2
    per weight (never zero unless the snapshots agree): a small JS diversity there is the two
    snapshots being close, not a clamped variance."""
    gen = torch_generator(0)
    a, b = torch.randn(2, 50, generator=gen)
    draws = sample("diagonal", torch.stack([a, b]), 4000, 1.0, 3, sweep=False)
    sigma = (a - b).abs() / 2
    assert ((draws.mean(0) - (a + b) / 2).abs() <= 5 * sigma / 4000**0.5).all()  # 5 std errors
    ratio = draws.std(0, correction=0) / sigma
    assert torch.allclose(ratio, torch.ones(50), atol=0.08)


def test_a_centre_below_the_target_keeps_the_papers_scale(caplog):
    """A short window whose mean scores below the target (accuracy here falls with the distance
    from the final snapshot): the search used to shrink the scale to ~1e-15, every sample equal
    to the centre (JS diversity 0.0); now it says so and keeps the configured scale."""
    a, b = torch.zeros(20), torch.ones(20)  # the final snapshot is b; the centre is 0.5 away

    def accuracy_of(w: torch.Tensor) -> torch.Tensor:
        return (0.9 - 0.2 * torch.linalg.vector_norm(w - b, dim=1)).clamp(0.1, 0.9)

    cfg = SubspaceConfig(methods=("diagonal",), n_snapshots=2, rank=1)
    cal = calibrate("diagonal", torch.stack([a, b]), 0, cfg, accuracy_of)
    assert cal.centre_accuracy <= cal.target_accuracy and not cal.reached
    assert cal.scale == cfg.scale("diagonal") and "Gaussian's centre" in caplog.text
    assert "--diagonal-scale" in caplog.text
    fresh = sample("diagonal", torch.stack([a, b]), 3, cal.scale, 0, sweep=False)
    assert (fresh[0] - fresh[1]).abs().max() > 1  # samples spread: the JS diversity is not 0
