"""What `modescape run` will cost here: training and each study, from a short timed probe.

The probe (a few seconds) times, on this machine and with the run's own model, data and thread
counts: a few training steps of the configured recipe (`train_epoch` on a slice of the training
data, at the thread count members train with: one for 1-D signals), a forward pass of weight
points over test examples through the evaluation engine (what every study spends its time in;
as many points as the engine runs at once, since the "grouped" strategy shares each call among
them) and, for images, each corruption of the shift study on a small batch. The estimate
multiplies those rates by the work each stage does with the settings `modescape run` uses
(members, epochs, samples, grid, corruptions, ...). Fixed costs that do not scale with the model
(t-SNE, file writes, dataset decoding) are left out, so short runs are underestimated by a few
seconds per stage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modescape import registry
from modescape.config import RunConfig

logger = logging.getLogger(__name__)

PROBE_STEPS = 3  # training steps per timed repeat (after one untimed warm-up step)
PROBE_WARMUP = 3  # untimed calls first: oneDNN and TorchScript take ~3 calls to reach speed
PROBE_REPEATS = 3  # each rate is the best of this many repeats: shared hosts are noisy
PROBE_POINTS = 4  # weight points per timed evaluation (at least; "grouped": its whole chunk)
PROBE_EXAMPLES = 512  # test examples per timed evaluation
PROBE_CORRUPT = 32  # images per timed corruption
CALIBRATION_EVALS = 4  # evaluations per calibration besides its bisection steps (measured 3-6)


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work, measured by `probe_rates` (or given, in tests)."""

    train_step: float  # one optimiser step of batch_size examples
    forward: float  # one example through one weight point (evaluation engine, inference)
    corrupt: dict[str, float] = field(default_factory=dict)  # one image, per corruption
    frozen: float | None = None  # one example through a model frozen for inference (None: forward)
    freeze: float = 0.0  # freezing one model (`studies.inference`)
    # (corruption, severity, seed, examples) of the test set (its first `examples`) already in
    # the corruption cache (`data.corruption_cache`): the shift study reads them back
    cached_corruptions: frozenset[tuple[str, int, int, int]] = frozenset()

    @property
    def stacked(self) -> float:
        """Per example and model in `studies.inference.ModelStack` (the shift study)."""
        return self.forward if self.frozen is None else self.frozen


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    work: str  # what was counted, e.g. "5 members x 40 epochs x 391 steps"


@dataclass(frozen=True)
class CostEstimate:
    """Estimated seconds of each stage of `modescape run` on this machine."""

    stages: list[Stage]
    rates: Rates
    threads: int
    device: str

    def seconds(self, name: str) -> float:
        return next(s.seconds for s in self.stages if s.name == name)

    @property
    def training(self) -> float:
        return self.seconds("training")

    @property
    def studies(self) -> float:
        return sum(s.seconds for s in self.stages if s.name != "training")

    @property
    def total(self) -> float:
        return sum(s.seconds for s in self.stages)

    def lines(self) -> list[str]:
        """A printable table: one line per stage, then totals and the studies/training ratio."""
        out = [f"estimated cost on {self.device} ({self.threads} threads), from a timed probe:"]
        out += [f"  {s.name:10s} {duration_text(s.seconds):>9s}   {s.work}" for s in self.stages]
        ratio = self.studies / self.training if self.training > 0 else math.inf
        out.append(
            f"  {'total':10s} {duration_text(self.total):>9s}   studies = {ratio:.0%} of training"
        )
        out.append("  not counted: fixed costs (data decoding, t-SNE, the report's figures)")
        return out


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_run(
    config: RunConfig,
    *,
    rates: Rates | None = None,
    data: Any = None,
    studies: dict[str, Any] | None = None,
    skip: Sequence[str] = (),
) -> CostEstimate:
    """The cost of `modescape run` with `config`: training and each study, in seconds.

    `rates`: measured rates to reuse (default: `probe_rates`, a few seconds); `data`: the loaded
    dataset (default: loaded here, from the decoding cache after the first time); `studies`:
    settings other than the pipeline's for some studies, by name ({"landscape": LandscapeConfig,
    ...}), to price alternatives; `skip`: studies left out (`modescape run --skip`). One stage
    per registered study (`modescape.registry`), priced by its `cost`."""
    import torch

    from modescape.store.run import open_dataset

    if data is None:
        data = open_dataset(config, pixels="uint8")  # the probe scales the few it uses
    if rates is None:
        rates = probe_rates(config, data)
    shape = DataShape(
        n_train=len(data.y_train),
        n_test=len(data.y_test),
        images=data.x_train.dim() == 4,
        channels=int(data.x_train.shape[1]),
        batchnorm=_has_batchnorm(config, data),
    )
    from modescape.profiles import study_settings

    # what `modescape run` would use: each study's defaults, sized by the run's profile
    chosen = {
        s.name: study_settings(config.profile, s.name, s.default_settings(config))
        for s in registry.studies()
    } | (studies or {})
    stages = [_training(config, shape, rates)]
    stages += [
        s.get("cost")(config, shape, rates, chosen)
        for s in registry.studies()
        if s.applies_to(config) and s.name not in skip
    ]
    return CostEstimate(stages, rates, torch.get_num_threads(), "cpu")


