"""`modescape landscape`: loss-landscape planes, paths and permutation alignment of a run.

Anchors are named from the run:

    origin        the zero vector (the paper's choice of o)
    m1            member 1's final snapshot          m1@e5   member 1 after epoch 5
    init1         member 1's initialisation (m1@e0)  wa1     member 1's weight average

Results (each plane is resumable row by row; a finished plane or path is not recomputed):

    landscape/planes/<name>/a.npy, b.npy             grid coordinates [R]
    landscape/planes/<name>/loss.npy, accuracy.npy   [R, R] indexed [b, a]
    landscape/planes/<name>/agreement_<anchor>.npy   [R, R] agreement with each snapshot anchor
    landscape/planes/<name>/anchors.json             names, plane coordinates, exact metrics
    landscape/planes/<name>/trajectories.csv         member, epoch, a, b: every snapshot projected
    landscape/paths.csv                              path, alpha, loss, error, disagreement_from/_to
    landscape/summary.json                           planes, paths with barriers, alignment
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modescape.analysis.engine.batched import flatten_params, has_batchnorm, param_names
from modescape.analysis.landscape import (
    evaluate_plane,
    interpolate_path,
    plane_axes,
    project_onto_plane,
)
from modescape.errors import ModescapeError
from modescape.store.files import load_npy, save_npy, write_csv, write_json
from modescape.store.run import Run, load_run, write_study_summary
from modescape.studies.weights_functions import bn_training_subset, weight_average_state

_ANCHOR = re.compile(r"^(origin|m(\d+)(?:@e(\d+))?|init(\d+)|wa(\d+))$")


@dataclass(frozen=True)
class LandscapeConfig:
    planes: tuple[tuple[str, str, str], ...] | None = None  # None: origin + two members' ends
    paths: tuple[tuple[str, str], ...] | None = None  # None: across members + within member 0
    resolution: int = 21
    margin: float = 0.2  # fraction of the anchors' extent added on each side
    max_examples: int = 2000  # test examples per grid point
    n_path_points: int = 25
    bn_policy: str = "recompute"  # "recompute" | "interpolate" | "keep" (networks with BN)
    align: bool = True  # permutation-align member 1 onto member 0 and compare

    def __post_init__(self) -> None:
        if self.resolution < 3:
            raise ModescapeError(f"landscape resolution must be >= 3, got {self.resolution}")
        if self.n_path_points < 2 or self.max_examples < 1 or self.margin < 0:
            raise ModescapeError("path points must be >= 2, max_examples >= 1, margin >= 0")


def parse_anchors(text: str) -> tuple[str, str, str]:
    names = tuple(a.strip() for a in text.split(","))
    if len(names) != 3:
        raise ModescapeError(f"--anchors needs three names, e.g. origin,m0,m1; got {text!r}")
    return names  # type: ignore[return-value]


def resolve_anchor(run: Run, name: str) -> dict[str, torch.Tensor]:
    """The state dict an anchor name stands for (grammar in the module docstring)."""
    m = _ANCHOR.match(name)
    if m is None:
        raise ModescapeError(
            f"unknown anchor {name!r} (allowed: origin, m<i>, m<i>@e<epoch>, init<i>, wa<i>)"
        )
    if name == "origin":
        return {k: torch.zeros_like(v) for k, v in run.build_model().state_dict().items()}
    if m.group(2) is not None:
        return run.state_dict(int(m.group(2)), int(m.group(3)) if m.group(3) else -1)
    if m.group(4) is not None:
        return run.state_dict(int(m.group(4)), 0)
    return weight_average_state(run, int(m.group(5)))


def default_planes(run: Run, members: list[int]) -> tuple[tuple[str, str, str], ...]:
    """The paper's plane (origin and two members' final weights); with one member, the origin,
    its snapshot half-way along and its final weights."""
    if len(members) > 1:
        return (("origin", f"m{members[0]}", f"m{members[1]}"),)
    epochs = run.snapshot_epochs(members[0])
    return (("origin", f"m{members[0]}@e{epochs[len(epochs) // 2]}", f"m{members[0]}"),)


def default_paths(run: Run, members: list[int]) -> tuple[tuple[str, str], ...]:
    """Across members (final weights of the first two) and within member 0 (its last snapshot and
    the one two snapshots earlier)."""
    epochs = run.snapshot_epochs(members[0])
    late = epochs[-min(2, len(epochs) - 1) - 1]  # two epochs before the end
    paths = [(f"m{members[0]}@e{late}", f"m{members[0]}")]
    if len(members) > 1:
        paths.insert(0, (f"m{members[0]}", f"m{members[1]}"))
    return tuple(paths)


def run_landscape(
    path: str | Path,
    config: LandscapeConfig | None = None,
    *,
    allow_partial: bool = False,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Evaluate every configured plane and path of a run; write `<run>/landscape/`."""
    config = config or LandscapeConfig()
    run = load_run(path)
    members = run.require_complete(allow_partial)
    out = run.path / "landscape"
    data = run.dataset()
    x, y = data.x_test[: config.max_examples], data.y_test[: config.max_examples]
    model = run.build_model()
    bn = {"train_x": bn_training_subset(run)} if has_batchnorm(model) else {}
    policy = config.bn_policy if bn else "keep"  # nothing to recompute without BatchNorm
    files: dict[str, str] = {}

    planes = []
    for anchors in config.planes or default_planes(run, members):
        name = "-".join(anchors).replace("@", "_")
        folder = out / "planes" / f"{name}-r{config.resolution}"
        log(f"landscape: plane {', '.join(anchors)} at {config.resolution}x{config.resolution}")
        files |= _plane(run, model, anchors, folder, x, y, config, policy, bn)
        planes.append(
            {
                "name": name,
                "anchors": list(anchors),
                "dir": str(folder.relative_to(out)),
                "resolution": config.resolution,
                "bn_policy": policy if bn else "none",
            }
        )

    path_rows, paths = [], []
    for a, b in config.paths or default_paths(run, members):
        kind = "across members" if a.split("@")[0] != b.split("@")[0] else "within trajectory"
        log(f"landscape: path {a} -> {b} ({kind})")
        result = interpolate_path(
            model, resolve_anchor(run, a), resolve_anchor(run, b), x, y,
            config.n_path_points, bn_policy=policy, **bn,
        )  # fmt: skip
        paths.append(_path_entry(a, b, kind, result))
        path_rows += _path_rows(f"{a}->{b}", result)

    alignment = None
    if config.align and len(members) > 1:
        log(f"landscape: permutation alignment of member {members[1]} onto member {members[0]}")
        alignment, rows, entry = _alignment(run, model, members[:2], x, y, config, policy, bn)
        path_rows += rows
        paths.append(entry)
        pair = (f"m{members[0]}", f"m{members[1]}")
        before = next((p for p in paths if (p["from"], p["to"]) == pair), None)
        if before is None:
            result = interpolate_path(
                model, *(resolve_anchor(run, a) for a in pair), x, y,
                config.n_path_points, bn_policy=policy, **bn,
            )  # fmt: skip
            before = _path_entry(*pair, "across members", result)
        alignment["error_barrier_before"] = before["error_barrier"]
        alignment["loss_barrier_before"] = before["loss_barrier"]
    header = ["path", "alpha", "loss", "error", "disagreement_from", "disagreement_to"]
    files["paths.csv"] = write_csv(out / "paths.csv", header, path_rows)
    summary = {
        "config": asdict(config),
        "members": members,
        "num_examples": len(y),
        "planes": planes,
        "paths": paths,
        "alignment": alignment,
        "files": files,
    }
    write_study_summary(run, "landscape", summary)
    return summary


