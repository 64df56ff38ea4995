"""Keras `.h5` models and checkpoints as PyTorch state dicts (the seed notebooks' snapshots).

The seed notebooks trained their SmallCNN, MediumCNN and ResNet20v1 in Keras and saved a `.h5` per
epoch (`small_cnn_checkpoint_{epoch}.h5`): a trajectory of snapshots. `load_keras_h5` turns one
such file into the state dict of the matching modescape architecture. Conversions:
- convolution kernels HWIO (Keras) → OIHW (PyTorch), 1-D: WIO → OIW;
- dense kernels (in, out) → (out, in); a dense layer right after a flatten of a feature map (the
  paper heads) also has its inputs reordered from Keras' (H, W, C) to PyTorch's (C, H, W);
- BatchNormalization gamma, beta, moving mean and variance → weight, bias, running_mean, _var;
- the final softmax is not a weight: modescape models return logits (softmax is in the loss).
Keras pads stride-2 "same" convolutions bottom/right, PyTorch symmetrically: build the model with
`padding="keras"` (`ModelConfig.arch_kwargs={"padding": "keras"}`) to compute the same function.

Layers are matched by kind (convolution by kernel size, dense, BatchNorm) in the file's order,
which is the model's topological order; a count or shape mismatch is a ModescapeError naming
the layer. Reading needs h5py (`pip install modescape[keras]`); TensorFlow is never needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from modescape.errors import ModescapeError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_BN_NAMES = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer with weights: `weights[short name]`, e.g. "kernel", "bias", "gamma"."""

    name: str
    weights: dict[str, np.ndarray]

    @property
    def kind(self) -> tuple[str, tuple[int, ...]]:
        """("conv", kernel spatial size) | ("dense", ()) | ("bn", ())."""
        w = self.weights
        if "kernel" in w and w["kernel"].ndim >= 3:
            return "conv", tuple(w["kernel"].shape[:-2])
        if "kernel" in w and w["kernel"].ndim == 2:
            return "dense", ()
        if "moving_mean" in w:
            return "bn", ()
        raise ModescapeError(
            f"Keras layer {self.name!r} has weights {sorted(w)}: only Conv1D/2D, Dense and "
            "BatchNormalization layers can be converted"
        )


