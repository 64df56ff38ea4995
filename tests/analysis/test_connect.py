"""Curves between modes (analysis.connect): parametrisation, training state, evaluation, FGE,
against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from modescape.analysis.connect.curves import (
    coefficients,
    curve_length,
    curve_points,
    initial_bends,
    off_plane_distance,
    plane_anchors,
)
from modescape.analysis.connect.ensembles import (
    FGEConfig,
    curve_ensemble_curve,
    curve_ensemble_indices,
    fge_lr,
    train_fge,
)
from modescape.analysis.connect.evaluate import evaluate_curve, summarize_curve
from modescape.analysis.connect.fit import CurveConfig, CurveFit, fit_curve_tensors, garipov_lr
from modescape.analysis.engine.bn import recompute_bn_buffers
from modescape.analysis.geometry import plane_axes
from modescape.analysis.metrics import evaluate
from modescape.analysis.weightspace import flatten_params, param_names
from modescape.errors import ModescapeError


def _bends(n: int, p: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", ["bezier", "polychain"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_curve_passes_through_its_ends_exactly(shape, n):
    bends = _bends(n)
    pts = curve_points(bends, shape, torch.tensor([0.0, 1.0]))
    assert torch.equal(pts[0], bends[0]) and torch.equal(pts[1], bends[-1])
    c = coefficients(shape, torch.linspace(0, 1, 11), n)
    assert torch.allclose(c.sum(1), torch.ones(11, dtype=torch.float64))


def test_bezier_matches_bernstein_by_hand():
    w = _bends(3)
    t = 0.3
    expected = (1 - t) ** 2 * w[0] + 2 * t * (1 - t) * w[1] + t**2 * w[2]
    assert torch.allclose(curve_points(w, "bezier", t)[0], expected, atol=1e-6)
    w4 = _bends(4, seed=1)
    e4 = sum(math.comb(3, k) * t**k * (1 - t) ** (3 - k) * w4[k] for k in range(4))
    assert torch.allclose(curve_points(w4, "bezier", t)[0], e4, atol=1e-6)


def test_polychain_is_piecewise_linear_through_its_bends():
    w = _bends(4)
    # bends at t = 0, 1/3, 2/3, 1; between them straight segments
    at = curve_points(w, "polychain", torch.tensor([0, 1 / 3, 2 / 3, 1], dtype=torch.float64))
    assert torch.allclose(at, w, atol=1e-6)
    t = 0.5  # halfway between bends 1 and 2
    assert torch.allclose(curve_points(w, "polychain", t)[0], (w[1] + w[2]) / 2, atol=1e-6)
    t = 0.1  # 30% of the way from bend 0 to bend 1
    assert torch.allclose(curve_points(w, "polychain", t)[0], 0.7 * w[0] + 0.3 * w[1], atol=1e-6)
    # exact length: the sum of the segments
    segs = sum(float((w[k + 1] - w[k]).norm()) for k in range(3))
    assert curve_length(w, "polychain") == pytest.approx(segs, rel=1e-6)


def test_initial_bends_are_the_straight_line():
    a, b = _bends(2)
    for shape in ("bezier", "polychain"):
        bends = initial_bends(a, b, 5)
        t = torch.linspace(0, 1, 9, dtype=torch.float64)
        line = ((1 - t)[:, None] * a.double() + t[:, None] * b.double()).float()
        assert torch.allclose(curve_points(bends, shape, t), line, atol=1e-5)
    assert torch.allclose(initial_bends(a, b, 3)[1], (a + b) / 2)
    assert curve_length(initial_bends(a, b, 3), "bezier") == pytest.approx(float((b - a).norm()))


def test_quadratic_bezier_lies_in_its_control_points_plane():
    w = _bends(3, p=50)
    o, t1, third, what = plane_anchors(w, "bezier")
    assert torch.equal(third, w[1]) and "middle bend" in what
    u, v, _ = plane_axes(o, t1, third)
    pts = curve_points(w, "bezier", torch.linspace(0, 1, 61))
    assert float(off_plane_distance(pts, o, u, v).max()) < 1e-5 * float(w.norm())
    # a cubic one generally leaves the plane through its ends and θ(0.5)
    w4 = _bends(4, p=50, seed=3)
    o, t1, third, what = plane_anchors(w4, "bezier")
    assert what == "theta(0.5)"
    u, v, _ = plane_axes(o, t1, third)
    off = off_plane_distance(curve_points(w4, "bezier", torch.linspace(0, 1, 61)), o, u, v)
    assert float(off.max()) > 1e-2 and float(off[30]) < 1e-5  # t = 0.5 is in the plane


def test_bad_curves_are_one_clear_error():
    with pytest.raises(ModescapeError, match="at least 3 bends"):
        CurveConfig(bends=2)
    with pytest.raises(ModescapeError, match="at least 3 bends"):
        CurveConfig(bends=0)
    with pytest.raises(ModescapeError, match="unknown curve shape 'spline'"):
        CurveConfig(shape="spline")
    with pytest.raises(ModescapeError, match="unknown curve recipe"):
        CurveConfig(recipe="lbfgs")
    with pytest.raises(ModescapeError, match=r"\[0, 1\]"):
        coefficients("bezier", 1.5, 3)


def test_schedules_by_hand():
    # Garipov: constant for half the epochs, linear to 1% at 90%, then 1%
    assert [garipov_lr(1.0, e, 10) for e in (0, 5)] == [1.0, 1.0]
    assert garipov_lr(1.0, 7, 10) == pytest.approx(1.0 - 0.5 * 0.99)
    assert garipov_lr(1.0, 9, 10) == pytest.approx(0.01) and garipov_lr(1.0, 10, 10) == 0.01
    # FGE: lr1 -> lr2 over the first half of the cycle, back over the second
    lrs = [fge_lr(s, 10, 0.05, 0.01) for s in range(20)]
    assert lrs[0] == pytest.approx(0.05) and lrs[5] == pytest.approx(0.01)
    assert lrs[10] == pytest.approx(0.05) and lrs[2] == pytest.approx(0.05 * 0.6 + 0.01 * 0.4)
    assert min(lrs) == pytest.approx(0.01)


class _BNNet(nn.Module):
    """Conv + BatchNorm, Linear + LayerNorm, dropout: every kind of layer a curve must handle."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4 * 8, 8)
        self.ln = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.out(self.drop(torch.relu(self.ln(self.fc(h)))))