def _plane(run, model, anchors, folder: Path, x, y, config, policy, bn) -> dict[str, str]:
    files: dict[str, str] = {}
    rel = lambda f: str(f.relative_to(run.path / "landscape"))  # noqa: E731
    if (folder / "anchors.json").exists():
        return {}
    states = [resolve_anchor(run, a) for a in anchors]
    refs = {}
    for a, sd in zip(anchors, states):
        if a != "origin":
            # Agreement with the anchor's own predictions (computed once, exactly).
            m = run.build_model()
            m.load_state_dict(sd)
            with torch.inference_mode():
                refs[a] = torch.softmax(m.eval()(x), dim=1)
    rows_dir = folder / "rows"
    done = {}
    for f in sorted(rows_dir.glob("r*.npy")) if rows_dir.exists() else []:
        arr = load_npy(f)
        keys = ["loss", "accuracy", *[f"agreement/{a}" for a in refs]]
        done[int(f.stem[1:])] = {k: torch.from_numpy(v) for k, v in zip(keys, arr)}

    def on_row(i: int, values: dict[str, torch.Tensor]) -> None:
        save_npy(rows_dir / f"r{i:03d}.npy", torch.stack(list(values.values())).numpy())

    result = evaluate_plane(
        model, *states, x, y,
        resolution=config.resolution, margin=config.margin, reference_probs=refs,
        bn_policy=policy, done_rows=done, on_row=on_row, verbose=False, **bn,
    )  # fmt: skip
    for key, arr in (("a", result.a_values), ("b", result.b_values)):
        files[rel(folder / f"{key}.npy")] = save_npy(folder / f"{key}.npy", arr.numpy())
    for key, arr in [("loss", result.loss), ("accuracy", result.accuracy)] + [
        (f"agreement_{a}", t) for a, t in result.agreement.items()
    ]:
        f = folder / f"{key.replace('@', '_')}.npy"
        files[rel(f)] = save_npy(f, arr.numpy().astype(np.float32))

    # Every snapshot of every member, projected onto the plane.
    names = param_names(model)
    o, t1, t2 = (flatten_params(sd, names).double() for sd in states)
    u, v, _ = plane_axes(o, t1, t2)
    rows = []
    for m in run.finished_members():
        epochs = run.snapshot_epochs(m)
        W = torch.stack([flatten_params(run.state_dict(m, e), names).double() for e in epochs])
        for e, (a, b) in zip(epochs, project_onto_plane(W, o, u, v).tolist()):
            rows.append([m, e, a, b])
    f = folder / "trajectories.csv"
    files[rel(f)] = write_csv(f, ["member", "epoch", "a", "b"], rows)
    anchors_info = {
        "names": list(anchors),
        "coords": result.anchor_coords.tolist(),
        "loss": result.anchor_loss.tolist(),
        "accuracy": result.anchor_accuracy.tolist(),
        "bn_policy": result.bn_policy,
        "settings": result.settings,
    }
    files[rel(folder / "anchors.json")] = write_json(folder / "anchors.json", anchors_info)
    return files


