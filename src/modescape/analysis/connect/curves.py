"""Curves θ(t), t ∈ [0, 1], between two weight vectors, as pure functions of their bends.

A curve has n ≥ 2 bends w_0 … w_{n−1} (flat `[P]` vectors); w_0 and w_{n−1} are the fixed ends,
the others are trained (Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast
Ensembling of DNNs"):

- Bézier: θ(t) = Σ_k C(n−1, k) t^k (1−t)^(n−1−k) w_k (Bernstein basis; n = 3 is Garipov's
  default, a quadratic curve with one free middle point);
- polygonal chain: θ(t) = Σ_k max(0, 1 − |t(n−1) − k|) w_k, straight segments between
  consecutive bends at t = k/(n−1) (Fort & Jastrzebski 2019's multi-point tunnel).

Both give w_0 at t = 0 and w_{n−1} at t = 1 exactly: the coefficients there are exactly one and
zeros. Evenly spaced bends on the segment between the ends give the straight line for both
shapes (Bernstein polynomials reproduce linear functions), which is where training starts.
Coefficients are computed in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from modescape.errors import ModescapeError, check_choice
from modescape.options import CurveShape

LENGTH_POINTS = 1001  # t values summed over by `curve_length` (exact for a polygonal chain)


def check_bends(shape: str, n_bends: int) -> None:
    """ModescapeError unless `shape` is known and the curve has at least one free bend."""
    check_choice("curve shape", shape, CurveShape)
    if not isinstance(n_bends, int) or isinstance(n_bends, bool) or n_bends < 3:
        raise ModescapeError(
            f"a curve needs at least 3 bends (two fixed ends and one free bend), got {n_bends}"
        )


def coefficients(shape: str, t: Tensor | float, n_bends: int) -> Tensor:
    """Weights of each bend at each t: float64 `[T, n_bends]` (rows sum to 1).

    n_bends may be 2 here (the straight line, used as the reference path)."""
    check_choice("curve shape", shape, CurveShape)
    if n_bends < 2:
        raise ModescapeError(f"a curve has at least 2 bends (its ends), got {n_bends}")
    ts = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    if not bool(((ts >= 0) & (ts <= 1)).all()):
        raise ModescapeError("curve parameters t must lie in [0, 1]")
    k = torch.arange(n_bends, dtype=torch.float64)[None]
    if shape == CurveShape.BEZIER:
        binom = torch.tensor([math.comb(n_bends - 1, i) for i in range(n_bends)], dtype=ts.dtype)
        # 0**0 = 1 in torch.pow, so t = 0 and t = 1 give exactly one nonzero coefficient.
        return binom * ts.pow(k) * (1 - ts).pow(n_bends - 1 - k)
    return (1 - (ts * (n_bends - 1) - k).abs()).clamp_min(0)


def curve_points(bends: Tensor, shape: str, t: Tensor | float) -> Tensor:
    """θ(t) for each t: `bends[n, P]` → float32 `[T, P]` (combined in float64)."""
    c = coefficients(shape, t, bends.shape[0])
    return (c @ bends.double()).float()


def initial_bends(end0: Tensor, end1: Tensor, n_bends: int) -> Tensor:
    """`[n_bends, P]`: the ends and, between them, evenly spaced points of the segment (the
    middle bend of a 3-bend curve at (θ₀+θ₁)/2, as Garipov); both shapes start as the line."""
    if n_bends < 2:
        raise ModescapeError(f"a curve has at least 2 bends (its ends), got {n_bends}")
    a, b = end0.reshape(-1).double(), end1.reshape(-1).double()
    s = torch.linspace(0, 1, n_bends, dtype=torch.float64)[:, None]
    bends = ((1 - s) * a + s * b).float()
    bends[0], bends[-1] = end0.reshape(-1), end1.reshape(-1)
    return bends


def curve_length(bends: Tensor, shape: str, points: int = LENGTH_POINTS) -> float:
    """Length of the curve in weight space (L2).

    A polygonal chain: exactly the sum of its segments. A Bézier curve: Σ ‖θ(t_{i+1}) − θ(t_i)‖
    over `points` even t, a lower bound converging as O(1/points²); points are formed a chunk at
    a time, so memory stays O(chunk × P) for any network."""
    if shape == CurveShape.POLYCHAIN:
        b = bends.double()
        return float((b[1:] - b[:-1]).norm(dim=1).sum())
    ts = torch.linspace(0, 1, points, dtype=torch.float64)
    total, prev, chunk = 0.0, None, 64
    for s in range(0, points, chunk):
        pts = coefficients(shape, ts[s : s + chunk], bends.shape[0]) @ bends.double()
        if prev is not None:
            pts = torch.cat([prev[None], pts])
        total += float((pts[1:] - pts[:-1]).norm(dim=1).sum())
        prev = pts[-1]
    return total


def plane_anchors(bends: Tensor, shape: str) -> tuple[Tensor, Tensor, Tensor, str]:
    """Three points spanning the plane a curve is drawn in: (θ₀, θ₁, third, what third is).

    A quadratic Bézier lies in the plane of its control points, so the third is its middle
    bend; any other curve gets the plane through its ends and θ(0.5)."""
    if shape == CurveShape.BEZIER and bends.shape[0] == 3:
        return bends[0], bends[-1], bends[1], "middle bend (the curve lies in this plane)"
    mid = curve_points(bends, shape, 0.5)[0]
    return bends[0], bends[-1], mid, "theta(0.5)"


def off_plane_distance(points: Tensor, o: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """‖θ − o − ((θ−o)·u) u − ((θ−o)·v) v‖ of each `points[K, P]` (u, v orthonormal): float64
    `[K]`, the distance of each point from the plane through o spanned by u and v."""
    d = points.double() - o.double()
    a, b = d @ u.double(), d @ v.double()
    return (d - a[:, None] * u.double() - b[:, None] * v.double()).norm(dim=1)