def _short(name: str) -> str:
    """'conv2d_7/kernel:0' → 'kernel'."""
    return name.split("/")[-1].split(":")[0]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def read_keras_h5(path: str | Path) -> list[KerasLayer]:
    """The layers with weights of a Keras `.h5` file (`model.save` or `save_weights`), in order."""
    try:
        import h5py
    except ImportError as e:
        raise ModescapeError(
            "reading Keras .h5 files needs h5py: pip install 'modescape[keras]'"
        ) from e
    path = Path(path)
    if not path.is_file():
        raise ModescapeError(f"no such Keras file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModescapeError(f"{path} is not an HDF5 file ({e})") from e
    with f:
        group = f.get("model_weights", f)
        if "layer_names" not in group.attrs:
            raise ModescapeError(f"{path}: no Keras layer list (not a Keras model or weights file)")
        layers = []
        for lname in map(_text, group.attrs["layer_names"]):
            g = group[lname]
            names = [_text(n) for n in g.attrs.get("weight_names", [])]
            if names:
                layers.append(KerasLayer(lname, {_short(n): np.asarray(g[n]) for n in names}))
    return layers


def layers_of_keras_model(keras_model: Any) -> list[KerasLayer]:
    """The same list from a live `keras.Model` (for tests and notebooks with TensorFlow)."""
    return [
        KerasLayer(layer.name, {_short(w.name): np.asarray(w.numpy()) for w in layer.weights})
        for layer in keras_model.layers
        if layer.weights
    ]


def _torch_kind(module: nn.Module) -> tuple[str, tuple[int, ...]] | None:
    if isinstance(module, _CONVS):
        return "conv", tuple(module.kernel_size)
    if isinstance(module, nn.Linear):
        return "dense", ()
    if isinstance(module, _BNS):
        return "bn", ()
    return None


def keras_layers_to_state_dict(layers: list[KerasLayer], model: nn.Module) -> dict[str, Tensor]:
    """`model`'s state dict filled from Keras `layers` (matched by kind, in order).

    `model` gives the target names and shapes; it is not modified.
    """
    targets = [(n, m, k) for n, m in model.named_modules() if (k := _torch_kind(m)) is not None]
    groups: dict[tuple[str, tuple[int, ...]], list[KerasLayer]] = {}
    for layer in layers:
        groups.setdefault(layer.kind, []).append(layer)
    wanted: dict[tuple[str, tuple[int, ...]], int] = {}
    for _, _, kind in targets:
        wanted[kind] = wanted.get(kind, 0) + 1
    if {k: len(v) for k, v in groups.items()} != wanted:
        raise ModescapeError(
            f"the Keras model's layers do not match the architecture: Keras has "
            f"{_counts({k: len(v) for k, v in groups.items()})}, the model needs {_counts(wanted)}"
        )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    taken = {kind: iter(group) for kind, group in groups.items()}
    previous_channels: int | None = None
    for name, module, kind in targets:
        layer = next(taken[kind])
        for key, value in _convert(layer, module, previous_channels).items():
            full = f"{name}.{key}" if name else key
            if state[full].shape != value.shape:
                raise ModescapeError(
                    f"Keras layer {layer.name!r} → {full}: shape {tuple(value.shape)} does not "
                    f"fit {tuple(state[full].shape)}"
                )
            state[full] = value.to(state[full].dtype)
        if isinstance(module, _CONVS):
            previous_channels = module.out_channels
        elif isinstance(module, nn.Linear):
            previous_channels = None
    return state


def _counts(d: dict[tuple[str, tuple[int, ...]], int]) -> str:
    return ", ".join(
        f"{n} {kind}{'×'.join(map(str, k)) or ''}" for (kind, k), n in sorted(d.items())
    )


def _convert(
    layer: KerasLayer, module: nn.Module, previous_channels: int | None
) -> dict[str, Tensor]:
    w = layer.weights
    out: dict[str, Tensor] = {}
    if isinstance(module, _BNS):
        missing = sorted(set(_BN_NAMES) - set(w))
        if missing:  # Keras' center=False / scale=False: no such weights to load
            raise ModescapeError(f"Keras BatchNormalization {layer.name!r} lacks {missing}")
        return {_BN_NAMES[k]: torch.from_numpy(np.array(w[k])) for k in _BN_NAMES}
    kernel = np.asarray(w["kernel"])
    if isinstance(module, _CONVS):
        n = kernel.ndim  # (*k, in, out) → (out, in, *k)
        out["weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(n - 1, n - 2, *range(n - 2)))
        )
    else:
        k_in, k_out = kernel.shape
        if (
            previous_channels is not None
            and k_in != previous_channels
            and k_in % previous_channels == 0
        ):
            # A flattened feature map: Keras indexes (position, channel), PyTorch (channel,
            # position).
            kernel = kernel.reshape(k_in // previous_channels, previous_channels, k_out)
            kernel = kernel.transpose(1, 0, 2).reshape(k_in, k_out)
        out["weight"] = torch.from_numpy(np.ascontiguousarray(kernel.T))
    if "bias" in w:
        out["bias"] = torch.from_numpy(np.array(w["bias"]))
    return out


def _keras_target(
    arch: str, variant: str, in_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    from modescape.models.architectures import build_model

    with torch.random.fork_rng(devices=[]):
        return build_model(arch, variant, in_shape, num_classes, 0.0, padding="keras")


def load_keras_h5(
    path: str | Path,
    arch: str,
    variant: str = "seed",
    in_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
) -> dict[str, Tensor]:
    """State dict of the built-in `arch`/`variant` holding the weights of a Keras `.h5` file.

    `in_shape` is PyTorch's `(C, H, W)` or `(C, L)`. Load it into
    `build_model(arch, variant, in_shape, num_classes, padding="keras")`.
    """
    return keras_layers_to_state_dict(
        read_keras_h5(path), _keras_target(arch, variant, in_shape, num_classes)
    )


def keras_model_to_state_dict(
    keras_model: Any,
    arch: str,
    variant: str = "seed",
    in_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
) -> dict[str, Tensor]:
    """`load_keras_h5` for a live `keras.Model` (no file, no h5py)."""
    return keras_layers_to_state_dict(
        layers_of_keras_model(keras_model), _keras_target(arch, variant, in_shape, num_classes)
    )
