"""References for the many-model engine's tests: weight points around a model and the plain
per-point forward the engine's strategies must reproduce."""

from __future__ import annotations

import copy

import torch
from torch import nn

from modescape.analysis import weightspace


def weight_points(model: nn.Module, k: int, seed: int = 1, scale: float = 0.05) -> torch.Tensor:
    """K weight vectors [K, P] around the model's own: different, but with sensible outputs."""
    g = torch.Generator().manual_seed(seed)
    base = weightspace.flatten_params(model.state_dict(), weightspace.param_names(model))
    return base + scale * torch.randn(k, base.numel(), generator=g)


def direct_forward(
    model: nn.Module, flat: torch.Tensor, x: torch.Tensor, buffers: torch.Tensor | None = None
) -> torch.Tensor:
    """Each point (and its buffers) loaded into a copy of the model, eval mode: [K, N, out]."""
    net = copy.deepcopy(model).eval()
    names = weightspace.buffer_names(model)
    shapes = weightspace.shapes_of(model, names)
    out = []
    for k, w in enumerate(flat):
        torch.nn.utils.vector_to_parameters(w, net.parameters())
        if buffers is not None:
            state = dict(net.named_buffers())
            for n, b in weightspace.unflatten(buffers[k], names, shapes).items():
                state[n].copy_(b)
        with torch.no_grad():
            out.append(net(x))
    return torch.stack(out)
