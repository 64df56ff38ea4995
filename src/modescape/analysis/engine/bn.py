"""BatchNorm running statistics recomputed for weight points that no training run produced.

Off-trajectory points (plane and path points, subspace samples, weight averages) have weights
whose running statistics were never estimated; the paper's evaluations recompute them from
training batches. `recompute_bn_buffers` does that for K points at once.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call

from modescape.analysis.engine.inputs import Inputs, inputs
from modescape.analysis.weightspace import (
    Weights,
    as_flat,
    buffer_names,
    flatten_params,
    param_names,
    shapes_of,
    unflatten,
)
from modescape.errors import ModescapeError


def recompute_bn_buffers(
    model: nn.Module,
    weights: Weights,
    train_x: Inputs,
    *,
    num_batches: int = 8,
    batch_size: int = 256,
) -> Tensor:
    """Recompute BatchNorm running statistics for each weight point: `[K, B]`.

    For every point: running stats reset, then `num_batches` batches of `train_x` (the first
    `num_batches × batch_size` examples, the *same* batches for every point, so the points differ
    only in their weights) go through the network with the BatchNorm layers in train mode and
    momentum=None, i.e. the running stats become the cumulative average of the per-batch
    statistics (the variance unbiased per batch, as PyTorch does). Dropout stays off. Pass a
    shuffled `train_x`. Data batches form the outer loop, so each batch is read once.
    """
    train_x = inputs(train_x, "training inputs")
    params, _ = as_flat(model, weights)
    K = params.shape[0]
    net = copy.deepcopy(model)
    bn_layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bnames = buffer_names(net)
    if not bn_layers:
        return torch.zeros(K, len(bnames))
    net.eval()
    for m in bn_layers:
        m.train()
        m.momentum = None
        m.reset_running_stats()
    pnames, pshapes = param_names(net), shapes_of(net, param_names(net))
    fresh = dict(net.named_buffers())
    # One independent copy of every buffer (incl. num_batches_tracked) per point: BatchNorm updates
    # the tensors handed to functional_call in place.
    per_point = [{n: b.clone() for n, b in fresh.items()} for _ in range(K)]
    n_use = min(train_x.shape[0], num_batches * batch_size)
    if n_use == 0:
        raise ModescapeError("recomputing BatchNorm statistics needs training examples")
    if train_x.dim() == 4:
        train_x = train_x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for n0 in range(0, n_use, batch_size):
            xb = train_x[n0 : min(n0 + batch_size, n_use)]
            if xb.shape[0] < 2:  # a batch of one has no variance
                break
            for k in range(K):
                tensors = {**unflatten(params[k], pnames, pshapes), **per_point[k]}
                functional_call(net, tensors, (xb,))
    return torch.stack([flatten_params(per_point[k], bnames) for k in range(K)])
