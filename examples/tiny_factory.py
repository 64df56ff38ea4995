"""A small custom classifier for modescape: `--arch examples.tiny_factory:build`.

Any callable `factory(in_shape, num_classes, **kwargs) -> nn.Module` works; this one shows the
pieces a user's network typically has: convolutions with BatchNorm, a residual connection, a
hidden dense layer with LayerNorm, and a keyword argument (`width`) recorded in the run's config
(`--set model.arch_kwargs='{"width": 16}'`).
"""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv → BN → ReLU → residual (conv → BN) → ReLU → pool → dense → LayerNorm → ReLU → linear.

    Input `(batch, C, L)` or `(batch, C, H, W)`; output logits `(batch, num_classes)`.
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int, dropout: float):
        super().__init__()
        ndim = len(in_shape) - 1
        conv = nn.Conv1d if ndim == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if ndim == 1 else nn.BatchNorm2d
        pool = nn.AdaptiveAvgPool1d if ndim == 1 else nn.AdaptiveAvgPool2d
        self.conv1 = conv(in_shape[0], width, 3, padding=1)
        self.bn1 = norm(width)
        self.conv2 = conv(width, width, 3, padding=1)
        self.bn2 = norm(width)
        self.pool = nn.Sequential(pool(1), nn.Flatten())
        self.fc = nn.Linear(width, 2 * width)
        self.ln = nn.LayerNorm(2 * width)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(x)))  # residual: conv2 keeps the stream's units
        x = torch.relu(self.ln(self.fc(self.pool(x))))
        return self.head(self.drop(x))


def build(
    in_shape: tuple[int, ...], num_classes: int, width: int = 8, dropout: float = 0.0
) -> nn.Module:
    """The factory: modescape passes the data's `in_shape` and `num_classes` (and `dropout`)."""
    return TinyNet(tuple(in_shape), num_classes, width, dropout)
