"""`modescape connect`: a low-loss curve between two members, and the functions along it.

Connected in loss, apart in function (Fort, Hu & Lakshminarayanan 2019, v1: "while low-loss
connectors between modes exist, they are not connected in the space of predictions"): a curve
θ(t) with fixed ends at two members is trained as Garipov et al. (2018), then scored at many t
against the straight line between the same ends, drawn in its plane, and ensembled; Fast
Geometric Ensembling from the first end is trained beside it (`analysis.connect`).

Results, under `<run>/connect/`:

    curves/<pair>-<shape><n>/settings.json       what the curve was trained with (cache key)
    curves/<pair>-<shape><n>/state.safetensors   resume state after the last finished epoch
    curves/<pair>-<shape><n>/bends/eNNNN.safetensors   the free bends after each epoch
    profile.csv, line.csv     t and every metric along the curve / the straight line
    plane/a.npy, b.npy, loss.npy, accuracy.npy, agreement_end0.npy, agreement_end1.npy
    plane/curve.csv           t, a, b, off_plane (the curve), line_a, line_b
    ensembles.csv             kind (curve, fge), size, accuracy, nll, brier, ece
    fge/sNNN.safetensors      FGE snapshots;  fge/points.csv  accuracy, diversity of each
    summary.json              `ConnectSummary`

Training is resumable after a kill at any point (kill point "connect.epoch" after each epoch's
files): every epoch depends only on the state file, so the bends come out the same bytes as an
uninterrupted run's on the same machine.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modescape.analysis.connect.ensembles import FGEConfig, curve_ensemble_curve, train_fge
from modescape.analysis.connect.evaluate import CurveProfile, evaluate_curve, summarize_curve
from modescape.analysis.connect.fit import CurveConfig, CurveFit, check_ends, flat_params
from modescape.analysis.connect.plane import curve_plane
from modescape.analysis.functionspace import agreement_with, normalized_diversity
from modescape.analysis.landscape import PlaneOptions
from modescape.analysis.metrics import METRICS, evaluate, evaluate_ensemble
from modescape.errors import ModescapeError
from modescape.registry import Flag
from modescape.seeding import derive_seed
from modescape.store import schema as S
from modescape.store.files import (
    atomic_write_bytes,
    killpoint,
    load_safetensors,
    safetensors_bytes,
    save_safetensors,
)
from modescape.store.manifest import write_study_summary
from modescape.studies.cache import open_cache
from modescape.studies.context import ResultWriter, RunContext, open_context

logger = logging.getLogger(__name__)

CONNECT = S.CONNECT
ConnectSummary = S.ConnectSummary
_END = re.compile(r"^m(\d+)(?:@e(\d+))?$")


@dataclass(frozen=True)
class ConnectConfig:
    """The connector study, flat (every field is a flag): the pair, the curve (`CurveConfig`'s
    fields), the evaluation, the plane and FGE (`FGEConfig`'s fields, prefixed `fge_`)."""

    pair: tuple[str, str] = ("m0", "m1")
    shape: str = CurveConfig.shape
    bends: int = CurveConfig.bends
    epochs: int = CurveConfig.epochs
    recipe: str = CurveConfig.recipe
    lr: float = CurveConfig.lr
    weight_decay: float = CurveConfig.weight_decay
    batch_size: int = CurveConfig.batch_size
    points: int = CurveConfig.points
    bn_batches: int = CurveConfig.bn_batches
    bn_batch_size: int = CurveConfig.bn_batch_size
    train_examples: int = CurveConfig.train_examples
    ensemble_size: int = CurveConfig.ensemble_size
    max_examples: int = 2000  # evaluation (test) examples at every t and plane point
    plane_resolution: int = 15  # 0: no plane
    fge_cycles: int = FGEConfig.cycles  # 0: no FGE
    fge_cycle_epochs: int = FGEConfig.cycle_epochs
    fge_lr1: float = FGEConfig.lr1
    fge_lr2: float = FGEConfig.lr2

    def __post_init__(self) -> None:
        object.__setattr__(self, "pair", tuple(self.pair))
        if len(self.pair) != 2:
            raise ModescapeError(f"--pair needs two members, e.g. m0,m1; got {list(self.pair)}")
        for name in self.pair:
            if _END.match(str(name)) is None:
                raise ModescapeError(
                    f"unknown curve end {name!r} in --pair (allowed: m<i>, m<i>@e<epoch>)"
                )
        if self.pair[0] == self.pair[1]:
            raise ModescapeError(
                f"--pair {','.join(self.pair)}: the two ends are the same snapshot; "
                "name two different members or snapshots (e.g. m0,m1)"
            )
        if self.max_examples < 1:
            raise ModescapeError(f"connect max_examples must be >= 1, got {self.max_examples}")
        if self.plane_resolution < 0 or 0 < self.plane_resolution < 3:
            raise ModescapeError(
                "connect plane_resolution must be 0 (no plane) or >= 3, "
                f"got {self.plane_resolution}"
            )
        if self.fge_cycles < 0:
            raise ModescapeError(f"connect fge_cycles must be >= 0, got {self.fge_cycles}")
        _ = self.curve, self.fge  # their own checks

    @property
    def curve(self) -> CurveConfig:
        return CurveConfig(**{f: getattr(self, f) for f in CurveConfig.__dataclass_fields__})

    @property
    def fge(self) -> FGEConfig | None:
        if self.fge_cycles == 0:
            return None
        return FGEConfig(self.fge_cycles, self.fge_cycle_epochs, self.fge_lr1, self.fge_lr2)


def parse_pair(text: str) -> tuple[str, str]:
    names = tuple(a.strip() for a in text.split(","))
    if len(names) != 2:
        raise ModescapeError(f"--pair needs two members, e.g. m0,m1; got {text!r}")
    return names[0], names[1]


def _end_state(ctx: RunContext, name: str, members: list[int]) -> dict[str, torch.Tensor]:
    m = _END.match(name)
    assert m is not None  # ConnectConfig checked the grammar
    member = int(m.group(1))
    if member not in members:
        own = ctx.run.snapshot_epochs(members[0]) if len(members) == 1 else []
        # a run of one member can still join two of its own snapshots
        hint = (
            f"; or two snapshots of one member: --pair m{members[0]}@e{own[0]},m{members[0]}"
            if len(own) > 1
            else ""
        )
        raise ModescapeError(
            f"curve end {name!r}: member {member} is not a finished member of {ctx.path} "
            f"(finished: {members}){hint}"
        )
    epochs = ctx.run.snapshot_epochs(member)
    if m.group(2) is not None and int(m.group(2)) not in epochs:
        raise ModescapeError(
            f"curve end {name!r}: member {member} has no snapshot at epoch {int(m.group(2))} "
            f"(--pair: it has {epochs[0]}..{epochs[-1]})"
        )
    return ctx.run.state_dict(member, int(m.group(2)) if m.group(2) else -1)


def _train_inputs(ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The scaled training set, laid out as the members trained on it: images channels_last
    when the run's `train.channels_last` says so (1.6x faster curve steps for the seed's
    SmallCNN on a loaded 2-core CPU: the convolutions' fast path)."""
    data = ctx.dataset
    x = ctx.train_inputs(torch.arange(len(data.y_train)))
    if ctx.run.config.train.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.y_train


def fit_curve(
    path: str | Path | RunContext,
    config: ConnectConfig | None = None,
    *,
    allow_partial: bool = False,
) -> ConnectSummary:
    """Train (or resume) the configured curve of a run, evaluate it; write `<run>/connect/`."""
    start = time.perf_counter()
    config = config or ConnectConfig()
    ctx = open_context(path)
    members = ctx.run.require_complete(allow_partial)
    ends = [_end_state(ctx, name, members) for name in config.pair]
    model = ctx.build_model()
    check_ends(flat_params(model, ends[0]), flat_params(model, ends[1]))
    out = ResultWriter(ctx.path / CONNECT, ctx.run)
    x_train, y_train = _train_inputs(ctx)
    fit, folder, epochs = _train_curve(ctx, config, model, ends, x_train, y_train, out)
    bends = fit.bends()
    n = min(config.max_examples, len(ctx.dataset.y_test))
    x, y = ctx.inputs("test")[:n], ctx.dataset.y_test[:n]
    c = config.curve
    perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))
    keep = perm[: c.train_examples] if c.train_examples else perm
    tx, ty = x_train[keep], y_train[keep]
    logger.info("connect: %d points along the curve and the straight line", c.points)
    common: dict[str, Any] = {
        "points": c.points, "bn_batches": c.bn_batches, "bn_batch_size": c.bn_batch_size
    }  # fmt: skip
    prof = evaluate_curve(model, bends, c.shape, x, y, tx, ty, keep_probs=True, **common)
    line = evaluate_curve(model, bends[[0, -1]], c.shape, x, y, tx, ty, **common)
    summ = summarize_curve(prof, line, bends, c.shape)
    for name, p in (("profile.csv", prof), ("line.csv", line)):
        cols = p.columns()
        out.csv(name, list(cols), np.stack(list(cols.values()), 1).tolist())
    plane = None
    if config.plane_resolution:
        plane = _plane(config, model, bends, x, y, tx, _kept_probs(prof), out)
    ens = _ensembles(ctx, config, model, ends[0], prof, x, y, x_train, y_train, out)
    summary = ConnectSummary(
        config=_config_dict(config),
        pair=list(config.pair),
        curve_folder=f"{CONNECT}/{folder}",
        bn_policy=prof.bn_policy,
        num_examples=n,
        **vars(summ),
        plane=plane,
        ensembles=ens,
        epochs_trained=epochs,
        files=out.files,
    )
    summary.elapsed_s = round(time.perf_counter() - start, 3)
    write_study_summary(ctx.run, CONNECT, summary.to_dict())
    return summary


