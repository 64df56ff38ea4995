"""Loss-landscape cross-sections as in the paper: planes through three weight vectors, linear paths.

A plane through o, θ1, θ2 has orthonormal axes u = (θ1−o)/‖θ1−o‖ and v = the part of θ2−o
orthogonal to u, normalised (Gram–Schmidt); the point at coordinates (a, b) is θ = o + a·u + b·v.
In these coordinates o = (0, 0), θ1 = (‖θ1−o‖, 0) and θ2 = ((θ2−o)·u, ‖residual‖), with b > 0.

Every grid point is evaluated by `engine.batched` (many points per pass over the data).
Arrays over the grid are indexed `[b, a]` (rows are b values), matplotlib's convention for
`contourf(a_values, b_values, Z)`.

BatchNorm (`bn_policy`, recorded in every result; "none" when the model has no BatchNorm):
- "recompute": running statistics recomputed at every point from training batches
  (`batched.recompute_bn_buffers`; the paper's requirement for off-trajectory points);
- "interpolate": buffers combined with the same coefficients as the weights, from the anchors'
  state dicts (an anchor given as a flat vector contributes the template model's buffers);
- "keep": every point uses the template model's buffers as they are.
Without `train_x`, "recompute" (the default) falls back to "interpolate" with a logged warning.

`x` and `train_x` may also be torch Datasets or DataLoaders (materialised once, in order); the
labels then come from `(x, y)` items when `y` is not given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from torch import Tensor, nn

from modescape.analysis.engine.inputs import Inputs
from modescape.analysis.engine.points import (
    Anchor,
    PointJob,
    agreement_refs,
    flat_anchor,
    prepare_data,
    resolve_policy,
    work_estimate,
)
from modescape.analysis.geometry import (
    AnchoredGrid,
    anchored_grid,
    plane_axes,
)
from modescape.errors import ModescapeError, choice_error
from modescape.progress import Progress

log = logging.getLogger(__name__)

RowValues = dict[str, Tensor]  # "loss", "accuracy", "agreement/<name>": each [len(a_values)]

# ---------------------------------------------------------------------------------------------
# planes


@dataclass
class PlaneResult:
    """Metrics on the plane through o, θ1, θ2; grid arrays are `[len(b_values), len(a_values)]`.

    The anchors are grid nodes: `anchor_index[k] = (row, column)` of o, θ1, θ2, and the grid
    point there is evaluated with the anchor's own weights (and buffers), so e.g.
    `agreement["theta1"][tuple(anchor_index[1])]` is θ1's agreement with itself. `anchor_*`: the
    same metrics at o, θ1, θ2 (`[3]`), read from those nodes. `agreement[name]`: fraction of
    examples whose predicted class equals reference `name`'s (1 − disagreement).
    """

    a_values: Tensor
    b_values: Tensor
    loss: Tensor
    accuracy: Tensor
    agreement: dict[str, Tensor]
    anchor_coords: Tensor
    anchor_loss: Tensor
    anchor_accuracy: Tensor
    anchor_agreement: dict[str, Tensor]
    bn_policy: str
    settings: dict[str, object] = field(default_factory=dict)
    anchor_index: Tensor = field(default_factory=lambda: torch.zeros(3, 2, dtype=torch.int64))


@dataclass(frozen=True)
class _PlanePoints:
    """Weights and BN buffers of whole grid rows; an anchor's node gets the anchor's own."""

    grid: AnchoredGrid
    coords: Tensor  # [3, 2] plane coordinates of o, θ1, θ2
    u: Tensor
    v: Tensor
    anchors: tuple[tuple[Tensor, Tensor], ...]  # (params[P], buffers[B]) of o, θ1, θ2

    def __call__(self, rows: list[int]) -> tuple[Tensor, Tensor]:
        (po, bo), (_, b1), (_, b2) = self.anchors
        Ra = len(self.grid.a_values)
        a = self.grid.a_values.repeat(len(rows))
        b = self.grid.b_values[rows].repeat_interleave(Ra)
        params = (po.double() + a[:, None] * self.u.double() + b[:, None] * self.v.double()).float()
        # Buffer interpolation needs coefficients on the anchors: θ − o = α(θ1−o) + β(θ2−o).
        (a1, _), (a2, bb2) = self.coords[1].tolist(), self.coords[2].tolist()
        beta = b / bb2
        alpha = (a - beta * a2) / a1
        bufs = bo + alpha[:, None].float() * (b1 - bo) + beta[:, None].float() * (b2 - bo)
        # o + a·u + b·v is an anchor only up to round-off: put its own weights at its node.
        for k, (row, col) in enumerate(self.grid.anchor_index.tolist()):
            if row in rows:
                at = rows.index(row) * Ra + col
                params[at], bufs[at] = self.anchors[k]
        return params, bufs


@dataclass(frozen=True)
class PlaneOptions:
    """How a plane is evaluated (every field can also be passed to `evaluate_plane` by name)."""

    resolution: int = 21  # at least this many grid values per axis (anchors are grid nodes)
    margin: float = 0.2  # fraction of the anchors' extent added on each side
    bn_policy: str = "recompute"  # BatchNorm handling (module docstring)
    bn_batches: int = 8  # training batches per recomputation ("recompute")
    bn_batch_size: int = 256
    # Grid rows per engine call. None: all rows in one call, or, with `on_row` (resumable
    # runs), enough rows for >= 64 points, so that finished rows are persisted as they come.
    rows_per_block: int | None = None
    progress: bool | None = None  # tqdm bar; None shows it only on a terminal
    verbose: bool = True  # log the work estimate before starting


ENGINE_SETTINGS = ("strategy", "batch_size", "chunk", "memory_budget_mb")  # batched.iter_logits


def engine_settings(settings: dict[str, object], also: tuple[str, ...] = ()) -> dict[str, object]:
    """The keyword arguments meant for the engine; an unknown one is a ModescapeError naming
    what is allowed (not a TypeError from deep inside the engine)."""
    for k in settings:
        if k not in ENGINE_SETTINGS:
            raise choice_error("keyword argument", k, (*also, *ENGINE_SETTINGS))
    return settings


def evaluate_plane(
    model: nn.Module,
    o: Anchor,
    t1: Anchor,
    t2: Anchor,
    x: Inputs,
    y: Tensor | None = None,
    *,
    options: PlaneOptions | None = None,
    reference_probs: Mapping[str, Tensor] | None = None,
    train_x: Inputs | None = None,
    done_rows: Mapping[int, RowValues] | None = None,
    on_row: Callable[[int, RowValues], None] | None = None,
    **settings: object,
) -> PlaneResult:
    """Loss, accuracy and agreement on a grid over the plane through o, θ1, θ2, with at least
    `resolution` values per axis and the anchors on grid nodes (`geometry.anchored_grid`).

    Args:
        model: template network (structure, parameter order, default buffers); not modified.
        o, t1, t2: anchors, flat `[P]` vectors or state dicts (which may carry BN buffers).
        x, y: evaluation inputs `[N, ...]` and labels `int64[N]` (or a Dataset / DataLoader
            of `(x, y)` items, with y left out).
        options: `PlaneOptions`; `settings` override its fields by name (`resolution=41`), and
            the other names go to the engine (`strategy`, `batch_size`, `chunk`,
            `memory_budget_mb` of `batched.iter_logits`).
        reference_probs: `{name: probs[N, C]}` to measure agreement with; default θ1's and θ2's
            own predictions, named "theta1" and "theta2".
        train_x: training inputs for the "recompute" BatchNorm policy.
        done_rows, on_row: resumption. Row i is `b_values[i]`; `on_row(i, values)` is called as
            each row is finished (persist it), and rows in `done_rows` are not recomputed.
    """
    names = {f.name for f in fields(PlaneOptions)}
    if "grid" in settings:  # the CLI's name for it (--grid)
        settings["resolution"] = settings.pop("grid")
    opts = replace(options or PlaneOptions(), **{k: v for k, v in settings.items() if k in names})
    engine = engine_settings({k: v for k, v in settings.items() if k not in names},
                             (*sorted(names), "grid"))  # fmt: skip
    x, y, train_x = prepare_data(x, y, train_x)
    policy = resolve_policy(model, opts.bn_policy, train_x)
    (po, bo), (p1, b1), (p2, b2) = (flat_anchor(model, t) for t in (o, t1, t2))
    u, v, coords = plane_axes(po, p1, p2)
    grid_spec = anchored_grid(coords, opts.resolution, opts.margin)
    job = PointJob(model, x, y, policy, train_x, opts.bn_batches, opts.bn_batch_size, engine)
    refs = agreement_refs(job, reference_probs, {"theta1": (p1, b1), "theta2": (p2, b2)})
    points = _PlanePoints(grid_spec, coords, u, v, ((po, bo), (p1, b1), (p2, b2)))
    done = _evaluate_rows(job, points, refs, opts, dict(done_rows or {}), on_row)

    Rb, Ra = len(grid_spec.b_values), len(grid_spec.a_values)
    grid = {key: torch.stack([done[i][key].float() for i in range(Rb)]) for key in done[0]}
    # The anchors' nodes were evaluated with the anchors' own weights and buffers (_PlanePoints).
    at = tuple(grid_spec.anchor_index.t())
    return PlaneResult(
        a_values=grid_spec.a_values,
        b_values=grid_spec.b_values,
        loss=grid["loss"],
        accuracy=grid["accuracy"],
        agreement={n: grid[f"agreement/{n}"] for n in refs},
        anchor_coords=coords,
        anchor_loss=grid["loss"][at],
        anchor_accuracy=grid["accuracy"][at],
        anchor_agreement={n: grid[f"agreement/{n}"][at] for n in refs},
        bn_policy=policy,
        anchor_index=grid_spec.anchor_index,
        settings=_settings(opts, policy, [Rb, Ra], int(x.shape[0]), list(refs), engine),
    )


def _settings(
    opts: PlaneOptions,
    policy: str,
    grid_shape: list[int],
    num_examples: int,
    references: list[str],
    engine: Mapping[str, object],
) -> dict[str, object]:
    """What a plane was computed with, as recorded beside it."""
    recompute = policy == "recompute"
    return {
        "resolution": opts.resolution,
        "grid_shape": grid_shape,
        "grid": "anchored: the anchors' coordinates are nodes (geometry.anchored_grid)",
        "margin": opts.margin,
        "bn_batches": opts.bn_batches if recompute else None,
        "bn_batch_size": opts.bn_batch_size if recompute else None,
        "num_examples": num_examples,
        "references": references,
        **{k: v for k, v in engine.items() if isinstance(v, int | float | str)},
    }


def _evaluate_rows(
    job: PointJob,
    points: _PlanePoints,
    refs: Mapping[str, Tensor],
    opts: PlaneOptions,
    done: dict[int, RowValues],
    on_row: Callable[[int, RowValues], None] | None,
) -> dict[int, RowValues]:
    """Every grid row not in `done`, a block of rows per engine call; `on_row` as each ends."""
    Ra, Rb = len(points.grid.a_values), len(points.grid.b_values)
    todo = [i for i in range(Rb) if i not in done]
    # One call amortises the engine's per-call set-up (planning, compiling, buffers) and keeps
    # every chunk full: with blocks of 84 points the MNIST-1D plane took 10-20% longer.
    whole = max(1, len(todo)) if on_row is None else max(1, -(-64 // Ra))
    rows_per_block = opts.rows_per_block or whole
    if opts.verbose:
        log.info(
            "modescape plane: %s; BatchNorm policy %r",
            work_estimate(job.model, job.x, len(todo) * Ra, job),
            job.policy,
        )
    # a bar on a terminal (or as `opts.progress` says), else log lines with an ETA
    with Progress(len(todo) * Ra, "plane", "points", logger=log, bar=opts.progress) as bar:
        for s in range(0, len(todo), rows_per_block):
            rows = todo[s : s + rows_per_block]
            params, bufs = points(rows)  # [len(rows)·Ra, P], [len(rows)·Ra, B]
            sc = job.score(params, bufs, refs, on_block=bar.update)
            for j, i in enumerate(rows):
                cut = slice(j * Ra, (j + 1) * Ra)
                values = {"loss": sc.loss[cut], "accuracy": sc.accuracy[cut]}
                values.update({f"agreement/{n}": t[cut] for n, t in sc.agreement.items()})
                done[i] = values
                if on_row is not None:
                    on_row(i, values)
    return done


# ---------------------------------------------------------------------------------------------
# paths


@dataclass
class PathResult:
    """Metrics along θ(α) = (1−α)θ1 + αθ2, each `[n_points]`; barriers are scalars.

    error_barrier = max_α err(θ(α)) − (err(θ1) + err(θ2))/2 (Frankle et al. 2020); loss_barrier
    the same for the loss. `disagreement[name]`: fraction of examples predicted differently
    from reference `name` ("theta1" / "theta2" by default).
    """

    alphas: Tensor
    loss: Tensor
    error: Tensor
    disagreement: dict[str, Tensor]
    error_barrier: float
    loss_barrier: float
    bn_policy: str
    settings: dict[str, object] = field(default_factory=dict)


def barrier(values: Tensor | np.ndarray) -> float:
    """max over the path − mean of its two ends (Frankle et al. 2020), of `values[n_points]`
    ordered from one end to the other; used for straight paths and curves alike."""
    v = torch.as_tensor(np.asarray(values, dtype=np.float64))
    return float(v.max() - (v[0] + v[-1]) / 2)


def interpolate_path(
    model: nn.Module,
    t1: Anchor,
    t2: Anchor,
    x: Inputs,
    y: Tensor | None = None,
    n_points: int = 25,
    *,
    reference_probs: Mapping[str, Tensor] | None = None,
    bn_policy: str = "recompute",
    train_x: Inputs | None = None,
    bn_batches: int = 8,
    bn_batch_size: int = 256,
    **engine: object,
) -> PathResult:
    """Evaluate `n_points` equally spaced points of the segment θ1 → θ2 (both ends included)."""
    if n_points < 2:
        raise ModescapeError(f"a path needs at least 2 points, got {n_points}")
    x, y, train_x = prepare_data(x, y, train_x)
    policy = resolve_policy(model, bn_policy, train_x)
    (p1, b1), (p2, b2) = flat_anchor(model, t1), flat_anchor(model, t2)
    engine = engine_settings(engine, ("n_points", "bn_policy", "bn_batches", "bn_batch_size"))
    job = PointJob(model, x, y, policy, train_x, bn_batches, bn_batch_size, engine)
    refs = agreement_refs(job, reference_probs, {"theta1": (p1, b1), "theta2": (p2, b2)})
    alphas = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    al = alphas[:, None]
    params = ((1 - al) * p1.double() + al * p2.double()).float()
    bufs = ((1 - al) * b1.double() + al * b2.double()).float()
    sc = job.score(params, bufs, refs)
    error = 1.0 - sc.accuracy
    return PathResult(
        alphas=alphas,
        loss=sc.loss,
        error=error,
        disagreement={n: 1.0 - a for n, a in sc.agreement.items()},
        error_barrier=barrier(error),
        loss_barrier=barrier(sc.loss),
        bn_policy=policy,
        settings={
            "n_points": n_points,
            "bn_batches": bn_batches if policy == "recompute" else None,
            "num_examples": int(x.shape[0]),
        },
    )
