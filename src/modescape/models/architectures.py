"""The paper's architectures and the seed notebooks' variants, for 1-D signals `(C, L)` and
images `(C, H, W)` of any size.

| arch / variant    | params (CIFAR-10) | initialisation                                         |
|-------------------|-------------------|--------------------------------------------------------|
| smallcnn / paper  | 19,466            | authors' TF code: Glorot-uniform weights *and* biases  |
| smallcnn / seed   | 15,722            | Keras defaults: Glorot-uniform weights, zero biases    |
| mediumcnn / paper | 971,146           | authors' TF code: Glorot-uniform weights *and* biases  |
| mediumcnn / seed  | 245,290           | Keras defaults: Glorot-uniform weights, zero biases    |
| resnet20 / paper  | 273,066           | Keras CIFAR example: truncated He-normal, zero biases  |
| resnet20 / seed   | 571,114 (+4,000)  | as the paper ResNet20 (Keras `he_normal`, zero biases) |

The seed's ResNet has 571,114 trainable parameters; Keras' `count_params`, which the seed
notebooks print, adds the 4,000 BatchNorm moving means and variances: 575,114.

Every model has the same simple hierarchy, so that weight-space code (flattening, permutation
alignment) can walk it: `features` (or `stem` + `blocks` for the ResNet), `neck` (flatten or global
average pool, plus the seed variants' dense-32 layer) and `head`, the final `nn.Linear` that
returns logits (softmax belongs to the loss). Only standard modules are used: `ConvNd`,
`MaxPoolNd`, `BatchNormNd`, `Dropout` (an `nn.Dropout` whose CPU mask is cheaper to draw,
`layers.Dropout`), `Linear`, `ReLU`; `N` is 1 or 2 from the input shape.

Choices where the sources leave room (each is what the source stack, TF/Keras, did):
- "same" max-pooling (MediumCNN paper) is `ceil_mode=True`: output ceil(n/2), the last window
  partial, exactly TF's SAME padding for a 2×2/2 pool. Other pools are Keras' default (floor).
- Glorot for a bias uses the fans TF's `xavier_initializer` gave the authors' `[1, 1, C]` bias
  variables: fan_in = 1, fan_out = C, so the bound is sqrt(6 / (1 + C)).
- Flatten is PyTorch's channel-major (C, H, W) order, not Keras' (H, W, C): it only matters when
  porting weights from Keras.
- ResNet20 follows the Keras example's resnet_v1: convs keep their biases, projection shortcuts
  are a bare 1×1 conv (no BN), BatchNorm uses Keras' eps 1e-3 and momentum 0.99 (PyTorch
  `momentum=0.01`). Its stride-2 3×3 convs pad symmetrically (PyTorch) by default;
  `padding="keras"` pads bottom/right as Keras does (needed for weights trained in Keras).
- The seed notebooks' "ResNet20v1" is the bottleneck ResNet of keras-idiomatic-programmer's
  `resnet_cifar10.py` (n = 2, one identity block per group): stem conv 16 → BN → ReLU; three
  stages of a projection block and an identity block, each 1×1 conv F → BN → ReLU → 3×3 conv F
  (stride 1/2/2, on the 3×3) → BN → ReLU → 1×1 conv F·e → BN, added to the shortcut (a bare
  strided 1×1 conv in the projection block) → ReLU, with F = 16/64/128 and e = 4/2/2; then
  BN → ReLU → average pool 8 (Keras' valid pooling) → flatten → linear. Every conv has a bias.
- ReLU is applied after max-pooling where the sources pool after it (SmallCNN; MediumCNN seed,
  whose dropout also comes before the pool): max-pooling commutes with ReLU, and ReLU and
  dropout with each other (dropout scales by 0 or a positive factor), so outputs and gradients
  are those of the sources' order, while ReLU and its backward touch a quarter of the elements
  (a fifth of a SmallCNN training step on CPU). State dicts do not change: neither layer has
  parameters.
- The paper's SmallCNN has no dropout layer; `dropout` is ignored for it and for
  ResNet20.

Initialisation draws from the global torch RNG at construction: seed it first
(`torch.manual_seed`) and the same seed gives the same weights.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import torch
from torch import nn

from modescape.errors import ModescapeError, choice_error
from modescape.models.layers import Dropout, Padding, same_conv

ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "smallcnn": ("paper", "seed"),
    "mediumcnn": ("paper", "seed"),
    "resnet20": ("paper", "seed"),
}

_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("resnet20", "seed"): (
        "the seed notebooks' bottleneck ResNet: conv16-BN-ReLU, 3 stages × (projection + identity "
        "bottleneck block), F 16/64/128 × 4/2/2; BN-ReLU, avg pool 8 → linear"
    ),
    ("smallcnn", "paper"): (
        "3 × (conv3 same → ReLU → maxpool2), channels 16-32-32; flatten → linear"
    ),
    ("smallcnn", "seed"): (
        "3 × (conv3 same → ReLU → maxpool2), channels 16-32-32; global avg pool → dense 32 ReLU "
        "→ dropout → linear"
    ),
    ("mediumcnn", "paper"): (
        "4 × (conv3 same → dropout → maxpool2 same → ReLU, none on the last), channels "
        "64-128-256-256; flatten → linear; Glorot weights and biases"
    ),
    ("mediumcnn", "seed"): (
        "conv 32 same, 64 valid, 128 same, 128 same, each → ReLU → dropout → maxpool2; global avg "
        "pool → dense 32 ReLU → dropout → linear"
    ),
    ("resnet20", "paper"): (
        "ResNet20 v1 (He et al. 2016, n=3): conv16-BN-ReLU, 3 stages × 3 basic blocks (16, 32, "
        "64), 1×1 projection shortcuts; global avg pool → linear"
    ),
}

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_GAP = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}

# Keras BatchNormalization defaults (PyTorch's momentum is 1 - Keras' momentum).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class ConvNet(nn.Module):
    """A plain CNN: `features` (conv blocks) → `neck` (flatten or pooling + dense) → `head`.

    Input `(batch, C, L)` or `(batch, C, H, W)`; output logits `(batch, num_classes)`.
    """

    def __init__(self, features: nn.Sequential, neck: nn.Sequential, head: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.neck = neck
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.features(x)))


class BasicBlock(nn.Module):
    """ResNet v1 basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    `shortcut` is `nn.Identity` or, when the shape changes, a 1×1 strided conv (projection).
    """

    def __init__(
        self, ndim: int, in_channels: int, channels: int, stride: int, padding: Padding
    ) -> None:
        super().__init__()
        conv, norm = _CONV[ndim], _NORM[ndim]
        self.conv1 = same_conv(ndim, in_channels, channels, 3, stride, padding)
        self.bn1 = norm(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.conv2 = conv(channels, channels, 3, padding=1)
        self.bn2 = norm(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU()
        projection = stride != 1 or in_channels != channels
        self.shortcut = (
            same_conv(ndim, in_channels, channels, 1, stride, padding)
            if projection
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class Bottleneck(nn.Module):
    """The seed's bottleneck block (post-activation, He et al. 2016 fig. 5):
    relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)); conv1 and conv3 are
    1×1, conv2 is the 3×3 carrying the stride; `shortcut` is `nn.Identity` or a bare strided 1×1
    conv (projection) when the shape changes.
    """

    def __init__(
        self, ndim: int, c_in: int, f: int, expansion: int, stride: int, padding: Padding
    ) -> None:
        super().__init__()
        conv, norm, out = _CONV[ndim], _NORM[ndim], f * expansion
        self.conv1 = conv(c_in, f, 1)
        self.bn1 = norm(f, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.conv2 = same_conv(ndim, f, f, 3, stride, padding)
        self.bn2 = norm(f, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.conv3 = conv(f, out, 1)
        self.bn3 = norm(out, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU()
        # Keras' 1×1 "valid" conv at stride 2 keeps ceil(n / 2) positions, as PyTorch's does.
        projection = stride != 1 or c_in != out
        self.shortcut = conv(c_in, out, 1, stride=stride) if projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet v1 for CIFAR: `stem` → `blocks` → `neck` (global average pool) → `head`."""

    def __init__(
        self, stem: nn.Sequential, blocks: nn.Sequential, neck: nn.Sequential, head: nn.Linear
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.neck = neck
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.blocks(self.stem(x))))


