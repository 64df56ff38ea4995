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

A *permutation spec* (`modescape.models.specs`) maps every state-dict entry to the permutation
acting on each of its axes. `align` takes one from the caller (`spec=`: a `PermutationSpec`, or
the `axes_to_perm` dictionary of the git-re-basin code, `{param_name: (perm_name or None per
axis)}`), reads one from the network with `torch.fx` (`spec="auto"`, or any non-built-in network
given as `model=`; `modescape.models.autospec`), or, for the built-ins, derives it from their
structure (`permutation_spec`).
The objective uses parameters only (running statistics are not weights). A concatenation's
axis (`PermutationSpec.concats`) holds several permutations side by side: each is matched on
its own segment.

`method="activations"` finds the permutations by activation matching instead
(`modescape.models.alignment_activations`), from the same spec: the alternative where weights
say little about the units (and the paper's other method).

Every alignment is verified: the permuted network must give the same softmax as B on a probe batch
(max |Δp| is logged and returned by `align_verified`); above `tolerance` (1e-4) the result is
refused with a ModescapeError — a wrong spec silently changes the function otherwise.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from modescape.errors import ModescapeError, check_choice, choice_error
from modescape.models import architectures
from modescape.models.architectures import ARCHITECTURES
from modescape.models.specs import (
    PermutationSpec,
    StateDict,
    permutation_spec,
    spec_from_axes_to_perm,
    spec_from_json,
)
from modescape.options import AlignMethod

__all__ = [
    "AlignmentResult",
    "align",
    "align_verified",
    "apply_permutation",
    "arch_spec",
    "resolve_spec",
    "weight_matching",
]

log = logging.getLogger(__name__)


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
    full = spec.expand(perms)
    out = {}
    for key, t in state.items():
        out[key] = _permuted(spec, key, t, full).reshape(t.shape) if key in spec.axes else t.clone()
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
    # (entry, axis, offset on the axis): a concatenation's axis holds the part at an offset
    touching = {p: _touching(spec, params, p) for p in spec.sizes}
    names = list(spec.sizes)
    for _ in range(max_sweeps):
        improved = False
        for idx in rng.permutation(len(names)):
            p = names[idx]
            n = spec.sizes[p]
            cost = torch.zeros(n, n, dtype=torch.float64)
            full = spec.expand(perms) if spec.concats else perms
            for key, axis, offset in touching[p]:
                wa = a[key].movedim(axis, 0)
                wb = _permuted(spec, key, b[key], full, except_axis=axis).movedim(axis, 0)
                if offset is not None:
                    wa, wb = wa[offset : offset + n], wb[offset : offset + n]
                cost += wa.reshape(n, -1) @ wb.reshape(n, -1).T
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


def _touching(
    spec: PermutationSpec, params: list[str], p: str
) -> list[tuple[str, int, int | None]]:
    """The axes permutation `p` acts on: (entry, axis, None) where the axis is p's own and
    (entry, axis, offset) where p is a segment of a concatenation's axis."""
    segments = spec.segments(p)  # a concatenation may hold p more than once (cat([x, x]))
    return [
        (k, ax, None if label == p else offset)
        for k in params
        for ax, q in enumerate(spec.axes[k])
        for label, offset, _ in segments
        if q == label
    ]


@dataclass(frozen=True)
class AlignmentResult:
    """`state_dict`: B permuted onto A; `perms`: the permutations; `max_abs_prob_diff`: the
    largest change of B's softmax on the probe batch (float rounding only, ≲1e-6)."""

    state_dict: dict[str, Tensor]
    perms: dict[str, Tensor]
    spec: PermutationSpec
    max_abs_prob_diff: float


def align(
    model_a_state: StateDict,
    model_b_state: StateDict,
    arch: str | None = None,
    variant: str = "paper",
    *,
    spec: PermutationSpec | Mapping[str, Any] | str | None = None,
    model: nn.Module | None = None,
    probe: Tensor | None = None,
    seed: int = 0,
    max_sweeps: int = 100,
    tolerance: float = 1e-4,
    method: str = AlignMethod.WEIGHTS,
    inputs: Tensor | None = None,
) -> dict[str, Tensor]:
    """Model B's state dict with its hidden units permuted to match model A's (weight matching).

    The result computes the same function as B (running statistics permuted along; checked, see
    `align_verified`, which takes the same arguments and also returns the permutations and the
    max |Δp|), and is at least as close to A in weight space. `seed` orders the layer visits.

    Args:
        arch, variant: a built-in architecture (its spec is derived from its structure).
        spec: a `PermutationSpec`, a spec file's JSON document (`modescape.models.specs`), a
            git-re-basin `axes_to_perm` dict, or "auto" (torch.fx trace of `model`); default:
            the built-in's spec, else "auto" when `model` is given.
        model: a module of the network (any weights), to trace and to check the function with;
            built from `arch` when it is a built-in.
        probe: `(batch, *in_shape)` inputs for tracing and the check; default 16 standard normal
            examples of the built-in's input shape (required for other networks).
        tolerance: largest allowed change of any softmax probability on the probe.
        method: "weights" (weight matching) or "activations" (activation matching,
            `modescape.models.alignment_activations`: the units' correlations on `inputs`).
        inputs: `(N, *in_shape)` training inputs for activation matching (default: the probe).
    """
    return align_verified(
        model_a_state, model_b_state, arch, variant, spec=spec, model=model, probe=probe,
        seed=seed, max_sweeps=max_sweeps, tolerance=tolerance, method=method, inputs=inputs,
    ).state_dict  # fmt: skip


def align_verified(
    model_a_state: StateDict,
    model_b_state: StateDict,
    arch: str | None = None,
    variant: str = "paper",
    *,
    spec: PermutationSpec | Mapping[str, Any] | str | None = None,
    model: nn.Module | None = None,
    probe: Tensor | None = None,
    seed: int = 0,
    max_sweeps: int = 100,
    tolerance: float = 1e-4,
    method: str = AlignMethod.WEIGHTS,
    inputs: Tensor | None = None,
) -> AlignmentResult:
    """`align`, returning the permutations and the verified max |Δp| as well."""
    check_choice("alignment method", method, AlignMethod)
    _check_same_tensors(model_a_state, model_b_state)
    builtin = arch is not None and arch in ARCHITECTURES
    if (
        arch is not None
        and not builtin
        and model is None
        and not isinstance(spec, PermutationSpec | Mapping)
    ):
        raise ModescapeError(
            f"{choice_error('architecture', arch, tuple(ARCHITECTURES))}: for another network "
            "pass model= (automatic spec) or spec="
        )
    if model is None and builtin:
        model, shape = _builtin_model(model_a_state, arch, variant)
        probe = probe if probe is not None else _probe(shape)
    if model is None:
        raise ModescapeError("align needs arch= (a built-in) or model= to verify the function")
    if probe is None:
        raise ModescapeError(
            "align needs probe= (a batch of inputs) for a network that is not built-in"
        )
    resolved = resolve_spec(spec, model_a_state, arch if builtin else None, variant, model, probe)

    def matched(spec: PermutationSpec) -> dict[str, Tensor]:
        if method == AlignMethod.ACTIVATIONS:
            from modescape.models.alignment_activations import activation_matching

            x = inputs if inputs is not None else probe
            return activation_matching(model, model_a_state, model_b_state, spec, x)
        return weight_matching(model_a_state, model_b_state, spec, seed=seed,
                               max_sweeps=max_sweeps)  # fmt: skip

    perms = matched(resolved)
    aligned = apply_permutation(model_b_state, resolved, perms)
    delta = _max_prob_change(model, model_b_state, aligned, probe)
    automatic = not isinstance(spec, PermutationSpec | Mapping) and not (builtin and spec is None)
    if automatic and not delta <= tolerance:  # an attention look-alike: its heads stay in place
        from modescape.models.autospec import auto_spec

        log.info("alignment: the attention heads' permutation changed the function; without it")
        resolved = auto_spec(model, probe, attention=False)
        perms = matched(resolved)
        aligned = apply_permutation(model_b_state, resolved, perms)
        delta = _max_prob_change(model, model_b_state, aligned, probe)
    log.info("alignment: max |Δp| = %.2e on %d probe inputs", delta, len(probe))
    if not delta <= tolerance:
        raise ModescapeError(
            f"alignment changed the network's function (max |Δp| = {delta:.2e} > {tolerance:g} "
            "on the probe batch): the permutation spec does not describe this network"
        )
    return AlignmentResult(aligned, perms, resolved, delta)


def arch_spec(
    arch: str, variant: str, in_shape: tuple[int, ...], num_classes: int
) -> PermutationSpec:
    """The spec `align` uses for an architecture name (a built-in, a registered name or
    "package.module:factory") on inputs of `in_shape`: the built-in's, else the traced one."""
    from modescape.models.registry import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(arch, variant, in_shape, num_classes)
    state = model.state_dict()
    builtin = arch if arch in ARCHITECTURES else None
    return resolve_spec(None, state, builtin, variant, model, _probe(in_shape))


def _check_same_tensors(a: StateDict, b: StateDict) -> None:
    if set(a) != set(b):
        raise ModescapeError(
            "the two state dicts hold different tensors: not the same architecture"
        )
    for k in a:
        if a[k].shape != b[k].shape:
            raise ModescapeError(f"{k}: shapes differ ({a[k].shape} vs {b[k].shape})")


def resolve_spec(
    spec: Any,
    state: StateDict,
    arch: str | None,
    variant: str,
    model: nn.Module | None,
    probe: Tensor | None,
) -> PermutationSpec:
    """The spec `align` uses: `spec` itself, the built-in `arch`'s (spec None), or the traced
    one (spec None or "auto"; needs `model` and `probe`)."""
    if isinstance(spec, PermutationSpec):
        return spec
    if spec is None and arch is not None:
        return permutation_spec(state, arch, variant)
    if spec is None or spec == "auto":
        from modescape.models.autospec import auto_spec

        if model is None or probe is None:
            raise ModescapeError("an automatic permutation spec needs model= and probe=")
        return auto_spec(model, probe)
    if isinstance(spec, Mapping) and "format" in spec:  # a spec file's document, read as JSON
        return spec_from_json(spec, state, source="spec")
    if isinstance(spec, str):
        raise ModescapeError(
            f"spec must be a PermutationSpec, an axes_to_perm dict or 'auto'; got {spec!r}"
        )
    return spec_from_axes_to_perm(spec, state)


def _probe(in_shape: tuple[int, ...], n: int = 16) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, *in_shape, generator=g)