def _toy_data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, generator=g)
    y = (x[:, 0, :4].sum(1) > 0).long() + (x[:, 0, 4:].sum(1) > 1).long()
    return x, y


def _two_ends() -> tuple[nn.Module, dict, dict]:
    torch.manual_seed(0)
    a = _BNNet()
    torch.manual_seed(1)
    b = _BNNet()
    return a, a.state_dict(), b.state_dict()


def test_fit_resumes_byte_for_byte_and_keeps_the_ends():
    model, a, b = _two_ends()
    x, y = _toy_data()
    cfg = CurveConfig(epochs=3, bends=4, shape="polychain", lr=0.05)
    whole = fit_curve_tensors(model, a, b, x, y, cfg, seed=7, batch_size=16)
    states = []
    fit_curve_tensors(
        model, a, b, x, y, CurveConfig(**{**cfg.__dict__, "epochs": 1}), seed=7, batch_size=16,
        on_epoch=lambda f, s: states.append(f.state()),
    )  # fmt: skip
    resumed = fit_curve_tensors(model, a, b, x, y, cfg, seed=7, batch_size=16, state=states[0])
    assert torch.equal(whole.bends(), resumed.bends())
    assert torch.equal(whole.shared_buffers(), resumed.shared_buffers())
    bends = whole.bends()
    assert torch.equal(bends[0], flatten_params(a, param_names(model)))
    assert torch.equal(bends[-1], flatten_params(b, param_names(model)))
    # training moved the free bends off the straight line
    assert not torch.allclose(bends[1:-1], initial_bends(bends[0], bends[-1], 4)[1:-1])
    other = fit_curve_tensors(model, a, b, x, y, cfg, seed=8, batch_size=16)
    assert not torch.equal(other.bends(), bends)  # the seed decides the t draws and data order


