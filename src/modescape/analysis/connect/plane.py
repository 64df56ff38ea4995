"""The plane a curve is drawn in, with the curve and the straight line on top (Garipov Fig. 1).

A quadratic Bézier curve lies exactly in the plane of its three control points θ₀, w₁, θ₁:
θ(t) − θ₀ = 2t(1−t)(w₁ − θ₀) + t²(θ₁ − θ₀). Its plane coordinates are therefore the same
combination of the control points' coordinates, and its distance off the plane is zero up to
round-off. Any other curve is drawn in the plane through its ends and θ(0.5), projected
orthogonally, with its distance off the plane reported at every t.

The maps (loss, accuracy, agreement with each end) come from the landscape study's
`evaluate_plane` with the ends' own predictions as agreement references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from modescape.analysis.connect.curves import curve_points, off_plane_distance, plane_anchors
from modescape.analysis.geometry import plane_axes, project_onto_plane
from modescape.analysis.landscape import PlaneOptions, PlaneResult, evaluate_plane


@dataclass
class CurvePlane:
    """A plane through θ₀ (origin of the coordinates), θ₁ (on the first axis) and `third`.

    `curve_coords[T, 2]` / `line_coords[T, 2]`: plane coordinates of the curve and the straight
    line at `t`; `off_plane[T]`: each curve point's distance from the plane (0 for a quadratic
    Bézier up to round-off); `third`: what the third anchor is.
    """

    plane: PlaneResult
    t: np.ndarray
    curve_coords: np.ndarray
    line_coords: np.ndarray
    off_plane: np.ndarray
    third: str


def curve_plane(
    model: nn.Module,
    bends: Tensor,
    shape: str,
    x: Tensor,
    y: Tensor,
    train_x: Tensor | None,
    *,
    end_probs: Tensor,
    options: PlaneOptions | None = None,
    points: int = 61,
    **engine: object,
) -> CurvePlane:
    """Maps over the curve's plane (`plane_anchors`), the curve and the line projected on it.

    `end_probs[2, N, C]`: the ends' predictions on `x` (agreement references "end0", "end1")."""
    o, t1, third, what = plane_anchors(bends, shape)
    refs = {"end0": end_probs[0], "end1": end_probs[1]}
    plane = evaluate_plane(
        model, o, t1, third, x, y, options=options, reference_probs=refs, train_x=train_x, **engine
    )
    u, v, _ = plane_axes(o, t1, third)
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    pts = curve_points(bends, shape, t)
    line = curve_points(torch.stack([bends[0], bends[-1]]), shape, t)
    return CurvePlane(
        plane=plane,
        t=t.numpy(),
        curve_coords=project_onto_plane(pts, o, u, v).numpy(),
        line_coords=project_onto_plane(line, o, u, v).numpy(),
        off_plane=off_plane_distance(pts, o, u, v).numpy(),
        third=what,
    )
