"""The pieces of one member's training loop: device, random streams, batches, augmentation,
optimiser, prediction, and one epoch over the training data."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modescape.config import AugmentConfig, TrainConfig
from modescape.errors import ModescapeError, check_choice, choice_error
from modescape.options import Precision
from modescape.seeding import derive_seed, torch_generator

EVAL_BATCH = 1000  # examples per forward pass when caching predictions of signals
# Images: small batches keep each layer's activations in cache. A CIFAR-10 SmallCNN evaluated
# 10,000 test images 2-4x faster at 32-64 than at 1,000 per pass (benchmarks/README.md).
EVAL_BATCH_IMAGES = 64


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModescapeError("--device cuda was asked for, but no CUDA GPU is available")
        return torch.device(device)
    raise choice_error("device", device, ("auto", "cpu", "cuda", "cuda:N"))


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX) that autocast can use."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: torch.device, in_shape: tuple[int, ...]) -> str:
    """ "auto" → "bf16" for images [C, H, W] trained on a CPU with bf16 instructions, "fp32"
    otherwise; "fp32" and "bf16" are returned as given.

    Why: bf16 autocast trained the CIFAR-10 models 1.2-2.6x faster than fp32 on such CPUs
    (benchmarks/bench_keras.py), and the seed's SmallCNN recipe reached the same test accuracy
    (two bf16 members 62.9% and 63.3% against ten fp32 members' 63.0% ± 1.0). On 1-D signals the
    convolutions are too small to gain, and CPUs without bf16 instructions emulate it slowly;
    on GPUs pass "bf16" explicitly (not measured here).
    """
    check_choice("precision", precision, Precision)
    if precision != Precision.AUTO:
        return str(precision)
    fast = len(in_shape) == 3 and device.type == "cpu" and cpu_has_bf16()
    return (Precision.BF16 if fast else Precision.FP32).value


@dataclass
class MemberRNG:
    """The three random streams of one member, besides initialisation."""

    data: torch.Generator
    augment: torch.Generator

    @classmethod
    def fresh(cls, seed: int, device: torch.device) -> MemberRNG:
        torch.manual_seed(derive_seed(seed, "dropout"))
        return cls(
            torch_generator(derive_seed(seed, "data")),
            torch_generator(derive_seed(seed, "augment"), device),
        )

    def state(self) -> dict[str, torch.Tensor]:
        out = {
            "rng.global": torch.get_rng_state(),
            "rng.data": self.data.get_state(),
            "rng.augment": self.augment.get_state(),
        }
        if torch.cuda.is_available():
            out["rng.cuda"] = torch.cuda.get_rng_state()
        return out

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(tensors["rng.global"])
        self.data.set_state(tensors["rng.data"])
        self.augment.set_state(tensors["rng.augment"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])


def batch_order(n: int, batch_size: int, sampler: str, gen: torch.Generator) -> list[torch.Tensor]:
    """Index batches for one epoch: a fresh permutation, or draws with replacement (authors')."""
    if sampler == "permutation":
        return list(torch.randperm(n, generator=gen).split(batch_size))
    return [
        torch.randint(n, (batch_size,), generator=gen) for _ in range(math.ceil(n / batch_size))
    ]


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, pixel: torch.Tensor | float, gen: torch.Generator
) -> torch.Tensor:
    """Random pad-and-crop, horizontal flip and brightness on a batch x[B, C, *spatial].

    `pixel` is the size of one [0, 1] pixel unit in the data's scaling (255 for raw pixels,
    1/std per channel after standardisation), so brightness deltas mean the same in every scaling.
    """
    B, dev = x.shape[0], x.device
    spatial = x.shape[2:]
    if cfg.pad_crop:
        p = cfg.pad_crop
        padded = F.pad(x, (p, p) * len(spatial))
        idx = [
            torch.arange(B, device=dev).view(B, *([1] * (len(spatial) + 1))),
            torch.arange(x.shape[1], device=dev).view(1, -1, *([1] * len(spatial))),
        ]
        for d, size in enumerate(spatial):
            off = torch.randint(0, 2 * p + 1, (B,), generator=gen, device=dev)
            shape = [B, 1] + [1] * len(spatial)
            shape[2 + d] = size
            idx.append(
                (
                    off.view(B, *([1] * (len(spatial) + 1)))
                    + torch.arange(size, device=dev).view(shape[1:]).unsqueeze(0)
                ).view(shape)
            )
        x = padded[tuple(idx)]
    if cfg.flip and len(spatial) == 2:
        flip = torch.rand(B, generator=gen, device=dev) < 0.5
        x = torch.where(flip.view(B, 1, 1, 1), x.flip(-1), x)
    if cfg.brightness > 0:
        delta = (torch.rand(B, generator=gen, device=dev) * 2 - 1) * cfg.brightness
        x = x + delta.view(B, *([1] * (x.dim() - 1))) * pixel
    return x


def pixel_unit(source: dict[str, Any], in_shape: tuple[int, ...]) -> torch.Tensor | float:
    """One [0, 1] pixel unit in the data's own scaling (`Dataset.source["scaling"]`)."""
    scaling = source.get("scaling")
    if scaling == "raw":
        return 255.0
    if scaling in ("standardize", "normalize"):  # "normalize": std in [0, 1] pixel units
        std = torch.as_tensor(source["std"], dtype=torch.float32)
        return (1.0 / std).view(1, in_shape[0], *([1] * (len(in_shape) - 1)))
    return 1.0  # "unit" pixels, or signals (MNIST-1D) that are not pixels at all


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        # The fused kernel: one pass per parameter instead of a dozen elementwise ops, 5-30%
        # of a small CNN's training step on CPU (benchmarks/README.md). Same update rule.
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                    for p in model.parameters())  # fmt: skip
        return torch.optim.Adam(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None
        )
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
    )


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """Softmax probabilities float32 [examples, classes] of inputs x[examples, ...], computed in
    eval mode, `batch` examples per pass (default: `EVAL_BATCH`, or `EVAL_BATCH_IMAGES` for
    images [examples, C, H, W])."""
    return F.softmax(predict_logits(model, x, batch), dim=1)


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """The logits float32 [examples, classes] behind `predict`."""
    if batch is None:
        batch = EVAL_BATCH_IMAGES if x.dim() == 4 else EVAL_BATCH
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch]).float() for i in range(0, len(x), batch)])
    model.train(was_training)
    return out