def test_curve_trains_in_the_run_precision():
    """A bf16 run's curve trains its forward pass under bf16 autocast (as the members did); the
    bends, the optimiser state and the ends stay float32, and the curve lands within bf16's
    rounding of the float32 one (this CPU emulates bf16: numerics, not speed, are tested)."""
    model, a, b = _two_ends()
    x, y = _toy_data()
    cfg = CurveConfig(epochs=2, bends=3, lr=0.05)
    fp = fit_curve_tensors(model, a, b, x, y, cfg, seed=7, batch_size=16)
    bf = fit_curve_tensors(model, a, b, x, y, cfg, seed=7, batch_size=16, precision="bf16")
    seen: dict[str, set[torch.dtype]] = {"fp32": set(), "bf16": set()}
    for name, fit in (("fp32", fp), ("bf16", bf)):
        hook = fit.net.fc.register_forward_hook(lambda m, i, o, k=name: seen[k].add(o.dtype))
        fit.train_epoch(x[:32], y[:32])
        hook.remove()
    assert seen == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}}
    assert bf.free.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in bf.state().values() if v.is_floating_point())
    assert torch.equal(bf.bends()[0], fp.bends()[0]) and torch.equal(bf.bends()[-1], fp.bends()[-1])
    moved = float((fp.free.detach() - initial_bends(fp.end0, fp.end1, 3)[1]).norm())
    apart = float((bf.free.detach() - fp.free.detach()).norm())
    assert 0 < apart < 0.1 * moved  # bf16 arithmetic was used, and only rounded the steps
    # bf16 training is as resumable as float32: a resumed curve gives the same bytes
    states = []
    fit_curve_tensors(
        model, a, b, x, y, CurveConfig(**{**cfg.__dict__, "epochs": 1}), seed=7, batch_size=16,
        precision="bf16", on_epoch=lambda f, s: states.append(f.state()),
    )  # fmt: skip
    resumed = fit_curve_tensors(
        model, a, b, x, y, cfg, seed=7, batch_size=16, precision="bf16", state=states[0]
    )
    whole = fit_curve_tensors(model, a, b, x, y, cfg, seed=7, batch_size=16, precision="bf16")
    assert torch.equal(resumed.bends(), whole.bends())
    with pytest.raises(ModescapeError, match="precision must be one of fp32, bf16, got 'auto'"):
        CurveFit(model, a, b, cfg, seed=0, batch_size=8, precision="auto")


def test_identical_ends_are_refused():
    model, a, _ = _two_ends()
    with pytest.raises(ModescapeError, match="identical"):
        CurveFit(model, a, a, CurveConfig(), seed=0, batch_size=8)


def test_evaluation_recomputes_batchnorm_as_a_direct_pass():
    """At each t the statistics are those of a direct train-mode pass over the same batches."""
    model, a, b = _two_ends()
    x, y = _toy_data(64)
    tx, ty = _toy_data(48, seed=1)
    bends = initial_bends(
        flatten_params(a, param_names(model)), flatten_params(b, param_names(model)), 3
    )
    bends[1] += 0.3 * torch.randn(bends.shape[1], generator=torch.Generator().manual_seed(2))
    prof = evaluate_curve(model, bends, "bezier", x, y, tx, ty, points=5, bn_batch_size=16,
                          keep_probs=True)  # fmt: skip
    assert prof.bn_policy == "recompute"
    t = 0.25  # the second of five points
    direct = _BNNet()
    direct.load_state_dict(a)
    w = curve_points(bends, "bezier", t)[0]
    torch.nn.utils.vector_to_parameters(w, direct.parameters())
    direct.bn.reset_running_stats()
    direct.bn.momentum = None
    direct.train()
    direct.drop.p = 0.0
    with torch.no_grad():
        for i in range(0, 48, 16):
            direct(tx[i : i + 16])
    direct.eval()
    with torch.no_grad():
        p = direct(x).softmax(-1)
    assert torch.allclose(prof.probs[1], p, atol=1e-5)
    # the ends: agreement 1 with themselves; JS of a point with itself is 0
    assert prof.agreement["end0"][0] == 1.0 and prof.agreement["end1"][-1] == 1.0
    assert prof.js["end0"][0] == pytest.approx(0.0, abs=1e-9)
    # test metrics against the independent metrics module
    ev = evaluate(prof.probs[2].numpy(), y.numpy())
    assert prof.test_error[2] == pytest.approx(1 - ev["accuracy"])
    assert prof.test_loss[2] == pytest.approx(ev["nll"], rel=1e-6)
    # recompute_bn_buffers is what the profile used
    buf = recompute_bn_buffers(model, w[None], tx, num_batches=8, batch_size=16)
    assert torch.allclose(buf[0][:4], direct.bn.running_mean, atol=1e-6)


