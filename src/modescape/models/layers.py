"""Layers shared by the built-in architectures: Keras' "same" padding for strided convolutions.

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
