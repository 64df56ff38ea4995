"""`modescape landscape`: loss-landscape planes, paths and permutation alignment of a run.

Anchors are named from the run:

    origin        the zero vector (the paper's choice of o)
    m1            member 1's final snapshot          m1@e5   member 1 after epoch 5
    init1         member 1's initialisation (m1@e0)  wa1     member 1's weight average

Results (each plane is resumable row by row; a finished plane is not recomputed, and its
`settings.json` keys it on everything its values depend on: anchors, resolution, margin, examples,
BatchNorm policy and weight-average window; other settings empty the folder and start again):

    landscape/planes/<name>/a.npy, b.npy             grid coordinates [R]
    landscape/planes/<name>/loss.npy, accuracy.npy   [R, R] indexed [b, a]
    landscape/planes/<name>/agreement_<anchor>.npy   [R, R] agreement with each snapshot anchor
    landscape/planes/<name>/anchors.json             names, plane coords, grid nodes, metrics
    landscape/planes/<name>/settings.json            the settings the plane was computed with
    landscape/planes/<name>/trajectories.csv         member, epoch, a, b: every snapshot projected
    landscape/paths.csv                              path, alpha, loss, error, disagreement_from/_to
    landscape/summary.json                           `LandscapeSummary`: planes, paths, alignment

The alignment (member 1 onto member 0, `modescape.models.alignment`) records its method
(`--align-method`), its spec ("built-in", "automatic" or the `--align-spec` file) and the spec
file's sha256 in the summary's `alignment`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modescape.analysis.engine.points import flat_anchor
from modescape.analysis.geometry import plane_axes, project_onto_plane
from modescape.analysis.landscape import PathResult, evaluate_plane, interpolate_path
from modescape.analysis.weightspace import flatten_params
from modescape.errors import ModescapeError, check_choice
from modescape.options import AlignMethod
from modescape.registry import Flag
from modescape.store import schema as S
from modescape.store.files import load_npy, read_json
from modescape.store.manifest import write_study_summary
from modescape.store.run import Run
from modescape.studies.cache import open_cache
from modescape.studies.context import ResultWriter, RunContext, open_context
from modescape.studies.limits import MAX_GRID, MAX_PATH_POINTS, check_float, check_int

logger = logging.getLogger(__name__)

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
    weight_average: int = S.WEIGHT_AVERAGE_WINDOW  # snapshots averaged by a wa<i> anchor
    align_spec: str | None = None  # a spec file (`modescape align-spec`); None: automatic
    align_method: str = AlignMethod.WEIGHTS.value  # weight or activation matching

    def __post_init__(self) -> None:
        check_choice("landscape --align-method", self.align_method, AlignMethod)
        if self.align_spec is not None and not Path(self.align_spec).is_file():
            raise ModescapeError(
                f"--align-spec {self.align_spec}: no such file (write one with "
                "modescape align-spec RUN --out FILE)"
            )
        check_int("landscape --grid", self.resolution, 3, MAX_GRID)
        check_int("landscape --path-points", self.n_path_points, 2, MAX_PATH_POINTS)
        check_int("landscape --max-examples", self.max_examples, 1)  # more: all test examples
        check_float("landscape --margin", self.margin, 0.0, 10.0)
        check_int("landscape weight_average", self.weight_average, 1)
        # Anchor names are checked here, before any plane is computed (`check_anchors` then
        # checks them against the run).
        for plane in self.planes or ():
            if len(plane) != 3 or len(set(plane)) != 3:  # a plane needs three distinct points
                raise ModescapeError(f"--anchors needs three different names, got {list(plane)}")
        for path in self.paths or ():
            if len(path) != 2:
                raise ModescapeError(f"--path needs two anchors, e.g. m0,m1; got {list(path)}")
        for name in {a for group in (*(self.planes or ()), *(self.paths or ())) for a in group}:
            if _ANCHOR.match(name) is None:
                raise ModescapeError(
                    f"unknown anchor {name!r} in --anchors/--path "
                    "(allowed: origin, m<i>, m<i>@e<epoch>, init<i>, wa<i>)"
                )


def check_anchors(ctx: RunContext, config: LandscapeConfig, members: list[int]) -> None:
    """Every anchor of the configured planes and paths names a finished member (and a snapshot
    it has): checked before the first plane is computed, not after."""
    groups = (*(config.planes or ()), *(config.paths or ()))
    for name in sorted({a for group in groups for a in group} - {"origin"}):
        m = _ANCHOR.match(name)
        assert m is not None  # LandscapeConfig checked the grammar
        member = int(next(g for g in (m.group(2), m.group(4), m.group(5)) if g is not None))
        if member not in members:
            raise ModescapeError(
                f"anchor {name!r}: member {member} is not a finished member of {ctx.path} "
                f"(finished: {members})"
            )
        epoch = m.group(3) if m.group(4) is None else "0"  # init<i>: the epoch-0 snapshot
        if epoch is not None and int(epoch) not in ctx.run.snapshot_epochs(member):
            epochs = ctx.run.snapshot_epochs(member)
            if m.group(4) is not None:
                raise ModescapeError(
                    f"anchor {name!r}: member {member} has no initialisation (epoch 0) snapshot "
                    f"(its snapshots are epochs {epochs[0]}..{epochs[-1]}; an imported run "
                    f"starts where its files do): use m{member}@e{epochs[0]}"
                )
            raise ModescapeError(
                f"anchor {name!r}: member {member} has no snapshot at epoch "
                f"{int(epoch)} (has {epochs[0]}..{epochs[-1]})"
            )


def parse_anchors(text: str) -> tuple[str, str, str]:
    names = tuple(a.strip() for a in text.split(","))
    if len(names) != 3:
        raise ModescapeError(f"--anchors needs three names, e.g. origin,m0,m1; got {text!r}")
    return names[0], names[1], names[2]


def resolve_anchor(
    run: Run | RunContext, name: str, weight_average: int = S.WEIGHT_AVERAGE_WINDOW
) -> dict[str, torch.Tensor]:
    """The state dict an anchor name stands for (grammar in the module docstring)."""
    ctx = open_context(run)
    m = _ANCHOR.match(name)
    if m is None:
        raise ModescapeError(
            f"unknown anchor {name!r} (allowed: origin, m<i>, m<i>@e<epoch>, init<i>, wa<i>)"
        )
    if name == "origin":
        return {k: torch.zeros_like(v) for k, v in ctx.build_model().state_dict().items()}
    if m.group(2) is not None:
        return ctx.run.state_dict(int(m.group(2)), int(m.group(3)) if m.group(3) else -1)
    if m.group(4) is not None:
        return ctx.run.state_dict(int(m.group(4)), 0)
    return ctx.weight_average_state(int(m.group(5)), weight_average)


def default_planes(run: Run, members: list[int]) -> tuple[tuple[str, str, str], ...]:
    """The paper's plane (origin and two members' final weights); with one member, the origin,
    its snapshot half-way along and its final weights."""
    if len(members) > 1:
        return (("origin", f"m{members[0]}", f"m{members[1]}"),)
    return (("origin", f"m{members[0]}@e{_middle_epoch(run, members[0])}", f"m{members[0]}"),)


def default_paths(run: Run, members: list[int]) -> tuple[tuple[str, str], ...]:
    """Across members (final weights of the first two) and within member 0: its snapshot at the
    middle of training to its final weights (m0@e{E/2} -> m0; a snapshot two epochs before the
    end would be the weakest possible test of a trajectory's valley)."""
    paths = [(f"m{members[0]}@e{_middle_epoch(run, members[0])}", f"m{members[0]}")]
    if len(members) > 1:
        paths.insert(0, (f"m{members[0]}", f"m{members[1]}"))
    return tuple(paths)


def _middle_epoch(run: Run, member: int) -> int:
    """The snapshot epoch nearest to half of the last one (E // 2)."""
    epochs = run.snapshot_epochs(member)
    return min(epochs, key=lambda e: (abs(e - epochs[-1] // 2), e))


@dataclass
class _Setup:
    ctx: RunContext
    config: LandscapeConfig
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    policy: str
    bn: dict[str, Any]  # {"train_x": BatchNorm subset} where the model has BatchNorm
    out: ResultWriter

    def anchor(self, name: str) -> dict[str, torch.Tensor]:
        return resolve_anchor(self.ctx, name, self.config.weight_average)

    def path(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> PathResult:
        return interpolate_path(
            self.model, a, b, self.x, self.y, self.config.n_path_points,
            bn_policy=self.policy, **self.bn,
        )  # fmt: skip


def run_landscape(
    path: str | Path | RunContext,
    config: LandscapeConfig | None = None,
    *,
    allow_partial: bool = False,
) -> S.LandscapeSummary:
    """Evaluate every configured plane and path of a run; write `<run>/landscape/`."""
    start = time.perf_counter()
    config = config or LandscapeConfig()
    ctx = open_context(path)
    members = ctx.run.require_complete(allow_partial)
    check_anchors(ctx, config, members)
    data = ctx.dataset
    bn: dict[str, Any] = {"train_x": ctx.bn_subset} if ctx.has_batchnorm else {}
    setup = _Setup(
        ctx, config, ctx.build_model(), ctx.inputs("test")[: config.max_examples],
        data.y_test[: config.max_examples], config.bn_policy if bn else "keep", bn,
        ResultWriter(ctx.path / S.LANDSCAPE, ctx.run),
    )  # fmt: skip
    wanted = config.planes or default_planes(ctx.run, members)
    _check_planes(setup, wanted)
    aligned, how = None, dict[str, Any]()
    if config.align and len(members) > 1:  # first: a network it cannot align costs no plane
        aligned, how = _aligned_member(setup, members[:2])
    planes = []
    for anchors in wanted:
        grid = f"{config.resolution}x{config.resolution}"
        logger.info(f"landscape: plane {', '.join(anchors)} at {grid}")
        planes.append(_plane(setup, anchors))
    paths, path_rows = _paths(setup, config.paths or default_paths(ctx.run, members))
    alignment = None
    if aligned is not None:
        who = f"member {members[1]} onto member {members[0]}"
        logger.info(f"landscape: permutation alignment of {who}")
        alignment, rows, entry = _alignment(setup, members[:2], aligned)
        alignment = replace(alignment, **how)
        path_rows += rows
        paths.append(entry)
        pair = (f"m{members[0]}", f"m{members[1]}")
        before = next((p for p in paths if (p.from_, p.to) == pair), None)
        if before is None:
            result = setup.path(*(setup.anchor(a) for a in pair))
            before = _path_entry(*pair, "across members", result)
        alignment.error_barrier_before = before.error_barrier
        alignment.loss_barrier_before = before.loss_barrier
    header = ["path", "alpha", "loss", "error", "disagreement_from", "disagreement_to"]
    setup.out.csv(S.LANDSCAPE_PATHS, header, path_rows)
    summary = S.LandscapeSummary(
        config=asdict(config),
        members=members,
        num_examples=len(setup.y),
        planes=planes,
        paths=paths,
        alignment=alignment,
        files=setup.out.files,
        warnings=_window_warnings(setup, planes, paths),
    )
    summary.elapsed_s = round(time.perf_counter() - start, 3)
    for warning in summary.warnings:
        logger.warning(warning)
    write_study_summary(ctx.run, S.LANDSCAPE, summary.to_dict())
    return summary


def path_kind(a: str, b: str) -> str:
    """ "within trajectory" when both anchors belong to one member (m0, m0@e5, init0, wa0 are
    all member 0's), "across members" when they belong to two, else "other" (the origin)."""
    owners = []
    for name in (a, b):
        m = _ANCHOR.match(name)
        member = next((g for g in (m.group(2), m.group(4), m.group(5)) if g), None) if m else None
        owners.append(member)
    if None in owners:
        return "other"
    return "within trajectory" if owners[0] == owners[1] else "across members"


def _paths(
    setup: _Setup, pairs: Sequence[tuple[str, str]]
) -> tuple[list[S.PathEntry], list[list[Any]]]:
    entries: list[S.PathEntry] = []
    rows: list[list[Any]] = []
    for a, b in pairs:
        kind = path_kind(a, b)
        logger.info(f"landscape: path {a} -> {b} ({kind})")
        result = setup.path(setup.anchor(a), setup.anchor(b))
        entries.append(_path_entry(a, b, kind, result))
        rows += _path_rows(f"{a}->{b}", result)
    return entries, rows


def _window_warnings(
    setup: _Setup, planes: list[S.PlaneEntry], paths: list[S.PathEntry]
) -> list[str]:
    """A clamped weight-average window, for every wa<i> anchor used."""
    names = {a for p in planes for a in p.anchors} | {a for p in paths for a in (p.from_, p.to)}
    warnings = set()
    for name in names:
        if (m := _ANCHOR.match(name)) is not None and m.group(5) is not None:
            _, warning = setup.ctx.weight_average_window(
                int(m.group(5)), setup.config.weight_average
            )
            warnings |= {warning} if warning else set()
    return sorted(warnings)


def _check_planes(setup: _Setup, planes: Any) -> None:
    """Refuse a plane whose anchors coincide or are collinear (e.g. m0 and m0@e<last>) before
    any plane's cache folder is written: `plane_axes` raises the ModescapeError naming why."""
    for anchors in planes:
        flats = [flat_anchor(setup.model, setup.anchor(a))[0] for a in anchors]
        try:
            plane_axes(*flats)
        except ModescapeError as e:
            raise ModescapeError(f"--anchors {','.join(anchors)}: {e}") from None


def _plane(setup: _Setup, anchors: tuple[str, str, str]) -> S.PlaneEntry:
    config = setup.config
    name = "-".join(anchors).replace("@", "_")
    folder = setup.out.root / "planes" / f"{name}-r{config.resolution}"
    rel = str(folder.relative_to(setup.out.root))
    settings = {
        "anchors": list(anchors),
        "resolution": config.resolution,
        "margin": config.margin,
        "n_examples": len(setup.y),
        "bn_policy": setup.policy,
        "weight_average": config.weight_average,
    }
    reusable, digest = open_cache(folder, settings)
    setup.out.files[f"{rel}/{S.SETTINGS}"] = digest
    done = reusable and (folder / S.PLANE_ANCHORS).exists()
    # A plane finished before anchors.json recorded the anchors' grid nodes is written again.
    if not (done and "nodes" in read_json(folder / S.PLANE_ANCHORS)):
        _evaluate_plane(setup, anchors, folder, rel)
    else:  # finished by an earlier call (perhaps killed before its summary): list its files
        setup.out.reuse_folder(rel)
    policy = setup.policy if setup.bn else "none"
    return S.PlaneEntry(name, list(anchors), rel, config.resolution, policy)


def _evaluate_plane(setup: _Setup, anchors: Sequence[str], folder: Path, rel: str) -> None:
    states = [setup.anchor(a) for a in anchors]
    refs = {}
    for a, sd in zip(anchors, states):
        if a != "origin":
            # Agreement with the anchor's own predictions (computed once, exactly).
            m = setup.ctx.build_model()
            m.load_state_dict(sd)
            with torch.inference_mode():
                refs[a] = torch.softmax(m.eval()(setup.x), dim=1)
    rows_dir = folder / "rows"
    done = {}
    for f in sorted(rows_dir.glob("r*.npy")) if rows_dir.exists() else []:
        keys = ["loss", "accuracy", *[f"agreement/{a}" for a in refs]]
        done[int(f.stem[1:])] = {k: torch.from_numpy(v) for k, v in zip(keys, load_npy(f))}

    def on_row(i: int, values: dict[str, torch.Tensor]) -> None:
        from modescape.store.files import save_npy

        save_npy(rows_dir / f"r{i:03d}.npy", torch.stack(list(values.values())).numpy())

    result = evaluate_plane(
        setup.model, states[0], states[1], states[2], setup.x, setup.y,
        resolution=setup.config.resolution, margin=setup.config.margin, reference_probs=refs,
        bn_policy=setup.policy, done_rows=done, on_row=on_row, verbose=False, **setup.bn,
    )  # fmt: skip
    out = setup.out
    for key, arr in (("a", result.a_values), ("b", result.b_values)):
        out.npy(f"{rel}/{key}.npy", arr.numpy())
    for key, arr in [("loss", result.loss), ("accuracy", result.accuracy)] + [
        (f"agreement_{a}", t) for a, t in result.agreement.items()
    ]:
        out.npy(f"{rel}/{key.replace('@', '_')}.npy", arr.numpy().astype(np.float32))
    out.csv(
        f"{rel}/{S.PLANE_TRAJECTORIES}", ["member", "epoch", "a", "b"], _projected(setup, states)
    )
    anchors_info = {
        "names": list(anchors),
        "coords": result.anchor_coords.tolist(),
        # (row, column) of each anchor's grid node: rows index b, columns a; the node holds the
        # anchor's own weights, so e.g. agreement_m0[row, col] is exact at m0
        "nodes": result.anchor_index.tolist(),
        "loss": result.anchor_loss.tolist(),
        "accuracy": result.anchor_accuracy.tolist(),
        "bn_policy": result.bn_policy,
        "settings": result.settings,
    }
    out.json(f"{rel}/{S.PLANE_ANCHORS}", anchors_info)  # last: marks the plane finished


def _projected(setup: _Setup, states: list[dict[str, torch.Tensor]]) -> list[list[Any]]:
    """Every snapshot of every member projected onto the plane: rows member, epoch, a, b."""
    run, names = setup.ctx.run, setup.ctx.param_names
    o, t1, t2 = (flatten_params(sd, names).double() for sd in states)
    u, v, _ = plane_axes(o, t1, t2)
    rows = []
    for m in run.finished_members():
        epochs = run.snapshot_epochs(m)
        W = torch.stack([flatten_params(run.state_dict(m, e), names).double() for e in epochs])
        for e, (a, b) in zip(epochs, project_onto_plane(W, o, u, v).tolist()):
            rows.append([m, e, a, b])
    return rows


def _path_entry(a: str, b: str, kind: str, result: PathResult) -> S.PathEntry:
    return S.PathEntry(
        name=f"{a}->{b}",
        from_=a,
        to=b,
        kind=kind,
        error_barrier=result.error_barrier,
        loss_barrier=result.loss_barrier,
        endpoint_error=[float(result.error[0]), float(result.error[-1])],
        bn_policy=result.bn_policy,
    )


def _path_rows(name: str, result: PathResult) -> list[list[Any]]:
    d_from, d_to = result.disagreement["theta1"], result.disagreement["theta2"]
    return [
        [name, float(al), float(lo), float(er), float(df), float(dt)]
        for al, lo, er, df, dt in zip(result.alphas, result.loss, result.error, d_from, d_to)
    ]


def _aligned_member(
    setup: _Setup, pair: list[int]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Member j aligned onto member i (its function checked on a probe batch) and how (method,
    spec and the spec file's sha256), or one error naming the options that get around it."""
    from modescape.models.alignment import align
    from modescape.models.architectures import ARCHITECTURES

    run, config, m = setup.ctx.run, setup.config, setup.ctx.run.config.model
    state_i, state_j = run.state_dict(pair[0]), run.state_dict(pair[1])
    builtin = m.arch in ARCHITECTURES
    how: dict[str, Any] = {"method": config.align_method, "spec_sha256": None,
                           "spec": "built-in" if builtin else "automatic"}  # fmt: skip
    # model + probe: any architecture, its function checked on the probe
    which: dict[str, Any] = {"arch": m.arch, "variant": m.variant}
    try:
        if config.align_spec is not None:
            which = {"spec": None}
            which["spec"], how["spec_sha256"] = read_align_spec(config.align_spec, state_i)
            how["spec"] = config.align_spec
        inputs = None
        if config.align_method == AlignMethod.ACTIVATIONS:
            inputs = _activation_inputs(setup.ctx)
        aligned = align(state_i, state_j, model=setup.model, probe=setup.x[:256],
                        method=config.align_method, inputs=inputs, **which)  # fmt: skip
    except ModescapeError as e:
        other = "" if config.align_spec is not None else (
            ", or describe the permutations in a spec file: modescape align-spec RUN --out "
            "spec.json, edit it, --align-spec spec.json"
        )  # fmt: skip
        raise ModescapeError(
            f"{e}; to study the landscape without it: modescape landscape --no-align "
            f"(LandscapeConfig(align=False)){other}"
        ) from None
    return aligned, how


def read_align_spec(path: str | Path, state: dict[str, torch.Tensor]) -> tuple[Any, str]:
    """The spec file `path` checked against `state` (a checkpoint of the run) and its sha256."""
    import hashlib
    import json

    from modescape.models.specs import spec_from_json

    data = Path(path).read_bytes()
    source = f"--align-spec {path}"
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModescapeError(f"{source}: not JSON ({e})") from None
    return spec_from_json(doc, state, source=source), hashlib.sha256(data).hexdigest()


def run_spec(ctx: RunContext, state: dict[str, torch.Tensor]) -> tuple[Any, str]:
    """The spec the run's alignment uses without a spec file, and which: "built-in" (from the
    architecture's structure) or "automatic" (torch.fx trace on test inputs)."""
    from modescape.models.alignment import resolve_spec
    from modescape.models.architectures import ARCHITECTURES

    m = ctx.run.config.model
    builtin = m.arch if m.arch in ARCHITECTURES else None
    probe = ctx.inputs("test")[:256]
    spec = resolve_spec(None, state, builtin, m.variant, ctx.build_model(), probe)
    return spec, "built-in" if builtin else "automatic"


def alignment_spec_text(path: str | Path) -> str:
    """The spec file of a run's alignment (`modescape align-spec RUN`): what `landscape` uses
    without `--align-spec`, to edit and pass back."""
    from modescape.models.specs import spec_json_text

    ctx = open_context(path)
    members = ctx.run.finished_members()
    if not members:
        raise ModescapeError(f"{ctx.path} has no finished member to read the network's sizes")
    spec, _ = run_spec(ctx, ctx.run.state_dict(members[0]))
    return spec_json_text(spec)


def _activation_inputs(ctx: RunContext, n: int = 512) -> torch.Tensor:
    """A seeded sample of training inputs for activation matching."""
    from modescape.seeding import derive_seed, torch_generator

    g = torch_generator(derive_seed(ctx.run.config.seed, "landscape", "align-activations"))
    index = torch.randperm(len(ctx.dataset.y_train), generator=g)[:n]
    return ctx.train_inputs(index)


def _alignment(
    setup: _Setup, pair: list[int], aligned: dict[str, torch.Tensor]
) -> tuple[S.AlignmentRecord, list[list[Any]], S.PathEntry]:
    """Weight-match member j onto member i: how much of their distance is permutation symmetry."""
    run, names = setup.ctx.run, setup.ctx.param_names
    i, j = pair
    sd_i, sd_j = run.state_dict(i), run.state_dict(j)
    vi, vj, va = (flatten_params(sd, names).double() for sd in (sd_i, sd_j, aligned))
    probs = []
    for sd in (sd_j, aligned):
        m = setup.ctx.build_model()
        m.load_state_dict(sd)
        with torch.inference_mode():
            probs.append(torch.softmax(m.eval()(setup.x), dim=1))
    result = setup.path(sd_i, aligned)
    entry = _path_entry(f"m{i}", f"m{j}-aligned", "aligned", result)
    info = S.AlignmentRecord(
        members=[i, j],
        cosine_before=_cosine(vi, vj),
        cosine_after=_cosine(vi, va),
        error_barrier_after=result.error_barrier,
        loss_barrier_after=result.loss_barrier,
        max_abs_prob_diff=float((probs[0] - probs[1]).abs().max()),
    )
    return info, _path_rows(entry.name, result), entry


def _cosine(p: torch.Tensor, q: torch.Tensor) -> float:
    return float(p @ q / (p.norm() * q.norm()))


# ---- the study's declaration (`modescape.registry`) ----------------------------------------------
def parse_paths(items: list[str]) -> tuple[tuple[str, str], ...] | None:
    """Repeated `--path A,B` values → ((A, B), ...); None when there is none."""
    paths = tuple(tuple(a.strip() for a in p.split(",")) for p in items)
    if any(len(p) != 2 for p in paths):
        raise ModescapeError("--path needs two anchors, e.g. --path m0,m1")
    return paths or None  # type: ignore[return-value]


CLI_FLAGS = {
    "planes": Flag(
        "--anchors",
        "three of: origin, m<i>, m<i>@e<epoch>, init<i>, wa<i>",
        parse=lambda text: (parse_anchors(text),),
        metavar="A,B,C",
        default="origin and two members' ends",
    ),
    "paths": Flag(
        "--path",
        "a linear path between two anchors (repeatable)",
        parse=parse_paths,
        metavar="A,B",
        append=True,
        default="across members and within member 0",
    ),
    "resolution": Flag("--grid", "grid points per axis"),
    "margin": Flag(help="extra extent around the anchors (fraction)"),
    "max_examples": Flag(help="test examples per point"),
    "n_path_points": Flag("--path-points", "points along each path"),
    "bn_policy": Flag(help="BatchNorm statistics of each point"),
    "align": Flag(help="skip the permutation alignment of member 1 onto member 0"),
    "align_spec": Flag(
        help="permutation spec file for the alignment (write one: modescape align-spec RUN)",
        metavar="FILE",
        default="automatic",
    ),
    "align_method": Flag(help="weight or activation matching (Git Re-Basin)"),
}


def outcome(summary: S.LandscapeSummary, run: Path) -> list[str]:
    """What `modescape landscape` prints when done."""
    lines = [f"{p.name:>24} ({p.kind}): error barrier {p.error_barrier:.3f}" for p in summary.paths]
    return [*lines, f"results in {run / S.LANDSCAPE}"]
