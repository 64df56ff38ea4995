"""Plane geometry for loss-landscape cross-sections: axes, grids, projections.

A plane through o, θ1, θ2 has orthonormal axes u = (θ1−o)/‖θ1−o‖ and v = the part of θ2−o
orthogonal to u, normalised (Gram–Schmidt); the point at coordinates (a, b) is θ = o + a·u + b·v.
In these coordinates o = (0, 0), θ1 = (‖θ1−o‖, 0) and θ2 = ((θ2−o)·u, ‖residual‖), with b > 0.

Grids are anchored: the three anchors' coordinates are grid nodes (users expect the plane to
contain the anchors' own values, and a test can then read an anchor's value off the grid without
a nearest-cell float tie). Along each axis, the anchors' distinct coordinates split the covered
span into segments; each segment gets the fewest equal steps no longer than the nominal step
h = (span + 2·margin)/(R − 1), and the margins are whole steps of h. The grid is rectilinear and
nearly uniform, with at least R (at most R + 4) values per axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from modescape.errors import ModescapeError

COLLINEAR_RTOL = 1e-5


def plane_axes(
    o: Tensor, t1: Tensor, t2: Tensor, *, rtol: float = COLLINEAR_RTOL
) -> tuple[Tensor, Tensor, Tensor]:
    """Orthonormal axes of the plane through `o`, `t1`, `t2` (flat `[P]` vectors).

    Returns `(u[P], v[P], coords[3, 2])`, coords being (a, b) of o, t1, t2. Computed in float64.
    Raises ModescapeError when t1 coincides with o (‖t1−o‖ ≤ rtol·max(‖o‖, ‖t1‖, ‖t2‖)) or the
    three points are collinear: the part of t2−o orthogonal to u has norm ≤ rtol·‖t2−o‖, i.e.
    the angle between t2−o and t1−o is within about `rtol` radians of 0 or π.
    """
    o, t1, t2 = (t.detach().reshape(-1).double() for t in (o, t1, t2))
    if not o.shape == t1.shape == t2.shape:
        raise ModescapeError(f"anchors differ in size: {o.numel()}, {t1.numel()}, {t2.numel()}")
    scale = max(o.norm(), t1.norm(), t2.norm(), torch.tensor(1e-30, dtype=torch.float64))
    d1, d2 = t1 - o, t2 - o
    n1 = d1.norm()
    if n1 <= rtol * scale:
        raise ModescapeError(
            f"the plane is undefined: θ1 coincides with o (‖θ1−o‖ = {n1:.3g}, "
            f"relative tolerance {rtol:g})"
        )
    u = d1 / n1
    a2 = d2 @ u
    w = d2 - a2 * u
    w = w - (w @ u) * u  # a second Gram–Schmidt pass against round-off
    nw = w.norm()
    if nw <= rtol * max(d2.norm(), rtol * scale):
        raise ModescapeError(
            f"the plane is undefined: o, θ1, θ2 are (nearly) collinear (the part of θ2−o "
            f"orthogonal to θ1−o has norm {nw:.3g} of {d2.norm():.3g}, relative tolerance {rtol:g})"
        )
    v = w / nw
    coords = torch.tensor([[0.0, 0.0], [float(n1), 0.0], [float(a2), float(nw)]], dtype=o.dtype)
    return u, v, coords


@dataclass(frozen=True)
class AnchoredGrid:
    """A plane grid whose nodes include the anchors' coordinates.

    `anchor_index[k] = (row, column)`: anchor k (o, θ1, θ2) sits at `b_values[row]`,
    `a_values[column]`, so `grid_array[tuple(anchor_index[k])]` is its value on a `[b, a]` array.
    """

    a_values: Tensor  # float64 [Ra], Ra >= resolution, increasing
    b_values: Tensor  # float64 [Rb], Rb >= resolution, increasing
    anchor_index: Tensor  # int64 [3, 2]
    step: tuple[float, float]  # nominal step h along a and along b


def anchored_grid(anchor_coords: Tensor, resolution: int = 21, margin: float = 0.2) -> AnchoredGrid:
    """Grid covering the anchors `[3, 2]` with margins, the anchors' coordinates being nodes.

    Each axis covers at least [min − m, max + m] of the anchors' coordinates, with one absolute
    margin m = margin × (the larger of the two spans), so the picture is not stretched along one
    axis; see the module docstring for the node placement (≥ `resolution` values per axis).
    """
    if resolution < 2:
        raise ModescapeError(f"resolution must be at least 2, got {resolution}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ModescapeError(f"margin must be a finite number >= 0, got {margin}")
    c = anchor_coords.detach().double().reshape(-1, 2)
    if not torch.isfinite(c).all():
        raise ModescapeError(f"anchor coordinates must be finite, got {c.tolist()}")
    m = margin * float((c.max(0).values - c.min(0).values).max())
    axes = [_anchored_axis(c[:, j].tolist(), m, resolution) for j in (0, 1)]
    (a, ia, ha), (b, ib, hb) = axes
    index = torch.tensor(list(zip(ib, ia)), dtype=torch.int64)
    return AnchoredGrid(a_values=a, b_values=b, anchor_index=index, step=(ha, hb))


def _anchored_axis(
    values: list[float], m: float, resolution: int
) -> tuple[Tensor, list[int], float]:
    """Nodes of one axis, the node index of each value, and the nominal step h."""
    lo, hi = min(values), max(values)
    h = (hi - lo + 2 * m) / (resolution - 1)
    if not h > 0:
        raise ModescapeError("the anchors span nothing along an axis and margin is 0: no grid")
    tol = 1e-6 * h  # coordinates closer than this are one node (float32 anchors' round-off)
    knots: list[float] = []
    for x in sorted(values):
        if not knots or x - knots[-1] > tol:
            knots.append(x)

    def steps(length: float) -> int:  # fewest steps of at most h (up to float32 round-off)
        return max(1, math.ceil(length / h - 1e-6))

    n_margin = steps(m) if m > 0 else 0
    nodes = [knots[0] - j * h for j in range(n_margin, 0, -1)]
    for k0, k1 in pairwise(knots):
        n = steps(k1 - k0)
        nodes += [k0 + (k1 - k0) * i / n for i in range(n)]  # i = 0 gives k0 exactly
    nodes.append(knots[-1])
    nodes += [knots[-1] + j * h for j in range(1, n_margin + 1)]
    where = {k: nodes.index(k) for k in knots}
    index = [where[min(knots, key=lambda k: abs(k - x))] for x in values]
    return torch.tensor(nodes, dtype=torch.float64), index, h


def plane_grid(
    anchor_coords: Tensor, resolution: int = 21, margin: float = 0.2
) -> tuple[Tensor, Tensor]:
    """`(a_values, b_values)` of `anchored_grid` (at least `resolution` values each)."""
    g = anchored_grid(anchor_coords, resolution, margin)
    return g.a_values, g.b_values


def project_onto_plane(flat_vectors: Tensor, o: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Plane coordinates `[K, 2]` of `flat_vectors[K, P]` (orthogonal projection), float64."""
    d = flat_vectors.double().reshape(-1, o.numel()) - o.double().reshape(1, -1)
    return torch.stack([d @ u.double(), d @ v.double()], dim=1)
