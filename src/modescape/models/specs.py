"""Permutation specs: which permutation acts on each axis of each state-dict entry.

- `permutation_spec(state, arch, variant)`: the built-in architectures, from their structure.
  SmallCNN / MediumCNN: one permutation per conv and hidden dense layer (the output channels);
  a flatten head (paper variants) sees the last conv's channels in blocks of H·W (channel-major).
  ResNet20v1: the residual stream carries one permutation per stage — the skip connections add
  the stream to every block's output, so all of them must be permuted alike; a projection
  shortcut (1×1 conv) starts the next stage's permutation. Each block's inner channels
  (conv1 → bn1 → conv2) have their own. The seed's bottleneck ResNet likewise, with two inner
  permutations per block (conv1 → bn1, conv2 → bn2), conv3 → bn3 writing the stream, and the
  classifier's BatchNorm (`neck.0`) on the last stream. BatchNorm weights, biases *and running
  statistics* are permuted with their channels.
- `spec_from_axes_to_perm(axes_to_perm, state)`: the dictionary format of the git-re-basin code
  (Ainsworth, Hayase & Srinivasa 2022) and its PyTorch ports.
- `modescape.models.autospec.auto_spec(model, probe)`: any plain network, from a torch.fx trace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from modescape.errors import ModescapeError, choice_error
from modescape.models.architectures import ARCHITECTURES

StateDict = Mapping[str, Tensor]


@dataclass(frozen=True)
class PermutationSpec:
    """`axes[key]`: the permutation name (or None) of each axis of `key`, in the shape `views[key]`
    (the tensor is reshaped to it while permuting; default its own shape). `sizes[p]`: units."""

    axes: dict[str, tuple[str | None, ...]]
    views: dict[str, tuple[int, ...]]
    sizes: dict[str, int]


def _convnet_spec(state: StateDict) -> PermutationSpec:
    """SmallCNN / MediumCNN: `features.<i>` convs, `neck.<i>` dense layers, then `head`."""
    layers = sorted(
        (k[: -len(".weight")] for k in state if re.fullmatch(r"features\.\d+\.weight", k)),
        key=lambda k: int(k.split(".")[1]),
    )
    layers += sorted(
        (k[: -len(".weight")] for k in state if re.fullmatch(r"neck\.\d+\.weight", k)),
        key=lambda k: int(k.split(".")[1]),
    )
    if not layers or "head.weight" not in state:
        raise ModescapeError("state dict does not look like a SmallCNN / MediumCNN")
    axes: dict[str, tuple[str | None, ...]] = {}
    views: dict[str, tuple[int, ...]] = {}
    sizes: dict[str, int] = {}
    prev: str | None = None
    for i, layer in enumerate([*layers, "head"]):
        w = state[f"{layer}.weight"]
        out = f"P{i}" if layer != "head" else None
        rest = (None,) * (w.dim() - 2)
        if prev is not None and w.dim() == 2 and w.shape[1] != sizes[prev]:
            # Linear after flatten: input index = channel · (H·W) + position (channel-major).
            views[f"{layer}.weight"] = (w.shape[0], sizes[prev], w.shape[1] // sizes[prev])
            rest = (None,)
        axes[f"{layer}.weight"] = (out, prev, *rest)
        if f"{layer}.bias" in state:
            axes[f"{layer}.bias"] = (out,)
        if out is not None:
            sizes[out] = w.shape[0]
        prev = out
    return PermutationSpec(axes, views, sizes)


def _resnet_spec(state: StateDict) -> PermutationSpec:
    """ResNet20v1: `stem.0` conv, `stem.1` BN, `blocks.<i>.{conv1,bn1,conv2,bn2,shortcut}`,
    `head`."""
    axes: dict[str, tuple[str | None, ...]] = {}
    sizes: dict[str, int] = {}

    def conv(name: str, out: str, inp: str | None) -> None:
        w = state[f"{name}.weight"]
        axes[f"{name}.weight"] = (out, inp, *(None,) * (w.dim() - 2))
        if f"{name}.bias" in state:
            axes[f"{name}.bias"] = (out,)
        sizes[out] = w.shape[0]

    def bn(name: str, p: str) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            axes[f"{name}.{suffix}"] = (p,)

    stage = 0
    stream = f"res{stage}"
    conv("stem.0", stream, None)
    bn("stem.1", stream)
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    for b in blocks:
        name = f"blocks.{b}"
        inner, out = f"{name}.inner", stream
        if f"{name}.shortcut.weight" in state:  # projection: a new stream (next stage)
            stage += 1
            out = f"res{stage}"
            conv(f"{name}.shortcut", out, stream)
        conv(f"{name}.conv1", inner, stream)
        bn(f"{name}.bn1", inner)
        conv(f"{name}.conv2", out, inner)
        bn(f"{name}.bn2", out)
        stream = out
    axes["head.weight"] = (None, stream)
    axes["head.bias"] = (None,)
    return PermutationSpec(axes, {}, sizes)


def _bottleneck_spec(state: StateDict) -> PermutationSpec:
    """The seed's ResNet: `stem`, `blocks.<i>.{conv1,bn1,conv2,bn2,conv3,bn3[,shortcut]}`,
    `neck.0` (BatchNorm), `head` (after a 1×1 pooled map: one position per channel)."""
    axes: dict[str, tuple[str | None, ...]] = {}
    views: dict[str, tuple[int, ...]] = {}
    sizes: dict[str, int] = {}

    def conv(name: str, out: str, inp: str | None, bn: str | None = None) -> None:
        w = state[f"{name}.weight"]
        axes[f"{name}.weight"] = (out, inp, *(None,) * (w.dim() - 2))
        axes[f"{name}.bias"] = (out,)
        sizes[out] = w.shape[0]
        if bn is not None:
            for suffix in ("weight", "bias", "running_mean", "running_var"):
                axes[f"{bn}.{suffix}"] = (out,)

    stage, stream = 0, "res0"
    conv("stem.0", stream, None, "stem.1")
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    for b in blocks:
        name, out = f"blocks.{b}", stream
        if f"{name}.shortcut.weight" in state:  # projection: a new stream (next stage)
            stage += 1
            out = f"res{stage}"
            conv(f"{name}.shortcut", out, stream)
        conv(f"{name}.conv1", f"{name}.a", stream, f"{name}.bn1")
        conv(f"{name}.conv2", f"{name}.b", f"{name}.a", f"{name}.bn2")
        conv(f"{name}.conv3", out, f"{name}.b", f"{name}.bn3")
        stream = out
    for suffix in ("weight", "bias", "running_mean", "running_var"):
        axes[f"neck.0.{suffix}"] = (stream,)
    head = state["head.weight"]
    if head.shape[1] != sizes[stream]:  # a flatten of several pooled positions, channel-major
        views["head.weight"] = (head.shape[0], sizes[stream], head.shape[1] // sizes[stream])
        axes["head.weight"] = (None, stream, None)
    else:
        axes["head.weight"] = (None, stream)
    axes["head.bias"] = (None,)
    return PermutationSpec(axes, views, sizes)


def permutation_spec(state: StateDict, arch: str, variant: str = "paper") -> PermutationSpec:
    """The permutation spec of a `modescape.models.architectures` network, from its state dict."""
    if arch not in ARCHITECTURES:
        raise choice_error("architecture", arch, tuple(ARCHITECTURES))
    if variant not in ARCHITECTURES[arch]:
        raise choice_error(f"{arch} variant", variant, ARCHITECTURES[arch])
    if arch == "resnet20":
        return _bottleneck_spec(state) if variant == "seed" else _resnet_spec(state)
    return _convnet_spec(state)


def spec_from_axes_to_perm(axes_to_perm: Any, state: StateDict) -> PermutationSpec:
    """A `PermutationSpec` from git-re-basin's `axes_to_perm` (Ainsworth et al.'s code, and its
    PyTorch ports): `{param_name: (perm_name or None, one per axis)}`, or an object with an
    `axes_to_perm` attribute (their `PermutationSpec` namedtuple). Sizes come from `state`."""
    axes_to_perm = getattr(axes_to_perm, "axes_to_perm", axes_to_perm)
    if not isinstance(axes_to_perm, Mapping):
        raise ModescapeError(
            "spec must be a PermutationSpec or an axes_to_perm dict, got "
            f"{type(axes_to_perm).__name__}"
        )
    axes: dict[str, tuple[str | None, ...]] = {}
    sizes: dict[str, int] = {}
    for key, perms in axes_to_perm.items():
        if key not in state:
            raise ModescapeError(f"axes_to_perm names {key!r}, which the state dict does not hold")
        shape = tuple(state[key].shape)
        perms = tuple(perms)
        if len(perms) != len(shape):
            raise ModescapeError(
                f"axes_to_perm[{key!r}] has {len(perms)} axes; the tensor has {len(shape)}"
            )
        for axis, p in enumerate(perms):
            if p is not None and sizes.setdefault(str(p), shape[axis]) != shape[axis]:
                raise ModescapeError(
                    f"permutation {p!r} has {sizes[str(p)]} units but {key!r} axis {axis} has "
                    f"{shape[axis]}"
                )
        axes[key] = tuple(None if p is None else str(p) for p in perms)
    return PermutationSpec(axes, {}, sizes)
