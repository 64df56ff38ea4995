"""Activation matching (Ainsworth, Hayase & Srinivasa 2022, "Git Re-Basin", section 3.1; Entezari
et al. 2022): each permutation pairs the units of network B with those of network A whose
activations on the same inputs correlate best.

For every permutation of a spec, the layers whose *outputs* carry it (a Conv or Linear whose
weight has it on its output axis, a BatchNorm / LayerNorm of those channels) are found from the
spec, their outputs recorded with forward hooks on a batch of inputs for both networks, and the
units' Pearson correlations (spatial positions and tokens count as further observations; a unit
that is a block of features, an attention head, sums its features' correlations) summed over
those layers. One `scipy.optimize.linear_sum_assignment` per permutation then gives it. Unlike
weight matching, no permutation depends on another: a unit's activations do not change when the
units before it are permuted, so one forward pass per network suffices.

A permutation that no layer's output carries (the heads of `nn.MultiheadAttention`, whose
projections are not submodules, or a segment of a concatenation that is never a layer's output)
is left in place; the function is kept either way and `align` checks it.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from modescape.models.specs import PermutationSpec, StateDict

__all__ = ["activation_matching", "unit_sites"]

log = logging.getLogger(__name__)

_CHANNELS_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d,
                   nn.BatchNorm3d, nn.GroupNorm)  # fmt: skip


@dataclass(frozen=True)
class UnitSite:
    """A module whose output carries permutation `perm`: its output features (the channel axis,
    dim 1 for convolutions and normalisations over channels, the last for Linear / LayerNorm)
    reshaped to `split`, the units on axis `unit_axis` of it."""

    module: str
    perm: str
    channel_dim: int
    split: tuple[int, ...]
    unit_axis: int


def unit_sites(model: nn.Module, spec: PermutationSpec) -> dict[str, list[UnitSite]]:
    """`{perm: [UnitSite, ...]}`: where each permutation of `spec` appears as layer outputs."""
    modules = dict(model.named_modules())
    sites: dict[str, list[UnitSite]] = {p: [] for p in spec.sizes}
    for key, axes in spec.axes.items():
        name, _, leaf = key.rpartition(".")
        m = modules.get(name)
        if leaf != "weight" or m is None:
            continue
        if isinstance(m, _CHANNELS_FIRST):
            dim, out = 1, int(m.weight.shape[0])
        elif isinstance(m, nn.Linear) or (isinstance(m, nn.LayerNorm) and m.weight.dim() == 1):
            dim, out = -1, int(m.weight.shape[0])
        else:
            continue
        view = spec.views.get(key, tuple(m.weight.shape))
        k = next((i for i in range(1, len(view) + 1) if math.prod(view[:i]) == out), None)
        if k is None:
            continue
        labelled = [(i, p) for i, p in enumerate(axes[:k]) if p is not None]
        if len(labelled) == 1 and labelled[0][1] in spec.sizes:
            axis, p = labelled[0]
            sites[p].append(UnitSite(name, p, dim, tuple(view[:k]), axis))
    return sites


def activation_matching(
    model: nn.Module,
    state_a: StateDict,
    state_b: StateDict,
    spec: PermutationSpec,
    inputs: Tensor,
    *,
    batch_size: int = 64,
) -> dict[str, Tensor]:
    """Permutations `{name: int64[n]}` (new position i ← B's unit perms[name][i]) pairing B's
    units with A's by the correlation of their activations on `inputs (N, *in_shape)`."""
    sites = unit_sites(model, spec)
    corr = {p: torch.zeros(n, n, dtype=torch.float64) for p, n in spec.sizes.items()}
    stats = [_Stats(s) for group in sites.values() for s in group]
    nets = []
    for state in (state_a, state_b):
        net = copy.deepcopy(model).eval()
        net.load_state_dict(state)
        nets.append(net)
    for start in range(0, len(inputs), batch_size):
        outs = [_recorded(net, stats, inputs[start : start + batch_size]) for net in nets]
        for st, a, b in zip(stats, *outs):
            st.add(a, b)
    for st in stats:
        corr[st.site.perm] += st.correlation()
    perms = {}
    for p, n in spec.sizes.items():
        if not sites[p]:
            log.info("activation matching: no layer output carries %s; left in place", p)
            perms[p] = torch.arange(n)
            continue
        _, cols = linear_sum_assignment(corr[p].numpy(), maximize=True)
        perms[p] = torch.as_tensor(cols, dtype=torch.long)
    return perms


def _recorded(net: nn.Module, stats: list[_Stats], x: Tensor) -> list[Tensor]:
    """Each site's outputs for one batch, channel-last and flat (every call of its module, in
    call order)."""
    found: list[list[Tensor]] = [[] for _ in stats]
    modules = dict(net.named_modules())
    handles = []
    for i, st in enumerate(stats):

        def hook(_m: nn.Module, _in: object, out: Any, i: int = i) -> None:
            t = (out[0] if isinstance(out, tuple) else out).detach()
            found[i].append(t.movedim(stats[i].site.channel_dim, -1).reshape(-1))

        handles.append(modules[st.site.module].register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return [ts[0] if len(ts) == 1 else torch.cat(ts) if ts else torch.empty(0) for ts in found]


class _Stats:
    """Running sums for the correlation of A's and B's units at one site."""

    def __init__(self, site: UnitSite) -> None:
        self.site = site
        self.n = 0
        self.sums: list[Tensor] = []

    def _units(self, flat: Tensor) -> Tensor:
        """(observations, units, features of a unit), float64, from channel-last values."""
        s = self.site
        t = flat.double().reshape(-1, *s.split)
        return t.movedim(1 + s.unit_axis, 1).reshape(t.shape[0], s.split[s.unit_axis], -1)

    def add(self, a: Tensor, b: Tensor) -> None:
        if not a.numel():
            return
        ua, ub = self._units(a), self._units(b)
        terms = [ua.sum(0), ub.sum(0), (ua * ua).sum(0), (ub * ub).sum(0),
                 torch.einsum("oif,ojf->ijf", ua, ub)]  # fmt: skip
        self.sums = terms if not self.sums else [s + t for s, t in zip(self.sums, terms)]
        self.n += ua.shape[0]

    def correlation(self) -> Tensor:
        """[units, units] Σ over a unit's features of Pearson's r between A's and B's units."""
        if not self.sums:
            return torch.zeros(())
        sa, sb, qa, qb, cross = (t / self.n for t in self.sums)
        sd_a = (qa - sa * sa).clamp_min(0).sqrt()
        sd_b = (qb - sb * sb).clamp_min(0).sqrt()
        cov = cross - sa[:, None, :] * sb[None, :, :]
        den = sd_a[:, None, :] * sd_b[None, :, :]
        # a unit constant on these inputs (a dead ReLU's) correlates with nothing
        r = torch.where(den > 1e-12, cov / den.clamp_min(1e-12), torch.zeros_like(cov))
        return r.sum(-1)