def _config_dict(config: ConnectConfig) -> dict[str, Any]:
    d = asdict(config)
    d["pair"] = list(config.pair)
    return d


def train_precision(ctx: RunContext) -> str:
    """The arithmetic the curve and FGE train in: the run's own ("fp32" | "bf16", resolved when
    the run was created). A run whose precision was never resolved ("auto": one written by
    another tool) was not trained by modescape, so its curve trains in float32."""
    precision = str(ctx.run.config.train.precision)
    return "fp32" if precision == "auto" else precision


def _curve_settings(ctx: RunContext, config: ConnectConfig) -> dict[str, Any]:
    """Everything the trained bends depend on (the cache key of the curve's folder)."""
    t = ctx.run.config.train
    fit_keys = ("shape", "bends", "epochs", "recipe", "lr", "weight_decay", "batch_size")
    return {
        "pair": list(config.pair),
        **{k: getattr(config.curve, k) for k in fit_keys},
        "run_seed": ctx.run.config.seed,
        "precision": train_precision(ctx),
        "channels_last": bool(t.channels_last),
        "run_recipe": {
            "optimizer": t.optimizer,
            "lr": t.lr,
            "batch_size": t.batch_size,
            "schedule": [t.lr_at(e) for e in range(config.curve.epochs)],
        },
    }


