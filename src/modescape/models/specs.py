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
- `spec_to_json` / `spec_from_json`: the spec file (`modescape landscape --align-spec FILE`,
  written by `modescape align-spec`), a versioned JSON document checked against the checkpoint.

A concatenation along the channels (DenseNet's `torch.cat([x, f(x)], 1)`) splits an axis into
segments, each with its own permutation: `concats[c]` lists them, and `c` names the whole axis in
`axes` like any permutation (its permutation is the parts' side by side, each within its
segment). Only the parts are solved for.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
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
    # `concats[c]`: ((part permutation, or None for a segment kept in place; units), ...)
    concats: dict[str, tuple[tuple[str | None, int], ...]] = field(default_factory=dict)

    def size(self, name: str) -> int:
        """Units of a permutation or of a concatenation (the sum of its segments)."""
        if name in self.concats:
            return sum(n for _, n in self.concats[name])
        return self.sizes[name]

    def expand(self, perms: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """`perms` plus each concatenation's permutation: its parts', offset into their
        segments (a segment without a part stays in place)."""
        out = dict(perms)
        for c, parts in self.concats.items():
            pieces, offset = [], 0
            for p, n in parts:
                pieces.append((perms[p] if p is not None else torch.arange(n)) + offset)
                offset += n
            out[c] = torch.cat(pieces)
        return out

    def segments(self, name: str) -> list[tuple[str, int, int]]:
        """Where permutation `name` acts on an axis labelled `name` or a concatenation:
        [(label, offset, units)], the axis labels in `axes` that carry it."""
        found = [(name, 0, self.sizes[name])]
        for c, parts in self.concats.items():
            offset = 0
            for p, n in parts:
                if p == name:
                    found.append((c, offset, n))
                offset += n
        return found


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


# ---- the spec file ------------------------------------------------------------------------------
SPEC_FORMAT = "modescape.permutation-spec"
SPEC_VERSIONS = (1,)
_SPEC_KEYS = ("format", "version", "permutations", "concatenations", "parameters", "views")


def spec_to_json(spec: PermutationSpec) -> dict[str, Any]:
    """The spec file's document (version 1):

        {"format": "modescape.permutation-spec", "version": 1,
         "permutations": {"P0": 16, ...},                  # name: units
         "concatenations": {"C0": [["P0", 8], [null, 4]]},  # name: [[part or null, units], ...]
         "parameters": {"features.0.weight": ["P0", null, null, null], ...},  # one per axis
         "views": {"head.weight": [10, 16, 25]}}            # reshape before permuting

    `parameters` names every state-dict entry that is permuted and the permutation (or
    concatenation, or null) of each axis; `views` reshapes an entry (row-major) first, so that
    blocks of features permute together: a flatten head `[out, C·H·W]` as `[out, C, H·W]`,
    attention heads `[3·E, E]` as `[3, heads, E/heads, E]` with the heads' permutation on axis 1.
    """
    doc: dict[str, Any] = {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSIONS[-1],
        "permutations": dict(spec.sizes),
    }
    if spec.concats:
        doc["concatenations"] = {c: [[p, n] for p, n in parts] for c, parts in spec.concats.items()}
    doc["parameters"] = {k: list(axes) for k, axes in spec.axes.items()}
    if spec.views:
        doc["views"] = {k: list(v) for k, v in spec.views.items()}
    return doc


def spec_from_json(doc: Any, state: StateDict, source: str = "spec file") -> PermutationSpec:
    """The `PermutationSpec` a spec file's document describes, checked against `state` (the
    checkpoint it will permute): one ModescapeError, prefixed by `source`, naming the problem
    and what is allowed."""

    def fail(problem: str) -> ModescapeError:
        return ModescapeError(f"{source}: {problem}")

    if not isinstance(doc, dict):
        raise fail(f"expected a JSON object with the keys {', '.join(_SPEC_KEYS)}")
    unknown = sorted(set(doc) - set(_SPEC_KEYS))
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(_SPEC_KEYS)})")
    if doc.get("format") != SPEC_FORMAT:
        raise fail(f"'format' must be {SPEC_FORMAT!r}, got {doc.get('format')!r}")
    if doc.get("version") not in SPEC_VERSIONS:
        allowed = ", ".join(map(str, SPEC_VERSIONS))
        raise fail(f"unsupported version {doc.get('version')!r} (allowed: {allowed})")
    sizes = _name_counts(doc.get("permutations"), "permutations", fail)
    concats = _spec_concats(doc.get("concatenations", {}), sizes, fail)
    spec = PermutationSpec({}, {}, sizes, concats)
    params, views = doc.get("parameters"), doc.get("views", {})
    if not isinstance(params, dict) or not params:
        raise fail("'parameters' must map state-dict entries to one permutation (or null) per axis")
    if not isinstance(views, dict):
        raise fail("'views' must map parameters to a shape")
    for key in [*params, *views]:
        if key not in state:
            raise fail(f"parameter {key!r} is not in the checkpoint ({_some_keys(state, key)})")
    for key in views:
        if key not in params:
            raise fail(f"views[{key!r}]: the parameter is not listed in 'parameters'")
    for key, axes in params.items():
        spec.axes[key], view = _spec_axes(key, axes, views.get(key), state[key], spec, fail)
        if view is not None:
            spec.views[key] = view
    return spec


