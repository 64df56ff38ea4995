"""Keras models and checkpoints as PyTorch state dicts (the seed notebooks' snapshots).

The seed notebooks trained their SmallCNN, MediumCNN and ResNet20v1 in Keras and saved a `.h5` per
epoch (`small_cnn_checkpoint_{epoch}.h5`): a trajectory of snapshots. `load_keras` turns one such
file into the state dict of a modescape architecture (a built-in or any registered factory).
Files read (`read_keras`):
- `.h5` written by `model.save` (the legacy HDF5 format: weights and the model's config, hence
  its graph) or by the legacy `save_weights` (weights only);
- Keras 3 `.keras` archives (`config.json` + `model.weights.h5`) and `.weights.h5` files (weights
  only; the graph can be given as the model's config, `keras_config`: a `.keras`, a `model.save`
  `.h5` or the JSON of `model.to_json()`).
Conversions:
- convolution kernels HWIO (Keras) → OIHW (PyTorch), 1-D: WIO → OIW;
- dense kernels (in, out) → (out, in); a dense layer right after a flatten of a feature map (the
  paper heads) also has its inputs reordered from Keras' (H, W, C) to PyTorch's (C, H, W);
- BatchNormalization gamma, beta, moving mean and variance → weight, bias, running_mean, _var;
- the final softmax is not a weight: modescape models return logits (softmax is in the loss).
Keras pads stride-2 "same" convolutions bottom/right, PyTorch symmetrically: build the model with
`padding="keras"` (`ModelConfig.arch_kwargs={"padding": "keras"}`) to compute the same function.

Matching (`keras_layers_to_state_dict`): a Keras layer and a PyTorch module are candidates when
they have the same kind and weight shape; among candidates, both sides are ordered by their
depth in the graph (the most weighted layers on any path from the input), so two layers of equal
shape in different branches -- the seed ResNet's last 1×1 conv of a projection block and its
1×1 shortcut -- are told apart by where they sit, not by the order the file lists them in. The
PyTorch depths come from one traced forward pass. A weights-only file has no graph: it is read
in the file's order, and refused where the model branches and two layers share a shape.
Reading needs h5py (`pip install modescape[keras]`); TensorFlow is never needed.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from modescape.errors import ModescapeError

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_BN_NAMES = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
Key = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer with weights: `weights[short name]`, e.g. "kernel", "bias", "gamma"."""

    name: str
    weights: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        """ "conv" | "dense" | "bn"."""
        w = self.weights
        if "kernel" in w and w["kernel"].ndim >= 3:
            return "conv"
        if "kernel" in w and w["kernel"].ndim == 2:
            return "dense"
        if "moving_mean" in w:
            return "bn"
        raise ModescapeError(
            f"Keras layer {self.name!r} has weights {sorted(w)}: only Conv1D/2D, Dense and "
            "BatchNormalization layers can be converted"
        )

    @property
    def key(self) -> Key:
        """(kind, Keras shape of the main weight): what a PyTorch module must match."""
        w = self.weights
        main = w["kernel"] if "kernel" in w else w["moving_mean"]
        return self.kind, tuple(main.shape)


@dataclass(frozen=True)
class KerasFile:
    """The layers with weights of a Keras file, in the file's order, and its graph: for every
    layer name, the names of the layers feeding it (None when the file holds weights only)."""

    layers: list[KerasLayer]
    graph: dict[str, list[str]] | None


def _short(name: str) -> str:
    """'conv2d_7/kernel:0' → 'kernel'."""
    return name.split("/")[-1].split(":")[0]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ModescapeError(
            "reading Keras .h5 files needs h5py: pip install 'modescape[keras]'"
        ) from e
    return h5py


