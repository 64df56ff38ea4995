import copy

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, log_loss
from torch import nn

from modescape.analysis import weightspace
from modescape.analysis.engine import batched, bn
from modescape.errors import ModescapeError
from modescape.models.architectures import build_model
from tests.analysis.engine_refs import direct_forward, weight_points


def _model(in_shape, arch="smallcnn", variant="paper", seed=0):
    torch.manual_seed(seed)
    return build_model(arch, variant, in_shape, 10)


@pytest.mark.parametrize(
    "in_shape,strategy",
    [((3, 16, 16), "loop"), ((3, 16, 16), "vmap"), ((1, 40), "loop"), ((1, 40), "vmap")],
)
def test_strategies_match_one_point_at_a_time(in_shape, strategy):
    model = _model(in_shape, "smallcnn", "seed")
    x = torch.randn(70, *in_shape)
    flat = weight_points(model, 5)
    ref = direct_forward(model, flat, x)
    got = batched.evaluate_many(
        model, flat, x, output="logits", strategy=strategy, batch_size=32, chunk=2
    )
    assert got.shape == (5, 70, 10)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    probs = batched.evaluate_many(model, flat, x, strategy=strategy, batch_size=32, chunk=3)
    torch.testing.assert_close(probs, ref.softmax(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 70))


def test_state_dicts_and_model_untouched():
    model = _model((3, 12, 12))
    before = copy.deepcopy(model.state_dict())
    flat = weight_points(model, 3)
    states = [
        weightspace.unflatten(
            w,
            weightspace.param_names(model),
            weightspace.shapes_of(model, weightspace.param_names(model)),
        )
        for w in flat
    ]
    x = torch.randn(20, 3, 12, 12)
    a = batched.evaluate_many(model, flat, x)
    b = batched.evaluate_many(model, states, x)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    for name, t in model.state_dict().items():
        assert torch.equal(t, before[name])
    assert model.training  # the template's mode is restored


def test_flatten_unflatten_roundtrip():
    model = _model((3, 32, 32), "resnet20")
    names = weightspace.param_names(model)
    flat = weightspace.flatten_params(model.state_dict(), names)
    assert flat.numel() == 273_066  # SPEC §2 / models.py
    back = weightspace.unflatten(flat, names, weightspace.shapes_of(model, names))
    for n, p in model.named_parameters():
        assert torch.equal(back[n], p.detach())
    # BN running stats are buffers (mean + var per BN channel), num_batches_tracked excluded.
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(weightspace.buffer_names(model)) == 2 * len(bn)
    with pytest.raises(ModescapeError, match="entries"):
        weightspace.unflatten(flat[:-1], names, weightspace.shapes_of(model, names))


def test_memory_budget_and_chunks_do_not_change_results():
    model = _model((1, 40), "mediumcnn", "seed")
    x = torch.randn(50, 1, 40)
    flat = weight_points(model, 4, scale=0.01)
    ref = batched.evaluate_many(model, flat, x, output="logits", batch_size=50, chunk=4)
    plan = batched.plan(model, x, 4, strategy="vmap", batch_size=50, memory_budget_mb=0.05)
    assert plan.batch_size < 50  # the budget forces smaller data chunks
    for kw in [dict(strategy="vmap", memory_budget_mb=0.05), dict(batch_size=7, chunk=1)]:
        got = batched.evaluate_many(model, flat, x, output="logits", **kw)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_score_many_against_sklearn():
    model = _model((1, 40))
    x, y = torch.randn(64, 1, 40), torch.randint(0, 10, (64,))
    flat = weight_points(model, 3, scale=0.2)
    probs = direct_forward(model, flat, x).softmax(-1).double()
    ref_preds = torch.randint(0, 10, (64,))
    sc = batched.score_many(model, flat, x, y, reference_preds={"r": ref_preds}, batch_size=20)
    for k in range(3):
        p = (probs[k] / probs[k].sum(1, keepdim=True)).numpy()
        assert sc.loss[k].item() == pytest.approx(log_loss(y, p, labels=range(10)), rel=1e-5)
        assert sc.accuracy[k].item() == pytest.approx(accuracy_score(y, p.argmax(1)))
        agree = (probs[k].argmax(1) == ref_preds).double().mean().item()
        assert sc.agreement["r"][k].item() == pytest.approx(agree)


