"""`layers.Dropout`: the cheap CPU mask keeps nn.Dropout's contract (rate, scale, eval, grads)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modescape.models.layers import Dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_rate_and_scale_are_dropouts(p):
    torch.manual_seed(0)
    out = Dropout(p)(torch.ones(400_000))
    dropped = (out == 0).float().mean().item()
    # Binomial std of the rate at n = 4e5 is <= 8e-4: 5 std is a loose, seed-independent bound.
    assert abs(dropped - p) < 4e-3
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 65536 / (65536 - round(p * 65536))))
    assert abs(out.mean().item() - 1.0) < 1e-2  # unbiased: E[out] = x


def test_every_lane_of_a_draw_is_uniform():
    """Four mask elements come from one 64-bit draw; none of the four 16-bit lanes is biased."""
    torch.manual_seed(1)
    out = Dropout(0.5)(torch.ones(4 * 100_000)).view(-1, 4)
    per_lane = (out == 0).float().mean(0)
    assert torch.all((per_lane - 0.5).abs() < 0.01), per_lane


def test_eval_mode_zero_rate_and_full_rate_match_nn_dropout():
    x = torch.randn(3, 5)
    d = Dropout(0.3).eval()
    assert torch.equal(d(x), x)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    assert isinstance(d, nn.Dropout) and d.state_dict() == {}


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 8, requires_grad=True)
    out = Dropout(0.25)(x)
    out.sum().backward()
    mask = (out != 0).float()
    assert torch.allclose(x.grad, mask * 65536 / (65536 - 16384))
    assert torch.allclose(out, x.detach() * x.grad)


def test_channels_last_input_keeps_its_layout_and_the_rate():
    torch.manual_seed(3)
    x = torch.ones(16, 8, 10, 10).contiguous(memory_format=torch.channels_last)
    out = Dropout(0.1)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert abs((out == 0).float().mean().item() - 0.1) < 0.01


def test_same_seed_same_mask_and_the_global_generator_advances():
    x = torch.ones(1000)
    torch.manual_seed(4)
    a = Dropout(0.1)(x)
    torch.manual_seed(4)
    b = Dropout(0.1)(x)
    c = Dropout(0.1)(x)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_bf16_input_stays_bf16_with_the_scale_rounded_to_bf16():
    torch.manual_seed(5)
    x = torch.rand(100_000).to(torch.bfloat16) + 1
    out = Dropout(0.1)(x)
    assert out.dtype == torch.bfloat16
    kept = out != 0
    scale = 65536 / (65536 - round(0.1 * 65536))
    expected = x * torch.tensor(scale, dtype=torch.bfloat16)
    assert torch.equal(out[kept], expected[kept])
    ratio = (out[kept].double() / x[kept].double()).mean().item()
    assert abs(ratio / scale - 1) < 2e-3  # the documented bf16 rounding of 1/0.9, no more


def test_inplace_matches_out_of_place():
    x = torch.randn(4, 8, 6, 6)
    torch.manual_seed(6)
    a = Dropout(0.2)(x)
    torch.manual_seed(6)
    b = Dropout(0.2, inplace=True)(x.clone())
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_mask_is_the_documented_lane_threshold_of_the_draws(dtype, channels_last):
    """Recomputed from the same int64 draws with a plain comparison: lane >= round(65536 p) -
    32768 keeps an element, in memory order, scaled by 65536 / (65536 - round(65536 p))."""
    x = torch.rand(6, 5, 4, 3, dtype=torch.float64).add_(1).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(7)
    out = Dropout(0.3)(x)
    torch.manual_seed(7)
    draws = torch.randint(-(2**63), 2**63 - 1, ((x.numel() + 3) // 4,), dtype=torch.int64)
    lanes = draws.view(torch.int16)[: x.numel()]
    dropped = round(0.3 * 65536)
    if channels_last:
        keep = (lanes >= dropped - 32768).view(6, 4, 3, 5).permute(0, 3, 1, 2)
    else:
        keep = (lanes >= dropped - 32768).view(x.shape)
    scale = torch.tensor(65536 / (65536 - dropped), dtype=dtype)
    assert out.dtype == dtype
    assert torch.equal(out, torch.where(keep, x * scale, torch.zeros((), dtype=dtype)))


@pytest.mark.parametrize(("p", "rate"), [(1e-9, 1 / 65536), (1 - 1e-9, 65535 / 65536)])
def test_extreme_rates_stay_finite_and_within_one_lane_step(p, rate):
    torch.manual_seed(8)
    out = Dropout(p)(torch.ones(1_000_000))
    assert torch.isfinite(out).all()
    binomial_std = (rate * (1 - rate) / 1e6) ** 0.5
    assert abs((out == 0).float().mean().item() - rate) < 5 * binomial_std + 1e-6