# ----------------------------------------------------------------------------------------------
# Builders: (ndim, in_channels, num_classes, dropout, paper, padding) → model. The flatten heads
# of the paper CNNs are a placeholder `_UNSIZED` here; `build_model` sizes them from the input
# shape.
_UNSIZED = 1


def _smallcnn(
    ndim: int, c: int, num_classes: int, dropout: float, paper: bool, padding: Padding
) -> ConvNet:
    conv, pool = _CONV[ndim], _POOL[ndim]
    layers: list[nn.Module] = []
    for c_in, c_out in [(c, 16), (16, 32), (32, 32)]:
        # The sources' ReLU → maxpool, reordered (module docstring): the same function.
        layers += [conv(c_in, c_out, 3, padding=1), pool(2), nn.ReLU()]
    if paper:
        neck = nn.Sequential(nn.Flatten())
        return ConvNet(nn.Sequential(*layers), neck, nn.Linear(_UNSIZED, num_classes))
    neck = nn.Sequential(
        _GAP[ndim](1), nn.Flatten(), nn.Linear(32, 32), nn.ReLU(), Dropout(dropout)
    )
    return ConvNet(nn.Sequential(*layers), neck, nn.Linear(32, num_classes))


def _mediumcnn(
    ndim: int, c: int, num_classes: int, dropout: float, paper: bool, padding: Padding
) -> ConvNet:
    conv, pool = _CONV[ndim], _POOL[ndim]
    layers: list[nn.Module] = []
    if paper:
        widths = [c, 64, 128, 256, 256]
        for i in range(4):
            # The authors' order: conv → dropout → SAME maxpool → ReLU (no ReLU after the last).
            layers += [
                conv(widths[i], widths[i + 1], 3, padding=1),
                Dropout(dropout),
                pool(2, ceil_mode=True),
            ]
            if i < 3:
                layers.append(nn.ReLU())
        neck = nn.Sequential(nn.Flatten())
        return ConvNet(nn.Sequential(*layers), neck, nn.Linear(_UNSIZED, num_classes))
    for c_in, c_out, pad in [(c, 32, 1), (32, 64, 0), (64, 128, 1), (128, 128, 1)]:
        # The seed's ReLU → dropout → maxpool, reordered (module docstring): same function.
        layers += [conv(c_in, c_out, 3, padding=pad), Dropout(dropout), pool(2), nn.ReLU()]
    neck = nn.Sequential(
        _GAP[ndim](1), nn.Flatten(), nn.Linear(128, 32), nn.ReLU(), Dropout(dropout)
    )
    return ConvNet(nn.Sequential(*layers), neck, nn.Linear(32, num_classes))


