"""Layers shared by the built-in architectures: Keras' "same" padding for strided convolutions
and a dropout whose CPU mask is cheap to draw (`Dropout`).

Keras pads a "same" convolution by `total = max((ceil(n / s) - 1) · s + k - n, 0)` along each
axis, `total // 2` before and the rest *after* the input. With stride 2, a 3-wide kernel and an even
size that is 0 before and 1 after, where PyTorch's `padding=1` pads 1 on both sides: the same
output size, but every window shifted by one pixel. Weights trained in Keras (the seed notebooks'
ResNet20v1) only compute the same function with Keras' padding.
"""

from __future__ import annotations

import math
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn


class Padding(StrEnum):
    """How a "same" convolution with stride > 1 pads: symmetrically (PyTorch) or as Keras."""

    TORCH = "torch"
    KERAS = "keras"


def _keras_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """`x (batch, C, *spatial)` padded as Keras' "same" (the extra pixel after, not before)."""
    pads: list[int] = []
    for n, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class KerasSameConv1d(nn.Conv1d):
    """`nn.Conv1d` with Keras' "same" padding (any stride); same parameters and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(
            _keras_pad(x, self.kernel_size, self.stride), self.weight, self.bias
        )


class KerasSameConv2d(nn.Conv2d):
    """`nn.Conv2d` with Keras' "same" padding (any stride); same parameters and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(
            _keras_pad(x, self.kernel_size, self.stride), self.weight, self.bias
        )


def same_conv(
    ndim: int, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: Padding = Padding.TORCH
) -> nn.Module:
    """A "same" convolution (odd `kernel`): PyTorch's symmetric `kernel // 2`, or Keras' padding
    when `padding` is KERAS and the stride is > 1 (at stride 1 the two agree)."""
    if Padding(padding) is Padding.KERAS and stride > 1:
        cls = KerasSameConv1d if ndim == 1 else KerasSameConv2d
        return cls(c_in, c_out, kernel, stride=stride, padding=0)
    conv = nn.Conv1d if ndim == 1 else nn.Conv2d
    return conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


class Dropout(nn.Dropout):
    """`nn.Dropout` whose CPU mask is 4× cheaper to draw: 16-bit lanes of 64-bit random integers.

    PyTorch's CPU dropout draws one `bernoulli_` sample per element, which took 34–49% of a
    MediumCNN training step on the CPUs modescape is built on, and far more under bf16 autocast.
    Here one `torch.randint` int64 draw (the same global generator, so seeding and resume work as
    before) gives four 16-bit lanes; an element is dropped when its lane falls below
    `round(65536 p)`, so the drop rate is p to within 1/65536 and kept values are scaled by the
    inverse of the keep rate (in fp32; rounded to bf16 under bf16 autocast). Evaluation mode,
    p = 0 and non-CPU devices behave exactly as `nn.Dropout`; the module has no state, so state
    dicts are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.p >= 1:
            return super().forward(x)
        n = x.numel()
        # Clamped so that the int16 threshold below and the scale stay finite; the drop rate is
        # still p to within 1/65536.
        dropped = min(max(round(self.p * 65536), 1), 65535)
        draws = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        lanes = draws.view(torch.int16)[:n]
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            # Lanes laid out as x is in memory (N, H, W, C), seen as (N, C, H, W): no copy.
            b, c, h, w = x.shape
            lanes = lanes.view(b, h, w, c).permute(0, 3, 1, 2)
        lanes = lanes.view(x.shape) if lanes.dim() == 1 else lanes
        # keep = 1 where the lane is at or above the threshold, else 0, in int16 arithmetic: a
        # comparison to bool and its conversion to a float mask cost 9x more (neither is
        # vectorised on CPU), a third of a MediumCNN step under bf16.
        threshold = dropped - 32768
        keep = lanes.clamp(threshold - 1, threshold).sub_(threshold - 1)
        # One multiply by a mask already holding the scale: torch.where (not vectorised on CPU)
        # cost 40% more per dropout layer, a second multiply 10-35%. A 16-bit float mask is the
        # scale's bit pattern times keep; under bf16 autocast the scale is rounded to bf16
        # (1/0.9 -> 1.109, 0.16% low): the price of the one pass.
        scale_value = torch.full((), 65536 / (65536 - dropped), dtype=x.dtype)
        if x.element_size() == 2:
            scale = keep.mul_(int(scale_value.view(torch.int16))).view(x.dtype)
        else:
            scale = keep.to(x.dtype).mul_(scale_value)
        return x.mul_(scale) if self.inplace else x * scale