def test_bad_options_raise():
    model = _model((1, 40))
    x = torch.randn(4, 1, 40)
    flat = weight_points(model, 1)
    with pytest.raises(ModescapeError, match="allowed: auto, loop, grouped, signals, vmap"):
        batched.evaluate_many(model, flat, x, strategy="fast")
    with pytest.raises(ModescapeError, match="allowed: probs, logits"):
        batched.evaluate_many(model, flat, x, output="log")
    with pytest.raises(ModescapeError, match="chunk"):
        batched.evaluate_many(model, flat, x, chunk=0)


def test_bn_recompute_matches_hand_formula():
    """Conv → BN: the recomputed running stats are the average of per-batch mean / unbiased var."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 6, 6))
    flat = weight_points(model, 2, scale=0.3)
    train_x = torch.randn(50, 3, 6, 6)
    bufs = bn.recompute_bn_buffers(model, flat, train_x, num_batches=3, batch_size=16)
    assert bufs.shape == (2, 8)
    for k in range(2):
        w, b = flat[k][: 4 * 27].view(4, 3, 3, 3), flat[k][4 * 27 : 4 * 28]
        means, variances = [], []
        for n0 in range(0, 48, 16):  # 3 batches of 16: the first 48 examples
            h = F.conv2d(train_x[n0 : n0 + 16], w, b).transpose(0, 1).reshape(4, -1)
            means.append(h.mean(1))
            variances.append(h.var(1, unbiased=True))
        torch.testing.assert_close(bufs[k, :4], torch.stack(means).mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            bufs[k, 4:], torch.stack(variances).mean(0), atol=1e-5, rtol=1e-4
        )


def test_bn_recompute_resnet_matches_manual_loop():
    model = _model((3, 8, 8), "resnet20")
    flat = weight_points(model, 2, scale=0.02)
    train_x, x = torch.randn(40, 3, 8, 8), torch.randn(10, 3, 8, 8)
    bufs = bn.recompute_bn_buffers(model, flat, train_x, num_batches=2, batch_size=16)
    got = batched.evaluate_many(model, flat, x, buffers=bufs, output="logits")
    for k in range(2):  # the usual way, one point: reset, cumulative average, train-mode passes
        net = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(flat[k], net.parameters())
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        with torch.no_grad():
            net(train_x[:16])
            net(train_x[16:32])
            ref = net.eval()(x)
        torch.testing.assert_close(got[k], ref, atol=1e-5, rtol=1e-5)


def test_scores_flushed_in_pieces_equal_whole_chunks(monkeypatch):
    """`score_many` scores a chunk's logits at once up to SCORE_BLOCK; smaller pieces agree."""
    model = _model((1, 40), "smallcnn", "paper")
    x, y = torch.randn(50, 1, 40), torch.randint(0, 10, (50,))
    pts = weight_points(model, 6)
    whole = batched.score_many(model, pts, x, y, strategy="loop", batch_size=8)
    monkeypatch.setattr(batched, "SCORE_BLOCK", 1)  # every data batch on its own
    pieces = batched.score_many(model, pts, x, y, strategy="loop", batch_size=8)
    torch.testing.assert_close(pieces.loss, whole.loss, rtol=1e-6, atol=0)
    assert torch.equal(pieces.accuracy, whole.accuracy)


@pytest.mark.parametrize("threads,chunk", [(1, 16), (2, 32)])
def test_grouped_plan_scales_with_threads(threads, chunk):
    model = _model((1, 40), "smallcnn", "paper")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        p = batched.plan(model, torch.randn(1000, 1, 40), 441, strategy="grouped")
    finally:
        torch.set_num_threads(before)
    assert (p.chunk, p.batch_size) == (
        -(-441 // -(-441 // chunk)),
        batched.GROUPED_WORK * threads // p.chunk,
    )