def _name_counts(obj: Any, what: str, fail: Any) -> dict[str, int]:
    if not isinstance(obj, dict) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in obj.values()
    ):
        raise fail(f"'{what}' must map names to their number of units (integers > 0)")
    return {str(k): int(n) for k, n in obj.items()}


def _spec_concats(
    obj: Any, sizes: dict[str, int], fail: Any
) -> dict[str, tuple[tuple[str | None, int], ...]]:
    if not isinstance(obj, dict):
        raise fail("'concatenations' must map names to [[permutation or null, units], ...]")
    concats = {}
    for c, parts in obj.items():
        if c in sizes:
            raise fail(f"concatenation {c!r} has the name of a permutation")
        ok = isinstance(parts, list) and parts and all(
            isinstance(s, list) and len(s) == 2 and isinstance(s[1], int) and s[1] > 0
            for s in parts
        )  # fmt: skip
        if not ok:
            raise fail(f"concatenations[{c!r}] must be [[permutation or null, units], ...]")
        for p, n in parts:
            if p is not None and p not in sizes:
                raise fail(f"concatenations[{c!r}] names {p!r}, not one of 'permutations' "
                           f"({', '.join(sizes) or 'none'})")  # fmt: skip
            if p is not None and sizes[p] != n:
                raise fail(f"concatenations[{c!r}]: {p!r} has {sizes[p]} units, not {n}")
        concats[str(c)] = tuple((None if p is None else str(p), int(n)) for p, n in parts)
    return concats


def _spec_axes(
    key: str, axes: Any, view: Any, tensor: Tensor, spec: PermutationSpec, fail: Any
) -> tuple[tuple[str | None, ...], tuple[int, ...] | None]:
    shape = tuple(tensor.shape)
    if view is not None:
        if not (isinstance(view, list) and all(isinstance(d, int) and d > 0 for d in view)):
            raise fail(f"views[{key!r}] must be a list of positive integers")
        if math.prod(view) != tensor.numel():
            raise fail(f"views[{key!r}] {view} holds {math.prod(view)} values; {key!r} has shape "
                       f"{list(shape)} ({tensor.numel()} values)")  # fmt: skip
        shape = tuple(view)
    if not isinstance(axes, list) or len(axes) != len(shape):
        raise fail(f"parameters[{key!r}] must list one permutation or null for each of its "
                   f"{len(shape)} axes (shape {list(shape)}), got {axes!r}")  # fmt: skip
    known = [*spec.sizes, *spec.concats]
    for axis, p in enumerate(axes):
        if p is None:
            continue
        if p not in known:
            raise fail(f"parameters[{key!r}] axis {axis}: unknown permutation {p!r} "
                       f"(allowed: {', '.join(known) or 'none'}, or null)")  # fmt: skip
        if spec.size(p) != shape[axis]:
            raise fail(f"parameters[{key!r}] axis {axis} has {shape[axis]} units in the "
                       f"checkpoint, but {p!r} has {spec.size(p)}")  # fmt: skip
    return tuple(axes), (tuple(view) if view is not None else None)


def _some_keys(state: StateDict, key: str) -> str:
    close = difflib.get_close_matches(key, list(state), n=3)
    if close:
        return "did you mean " + ", ".join(close) + "?"
    return f"it holds {len(state)} entries, e.g. " + ", ".join(list(state)[:3])


def spec_json_text(spec: PermutationSpec) -> str:
    """The spec file's text: `spec_to_json`, one parameter (permutation, view) per line, to be
    read and edited by hand."""
    parts = []
    for key, value in spec_to_json(spec).items():
        if isinstance(value, dict):
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