def read_keras(path: str | Path, keras_config: str | Path | None = None) -> KerasFile:
    """The layers and graph of a Keras `.h5`, `.keras` or `.weights.h5` file.

    `keras_config` gives the graph of a weights-only file: a `.keras` archive, a `model.save`
    `.h5`, or a JSON file holding the model's config (`model.to_json()`).
    """
    path = Path(path)
    if not path.is_file():
        raise ModescapeError(f"no such Keras file: {path}")
    config = _config_from(Path(keras_config)) if keras_config is not None else None
    if zipfile.is_zipfile(path):
        own, weights = _read_archive(path)
        return _read_h5(io.BytesIO(weights), path, config or own)
    return _read_h5(path, path, config)


def read_keras_h5(path: str | Path) -> list[KerasLayer]:
    """The layers with weights of a Keras file, in the file's order."""
    return read_keras(path).layers


def _read_archive(path: Path) -> tuple[dict[str, Any], bytes]:
    """(config, bytes of model.weights.h5) of a Keras 3 `.keras` zip archive."""
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
            weights = z.read("model.weights.h5")
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModescapeError(f"{path} is not a Keras .keras archive ({e})") from None
    return config, weights


def _config_from(path: Path) -> dict[str, Any]:
    """A model config from a `.keras` archive, a `model.save` `.h5` or a JSON file."""
    if not path.is_file():
        raise ModescapeError(f"no such Keras config file: {path}")
    if zipfile.is_zipfile(path):
        return _read_archive(path)[0]
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            if "model_config" in f.attrs:
                return json.loads(_text(f.attrs["model_config"]))
    except OSError:
        pass
    raise ModescapeError(
        f"{path} holds no Keras model config (a .keras archive, a model.save .h5 or the JSON of "
        "model.to_json() is needed)"
    )


def _read_h5(source: Any, path: Path, config: dict[str, Any] | None) -> KerasFile:
    h5py = _h5py()
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        raise ModescapeError(f"{path} is not an HDF5 file ({e})") from None
    with f:
        group = f.get("model_weights", f)
        if "layer_names" in group.attrs:  # legacy HDF5: model.save(".h5") or save_weights
            layers = []
            for lname in map(_text, group.attrs["layer_names"]):
                g = group[lname]
                names = [_text(n) for n in g.attrs.get("weight_names", [])]
                if names:
                    layers.append(KerasLayer(lname, {_short(n): np.asarray(g[n]) for n in names}))
            if config is None and "model_config" in f.attrs:
                config = json.loads(_text(f.attrs["model_config"]))
            return KerasFile(layers, _graph(config) if config else None)
        if isinstance(f.get("layers"), h5py.Group):  # Keras 3 weights (.weights.h5, .keras)
            return _read_v3(f["layers"], path, config)
    raise ModescapeError(f"{path}: no Keras layer list (not a Keras model or weights file)")


