"""Ensembles from one connected region: points along a curve, and Fast Geometric Ensembling.

Curve ensembles (Garipov et al. 2018): an ensemble of size k averages the predictions of k
points at the midpoints of k equal pieces of [0, 1], t_i = (2i + 1) / (2k) (the evaluated t
nearest to each): interior points, so that k = 2 is not simply the two ends, i.e. the
independent members themselves. How much of a deep ensemble's gain such an ensemble holds tells
how different the functions in one connected low-loss region are.

FGE (Garipov et al. 2018, "Fast Geometric Ensembling"): from a trained network, SGD (momentum
0.9) whose learning rate changes every step, linearly from lr₁ to lr₂ over the first half of a
cycle and back over the second; a snapshot at each minimum of the cycle (its middle). The
snapshots form the ensemble: one more single-trajectory method.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modescape.analysis.connect.fit import curve_autocast
from modescape.analysis.ensembles import EnsembleCurve
from modescape.analysis.metrics import METRICS, ArrayLike, as_numpy, evaluate_ensemble
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed, torch_generator


def curve_ensemble_indices(t: np.ndarray, k: int) -> np.ndarray:
    """Indices into the evaluated `t` of the k points t_i = (2i+1)/(2k), nearest first."""
    targets = (2 * np.arange(k) + 1) / (2 * k)
    return np.array([int(np.argmin(np.abs(t - s))) for s in targets], dtype=np.int64)


def curve_ensemble_curve(
    probs: ArrayLike, labels: ArrayLike, t: np.ndarray, max_size: int
) -> EnsembleCurve:
    """Metrics of ensembles of k = 1..max_size points along a curve (one ensemble per size).

    probs: `[T, N, C]` at the evaluated `t[T]`; `subsets[i]` holds the indices into t used."""
    p = as_numpy(probs)
    y = as_numpy(labels)
    sizes = np.arange(1, max(1, min(max_size, len(t))) + 1)
    subsets = [curve_ensemble_indices(t, int(k))[None] for k in sizes]
    values = [evaluate_ensemble(p[s[0]], y) for s in subsets]  # float64 mean, log-mean-exp NLL
    return EnsembleCurve(
        sizes=sizes,
        mean={m: np.array([v[m] for v in values]) for m in METRICS},
        std={m: np.zeros(len(sizes)) for m in METRICS},
        count=np.ones(len(sizes), dtype=np.int64),
        sampled=np.zeros(len(sizes), dtype=bool),
        subsets=subsets,
        settings={"kind": "curve", "points": "t_i = (2i+1)/(2k), nearest evaluated t"},
    )


@dataclass(frozen=True)
class FGEConfig:
    """Fast Geometric Ensembling: `cycles` snapshots, a cycle of `cycle_epochs` epochs with
    the learning rate linear lr₁ → lr₂ → lr₁ (Garipov: 2-4 epochs, lr₁ = 0.05, lr₂ = 0.01 for
    PreResNet; smaller networks trained with Adam need smaller rates)."""

    cycles: int = 4
    cycle_epochs: int = 2
    lr1: float = 0.01
    lr2: float = 0.001

    def __post_init__(self) -> None:
        for name in ("cycles", "cycle_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ModescapeError(f"fge {name} must be an integer >= 1, got {value!r}")
        for name in ("lr1", "lr2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ModescapeError(f"fge {name} must be a finite number > 0, got {value}")


def fge_lr(step: int, cycle_steps: int, lr1: float, lr2: float) -> float:
    """Learning rate at 0-based `step` (Garipov's `cyclic_learning_rate`): lr₁ → lr₂ over the
    first half of each cycle of `cycle_steps` steps, back to lr₁ over the second."""
    s = (step % cycle_steps) / cycle_steps
    if s < 0.5:
        return lr1 * (1.0 - 2.0 * s) + lr2 * 2.0 * s
    return lr1 * (2.0 * s - 1.0) + lr2 * (2.0 - 2.0 * s)


def train_fge(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: FGEConfig,
    *,
    seed: int,
    batch_size: int,
    on_snapshot: Callable[[int, dict[str, Tensor]], None] | None = None,
    precision: str = "fp32",
) -> list[dict[str, Tensor]]:
    """FGE snapshots (state dicts) from `model`'s weights (not modified), `config.cycles` of them.

    A snapshot is taken after the step at the middle of each cycle, where the rate is lr₂.
    Every epoch's data order and dropout come from `derive_seed(seed, "fge", epoch, ...)`.
    `on_snapshot(i, state_dict)` is called as each is taken; `precision` ("fp32" | "bf16") is the
    run's training arithmetic, used for the forward pass (weights and snapshots stay float32)."""
    autocast = curve_autocast(precision, x.device)
    net = copy.deepcopy(model).float().train()
    opt = torch.optim.SGD(net.parameters(), lr=config.lr1, momentum=0.9)
    n_batches = math.ceil(len(x) / batch_size)
    cycle_steps = config.cycle_epochs * n_batches
    snapshots: list[dict[str, Tensor]] = []
    step = 0
    with torch.random.fork_rng(devices=[]):
        for epoch in range(config.cycles * config.cycle_epochs):
            torch.manual_seed(derive_seed(seed, "fge", epoch, "dropout"))
            gen = torch_generator(derive_seed(seed, "fge", epoch, "data"))
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                for group in opt.param_groups:
                    group["lr"] = fge_lr(step, cycle_steps, config.lr1, config.lr2)
                with autocast:
                    logits = net(x[idx])
                loss = F.cross_entropy(logits.float(), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step % cycle_steps == cycle_steps // 2:
                    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    snapshots.append(state)
                    if on_snapshot is not None:
                        on_snapshot(len(snapshots) - 1, state)
    return snapshots