@dataclass(frozen=True)
class DataShape:
    """What a cost model needs to know about the run's data."""

    n_train: int
    n_test: int
    images: bool
    channels: int
    batchnorm: bool


def _has_batchnorm(config: RunConfig, data: Any) -> bool:
    from modescape.models.registry import has_batchnorm

    return has_batchnorm(_model(config, data))


def _model(config: RunConfig, data: Any) -> Any:
    from modescape.models.registry import build_model

    m = config.model
    in_shape = tuple(data.x_train.shape[1:])
    return build_model(m.arch, m.variant, in_shape, len(data.classes), m.dropout, **m.arch_kwargs)


# ---- the probe ----------------------------------------------------------------------------------


def probe_rates(config: RunConfig, data: Any) -> Rates:
    """Time a few training steps, an evaluation and (images) each corruption, here and now."""
    import torch

    from modescape.training.trainer import member_threads

    with torch.random.fork_rng(devices=[]):  # the probe draws; training's draws stay the same
        torch.manual_seed(0)
        before = torch.get_num_threads()
        torch.set_num_threads(member_threads(tuple(data.x_train.shape[1:])))
        try:
            step = _time_training(config, data)
        finally:
            torch.set_num_threads(before)
        forward = _time_forward(config, data)
        frozen, freeze = _time_frozen(config, data) if data.x_test.dim() == 4 else (None, 0.0)
    corrupt = _time_corruptions(data) if data.x_test.dim() == 4 else {}
    cached = _cached_corruptions(data) if data.x_test.dim() == 4 else frozenset()
    return Rates(step, forward, corrupt, frozen, freeze, cached)


def _time_training(config: RunConfig, data: Any) -> float:
    import torch

    from modescape.data.datasets import scale_pixels
    from modescape.training.loop import (
        MemberRNG,
        make_optimizer,
        pixel_unit,
        resolve_precision,
        train_epoch,
    )

    tcfg = config.train
    cl = tcfg.channels_last and data.x_train.dim() == 4
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = _model(config, data).to(memory_format=fmt)
    opt = make_optimizer(model, tcfg)
    rng = MemberRNG.fresh(0, torch.device("cpu"))
    pixel = pixel_unit(data.source, tuple(data.x_train.shape[1:]))
    in_shape = tuple(data.x_train.shape[1:])
    precision = resolve_precision(tcfg.precision, torch.device("cpu"), in_shape)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    n = min(len(data.x_train), tcfg.batch_size * PROBE_STEPS)
    x = scale_pixels(data.x_train[:n], data.source).contiguous(memory_format=fmt)
    y = data.y_train[:n]
    steps = math.ceil(n / tcfg.batch_size)
    warm = min(n, tcfg.batch_size)
    train_epoch(model, opt, x[:warm], y[:warm], tcfg, rng, pixel, autocast)
    return _best(lambda: train_epoch(model, opt, x, y, tcfg, rng, pixel, autocast)) / steps