def _train_curve(
    ctx: RunContext,
    config: ConnectConfig,
    model: torch.nn.Module,
    ends: list[dict[str, torch.Tensor]],
    x: torch.Tensor,
    y: torch.Tensor,
    out: ResultWriter,
) -> tuple[CurveFit, str, list[dict[str, float]]]:
    """The trained curve, resumed from its folder's state file when there is one."""
    c = config.curve
    rel = f"curves/{'-'.join(config.pair).replace('@', '_')}-{c.shape}{c.bends}"
    folder = out.root / rel
    settings = _curve_settings(ctx, config)
    _, digest = open_cache(folder, settings)
    out.files[f"{rel}/{S.SETTINGS}"] = digest
    t = ctx.run.config.train
    seed = derive_seed(ctx.run.config.seed, CONNECT, *config.pair, c.shape, c.bends)
    fit = CurveFit(
        model,
        ends[0],
        ends[1],
        c,
        seed=seed,
        batch_size=t.batch_size,
        optimizer=t.optimizer,
        lr_at=t.lr_at,
        precision=settings["precision"],
    )
    state_path = folder / "state.safetensors"
    records: list[dict[str, float]] = []
    if state_path.exists():
        tensors = load_safetensors(state_path)
        fit.load_state(tensors)
        records = _records(tensors)
        logger.info("connect: resuming the curve after epoch %d", fit.epoch)
    while fit.epoch < c.epochs:
        records.append(fit.train_epoch(x, y))
        save_safetensors(folder / "bends" / f"e{fit.epoch:04d}.safetensors", _named_bends(fit))
        killpoint("connect.bends")
        state = fit.state() | {
            "records": torch.tensor([[r["lr"], r["train_loss"]] for r in records])
        }
        atomic_write_bytes(state_path, safetensors_bytes(state, {"epoch": fit.epoch}))
        killpoint("connect.epoch")
        logger.info(
            "connect: curve epoch %d/%d, loss %.4f", fit.epoch, c.epochs, records[-1]["train_loss"]
        )
    out.reuse_folder(rel)
    out.reuse_folder(f"{rel}/bends")
    return fit, rel, records