def _max_prob_change(model: nn.Module, before: StateDict, after: StateDict, probe: Tensor) -> float:
    model = copy.deepcopy(model).eval()
    probs = []
    for sd in (before, after):
        model.load_state_dict(sd)
        with torch.no_grad():
            probs.append(torch.softmax(model(probe).double(), dim=-1))
    return float((probs[0] - probs[1]).abs().max())


def _builtin_model(state: StateDict, arch: str, variant: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A built-in model fitting `state`, and an input shape it accepts (for the probe)."""
    first = next(v for k, v in state.items() if k.endswith("weight") and v.dim() >= 3)
    channels, ndim = int(first.shape[1]), first.dim() - 2
    spatial = _builtin_spatial(state, arch, variant, ndim, channels)
    shape = (channels, *spatial)
    with torch.random.fork_rng(devices=[]):
        model = architectures.build_model(arch, variant, shape, int(state["head.weight"].shape[0]))
    if model.state_dict()["head.weight"].shape != state["head.weight"].shape:
        raise ModescapeError(f"the state dict does not look like a {arch} ({variant})")
    return model, shape


def _builtin_spatial(
    state: StateDict, arch: str, variant: str, ndim: int, channels: int
) -> tuple[int, ...]:
    """Spatial input size for which the built-in's flatten head has the state dict's width."""
    size = max(architectures.min_input_size(arch, variant), 8)
    if arch == "resnet20" or variant != "paper":
        return (size,) * ndim  # global pooling: any size
    with torch.random.fork_rng(devices=[]):
        features = architectures.build_model(arch, variant, (channels, *(64,) * ndim), 2).features
    last = [m for m in features if isinstance(m, nn.Conv1d | nn.Conv2d)][-1].out_channels
    cells = state["head.weight"].shape[1] // last
    out_of = {}
    for n in range(1, 4096):
        out_of.setdefault(architectures.size_after(n, features), n)
    if ndim == 1 and cells in out_of:
        return (out_of[cells],)
    for h in range(1, math.isqrt(cells) + 1):
        if cells % h == 0 and h in out_of and cells // h in out_of:
            return (out_of[h], out_of[cells // h])
    raise ModescapeError(f"cannot find an input size for a {arch} head of width {cells * last}")