@torch.inference_mode()
def evaluate_split(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, float, float]:
    """(probabilities float32 as `predict`, NLL, accuracy) on one split. The NLL is
    −mean log-softmax of the true class in float64, unclamped (a probability clamped at 1e-12
    would cap each example's loss at 27.6 nats)."""
    logits = predict_logits(model, x)
    probs = F.softmax(logits, dim=1)
    nll = F.nll_loss(F.log_softmax(logits.double(), dim=1), y.to(logits.device)).item()
    return probs, nll, (probs.argmax(1) == y.to(probs.device)).float().mean().item()


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {
        f"opt.{i}.{k}": v
        for i, st in sd["state"].items()
        for k, v in st.items()
        if torch.is_tensor(v)
    }
    return tensors, sd["param_groups"]


def load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})
    # Stored tensors come back contiguous; a channels_last parameter's moments must be laid out
    # as the parameter is: the fused Adam kernel walks parameter, gradient and moments as flat
    # memory, so a mismatch would silently mix elements.
    for group in opt.param_groups:
        for p in group["params"]:
            for name, value in opt.state.get(p, {}).items():
                if (
                    torch.is_tensor(value)
                    and value.shape == p.shape
                    and value.stride() != p.stride()
                ):
                    opt.state[p][name] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    tcfg: TrainConfig,
    rng: MemberRNG,
    pixel: torch.Tensor | float = 1.0,
    autocast: torch.autocast | None = None,
    order: list[torch.Tensor] | None = None,
    *,
    step_lr: Callable[[int], float] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """One pass over the training data; returns mean train loss and accuracy.

    `order`: the index batches to take instead of a fresh `batch_order` (spawning stops and
    resumes an epoch part-way, `training.spawn`); the data generator is then not drawn from.
    A collection phase (train.collect) sets the lr of each step (`step_lr(i)`, i the 0-based
    step of this epoch) and looks at the weights after it (`after_step(i)`)."""
    model.train()
    dev = x_train.device
    autocast = autocast or torch.autocast(dev.type, enabled=False)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    if order is None:
        order = batch_order(len(x_train), tcfg.batch_size, tcfg.sampler, rng.data)
    for step, idx in enumerate(order):
        if step_lr is not None:
            for group in opt.param_groups:
                group["lr"] = step_lr(step)
        idx = idx.to(dev)
        xb, yb = x_train[idx], y_train[idx]
        if tcfg.augment.enabled:
            xb = augment_batch(xb, tcfg.augment, pixel, rng.augment)
        with autocast:
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(step)
        # Accumulate on the device: one host sync per epoch, not per step.
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(yb)
    seen = max(seen, 1)  # an empty `order` (a spawn point at an epoch's last step) trains nothing
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}