def _records(tensors: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    rows = tensors.get("records", torch.zeros(0, 2)).tolist()
    return [{"epoch": i + 1, "lr": lr, "train_loss": loss} for i, (lr, loss) in enumerate(rows)]


def _named_bends(fit: CurveFit) -> dict[str, torch.Tensor]:
    """The free bends as `bend<k>.<parameter name>` tensors (k = 1 .. n−2)."""
    from modescape.analysis.weightspace import unflatten

    out: dict[str, torch.Tensor] = {}
    for k, vector in enumerate(fit.free.detach(), start=1):
        for name, t in unflatten(vector.clone(), fit.pnames, fit.pshapes).items():
            out[f"bend{k}.{name}"] = t.contiguous()
    return out


def _kept_probs(prof: CurveProfile) -> torch.Tensor:
    """The test predictions along the curve (`evaluate_curve(..., keep_probs=True)`)."""
    if prof.probs is None:
        raise ModescapeError("connect: the curve was evaluated without keeping its predictions")
    return prof.probs


def _plane(
    config: ConnectConfig,
    model: torch.nn.Module,
    bends: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    train_x: torch.Tensor,
    probs: torch.Tensor,
    out: ResultWriter,
) -> S.CurvePlane:
    logger.info(
        "connect: the curve's plane at %d×%d", config.plane_resolution, config.plane_resolution
    )
    cp = curve_plane(
        model,
        bends,
        config.curve.shape,
        x,
        y,
        train_x,
        end_probs=probs[[0, -1]],
        options=PlaneOptions(resolution=config.plane_resolution, verbose=False, progress=False),
        points=config.curve.points,
    )
    p = cp.plane
    arrays = {"a": p.a_values, "b": p.b_values, "loss": p.loss, "accuracy": p.accuracy}
    arrays |= {f"agreement_{k}": v for k, v in p.agreement.items()}
    for key, arr in arrays.items():
        out.npy(f"plane/{key}.npy", arr.numpy().astype(np.float64 if key in "ab" else np.float32))
    rows = np.column_stack([cp.t, cp.curve_coords, cp.off_plane, cp.line_coords]).tolist()
    out.csv("plane/curve.csv", ["t", "a", "b", "off_plane", "line_a", "line_b"], rows)
    return S.CurvePlane(
        third=cp.third,
        anchor_coords=p.anchor_coords.tolist(),
        max_off_plane=float(cp.off_plane.max()),
        bn_policy=p.bn_policy,
        resolution=config.plane_resolution,
    )


def _ensembles(
    ctx: RunContext,
    config: ConnectConfig,
    model: torch.nn.Module,
    end0: dict[str, torch.Tensor],
    prof: CurveProfile,
    x: torch.Tensor,
    y: torch.Tensor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    out: ResultWriter,
) -> S.ConnectEnsembles:
    """Ensembles of points along the curve and, unless switched off, FGE from the first end."""
    rows: list[list[Any]] = []
    result = S.ConnectEnsembles()
    curve = curve_ensemble_curve(_kept_probs(prof), y, prof.t, config.curve.ensemble_size)
    rows += [
        ["curve", int(k), *[float(curve.mean[m][i]) for m in METRICS]]
        for i, k in enumerate(curve.sizes)
    ]
    result.curve = S.CurveEnsembleRecord([prof.t[s[0]].tolist() for s in curve.subsets])
    if config.fge is not None:
        logger.info(
            "connect: FGE, %d cycles of %d epochs", config.fge.cycles, config.fge.cycle_epochs
        )
        net = ctx.build_model()
        net.load_state_dict(end0)
        seed = derive_seed(ctx.run.config.seed, CONNECT, "fge", config.pair[0])
        snaps = train_fge(
            net, x_train, y_train, config.fge, seed=seed,
            batch_size=ctx.run.config.train.batch_size, precision=train_precision(ctx),
        )  # fmt: skip
        for i, sd in enumerate(snaps):
            out.safetensors(f"fge/s{i:03d}.safetensors", sd, {"cycle": i})
        from modescape.analysis.engine.batched import evaluate_many

        probs = evaluate_many(model, snaps, x).numpy()
        start = _kept_probs(prof)[0].numpy()
        acc = np.array([evaluate(p, y.numpy())["accuracy"] for p in probs])
        dis = 1.0 - agreement_with(probs, start)[:, 0]
        points = [
            [i, a, d, float(normalized_diversity(d, a))] for i, (a, d) in enumerate(zip(acc, dis))
        ]
        out.csv(
            "fge/points.csv", ["snapshot", "accuracy", "disagreement_start", "diversity"], points
        )
        for k in range(1, len(probs) + 1):
            ev = evaluate_ensemble(probs[:k], y.numpy())  # float64 mean, log-mean-exp NLL
            rows.append(["fge", k, *[ev[m] for m in METRICS]])
        result.fge = S.FGERecord(len(snaps), asdict(config.fge))
    out.csv("ensembles.csv", ["kind", "size", *METRICS], rows)
    return result


def pipeline_settings(config: Any) -> ConnectConfig:
    """What `modescape run` uses: on 1-D signals (the embedded MNIST-1D demo) a curve trained
    in seconds (6 epochs of Garipov's recipe at lr 0.05, a 9×9 plane, two one-epoch FGE
    cycles); on images the full settings, priced by `--budget` first (`estimate.connect_cost`)."""
    if config.data.name == "mnist1d":
        return ConnectConfig(epochs=6, lr=0.05, train_examples=500, max_examples=1000,
                             plane_resolution=9, fge_cycles=2, fge_cycle_epochs=1)  # fmt: skip
    return ConnectConfig()


def applies(config: Any) -> bool:
    """`modescape run` connects two members, so it runs the study when the run has two."""
    return int(config.members) >= 2


def outcome(summary: S.ConnectSummary, run: Path) -> list[str]:
    """What `modescape connect` prints when done."""
    m = summary.midpoint
    return [
        f"curve {'-'.join(summary.pair)}: test-error barrier {summary.error_barrier:.3f} "
        f"(straight line {summary.line_error_barrier:.3f})",
        f"midpoint disagrees with the ends on {m['disagreement_end0']:.3f} / "
        f"{m['disagreement_end1']:.3f} (ends with each other {m['ends_disagreement']:.3f})",
        f"results in {run / S.CONNECT}",
    ]


CLI_FLAGS = {
    "pair": Flag(
        "--pair",
        "the curve's two ends, m<i> or m<i>@e<epoch>",
        parse=parse_pair,
        metavar="A,B",
        default="m0,m1",
    ),
    "shape": Flag(help="bezier (Garipov's) or polychain"),
    "bends": Flag(help="bends including the two fixed ends (>= 3; Garipov: 3)"),
    "epochs": Flag(help="epochs of curve training"),
    "recipe": Flag(help="garipov (SGD, lr annealed to 1%%) or run (the run's optimiser)"),
    "lr": Flag(help="the garipov recipe's learning rate"),
    "points": Flag(help="values of t evaluated (Garipov: 61)"),
    "max_examples": Flag("--max-examples", "test examples per point"),
    "train_examples": Flag("--train-examples", "training examples scored per point (0: all)"),
    "plane_resolution": Flag("--plane", "grid values per axis of the curve's plane (0: none)"),
    "fge_cycles": Flag("--fge-cycles", "FGE snapshots (0: no FGE)"),
    "fge_cycle_epochs": Flag("--fge-cycle-epochs", "epochs per FGE cycle (Garipov: 2-4)"),
    "fge_lr1": Flag("--fge-lr1", "FGE's largest learning rate"),
    "fge_lr2": Flag("--fge-lr2", "FGE's smallest learning rate (a snapshot there)"),
    "weight_decay": Flag("--weight-decay", "L2 on θ(t) (Garipov's regulariser; the paper: 0)"),
    "batch_size": Flag("--batch-size", "curve minibatch (0: the run's)"),
    "bn_batches": Flag("--bn-batches", "training batches per BatchNorm recomputation"),
    "bn_batch_size": Flag("--bn-batch-size", "examples per BatchNorm recomputation batch"),
    "ensemble_size": Flag("--ensemble-size", "largest ensemble of points along the curve"),
}


def connect_config(**overrides: Any) -> ConnectConfig:
    """`ConnectConfig(**overrides)`; kept for callers that build the settings by name."""
    return ConnectConfig(**overrides)