def _path_entry(a: str, b: str, kind: str, result) -> dict[str, Any]:
    return {
        "name": f"{a}->{b}",
        "from": a,
        "to": b,
        "kind": kind,
        "error_barrier": result.error_barrier,
        "loss_barrier": result.loss_barrier,
        "endpoint_error": [float(result.error[0]), float(result.error[-1])],
        "bn_policy": result.bn_policy,
    }


def _path_rows(name: str, result) -> list[list[Any]]:
    d_from, d_to = result.disagreement["theta1"], result.disagreement["theta2"]
    return [
        [name, float(al), float(lo), float(er), float(df), float(dt)]
        for al, lo, er, df, dt in zip(result.alphas, result.loss, result.error, d_from, d_to)
    ]


def _alignment(run, model, pair, x, y, config, policy, bn):
    """Weight-match member j onto member i: how much of their distance is permutation symmetry."""
    from modescape.models.alignment import align

    i, j = pair
    sd_i, sd_j = run.state_dict(i), run.state_dict(j)
    m = run.config.model  # model + probe: any architecture, function checked on the probe
    aligned = align(sd_i, sd_j, m.arch, m.variant, model=model, probe=x[:256])
    names = param_names(model)
    vi, vj, va = (flatten_params(sd, names).double() for sd in (sd_i, sd_j, aligned))
    probs = []
    for sd in (sd_j, aligned):
        m = run.build_model()
        m.load_state_dict(sd)
        with torch.inference_mode():
            probs.append(torch.softmax(m.eval()(x), dim=1))
    result = interpolate_path(
        model, sd_i, aligned, x, y, config.n_path_points, bn_policy=policy, **bn
    )
    entry = _path_entry(f"m{i}", f"m{j}-aligned", "aligned", result)
    info = {
        "members": [i, j],
        "cosine_before": _cosine(vi, vj),
        "cosine_after": _cosine(vi, va),
        "error_barrier_after": result.error_barrier,
        "loss_barrier_after": result.loss_barrier,
        "max_abs_prob_diff": float((probs[0] - probs[1]).abs().max()),
    }
    return info, _path_rows(entry["name"], result), entry


def _cosine(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(p @ q / (p.norm() * q.norm()))