def _resnet20(
    ndim: int, c: int, num_classes: int, dropout: float, paper: bool, padding: Padding
) -> ResNet:
    conv, norm = _CONV[ndim], _NORM[ndim]
    stem = nn.Sequential(
        conv(c, 16, 3, padding=1), norm(16, eps=_BN_EPS, momentum=_BN_MOMENTUM), nn.ReLU()
    )
    blocks: list[nn.Module] = []
    in_channels = 16
    for stage, channels in enumerate([16, 32, 64]):
        for i in range(3):  # n = 3 blocks per stage: 6n + 2 = 20 layers
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(BasicBlock(ndim, in_channels, channels, stride, padding))
            in_channels = channels
    neck = nn.Sequential(_GAP[ndim](1), nn.Flatten())
    return ResNet(stem, nn.Sequential(*blocks), neck, nn.Linear(64, num_classes))


# The seed ResNet's stages: (F, expansion, stride), each a projection and an identity block.
_SEED_STAGES = ((16, 4, 1), (64, 2, 2), (128, 2, 2))
_SEED_POOL = 8


def _resnet20_seed(ndim: int, c: int, num_classes: int, padding: Padding) -> ResNet:
    conv, norm = _CONV[ndim], _NORM[ndim]
    stem = nn.Sequential(
        conv(c, 16, 3, padding=1), norm(16, eps=_BN_EPS, momentum=_BN_MOMENTUM), nn.ReLU()
    )
    blocks: list[nn.Module] = []
    in_channels = 16
    for f, expansion, stride in _SEED_STAGES:
        blocks.append(Bottleneck(ndim, in_channels, f, expansion, stride, padding))
        blocks.append(Bottleneck(ndim, f * expansion, f, expansion, 1, padding))
        in_channels = f * expansion
    pool = nn.AvgPool1d(_SEED_POOL) if ndim == 1 else nn.AvgPool2d(_SEED_POOL)
    neck = nn.Sequential(
        norm(in_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM), nn.ReLU(), pool, nn.Flatten()
    )
    return ResNet(stem, nn.Sequential(*blocks), neck, nn.Linear(_UNSIZED, num_classes))


