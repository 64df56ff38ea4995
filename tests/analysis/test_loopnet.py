import copy

import pytest
import torch
from torch import nn

from modescape.analysis import weightspace
from modescape.analysis.engine import batched, loopnet
from modescape.models.architectures import build_model


@pytest.mark.parametrize("in_shape", [(3, 16, 16), (1, 40)])
def test_rearranged_copy_gives_the_same_bits(in_shape):
    torch.manual_seed(0)
    model = build_model("smallcnn", "paper", in_shape, 10).eval()
    before = copy.deepcopy(model.state_dict())
    fast = loopnet.rearrange(copy.deepcopy(model))
    assert any(isinstance(m, loopnet.StridedMaxPool) for m in fast.modules())
    x = torch.randn(9, *in_shape)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
        model, fast = (m.to(memory_format=torch.channels_last) for m in (model, fast))
    with torch.inference_mode():
        assert torch.equal(fast(x), model(x))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(isinstance(m, loopnet.StridedMaxPool) for m in model.modules())


@pytest.mark.parametrize(
    "pool,strided",
    [
        (nn.MaxPool2d(3, 2), True),
        (nn.MaxPool2d((1, 2)), True),
        (nn.MaxPool2d(1), True),
        (nn.MaxPool2d(2, padding=1), False),  # kept as torch's: padding
        (nn.MaxPool2d(2, ceil_mode=True), False),
    ],
)
def test_pools_swapped_and_strided_or_kept_and_equal(pool, strided):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), pool, nn.Flatten())
    x = torch.randn(5, 2, 11, 12)
    fast = loopnet.rearrange(copy.deepcopy(net))
    assert isinstance(fast[1], loopnet.StridedMaxPool) == strided
    with torch.inference_mode():
        assert torch.equal(fast(x), net(x))


def test_loop_strategy_uses_it_and_matches_direct_evaluation():
    torch.manual_seed(0)
    model = build_model("smallcnn", "paper", (3, 16, 16), 10)
    x = torch.randn(20, 3, 16, 16)
    base = weightspace.flatten_params(model.state_dict(), weightspace.param_names(model))
    pts = base + 0.05 * torch.randn(3, base.numel())
    got = batched.evaluate_many(model, pts, x, output="logits", strategy="loop")
    net = copy.deepcopy(model).eval()
    for k, w in enumerate(pts):
        torch.nn.utils.vector_to_parameters(w, net.parameters())
        with torch.no_grad():
            torch.testing.assert_close(got[k], net(x), rtol=1e-5, atol=1e-5)