def _snake(name: str) -> str:
    """Keras' `to_snake_case`: the stem of the names a Keras 3 weights file stores layers under."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _natural(name: str) -> tuple[str, int]:
    stem, _, n = name.rpartition("_")
    return (stem, int(n)) if n.isdigit() and stem else (name, 0)


def _read_v3(layers_group: Any, path: Path, config: dict[str, Any] | None) -> KerasFile:
    """Keras 3 weights: `layers/<class>_<k>/vars/<i>`, where `<class>_<k>` is the k-th layer of
    that class in `model.layers` (not the layer's name); the config names them and gives the
    variables' meaning."""
    stored = {
        name: [np.asarray(g["vars"][str(i)]) for i in range(len(g["vars"]))]
        for name, g in layers_group.items()
        if "vars" in g and len(g["vars"])
    }
    if config is None:
        order = sorted(stored, key=_natural)
        layers = [KerasLayer(n, _v3_names(None, stored[n], n, path)) for n in order]
        return KerasFile(layers, None)
    counts: dict[str, int] = {}
    layers = []
    for entry in _config_layers(config):
        stem = _snake(entry.get("class_name", ""))
        k = counts[stem] = counts.get(stem, -1) + 1
        key = stem if k == 0 else f"{stem}_{k}"
        if key in stored:
            name = entry.get("name") or entry.get("config", {}).get("name", key)
            layers.append(KerasLayer(name, _v3_names(entry, stored.pop(key), name, path)))
    if stored:
        raise ModescapeError(
            f"{path}: weights {sorted(stored)[:3]} are not layers of the given Keras config"
        )
    return KerasFile(layers, _graph(config))


def _v3_names(
    entry: dict[str, Any] | None, values: list[np.ndarray], name: str, path: Path
) -> dict[str, np.ndarray]:
    """Names for a Keras 3 layer's variables (stored by index only)."""
    cls = (entry or {}).get("class_name", "")
    cfg = (entry or {}).get("config", {})
    if cls == "BatchNormalization" or (not cls and len(values) == 4 and values[0].ndim == 1):
        names = [n for n, on in (("gamma", cfg.get("scale", True)),
                                 ("beta", cfg.get("center", True))) if on]  # fmt: skip
        names += ["moving_mean", "moving_variance"]
    elif values and values[0].ndim >= 2:
        names = ["kernel", "bias"]
    else:
        names = []
    if len(names) < len(values) or not names:
        raise ModescapeError(
            f"{path}: Keras layer {name!r} ({cls or 'unknown class'}) holds {len(values)} "
            "variables: only Conv1D/2D, Dense and BatchNormalization layers can be converted"
        )
    return dict(zip(names, values, strict=False))


def _config_layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    inner = config.get("config", config)
    layers = inner.get("layers") if isinstance(inner, dict) else inner
    if not isinstance(layers, list):
        raise ModescapeError("the Keras model config lists no layers")
    return layers


def _graph(config: dict[str, Any]) -> dict[str, list[str]]:
    """{layer name: names of its input layers} of a Functional or Sequential config."""
    graph: dict[str, list[str]] = {}
    previous: list[str] = []
    for entry in _config_layers(config):
        name = entry.get("name") or entry.get("config", {}).get("name")
        if "inbound_nodes" in entry:  # Functional
            graph[name] = _inbound(entry["inbound_nodes"])
        else:  # Sequential: a chain
            graph[name] = previous
        previous = [name]
    return graph


def _inbound(nodes: Any) -> list[str]:
    """Layer names in Keras 3 (`keras_history`) or Keras 2 (`[name, node, tensor, kwargs]`)
    inbound node lists."""
    found: list[str] = []
    if isinstance(nodes, dict):
        if "keras_history" in nodes:
            found.append(str(nodes["keras_history"][0]))
        else:
            for v in nodes.values():
                found += _inbound(v)
    elif isinstance(nodes, (list, tuple)):  # tuples in a live model's get_config()
        if len(nodes) >= 3 and isinstance(nodes[0], str) and isinstance(nodes[1], int):
            found.append(nodes[0])
        else:
            for v in nodes:
                found += _inbound(v)
    return found


def _keras_depths(file: KerasFile) -> dict[str, int] | None:
    """Per weighted layer: the most weighted layers on a path from the input, itself included."""
    if file.graph is None:
        return None
    weighted = {layer.name for layer in file.layers}
    depth: dict[str, int] = {}
    for name in file.graph:  # configs list layers after their inputs
        parents = [depth.get(p, 0) for p in file.graph[name]]
        depth[name] = max(parents, default=0) + (name in weighted)
    missing = weighted - set(depth)
    if missing:
        raise ModescapeError(f"the Keras config has no layer {sorted(missing)[0]!r}")
    return {n: depth[n] for n in weighted}


def layers_of_keras_model(keras_model: Any) -> KerasFile:
    """The same from a live `keras.Model` (for tests and notebooks with TensorFlow)."""
    layers = [
        KerasLayer(layer.name, {_short(w.name): np.asarray(w.numpy()) for w in layer.weights})
        for layer in keras_model.layers
        if layer.weights
    ]
    return KerasFile(layers, _graph(keras_model.get_config()))


# ----------------------------------------------------------------------------------------------
# The PyTorch side: weighted modules, their Keras-shaped keys and depths.


def _torch_key(module: nn.Module) -> Key | None:
    if isinstance(module, _CONVS):
        w = module.weight
        return "conv", (*w.shape[2:], w.shape[1], w.shape[0])
    if isinstance(module, nn.Linear):
        return "dense", (module.in_features, module.out_features)
    if isinstance(module, _BNS):
        return "bn", (module.num_features,)
    return None


class _DepthTrace(TorchFunctionMode):
    """Follows one forward pass: every tensor's depth (weighted modules passed), and whether two
    traced tensors ever meet in one operation (a branching graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth: dict[int, tuple[int, Tensor]] = {}  # id → (depth, tensor kept alive)
        self.branches = False

    def of(self, *values: Any) -> list[int]:
        return [self.depth[id(t)][0] for t in _tensors(values) if id(t) in self.depth]

    def set(self, values: Any, depth: int) -> None:
        for t in _tensors(values):
            self.depth[id(t)] = (depth, t)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        ins = {id(t) for t in _tensors((args, kwargs)) if id(t) in self.depth}
        if ins:
            self.branches |= len(ins) > 1
            self.set(out, max(self.depth[i][0] for i in ins))
        return out


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def torch_depths(model: nn.Module, in_shape: tuple[int, ...]) -> tuple[dict[str, int], bool]:
    """({weighted module name: depth}, branches) from one forward pass of a zero input in eval
    mode (the model's mode and the global RNG are restored)."""
    trace, depths, hooks = _DepthTrace(), {}, []

    def hook(name: str) -> Any:
        def after(module: nn.Module, args: Any, output: Any) -> None:
            d = max(trace.of(args), default=0) + 1
            depths[name] = max(depths.get(name, 0), d)
            trace.set(output, d)

        return after

    for name, m in model.named_modules():
        if _torch_key(m) is not None:
            hooks.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    x = torch.zeros(1, *in_shape)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), trace:
            trace.set(x, 0)
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return depths, trace.branches


# ----------------------------------------------------------------------------------------------
# Matching and conversion.


def keras_layers_to_state_dict(
    keras: KerasFile | list[KerasLayer], model: nn.Module, in_shape: tuple[int, ...]
) -> dict[str, Tensor]:
    """`model`'s state dict filled from the Keras layers (see the module docstring).

    `in_shape` is one example's PyTorch shape, `(C, L)` or `(C, H, W)`, for the traced pass.
    `model` gives the target names and shapes; it is not modified.
    """
    file = keras if isinstance(keras, KerasFile) else KerasFile(list(keras), None)
    targets = [(n, m, k) for n, m in model.named_modules() if (k := _torch_key(m)) is not None]
    groups: dict[Key, list[KerasLayer]] = {}
    for layer in file.layers:
        groups.setdefault(layer.key, []).append(layer)
    wanted: dict[Key, list[tuple[str, nn.Module]]] = {}
    for name, m, key in targets:
        wanted.setdefault(key, []).append((name, m))
    have = {k: len(v) for k, v in groups.items()}
    if have != {k: len(v) for k, v in wanted.items()}:
        raise ModescapeError(
            "the Keras model's layers do not match the architecture: "
            + _difference(have, {k: len(v) for k, v in wanted.items()})
        )
    t_depth, branches = torch_depths(model, in_shape)
    k_depth = _keras_depths(file)
    pairs: list[tuple[KerasLayer, str, nn.Module]] = []
    for key, mods in wanted.items():
        ks = groups[key]
        if len(ks) > 1 and k_depth is None and branches:
            raise ModescapeError(
                f"Keras layers {ks[0].name!r} and {ks[1].name!r} have the same shape and the "
                "model branches, but the file holds weights only: give the model's graph "
                "(a .keras or model.save .h5 file, or model.to_json(), as the Keras config)"
            )
        if k_depth is not None:
            ks = sorted(ks, key=lambda layer: k_depth[layer.name])  # stable: file order on ties
            mods = sorted(mods, key=lambda nm: t_depth.get(nm[0], 0))
            _check_depths(ks, mods, k_depth, t_depth)
        pairs += [(k, n, m) for k, (n, m) in zip(ks, mods, strict=True)]
    return _fill(pairs, targets, model)


def _check_depths(
    ks: list[KerasLayer],
    mods: list[tuple[str, nn.Module]],
    k_depth: dict[str, int],
    t_depth: dict[str, int],
) -> None:
    """Equal-shape layers must sit at the same depths on both sides, or the graphs differ."""
    for k, (n, _) in zip(ks, mods, strict=True):
        if len(ks) > 1 and k_depth[k.name] != t_depth.get(n, 0):
            raise ModescapeError(
                f"the Keras graph does not match the architecture: layer {k.name!r} sits "
                f"{k_depth[k.name]} weighted layers deep, {n} {t_depth.get(n, 0)}"
            )


def _fill(
    pairs: list[tuple[KerasLayer, str, nn.Module]],
    targets: list[tuple[str, nn.Module, Key]],
    model: nn.Module,
) -> dict[str, Tensor]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # The flatten reorder needs the channels of the conv before a dense layer, in model order.
    previous: dict[str, int | None] = {}
    channels: int | None = None
    for name, m, _ in targets:
        previous[name] = channels
        if isinstance(m, _CONVS):
            channels = m.out_channels
        elif isinstance(m, nn.Linear):
            channels = None
    for layer, name, module in pairs:
        for key, value in _convert(layer, module, previous[name]).items():
            full = f"{name}.{key}" if name else key
            if state[full].shape != value.shape:
                raise ModescapeError(
                    f"Keras layer {layer.name!r} → {full}: shape {tuple(value.shape)} does not "
                    f"fit {tuple(state[full].shape)}"
                )
            state[full] = value.to(state[full].dtype)
    return state


def _difference(have: dict[Key, int], want: dict[Key, int]) -> str:
    def fmt(k: Key) -> str:
        return f"{k[0]} {'×'.join(map(str, k[1]))}"

    extra = [f"{fmt(k)} ×{n - want.get(k, 0)}" for k, n in sorted(have.items())
             if n > want.get(k, 0)]  # fmt: skip
    short = [f"{fmt(k)} ×{n - have.get(k, 0)}" for k, n in sorted(want.items())
             if n > have.get(k, 0)]  # fmt: skip
    return (
        f"Keras has {sum(have.values())} weighted layers, the model {sum(want.values())}; "
        f"only in Keras: {', '.join(extra[:4]) or 'none'}; "
        f"only in the model: {', '.join(short[:4]) or 'none'}"
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


def load_keras(
    path: str | Path,
    model: nn.Module,
    in_shape: tuple[int, ...],
    keras_config: str | Path | None = None,
) -> dict[str, Tensor]:
    """State dict of `model` (any architecture: a built-in or a registered factory's network)
    holding the weights of a Keras file; `in_shape` is PyTorch's `(C, H, W)` or `(C, L)`."""
    return keras_layers_to_state_dict(read_keras(path, keras_config), model, in_shape)


def load_keras_h5(
    path: str | Path,
    arch: str,
    variant: str = "seed",
    in_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
) -> dict[str, Tensor]:
    """State dict of the built-in `arch`/`variant` holding the weights of a Keras file.

    Load it into `build_model(arch, variant, in_shape, num_classes, padding="keras")`.
    """
    return load_keras(path, _keras_target(arch, variant, in_shape, num_classes), in_shape)


def keras_model_to_state_dict(
    keras_model: Any,
    arch: str,
    variant: str = "seed",
    in_shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
) -> dict[str, Tensor]:
    """`load_keras_h5` for a live `keras.Model` (no file, no h5py)."""
    return keras_layers_to_state_dict(
        layers_of_keras_model(keras_model),
        _keras_target(arch, variant, in_shape, num_classes),
        in_shape,
    )
