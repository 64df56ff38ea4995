import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modescape.analysis import weightspace
from modescape.analysis.engine import batched, signals
from modescape.models.architectures import build_model
from tests.analysis.engine_refs import direct_forward, weight_points

pytestmark = pytest.mark.skipif(not signals.available(), reason="torch built without oneDNN")

NETS = [(a, v) for a in ("smallcnn", "mediumcnn") for v in ("paper", "seed")]


def _bn_net():
    """A SmallCNN-like Sequential with BatchNorm (running statistics away from 0 / 1)."""
    net = nn.Sequential(
        nn.Conv1d(2, 8, 3, padding=1),
        nn.BatchNorm1d(8),
        nn.MaxPool1d(2),
        nn.ReLU(),
        nn.Conv1d(8, 6, 5, padding=2, bias=False),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.MaxPool1d(3, ceil_mode=True),
        nn.Conv1d(6, 4, 1),
        nn.Flatten(),
        nn.ReLU(),
        nn.Linear(4 * 5, 7),
    )
    g = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.3, 0.3, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return net.eval()


@pytest.mark.parametrize("arch,variant", NETS)
@pytest.mark.parametrize("length", [40, 37])
def test_signals_matches_the_plain_forward(arch, variant, length):
    """Logits within 1e-5 of the model's own forward (odd lengths: floor / ceil pooling), and
    losses within 1e-5 (relative) of cross-entropy on those logits."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(arch, variant, (1, length), 10)
    assert signals.compile_signals(model) is not None
    x, y = torch.randn(13, 1, length), torch.randint(0, 10, (13,))
    flat = weight_points(model, 3)
    ref = direct_forward(model, flat, x)
    got = batched.evaluate_many(model, flat, x, output="logits", strategy="signals", chunk=2)
    torch.testing.assert_close(got, ref, atol=1e-5 * max(1.0, ref.abs().max().item()), rtol=1e-5)
    scores = batched.score_many(model, flat, x, y, strategy="signals")
    loss = torch.stack([F.cross_entropy(r, y) for r in ref])
    torch.testing.assert_close(scores.loss, loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(scores.accuracy, (ref.argmax(-1) == y).float().mean(1))


def test_batchnorm_pool_orders_and_per_point_buffers():
    """BatchNorm (per-point statistics), ReLU before and after pools, a ceil-mode pool, a 1×1
    conv, ReLU between Flatten and Linear, convs without bias: against the modules themselves."""
    torch.manual_seed(0)
    model = _bn_net()
    assert signals.compile_signals(model) is not None
    x = torch.randn(9, 2, 31)
    flat = weight_points(model, 3, scale=0.2)
    names = weightspace.buffer_names(model)
    base = weightspace.flatten_params(model.state_dict(), names)
    g = torch.Generator().manual_seed(4)
    bufs = base + 0.1 * torch.rand(3, base.numel(), generator=g)  # variances stay positive
    got = batched.evaluate_many(
        model, flat, x, buffers=bufs, output="logits", strategy="signals", chunk=2
    )
    net, ref = copy.deepcopy(model), []
    for w, b in zip(flat, bufs):
        torch.nn.utils.vector_to_parameters(w, net.parameters())
        state = dict(net.named_buffers())
        shapes = weightspace.shapes_of(model, names)
        for n, v in weightspace.unflatten(b, names, shapes).items():
            state[n].copy_(v)
        with torch.no_grad():
            ref.append(net(x))
    torch.testing.assert_close(got, torch.stack(ref), atol=1e-5, rtol=1e-5)


def test_blocks_are_deterministic_fresh_and_within_the_output_rule(monkeypatch):
    """Reused buffers: partial data batches and repeated calls give the same bytes, every block
    is a new tensor, the inputs stay untouched; the batch keeps each fresh output under 2 MB."""
    torch.manual_seed(0)
    model = build_model("smallcnn", "paper", (1, 40), 10)
    p = batched.plan(model, torch.randn(1000, 1, 40), 441, strategy="signals")
    assert (p.strategy, p.batch_size) == ("signals", 500)  # 1,000 as 2 × 500, not 793 + 207
    assert signals.MAX_OUTPUT_BYTES >= 500 * 40 * 16 * 4  # the first conv's output per call
    monkeypatch.setattr(signals, "MAX_OUTPUT_BYTES", 40 * 16 * 4 * 8)  # 8 signals per call
    x = torch.randn(23, 1, 40)
    x0 = x.clone()
    flat = weight_points(model, 5)
    blocks = list(batched.iter_logits(model, flat, x, strategy="signals", chunk=2))
    assert {ns.stop - ns.start for _, ns, _ in blocks} == {8, 7}  # 23 as 8 + 8 + 7
    assert len({b.data_ptr() for _, _, b in blocks}) == len(blocks)
    got = torch.empty(5, 23, 10)
    for ks, ns, b in blocks:
        got[ks, ns] = b
    torch.testing.assert_close(got, direct_forward(model, flat, x), atol=1e-5, rtol=1e-5)
    again = batched.evaluate_many(model, flat, x, output="logits", strategy="signals", chunk=2)
    assert torch.equal(got, again)
    assert torch.equal(x, x0)


@pytest.mark.parametrize(
    "model,shape",
    [
        (nn.Sequential(nn.Conv1d(1, 4, 3, stride=2), nn.Flatten(), nn.Linear(76, 3)), (1, 40)),
        (nn.Sequential(nn.Conv1d(1, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(152, 3)), (1, 40)),
        (
            nn.Sequential(
                nn.Conv1d(1, 4, 3), nn.MaxPool1d(2, padding=1), nn.Flatten(), nn.Linear(80, 3)
            ),
            (1, 40),
        ),
        (build_model("smallcnn", "paper", (3, 8, 8), 10), (3, 8, 8)),
        (build_model("resnet20", "paper", (1, 16), 10), (1, 16)),
    ],
)
def test_what_it_does_not_know_falls_back(model, shape):
    """Strided convs, other activations, padded pools, images, ResNets: not compiled, and
    strategy="signals" runs "grouped" (or "loop") with the same results."""
    torch.manual_seed(0)
    model.eval()
    x = torch.randn(5, *shape)
    model(x)
    assert signals.compile_signals(model) is None
    assert batched.plan(model, x, 2, strategy="signals").strategy in ("grouped", "loop")
    flat = weight_points(model, 2)
    got = batched.evaluate_many(model, flat, x, output="logits", strategy="signals")
    torch.testing.assert_close(got, direct_forward(model, flat, x), atol=1e-4, rtol=1e-5)


def test_auto_picks_signals_only_where_onednn_is_ahead(monkeypatch):
    x = torch.randn(8, 1, 40)
    small = build_model("smallcnn", "seed", (1, 40))
    wide = build_model("mediumcnn", "paper", (1, 40))
    monkeypatch.setattr(batched, "onednn_ahead", lambda: True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert batched.auto_strategy(small, x) == "signals"
        assert batched.auto_strategy(wide, x) == "loop"  # the activation rule still applies
        monkeypatch.setattr(batched, "onednn_ahead", lambda: False)
        assert batched.auto_strategy(small, x) == "grouped"
        monkeypatch.setattr(batched, "onednn_ahead", lambda: True)
        torch.set_num_threads(2)  # a tie at two threads: the incumbent stays
        assert batched.auto_strategy(small, x) == "grouped"
    finally:
        torch.set_num_threads(before)