def test_summary_barrier_and_length_by_hand():
    model, a, b = _two_ends()
    x, y = _toy_data(64)
    tx, ty = _toy_data(48, seed=1)
    ends = torch.stack([flatten_params(s, param_names(model)) for s in (a, b)])
    bends = initial_bends(ends[0], ends[1], 3)
    curve = evaluate_curve(model, bends, "bezier", x, y, tx, ty, points=7)
    line = evaluate_curve(model, ends, "bezier", x, y, tx, ty, points=7)
    # an untrained 3-bend curve is the line itself
    np.testing.assert_allclose(curve.test_error, line.test_error)
    s = summarize_curve(curve, line, bends, "bezier")
    e = curve.test_error
    assert s.error_barrier == pytest.approx(e.max() - (e[0] + e[-1]) / 2)
    assert s.length == pytest.approx(s.line_length, rel=1e-6)
    assert s.midpoint["ends_disagreement"] == pytest.approx(curve.disagreement["end0"][-1])


def test_curve_ensembles_take_interior_points():
    t = np.linspace(0, 1, 61)
    assert curve_ensemble_indices(t, 1).tolist() == [30]
    assert curve_ensemble_indices(t, 2).tolist() == [15, 45]
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(61, 20)).astype(np.float32)
    labels = np.arange(20) % 3
    curve = curve_ensemble_curve(probs, labels, t, 3)
    expected = evaluate(probs[[10, 30, 50]].mean(0), labels)["accuracy"]
    assert curve.mean["accuracy"][2] == pytest.approx(expected)


def test_fge_snapshots_at_cycle_minima_are_reproducible():
    model, a, _ = _two_ends()
    model.load_state_dict(a)
    x, y = _toy_data()
    cfg = FGEConfig(cycles=3, cycle_epochs=2, lr1=0.05, lr2=0.005)
    snaps = train_fge(model, x, y, cfg, seed=3, batch_size=16)
    assert len(snaps) == 3
    again = train_fge(model, x, y, cfg, seed=3, batch_size=16)
    assert all(torch.equal(s["conv.weight"], t["conv.weight"]) for s, t in zip(snaps, again))
    assert not torch.equal(snaps[0]["conv.weight"], snaps[1]["conv.weight"])
    assert torch.equal(model.state_dict()["conv.weight"], a["conv.weight"])  # not modified
    # FGE follows the run's precision too: float32 snapshots within bf16's rounding of fp32's
    bf = train_fge(model, x, y, cfg, seed=3, batch_size=16, precision="bf16")
    assert all(v.dtype == torch.float32 for v in bf[0].values() if v.is_floating_point())
    moved = float((snaps[0]["conv.weight"] - a["conv.weight"]).norm())
    apart = float((bf[0]["conv.weight"] - snaps[0]["conv.weight"]).norm())
    assert 0 < apart < 0.2 * moved
    with pytest.raises(ModescapeError, match="cycles"):
        FGEConfig(cycles=0)