def _seed_resnet_cells(n: int) -> int:
    """Positions along one axis of size `n` left after the seed ResNet's strides and pool."""
    for _, _, stride in _SEED_STAGES:
        n = -(-n // stride)
    return n // _SEED_POOL


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "smallcnn": _smallcnn,
    "mediumcnn": _mediumcnn,
    "resnet20": _resnet20,
}

# ----------------------------------------------------------------------------------------------
# Spatial size arithmetic (no dry run: a dry run in train mode would consume dropout randomness).


def size_after(n: int, layers: Sequence[nn.Module]) -> int:
    """Length of one spatial axis of size `n` after `layers` (convs and max-pools change it)."""
    for layer in layers:
        if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.MaxPool1d | nn.MaxPool2d):
            k, s, p, d = (
                _first(getattr(layer, a)) for a in ("kernel_size", "stride", "padding", "dilation")
            )
            span = n + 2 * p - d * (k - 1) - 1
            if getattr(layer, "ceil_mode", False):
                out = -(-span // s) + 1
                if (out - 1) * s >= n + p:  # PyTorch drops a last window starting in the padding
                    out -= 1
            else:
                out = span // s + 1
            if out < 1:
                return 0
            n = out
    return n


def _first(v: int | tuple[int, ...] | str) -> int:
    return int(v[0] if isinstance(v, tuple) else v)


def _check_spatial(
    arch: str, variant: str, spatial: tuple[int, ...], features: nn.Sequential
) -> tuple[int, ...]:
    """Spatial output shape of `features`; ModescapeError naming the minimum if it vanishes."""
    out = tuple(size_after(n, features) for n in spatial)
    if min(out) < 1:
        minimum = next(n for n in range(1, 1 << 16) if size_after(n, features) >= 1)
        raise ModescapeError(
            f"{arch} ({variant}) needs inputs of at least {minimum} along every spatial axis "
            f"to survive its pooling; got spatial shape {spatial}"
        )
    return out


# ----------------------------------------------------------------------------------------------
# Initialisation.


def _fans(w: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or ConvNd (out, in, *k) weight."""
    receptive = math.prod(w.shape[2:])
    return w.shape[1] * receptive, w.shape[0] * receptive


@torch.no_grad()
def _init_glorot_all(model: nn.Module) -> None:
    """The authors' TF1 `xavier_initializer` on every weight and bias (biases as 1×C)."""
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                bound = math.sqrt(6.0 / (1 + m.bias.numel()))
                nn.init.uniform_(m.bias, -bound, bound)


@torch.no_grad()
def _init_keras_default(model: nn.Module) -> None:
    """Keras Conv/Dense defaults: glorot_uniform kernels, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@torch.no_grad()
def _init_he_normal(model: nn.Module) -> None:
    """Keras `he_normal`: normal truncated at ±2σ, rescaled so the std is sqrt(2 / fan_in)."""
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            # 0.8796... is the std of a standard normal truncated to [-2, 2].
            std = math.sqrt(2.0 / _fans(m.weight)[0]) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------
# Public API.


def build_model(
    arch: str,
    variant: str = "paper",
    in_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    dropout: float = 0.1,
    padding: Padding | str = Padding.TORCH,
) -> nn.Module:
    """A freshly initialised model (from the global torch RNG) returning logits.

    Args:
        arch, variant: one of `ARCHITECTURES` (e.g. "mediumcnn", "seed").
        in_shape: one example's shape, `(C, L)` for 1-D signals or `(C, H, W)` for images.
        num_classes: width of the final linear layer.
        dropout: rate of every dropout layer, in [0, 1); ignored by models without dropout
            (smallcnn paper, resnet20).
        padding: "torch" (symmetric) or "keras" (Keras' "same" on strided convolutions; only
            ResNet20 has any, the CNNs' convolutions all have stride 1).

    Returns:
        A module mapping `(batch, *in_shape)` to logits `(batch, num_classes)`. Flatten-based
        heads are sized for `in_shape`; other models accept any spatial size.
    """
    _check_names(arch, variant)
    try:
        shape = tuple(operator.index(n) for n in in_shape)
    except TypeError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ModescapeError(
            f"input shape must be (C, L) or (C, H, W) of positive integers; got {in_shape!r}"
        )
    if not (isinstance(num_classes, int) and num_classes >= 2):
        raise ModescapeError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ModescapeError(f"dropout must be in [0, 1); got {dropout}")
    if padding not in tuple(Padding):
        raise choice_error("padding", padding, [p.value for p in Padding])

    ndim, channels, spatial = len(shape) - 1, shape[0], shape[1:]
    if (arch, variant) == ("resnet20", "seed"):
        return _build_seed_resnet(ndim, channels, spatial, num_classes, Padding(padding))
    model = _BUILDERS[arch](
        ndim, channels, num_classes, dropout, variant == "paper", Padding(padding)
    )
    if isinstance(model, ConvNet):
        out = _check_spatial(arch, variant, spatial, model.features)
        if variant == "paper":  # flatten head: its width follows from the input's size
            flat = _last_conv(model.features).out_channels * math.prod(out)
            model.head = nn.Linear(flat, num_classes)

    if arch == "resnet20":
        _init_he_normal(model)
    elif variant == "paper":
        _init_glorot_all(model)
    else:
        _init_keras_default(model)
    return model


def _build_seed_resnet(
    ndim: int, channels: int, spatial: tuple[int, ...], num_classes: int, padding: Padding
) -> ResNet:
    cells = [_seed_resnet_cells(n) for n in spatial]
    if min(cells) < 1:
        raise ModescapeError(
            f"resnet20 (seed) needs inputs of at least {min_input_size('resnet20', 'seed')} "
            f"along every spatial axis to survive its pooling; got spatial shape {spatial}"
        )
    model = _resnet20_seed(ndim, channels, num_classes, padding)
    model.head = nn.Linear(model.neck[0].num_features * math.prod(cells), num_classes)
    _init_he_normal(model)
    return model


def _check_names(arch: str, variant: str) -> None:
    if arch not in ARCHITECTURES:
        raise choice_error("architecture", arch, tuple(ARCHITECTURES))
    if variant not in ARCHITECTURES[arch]:
        raise choice_error(f"{arch} variant", variant, ARCHITECTURES[arch])


def _last_conv(features: nn.Sequential) -> nn.Conv1d | nn.Conv2d:
    return [m for m in features if isinstance(m, nn.Conv1d | nn.Conv2d)][-1]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def min_input_size(arch: str, variant: str = "paper") -> int:
    """Smallest spatial size (per axis) that survives the model's pooling."""
    _check_names(arch, variant)
    if (arch, variant) == ("resnet20", "seed"):
        return next(n for n in range(1, 1 << 16) if _seed_resnet_cells(n) >= 1)
    if arch == "resnet20":
        return 1  # strided convs with padding 1 map 1 → 1
    with torch.random.fork_rng(devices=[]):
        features = _BUILDERS[arch](1, 1, 2, 0.0, variant == "paper", Padding.TORCH).features
    return next(n for n in range(1, 1 << 16) if size_after(n, features) >= 1)


def describe_models(in_shape: tuple[int, ...], num_classes: int) -> list[dict]:
    """One row per architecture and variant, for `modescape models --data X`.

    Returns `[{"arch", "variant", "params", "description"}]`; `params` is None (and the
    description says why) when the input is too small for that architecture. The global torch RNG
    is left as it was.
    """
    rows = []
    for arch, variants in ARCHITECTURES.items():
        for variant in variants:
            description = _DESCRIPTIONS[(arch, variant)]
            try:
                with torch.random.fork_rng(devices=[]):
                    params: int | None = count_parameters(
                        build_model(arch, variant, in_shape, num_classes)
                    )
            except ModescapeError as e:
                params, description = None, f"{description} [unavailable: {e}]"
            rows.append(
                {"arch": arch, "variant": variant, "params": params, "description": description}
            )
    return rows
