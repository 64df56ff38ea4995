"""Permutation alignment by weight matching (Ainsworth, Hayase & Srinivasa 2022, "Git Re-Basin").

Hidden units of a network can be permuted without changing its function. Two independently
trained networks A and B may therefore be farther apart in weight space than they need be;
`align(A, B)` returns B with its hidden units permuted to match A's as closely as possible, a
network computing exactly the same function as B. (Beyond the paper: it asks whether the
independent modes are still separate once this symmetry is removed.)

Weight matching maximises Σ_layers ⟨W_A, P_out W_B P_inᵀ⟩ over the permutations. It is solved one
permutation at a time — a linear assignment (`scipy.optimize.linear_sum_assignment`) with all other
permutations held fixed — visiting the permutations in random order, until a full sweep no longer
improves the objective.

A *permutation spec* maps every state-dict entry to the permutation acting on each of its axes.
Specs are derived from the structure of `modescape.models.architectures`:
- SmallCNN / MediumCNN: one permutation per conv and hidden dense layer (the output channels);
  a flatten head (paper variants) sees the last conv's channels in blocks of H·W (channel-major).
- ResNet20v1: the residual stream carries one permutation per stage — the skip connections add
  the stream to every block's output, so all of them must be permuted alike; a projection
  shortcut (1×1 conv) starts the next stage's permutation. Each block's inner channels
  (conv1 → bn1 → conv2) have their own. BatchNorm weights, biases *and running statistics* are
  permuted with their channels.
The objective uses parameters only (running statistics are not weights).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
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


def permutation_spec(state: StateDict, arch: str, variant: str = "paper") -> PermutationSpec:
    """The permutation spec of a `modescape.models.architectures` network, from its state dict."""
    if arch not in ARCHITECTURES:
        raise choice_error("architecture", arch, tuple(ARCHITECTURES))
    if variant not in ARCHITECTURES[arch]:
        raise choice_error(f"{arch} variant", variant, ARCHITECTURES[arch])
    return _resnet_spec(state) if arch == "resnet20" else _convnet_spec(state)


def _permuted(
    spec: PermutationSpec,
    key: str,
    t: Tensor,
    perms: Mapping[str, Tensor],
    except_axis: int | None = None,
) -> Tensor:
    """`t` with every axis except `except_axis` permuted, in its spec view shape."""
    t = t.reshape(spec.views.get(key, t.shape))
    for axis, p in enumerate(spec.axes[key]):
        if p is not None and axis != except_axis:
            t = t.index_select(axis, perms[p])
    return t


def apply_permutation(
    state: StateDict, spec: PermutationSpec, perms: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """A new state dict with `perms[p]` (new position i ← old unit perms[p][i]) applied."""
    out = {}
    for key, t in state.items():
        out[key] = (
            _permuted(spec, key, t, perms).reshape(t.shape) if key in spec.axes else t.clone()
        )
    return out


def weight_matching(
    state_a: StateDict,
    state_b: StateDict,
    spec: PermutationSpec,
    *,
    seed: int = 0,
    max_sweeps: int = 100,
) -> dict[str, Tensor]:
    """Permutations `{name: int64[n]}` maximising Σ⟨A, permuted B⟩ over parameters."""
    rng = np.random.default_rng(seed)
    params = [k for k in spec.axes if "running_" not in k]
    a = {
        k: state_a[k].detach().double().reshape(spec.views.get(k, state_a[k].shape)) for k in params
    }
    b = {k: state_b[k].detach().double() for k in params}
    perms = {p: torch.arange(n) for p, n in spec.sizes.items()}
    touching = {
        p: [(k, ax) for k in params for ax, q in enumerate(spec.axes[k]) if q == p]
        for p in spec.sizes
    }
    names = list(spec.sizes)
    for _ in range(max_sweeps):
        improved = False
        for idx in rng.permutation(len(names)):
            p = names[idx]
            n = spec.sizes[p]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, axis in touching[p]:
                wa = a[key].movedim(axis, 0).reshape(n, -1)
                wb = _permuted(spec, key, b[key], perms, except_axis=axis).movedim(axis, 0)
                cost += wa @ wb.reshape(n, -1).T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            old_score = cost[torch.arange(n), perms[p]].sum()
            new_score = cost[torch.arange(n), new].sum()
            if new_score > old_score + 1e-12 * max(1.0, abs(float(old_score))):
                perms[p] = new
                improved = True
        if not improved:
            break
    return perms


def align(
    model_a_state: StateDict,
    model_b_state: StateDict,
    arch: str,
    variant: str = "paper",
    *,
    seed: int = 0,
    max_sweeps: int = 100,
) -> dict[str, Tensor]:
    """Model B's state dict with its hidden units permuted to match model A's (weight matching).

    The result computes the same function as B (running statistics permuted along), and is at
    least as close to A in weight space. `seed` orders the layer visits.
    """
    if set(model_a_state) != set(model_b_state):
        raise ModescapeError(
            "the two state dicts hold different tensors: not the same architecture"
        )
    for k in model_a_state:
        if model_a_state[k].shape != model_b_state[k].shape:
            raise ModescapeError(
                f"{k}: shapes differ ({model_a_state[k].shape} vs {model_b_state[k].shape})"
            )
    spec = permutation_spec(model_a_state, arch, variant)
    perms = weight_matching(model_a_state, model_b_state, spec, seed=seed, max_sweeps=max_sweeps)
    return apply_permutation(model_b_state, spec, perms)