def _best(fn: Any) -> float:
    """Shortest of PROBE_REPEATS timed calls (seconds), after PROBE_WARMUP untimed ones.

    Why the warm-up: cold, the first calls ran 2-4x slower (training steps 3 calls, frozen
    models 3-4: TorchScript profiles its first runs), and a cold probe priced the CIFAR-10
    SmallCNN studies at 3-4x what they took."""
    for _ in range(PROBE_WARMUP):
        fn()
    times = []
    for _ in range(PROBE_REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _time_forward(config: RunConfig, data: Any) -> float:
    import torch

    from modescape.analysis.engine.batched import evaluate_many, plan
    from modescape.analysis.weightspace import flatten_params, param_names
    from modescape.data.datasets import scale_pixels

    model = _model(config, data)
    flat = flatten_params(model.state_dict(), param_names(model))
    x = scale_pixels(data.x_test[:PROBE_EXAMPLES], data.source)
    # "grouped" runs a whole chunk of points in each call, so a few points would price every
    # point at several times its cost (MNIST-1D, 2 threads: 4 points 11 µs per example and
    # point, 32 points 2.2 µs); "loop" runs one point at a time.
    engine = plan(model, x, 10**6)
    k = max(PROBE_POINTS, engine.chunk if engine.strategy == "grouped" else 0)
    points = flat + 0.01 * torch.randn(k, flat.numel())
    evaluate_many(model, points[:1], x[:64])  # warm-up: first-call allocations
    return _best(lambda: evaluate_many(model, points, x)) / (k * len(x))


def _time_frozen(config: RunConfig, data: Any) -> tuple[float, float]:
    """(seconds per example and model, seconds to freeze one model) of `ModelStack`."""
    from modescape.data.datasets import scale_pixels
    from modescape.studies.inference import ModelStack

    model = _model(config, data)
    state = model.state_dict()
    states = [{k: v + 0.01 * i for k, v in state.items()} for i in range(PROBE_POINTS)]
    stack = ModelStack(model, {"probe": states})
    x = scale_pixels(data.x_test[:PROBE_EXAMPLES], data.source)
    rows = stack.rows["probe"]
    # Freezing timed on its own, the best of the probe's models (~0.15 CPU s for a SmallCNN):
    # the earlier (first call - steady call) / models set one unrepeated call against a best of
    # three, and on a loaded host a small run's shift study was priced at 3.6x its measured
    # time, much of it freezing (benchmarks/README.md).
    freezing = []
    for r in rows:
        t = time.perf_counter()
        stack.probs([r], x[:1])  # freezes the model (the first call of a frozen model, too)
        freezing.append(time.perf_counter() - t)
    steady = _best(lambda: stack.probs(rows, x))
    return steady / (len(rows) * len(x)), min(freezing)


def _cached_corruptions(data: Any) -> frozenset[tuple[str, int, int, int]]:
    """The settings of the test set (or a prefix of it) the corruption cache holds (the shift
    study corrupts the uint8 pixels [N, H, W, C] of the test images it was given)."""
    from modescape.data.corruption_cache import cached_settings
    from modescape.data.datasets import default_cache_dir, scale_pixels
    from modescape.studies.shift import to_uint8_images

    # Exactly as the study makes them from its (scaled) test inputs, so the digest matches.
    u8 = to_uint8_images(scale_pixels(data.x_test, data.source), data.source)
    return frozenset(cached_settings(u8, default_cache_dir()))


def _time_corruptions(data: Any) -> dict[str, float]:
    from modescape.data.corruptions import applicable_corruptions, corrupt
    from modescape.data.datasets import scale_pixels
    from modescape.studies.shift import to_uint8_images

    u8 = to_uint8_images(scale_pixels(data.x_test[:PROBE_CORRUPT], data.source), data.source)
    rates = {}
    for name in applicable_corruptions(u8.shape[-1]):
        t = time.perf_counter()
        corrupt(u8, name, 3, seed=0)
        rates[name] = (time.perf_counter() - t) / len(u8)
    return rates


# ---- the work of each stage ----------------------------------------------------------------------


def _training(config: RunConfig, shape: DataShape, rates: Rates) -> Stage:
    t = config.train
    steps = math.ceil(shape.n_train / t.batch_size)
    snapshots = t.epochs // t.snapshot_every + 1  # each snapshot's test predictions
    # a collection phase (train.collect): more epochs, each with one test evaluation
    epochs, evals = t.epochs + t.collect.epochs, snapshots + t.collect.epochs
    per_member = epochs * steps * rates.train_step + evals * shape.n_test * rates.forward
    work = f"{config.members} members x {epochs} epochs x {steps} steps"
    return Stage("training", config.members * per_member, work)


def _bn_forwards(shape: DataShape) -> int:
    """Training examples per BatchNorm recomputation of one off-trajectory point (in train mode:
    counted as two forwards each)."""
    from modescape.studies.context import BN_TRAIN_EXAMPLES

    return 2 * min(BN_TRAIN_EXAMPLES, shape.n_train) if shape.batchnorm else 0


def analysis_cost(
    config: RunConfig, shape: DataShape, rates: Rates, chosen: Mapping[str, Any]
) -> Stage:
    """The analysis study: each member's weight average evaluated on the test split."""
    M = config.members
    forwards = M * (shape.n_test + _bn_forwards(shape))  # each member's weight average
    return Stage("analysis", forwards * rates.forward, f"{M} weight averages on {shape.n_test}")


def subspace_cost(
    config: RunConfig, shape: DataShape, rates: Rates, chosen: Mapping[str, Any]
) -> Stage:
    """Every sampler's samples around every member, and (calibrated mode) its calibration."""
    from modescape.analysis.subspace import SamplerMode
    from modescape.studies.subspace import CALIBRATION_EXAMPLES

    sc = chosen["subspace"]
    M, G, n = config.members, len(sc.methods), sc.n_samples
    assert n is not None  # SubspaceConfig fills it in
    bn = _bn_forwards(shape)
    models = G * M * n
    samples = models * (shape.n_test + bn) * rates.forward  # the eager engine, not frozen
    calibration = 0
    if sc.mode is SamplerMode.CALIBRATED:
        probes = (sc.calibration_steps + CALIBRATION_EVALS) * sc.calibration_probes
        probes += sc.calibration_check  # the fresh samples at the calibrated scale
        calibration = G * M * probes * (min(CALIBRATION_EXAMPLES, shape.n_train) + bn)
    seconds = samples + calibration * rates.forward
    work = f"{G} samplers x {M} members x {n} samples on {shape.n_test}, calibration"
    return Stage("subspace", seconds, work)


def swag_cost(
    config: RunConfig, shape: DataShape, rates: Rates, chosen: Mapping[str, Any]
) -> Stage:
    """`modescape swag`: per member one SWA model and n SWAG and n SWAG-Diagonal samples
    (BatchNorm recomputed each), T MC-dropout passes."""
    sc, M = chosen["swag"], config.members
    points = M * (1 + 2 * sc.n_samples)
    seconds = points * (shape.n_test + _bn_forwards(shape)) + M * sc.mc_passes * shape.n_test
    work = f"{M} members x (1 + 2 x {sc.n_samples} samples + {sc.mc_passes} passes)"
    return Stage("swag", seconds * rates.forward, work)


def connect_cost(
    config: RunConfig, shape: DataShape, rates: Rates, chosen: Mapping[str, Any]
) -> Stage:
    """`modescape connect`: the curve's training steps (a forward and backward at θ(t), priced
    as a member's step), the curve and the line at every t (test + training examples), the
    plane, and FGE's epochs and snapshots."""
    cc = chosen["connect"]
    steps = math.ceil(shape.n_train / (cc.batch_size or config.train.batch_size))
    n = min(cc.max_examples, shape.n_test)
    scored = n + (min(cc.train_examples, shape.n_train) or shape.n_train)
    bn = _bn_forwards(shape)
    plane = plane_points(cc.plane_resolution) if cc.plane_resolution else 0
    forwards = 2 * cc.points * (scored + bn) + plane * (n + bn)
    fge_epochs = cc.fge_cycles * cc.fge_cycle_epochs
    seconds = (cc.epochs + fge_epochs) * steps * rates.train_step
    seconds += (forwards + cc.fge_cycles * n) * rates.forward
    work = (
        f"{cc.epochs} curve epochs x {steps} steps, 2 x {cc.points} points on {scored}, "
        f"a {cc.plane_resolution}x{cc.plane_resolution} plane, {fge_epochs} FGE epochs"
    )
    return Stage("connect", seconds, work)


def instability_cost(
    config: RunConfig, shape: DataShape, rates: Rates, chosen: Mapping[str, Any]
) -> Stage:
    """`modescape instability` on a spawn run of `config` (its members: the children; counted
    as pairs of children, plus the two reference groups; `spawning.estimate_spawn` prices the
    whole spawn with the spawn points it knows)."""
    from modescape.analysis.instability import pairs

    ic = chosen["instability"]
    groups = len(pairs(config.members)) + 1 + len(pairs(1 + ic.across))  # at most
    n = min(ic.examples, shape.n_test)
    work = f"at most {groups} paths x {ic.alphas} points on {n}"
    return Stage(
        "instability", groups * ic.alphas * (n + _bn_forwards(shape)) * rates.forward, work
    )


def landscape_cost(
    config: RunConfig, shape: DataShape, rates: Rates, chosen: Mapping[str, Any]
) -> Stage:
    """Every plane's grid and every path's points (`LandscapeConfig.planes`; None: one plane)."""
    lc = chosen["landscape"]
    n = min(lc.max_examples, shape.n_test)
    planes = len(lc.planes) if lc.planes else 1
    paths = 2 + (1 if lc.align else 0) if config.members > 1 else 1
    points = planes * plane_points(lc.resolution) + paths * lc.n_path_points
    bn = _bn_forwards(shape) if lc.bn_policy == "recompute" else 0
    grid = f"{lc.resolution}x{lc.resolution}"
    work = f"{planes} plane{'' if planes == 1 else 's'} of {grid} and {paths} paths on {n}"
    return Stage("landscape", points * (n + bn) * rates.forward, work)


def plane_points(resolution: int) -> int:
    """Weight points of a plane of `resolution` (`analysis.geometry.anchored_grid`): at least
    `resolution` values per axis, and more, since the three anchors sit on grid nodes: each
    margin and each stretch between two anchors takes a whole number of steps, which adds
    about two nodes per axis on average (13×11 = 143 points for resolution 9 on a CIFAR-10 run
    where resolution² priced 81; 23×23 for resolution 21)."""
    return (resolution + 2) ** 2


def shift_cost(
    config: RunConfig, shape: DataShape, rates: Rates, chosen: Mapping[str, Any]
) -> Stage:
    """Every model (members, late snapshots, subspace samples of the subspace settings priced)
    under every corruption and severity, and the corrupting itself."""
    shc, sc = chosen["shift"], chosen["subspace"]
    from modescape.data.corruptions import applicable_corruptions
    from modescape.studies.context import clamp_window
    from modescape.studies.shift import DEMO_SIGNAL

    epochs = config.train.epochs // config.train.snapshot_every
    late, _ = clamp_window("", shc.late, epochs, minimum=2)
    averaged, _ = clamp_window("", shc.weight_average, epochs, minimum=1)
    M = config.members
    # Distinct models (`ModelStack` evaluates a model in two families once): the members, member
    # 0's late snapshots but its final one, the weight averages unless a window of one snapshot
    # makes them the finals, and the subspace samples.
    models = M + max(late, 2) - 1 + (M if averaged > 1 else 0)
    models += len(sc.methods) * min(shc.subspace_samples, sc.n_samples)
    names = shc.corruptions or (
        applicable_corruptions(shape.channels) if shape.images else DEMO_SIGNAL
    )
    settings = 1 + len(names) * len(shc.severities)
    n = shape.n_test if shc.max_examples is None else min(shc.max_examples, shape.n_test)
    # A setting already in the corruption cache is read, not generated.
    cached = rates.cached_corruptions if shc.cache_corruptions else frozenset()
    corrupting = n * sum(
        rates.corrupt.get(c, 0.0)
        for c in names
        for s in shc.severities
        if (c, s, shc.seed, n) not in cached
    )
    seconds = models * (settings * n * rates.stacked + rates.freeze) + corrupting
    work = f"{models} models x {settings} settings on {n} examples"
    return Stage("shift", seconds, work)


def estimate_study(run: Any, name: str, config: Any = None) -> Stage:
    """The estimated cost of one registered study on an existing run with `config` (None: the
    settings `modescape run` uses); shift counts the subspace models of the pipeline's settings."""
    from modescape.store.run import load_run

    s = registry.study(name)
    r = load_run(run)
    est = estimate_run(r.config, studies=None if config is None else {s.name: config})
    return next(stage for stage in est.stages if stage.name == s.name)


def log_estimate(estimate: CostEstimate) -> None:
    for line in estimate.lines():
        logger.info(line)
