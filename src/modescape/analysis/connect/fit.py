"""Training a curve between two fixed weight vectors, for any network (Garipov et al. 2018).

The network is evaluated at the curve's weights with `torch.func.functional_call`: one flat
vector θ(t) = Σ_k c_k(t) w_k is split into the model's parameters, so any architecture that
modescape can build (built-ins, registered and `module:factory` models, BatchNorm and LayerNorm)
trains as a curve without a hand-written "curve" version of its layers. Gradients reach the free
bends through the coefficients.

Each minibatch draws one t ~ U(0, 1) and minimises the run's loss (cross-entropy) at θ(t), plus
Garipov's `weight_decay/2 · ‖θ(t)‖²` when asked. The forward pass follows the run's precision
(`precision="bf16"`: bf16 autocast, as the members trained); the bends, θ(t), the optimiser
state and every evaluation stay float32. BatchNorm layers keep ONE shared set of running
statistics during training (as Garipov's curve models do); evaluations recompute them at every t.

Reproducible and resumable: every epoch's data order, t draws and dropout masks come from
generators seeded with `derive_seed(seed, "curve", epoch, ...)`, so an epoch depends only on the
state at its start (bends, optimiser, shared BatchNorm statistics), which `state()` returns and
`load_state()` restores: a run resumed after any epoch gives the same bends, byte for byte on CPU.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from modescape.analysis.connect.curves import check_bends, coefficients, initial_bends
from modescape.analysis.weightspace import (
    StateDict,
    buffer_names,
    flatten_params,
    param_names,
    shapes_of,
    unflatten,
)
from modescape.errors import ModescapeError, check_choice
from modescape.options import CurveRecipe, CurveShape, Precision
from modescape.seeding import derive_seed, torch_generator

SAME_ENDS_RTOL = 1e-6  # ends closer than this (relative to their norm) are "identical"


@dataclass(frozen=True)
class CurveConfig:
    """How a curve is trained and evaluated (the connector study's settings).

    `recipe` "garipov": SGD momentum 0.9 at `lr`, constant for the first half of the epochs,
    linearly down to 1% of it at 90%, then constant. "run": the run's own optimiser, learning
    rate and schedule (`optimizer`, `base_lr` and `lr_at` passed to `CurveFit`).
    """

    shape: str = CurveShape.BEZIER.value
    bends: int = 3  # including the two fixed ends (Garipov: 3)
    epochs: int = 20
    recipe: str = CurveRecipe.GARIPOV.value
    lr: float = 0.015  # Garipov's VGG16 rate (used by the "garipov" recipe)
    weight_decay: float = 0.0  # on θ(t), as Garipov's l2 regulariser; the paper's runs use none
    batch_size: int = 0  # 0: the run's batch size
    points: int = 61  # evaluated t values (Garipov: 61)
    bn_batches: int = 8  # training batches per BatchNorm recomputation at evaluation
    bn_batch_size: int = 256
    train_examples: int = 5000  # training examples scored at every t (0: all)
    ensemble_size: int = 8  # largest ensemble of points along the curve

    def __post_init__(self) -> None:
        check_bends(self.shape, self.bends)
        check_choice("curve recipe", self.recipe, CurveRecipe)
        for name in ("epochs", "points", "bn_batches", "bn_batch_size", "ensemble_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ModescapeError(f"connect {name} must be an integer >= 1, got {value!r}")
        if self.points < 3:
            raise ModescapeError(f"connect points must be at least 3, got {self.points}")
        for name in ("batch_size", "train_examples"):
            if getattr(self, name) < 0:
                raise ModescapeError(f"connect {name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ModescapeError(f"connect lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ModescapeError(f"connect weight_decay must be >= 0, got {self.weight_decay}")


def garipov_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Garipov's curve schedule at 0-based `epoch` of `epochs`: `base_lr` while epoch/epochs
    ≤ 0.5, then linearly down to 1% of it at 0.9, then 1%."""
    alpha = epoch / epochs
    if alpha <= 0.5:
        factor = 1.0
    elif alpha <= 0.9:
        factor = 1.0 - (alpha - 0.5) / 0.4 * 0.99
    else:
        factor = 0.01
    return base_lr * factor


def curve_autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a curve's (or FGE's) training forward pass: bf16 when the run
    trained in bf16, off for fp32. "auto" is resolved when a run is created, so only the two
    resolved values are accepted here."""
    allowed = (Precision.FP32.value, Precision.BF16.value)
    if precision not in allowed:
        raise ModescapeError(
            f"curve training precision must be one of {', '.join(allowed)}, got {precision!r}"
        )
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == Precision.BF16)


def flat_params(model: nn.Module, state: StateDict) -> Tensor:
    """A state dict's parameters as one float32 vector `[P]` in the model's order."""
    return flatten_params(state, param_names(model))


def check_ends(end0: Tensor, end1: Tensor) -> None:
    """ModescapeError when the two ends are the same point (nothing to connect)."""
    scale = max(float(end0.norm()), float(end1.norm()), 1e-30)
    if float((end0 - end1).norm()) <= SAME_ENDS_RTOL * scale:
        raise ModescapeError(
            "the two ends of the curve are identical weight vectors: pick two different "
            "members or snapshots (e.g. --pair m0,m1)"
        )


class CurveFit:
    """The state of one curve being trained: free bends, optimiser, shared BatchNorm statistics.

    `model` is a template (structure and parameter order); a private copy holds the shared
    buffers. `train_x[N, ...]`, `train_y int64[N]` are the training data. For the "run" recipe,
    `optimizer` ("adam" | "sgd"), `base_lr` and `lr_at(epoch)` describe the run's own recipe.
    `precision` ("fp32" | "bf16"): the run's training arithmetic, used for the forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        end0: StateDict,
        end1: StateDict,
        config: CurveConfig,
        *,
        seed: int,
        batch_size: int,
        optimizer: str = "sgd",
        lr_at: Callable[[int], float] | None = None,
        precision: str = Precision.FP32.value,
    ):
        self.config, self.seed = config, seed
        curve_autocast(precision, torch.device("cpu"))  # checked before anything is built
        self.precision = precision
        self.batch_size = config.batch_size or batch_size
        self.net = copy.deepcopy(model).float()
        for m in self.net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
        self.pnames = param_names(self.net)
        self.pshapes = shapes_of(self.net, self.pnames)
        self.end0, self.end1 = flat_params(self.net, end0), flat_params(self.net, end1)
        check_ends(self.end0, self.end1)
        inner = initial_bends(self.end0, self.end1, config.bends)[1:-1]
        self.free = nn.Parameter(inner.clone())
        if config.recipe == CurveRecipe.GARIPOV:
            self.opt: torch.optim.Optimizer = torch.optim.SGD(
                [self.free], lr=config.lr, momentum=0.9
            )
            self.lr_at = lambda e: garipov_lr(config.lr, e, config.epochs)
        else:
            if lr_at is None:
                raise ModescapeError("the 'run' curve recipe needs the run's learning rates")
            self.lr_at = lr_at
            if optimizer == "adam":
                self.opt = torch.optim.Adam([self.free], lr=lr_at(0))
            else:
                self.opt = torch.optim.SGD([self.free], lr=lr_at(0), momentum=0.9)
        self.epoch = 0

    def bends(self) -> Tensor:
        """All bends `[n, P]` (float32), the fixed ends first and last."""
        return torch.cat([self.end0[None], self.free.detach(), self.end1[None]])

    def point(self, t: float) -> Tensor:
        """θ(t) as a differentiable function of the free bends: `[P]`."""
        c = coefficients(self.config.shape, t, self.config.bends)[0].float()
        return c[0] * self.end0 + c[-1] * self.end1 + c[1:-1] @ self.free

    def train_epoch(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """One pass over `x`, `y` (minibatches of a seeded permutation); mean loss and t."""
        e = self.epoch
        lr = self.lr_at(e)
        for group in self.opt.param_groups:
            group["lr"] = lr
        order = torch_generator(derive_seed(self.seed, "curve", e, "data"))
        tgen = torch_generator(derive_seed(self.seed, "curve", e, "t"))
        batches = torch.randperm(len(x), generator=order).split(self.batch_size)
        self.net.train()
        autocast = curve_autocast(self.precision, x.device)
        loss_sum, seen = 0.0, 0
        # Dropout draws from the global generator: seeded per epoch, restored afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "curve", e, "dropout"))
            for idx in batches:
                t = float(torch.rand((), generator=tgen, dtype=torch.float64))
                w = self.point(t)  # float32: autocast casts the weights per op, not θ(t) itself
                with autocast:
                    logits = functional_call(
                        self.net, unflatten(w, self.pnames, self.pshapes), (x[idx],)
                    )
                loss = F.cross_entropy(logits.float(), y[idx])
                total = loss + 0.5 * self.config.weight_decay * (w * w).sum()
                self.opt.zero_grad(set_to_none=True)
                total.backward()
                self.opt.step()
                loss_sum += float(loss.detach()) * len(idx)
                seen += len(idx)
        self.epoch += 1
        return {"epoch": self.epoch, "lr": lr, "train_loss": loss_sum / max(seen, 1)}

    # ---- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Tensor]:
        """Everything the next epoch depends on, as named tensors (safetensors-ready)."""
        out = {"bends.free": self.free.detach().clone()}
        out |= {f"buffer.{k}": v.detach().clone() for k, v in self.net.named_buffers()}
        for i, st in self.opt.state_dict()["state"].items():
            out |= {f"opt.{i}.{k}": torch.as_tensor(v).clone() for k, v in st.items()}
        out["epoch"] = torch.tensor(self.epoch, dtype=torch.int64)
        return out

    def load_state(self, tensors: Mapping[str, Tensor]) -> None:
        """Restore a `state()`; ModescapeError when it does not fit this curve."""
        free = tensors.get("bends.free")
        if free is None or free.shape != self.free.shape:
            raise ModescapeError(
                f"the stored curve state has bends of shape "
                f"{None if free is None else tuple(free.shape)}, this curve needs "
                f"{tuple(self.free.shape)}"
            )
        with torch.no_grad():
            self.free.copy_(free)
        buffers = dict(self.net.named_buffers())
        for k, v in tensors.items():
            if k.startswith("buffer."):
                buffers[k[len("buffer.") :]].copy_(v)
        groups = self.opt.state_dict()["param_groups"]
        state: dict[int, dict[str, Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v.clone()
        self.opt.load_state_dict({"state": state, "param_groups": groups})
        self.epoch = int(tensors["epoch"])

    def shared_buffers(self) -> Tensor:
        """The shared BatchNorm statistics as one flat vector `[B]` (float buffers only)."""
        return flatten_params(dict(self.net.named_buffers()), buffer_names(self.net))


def fit_curve_tensors(
    model: nn.Module,
    end0: StateDict,
    end1: StateDict,
    x: Tensor,
    y: Tensor,
    config: CurveConfig,
    *,
    seed: int,
    batch_size: int = 128,
    state: Mapping[str, Tensor] | None = None,
    on_epoch: Callable[[CurveFit, dict[str, float]], None] | None = None,
    **recipe: object,
) -> CurveFit:
    """Train a curve from `end0` to `end1` on `x`, `y` for `config.epochs` epochs.

    `state`: a `CurveFit.state()` to resume from; `on_epoch(fit, stats)` after every epoch (to
    persist it); `recipe`: `optimizer` and `lr_at` for the "run" recipe, `precision` for the
    forward pass. Returns the fit."""
    fit = CurveFit(model, end0, end1, config, seed=seed, batch_size=batch_size, **recipe)  # type: ignore[arg-type]
    if state is not None:
        fit.load_state(state)
    while fit.epoch < config.epochs:
        stats = fit.train_epoch(x, y)
        if on_epoch is not None:
            on_epoch(fit, stats)
    return fit
