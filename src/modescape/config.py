"""Configuration: frozen dataclasses, presets (recipes), JSON round-trip and `--set` overrides.

A run is fully described by one `RunConfig`. It is validated where it enters (`from_dict`,
`with_overrides`, `__post_init__`), written to the run directory as JSON, and compared with the
stored one when a run is resumed, so a directory never mixes members trained two ways.
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from modescape.codec import decode
from modescape.errors import ModescapeError, check_choice, choice_error
from modescape.options import (
    Arch,
    BatchSampler,
    CollectSchedule,
    Dataset,
    Optimizer,
    Precision,
    Profile,
    Recipe,
    Scaling,
    Schedule,
    Variant,
    values,
)

# A run config is a few hundred bytes; anything far larger is not one (e.g. --config /dev/zero).
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class Range:
    """The allowed values of one numeric setting: [lo, hi], either end open when marked."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def __str__(self) -> str:
        ends = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"{ends[0]}{self.lo:,}, {self.hi:,}{ends[1]}"


# Every numeric setting of a run, with the values it may take (docs/settings.md lists them; a
# test keeps the two in step). The upper ends are far beyond any sensible run and far below a
# value that would hang or exhaust memory before the first epoch: `--members 1000000000` used to
# spend minutes deriving seeds, `--epochs 10**15` to run until killed.
MAX_SEED = 2**63 - 1  # derive_seed's outputs are 63-bit; torch and NumPy accept any of them
RANGES: dict[str, Range] = {
    "members": Range(1, 10_000),
    "seed": Range(0, MAX_SEED),
    "data.val_size": Range(0, 10_000_000),
    "data.mnist1d_samples": Range(20, 1_000_000),
    "data.mnist1d_seed": Range(0, 2**32 - 1),  # mnist1d seeds NumPy's legacy RNG: 32 bits
    "data.train_size": Range(0, 10_000_000),
    "data.test_size": Range(0, 10_000_000),
    "data.subset_seed": Range(0, MAX_SEED),
    "data.mean": Range(0.0, 1.0),  # each channel's; in [0, 1] pixel units
    "data.std": Range(0.0, 10.0, lo_open=True),
    "model.dropout": Range(0.0, 1.0, hi_open=True),
    "train.epochs": Range(0, 10_000),
    "train.batch_size": Range(1, 65_536),
    "train.lr": Range(0.0, 10.0, lo_open=True),
    "train.lr_every": Range(1, 10_000),
    "train.lr_start": Range(0, 10_000),
    "train.lr_factor": Range(0.0, 1.0, lo_open=True),
    "train.lr_milestones": Range(0, 10_000),  # each milestone; at most MAX_MILESTONES of them
    "train.weight_decay": Range(0.0, 10.0),
    "train.snapshot_every": Range(1, 10_000),
    "train.augment.pad_crop": Range(0, 256),
    "train.augment.brightness": Range(0.0, 1.0),
    "train.collect.epochs": Range(0, 10_000),
    "train.collect.lr": Range(0.0, 10.0),  # 0: the main schedule's last lr
    "train.collect.lr_min": Range(0.0, 10.0),
    "train.collect.every_steps": Range(0, 10_000_000),
    "train.collect.max_rank": Range(0, 1000),
}
MAX_MILESTONES = 100  # values of a list setting (milestones, a mean or std per channel)

# How members are launched: not part of a run's config, checked the same way (`train --help`).
LAUNCH_RANGES: dict[str, Range] = {"workers": Range(1, 256), "retries": Range(0, 100)}
SLURM_RANGES: dict[str, Range] = {
    "time": Range(1, 525_600),  # minutes: a year
    "cpus_per_task": Range(1, 1024),
    "gpus_per_node": Range(0, 64),
    "mem_gb": Range(0.0, 100_000.0, lo_open=True),
    "array_parallelism": Range(1, 100_000),
    "poll_s": Range(0.0, 3600.0, lo_open=True),
}


def check_range(name: str, value: object, allowed: Range) -> None:
    """A ModescapeError naming `name`, its range and the value unless `value` lies in it.

    NaN is refused first: it would be written as `null` into config.json and brick the run."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ModescapeError(f"{name} must be a finite number, got {value} (range {allowed})")
    if value in allowed:  # type: ignore[operator]
        return
    shown = f"{value:.4g}" if isinstance(value, float) else f"{value:,}"
    low = value <= allowed.lo if allowed.lo_open else value < allowed.lo  # type: ignore[operator]
    if low and not allowed.lo_open:
        raise ModescapeError(f"{name} must be >= {allowed.lo:,} (range {allowed}), got {shown}")
    if low:
        raise ModescapeError(f"{name} must be > {allowed.lo:,} (range {allowed}), got {shown}")
    raise ModescapeError(f"{name} must be in {allowed}, got {shown}")


def _check_numbers(section: object, where: str) -> None:
    """Every numeric field of `section` within its `RANGES` entry, named as `where.field`."""
    for f in fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        name = f"{where}.{f.name}" if where else f.name
        if name not in RANGES:
            continue
        items = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and len(value) > MAX_MILESTONES:  # milestones, mean, std
            raise ModescapeError(f"{name} holds at most {MAX_MILESTONES} values, got {len(value)}")
        for v in items:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ModescapeError(f"{name} must be a number in {RANGES[name]}, got {v!r}")
            check_range(name, v, RANGES[name])


@dataclass(frozen=True)
class DataConfig:
    name: str = Dataset.MNIST1D.value
    root: str | None = None  # archive, extracted folder or image folder (not for mnist1d)
    download: bool = False  # fetch the official CIFAR archive into `root` when missing
    val_size: int = 0  # last n training examples held out (paper: 500; seed notebooks: 0)
    scaling: str = Scaling.UNIT.value  # see options.Scaling
    mnist1d_samples: int = 5000  # generator's num_samples; 80% train / 20% test
    mnist1d_seed: int = 42  # generator seed (the published dataset uses 42)
    # seeded, stratified subsets (0 = the whole split): small runs on real data (data.subsets);
    # train_size counts the pool the last val_size examples are held out from
    train_size: int = 0
    test_size: int = 0
    subset_seed: int = 0
    # scaling "normalize": per-channel mean / std in [0, 1] pixel units (torchvision Normalize)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    # a user function applied to the scaled inputs: a register_transform name or "pkg.mod:fn"
    transform: str = ""  # "" = none

    def __post_init__(self) -> None:
        _set_choice(self, "name", "dataset", Dataset)
        _set_choice(self, "scaling", "scaling", Scaling)
        _check_numbers(self, "data")
        if self.scaling == Scaling.NORMALIZE and self.name != Dataset.MNIST1D:
            if not self.mean or len(self.mean) != len(self.std) or min(self.std) <= 0:
                raise ModescapeError(
                    'data.scaling "normalize" needs data.mean and data.std, one number per '
                    "channel in [0, 1] pixel units and std > 0, e.g. --set "
                    "data.mean=[0.4914,0.4822,0.4465] --set data.std=[0.247,0.2435,0.2616]"
                )
        elif self.mean or self.std:
            raise ModescapeError('data.mean and data.std apply only to data.scaling "normalize"')
        if self.train_size and self.val_size >= self.train_size:
            raise ModescapeError(
                f"data.val_size ({self.val_size}) must be smaller than data.train_size "
                f"({self.train_size}): the validation split is held out of the training subset"
            )
        if self.name != Dataset.MNIST1D and not self.root:
            raise ModescapeError(f"dataset {self.name!r} needs data.root (a folder or archive)")


@dataclass(frozen=True)
class ModelConfig:
    # a built-in (options.Arch), a name given to `register_arch`, or "package.module:factory"
    arch: str = Arch.SMALLCNN.value
    variant: str = Variant.PAPER.value  # paper or seed notebooks (models.architectures)
    dropout: float = 0.1  # probability, where the architecture has dropout
    # keyword arguments of the factory (built-ins: only {"padding": "torch" | "keras"})
    arch_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_numbers(self, "model")
        object.__setattr__(self, "arch", str(self.arch))  # an Arch member becomes its plain string
        builtins = values(Arch)
        if self.arch not in builtins:
            from modescape.models.registry import is_known_arch  # torch only when needed

            if not is_known_arch(self.arch):
                check_choice("architecture", self.arch, (*builtins, "<registered>", "pkg.mod:fn"))
        if not isinstance(self.arch_kwargs, dict) or not all(
            isinstance(k, str) for k in self.arch_kwargs
        ):
            raise ModescapeError(
                f"model.arch_kwargs must be an object, got {reprlib.repr(self.arch_kwargs)}"
            )
        if self.arch in builtins and set(self.arch_kwargs) - {"padding"}:
            raise ModescapeError("model.arch_kwargs of a built-in may only hold 'padding'")
        _set_choice(self, "variant", "variant", Variant)


@dataclass(frozen=True)
class AugmentConfig:
    pad_crop: int = 0  # zero-pad by this many pixels, then a random crop back to size (0 = off)
    flip: bool = False  # random horizontal flip (images) / time reversal is NOT done for 1-D
    brightness: float = 0.0  # max |delta| added to all pixels, in units of [0, 1] pixels

    def __post_init__(self) -> None:
        _check_numbers(self, "train.augment")

    @property
    def enabled(self) -> bool:
        return self.pad_crop > 0 or self.flip or self.brightness > 0


@dataclass(frozen=True)
class CollectConfig:
    """A collection phase after the main schedule whose iterates feed SWA and SWAG (Izmailov et
    al. 2018; Maddox et al. 2019). Off by default (epochs = 0): a run without it writes the same
    config.json and files as before the phase existed (`RunConfig.to_dict` leaves it out)."""

    epochs: int = 0  # epochs after train.epochs (0 = off; Maddox et al.: 140 of 300)
    lr: float = 0.0  # constant lr, or each cycle's start; 0 = the main schedule's last lr
    schedule: str = CollectSchedule.CONSTANT.value  # see options.CollectSchedule
    lr_min: float = 0.0  # "cyclic": the lr at the end of each cycle, where an iterate is collected
    every_steps: int = 0  # collect every n optimiser steps (the cycle length); 0 = once per epoch
    max_rank: int = 20  # SWAG's K: deviation columns kept (the last K iterates)

    def __post_init__(self) -> None:
        _check_numbers(self, "train.collect")
        _set_choice(self, "schedule", "collection schedule", CollectSchedule)
        if self.schedule == CollectSchedule.CYCLIC and not self.lr_min < (self.lr or math.inf):
            raise ModescapeError("a cyclic collection phase needs collect.lr_min < collect.lr")

    @property
    def enabled(self) -> bool:
        return self.epochs > 0

    def lr_at_step(self, step: int, steps_per_epoch: int, base_lr: float) -> float:
        """The lr of the collection phase's 0-based optimiser step `step`; `base_lr` stands in
        for lr = 0. "cyclic": α(i) = (1 − t)·lr + t·lr_min, t = (i mod c + 1)/c, c the cycle
        (Izmailov et al. 2018, eq. 2), so the collected last step of a cycle runs at lr_min."""
        top = self.lr or base_lr
        if self.schedule == CollectSchedule.CONSTANT:
            return top
        cycle = self.every_steps or steps_per_epoch
        t = (step % cycle + 1) / cycle
        return (1 - t) * top + t * self.lr_min

    def collects_after(self, step: int, steps_per_epoch: int) -> bool:
        """Whether the iterate after 0-based collection step `step` is collected."""
        every = self.every_steps or steps_per_epoch
        return (step + 1) % every == 0


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = Recipe.PAPER.value  # the preset these values came from (recorded, informative)
    epochs: int = 40
    batch_size: int = 128
    optimizer: str = Optimizer.ADAM.value  # "adam" | "sgd" (momentum 0.9)
    lr: float = 1.6e-3
    schedule: str = Schedule.STEP.value  # see options.Schedule
    lr_every: int = 10  # epochs between drops ("step")
    lr_start: int = 10  # first (0-based) epoch with a reduced lr ("step"); seed notebooks: 9
    lr_factor: float = 0.5
    lr_milestones: tuple[int, ...] = ()  # epochs where lr is multiplied by lr_factor ("milestones")
    weight_decay: float = 0.0
    sampler: str = BatchSampler.PERMUTATION.value  # see options.BatchSampler
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    snapshot_every: int = 1  # keep a snapshot every n epochs (epoch 0 and the last always kept)
    # "auto" is resolved to bf16 or fp32 when the run is created, and recorded (training.loop)
    precision: str = Precision.AUTO.value
    channels_last: bool = True  # 2-D inputs only; the big lever on CPU (bench_training.py)
    collect: CollectConfig = field(default_factory=CollectConfig)  # SWA/SWAG phase, off by default

    def __post_init__(self) -> None:
        _check_numbers(self, "train")
        _set_choice(self, "recipe", "recipe", Recipe)
        _set_choice(self, "optimizer", "optimizer", Optimizer)
        _set_choice(self, "schedule", "schedule", Schedule)
        _set_choice(self, "sampler", "batch sampler", BatchSampler)
        _set_choice(self, "precision", "precision", Precision)

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 0-based `epoch`. Paper: 1.6e-3 / 2**floor(e / 10)."""
        if self.schedule == "step":
            drops = 0 if epoch < self.lr_start else 1 + (epoch - self.lr_start) // self.lr_every
        elif self.schedule == "milestones":
            drops = sum(epoch >= m for m in self.lr_milestones)
        else:
            drops = 0
        return self.lr * self.lr_factor**drops


# DataConfig fields newer than the first runs: written to config.json only when set
_NEWER_DATA_FIELDS = ("train_size", "test_size", "subset_seed", "mean", "std", "transform")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    members: int = 5  # independent random initialisations
    seed: int = 0  # base seed; member i's seed is derive_seed(seed, "member", i)
    # the named profile these settings came from (`modescape.profiles`); "" = the paper's
    profile: str = ""

    def __post_init__(self) -> None:
        _check_numbers(self, "")
        if self.profile:
            _set_choice(self, "profile", "profile", Profile)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready dicts. A collection phase that is off is left out, and so
        are the data subsets, normalisation, transform and profile while unused, so runs without
        them keep the config.json (and manifest checksums) they had before they existed."""
        d = dataclasses.asdict(self)
        if not self.train.collect.enabled:
            del d["train"]["collect"]
        defaults = dataclasses.asdict(DataConfig())
        for key in _NEWER_DATA_FIELDS:
            if d["data"][key] == defaults[key]:
                del d["data"][key]
        if not d["profile"]:
            del d["profile"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return decode(cls, d, strict=True, what="config section", coerce=_coerce)

    def with_overrides(self, assignments: list[str]) -> RunConfig:
        """Apply `section.key=value` strings (values parsed as JSON, else taken as strings)."""
        d = dataclasses.asdict(self)  # every section, the collection phase included
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ModescapeError(f"--set expects section.key=value, got {item!r}")
            *parents, leaf = key.strip().split(".")
            node = d
            for i, part in enumerate(parents):
                if not isinstance(node.get(part), dict):
                    where = ".".join(parents[: i + 1])
                    raise ModescapeError(f"unknown config section {where!r} in --set {item!r}")
                node = node[part]
            if leaf not in node:
                raise choice_error(f"config key in --set {item!r}:", leaf, sorted(node))
            node[leaf] = _parse_value(raw.strip())
        return RunConfig.from_dict(d)


# Recipes: the paper's section 3 schedule, the authors' seed notebooks, a demo and the Keras
# ResNet20 example. Each is a TrainConfig preset; data/model defaults are separate choices.
_RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(epochs=40, lr=1.6e-3, schedule="step", lr_every=10, lr_start=10),
    # Seed notebooks (1-based epochs): 1-9 at 1.6e-3, 10-19 at 8e-4, 20-29 at 4e-4 and 30-40 at
    # 2e-4 -- the last stage lasts 11 epochs, with no fourth halving at epoch 40. Their ResNet
    # runs add 4-px pad-and-crop and brightness (max delta 0.5 on [0, 1] pixels).
    "seed": dict(epochs=40, lr=1.6e-3, schedule="milestones", lr_milestones=(9, 19, 29)),
    # MNIST-1D trains in seconds: a short schedule that still reaches ~90% with SmallCNN. The lr
    # halves every 3 epochs from epoch 10 (3e-3 → 1.9e-4 at epoch 19), so the last 10 snapshots,
    # which the subspace Gaussians are fitted to, sit near the end point (their mean within 2
    # points of the final snapshot's accuracy, as the calibrated subspace clouds need).
    "demo": dict(epochs=20, lr=3e-3, schedule="step", lr_every=3, lr_start=10, batch_size=128),
    # ResNet20v1 after the Keras example: lr 1e-3 dropped 10x at 80/120/160 and 2x at 180.
    "resnet": dict(
        epochs=200,
        lr=1e-3,
        schedule="milestones",
        lr_milestones=(80, 120, 160, 180),
        lr_factor=0.1,
        augment=AugmentConfig(pad_crop=4, flip=True),
    ),
}


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """The TrainConfig of a named recipe, with optional field overrides."""
    check_choice("recipe", name, Recipe)
    return TrainConfig(recipe=name, **{**_RECIPES[name], **overrides})


def recipe_for(name: str, arch: str) -> TrainConfig:
    """A recipe as it applies to `arch`: the seed notebooks' ResNet runs add their augmentation
    (4-pixel pad-and-crop, brightness max delta 0.5 on [0, 1] pixels, no flips)."""
    train = recipe(name)
    if name == "seed" and arch == "resnet20":
        train = replace(train, augment=AugmentConfig(pad_crop=4, brightness=0.5))
    return train


def preset(
    data: str = "mnist1d",
    arch: str = "smallcnn",
    recipe_name: str | None = None,
    *,
    root: str | None = None,
    members: int = 5,
    epochs: int | None = None,
    seed: int = 0,
    variant: str = "paper",
) -> RunConfig:
    """A sensible RunConfig for a dataset/architecture pair: the one-liner behind the CLI."""
    if recipe_name is None and arch == "resnet20" and variant == "seed":
        recipe_name = "seed"  # the seed's ResNet with its own recipe and augmentation
    if recipe_name is None:
        recipe_name = "demo" if data == "mnist1d" else "resnet" if arch == "resnet20" else "paper"
    train = recipe_for(recipe_name, arch)
    if epochs is not None:
        train = replace(train, epochs=epochs)
    scaling = "raw" if recipe_name == "paper" and data != "mnist1d" else "unit"
    return RunConfig(
        data=DataConfig(name=data, root=root, scaling=scaling),
        model=ModelConfig(arch=arch, variant=variant),
        train=train,
        members=members,
        seed=seed,
    )


def flat_settings(
    settings: Mapping[str, Any], prefix: str = "", *, sort_keys: bool = False
) -> dict[str, Any]:
    """Nested settings as dotted keys: {"train": {"lr": 1e-3}} -> {"train.lr": 0.001}. A
    non-empty section is walked (in key order with `sort_keys`, else its own); any other value
    (a list, an empty section) is one leaf, left as it is for the caller to write: the one
    flattener of the tracker params, the report's config table and `modescape compare`."""
    out: dict[str, Any] = {}
    for key in sorted(settings) if sort_keys else settings:
        value, name = settings[key], f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flat_settings(value, f"{name}.", sort_keys=sort_keys)
        else:
            out[name] = value
    return out


def load_config(path: str | Path) -> RunConfig:
    """A RunConfig from a JSON file, validated; every problem is one ModescapeError naming it."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ModescapeError(f"config file {path} is a directory, not a JSON file")
        with path.open("rb") as f:  # read at most the limit: /dev/zero must not exhaust memory
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ModescapeError(
                f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes: not a run config"
            )
        d = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ModescapeError(f"config file not found: {path}") from None
    except OSError as e:
        raise ModescapeError(f"cannot read config file {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, and the
        # two a hostile file can still provoke: 200,000 nested brackets, a 5,000-digit integer
        raise ModescapeError(f"config file {path} is not valid JSON: {_why(e)}") from None
    if not isinstance(d, dict):
        raise ModescapeError(f"config file {path} must hold a JSON object")
    return RunConfig.from_dict(d)


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Check a JSON value against the field's declared type (no silent str->int surprises)."""
    default = next(f for f in fields(cls) if f.name == name)
    sample = default.default if default.default is not dataclasses.MISSING else None
    if name in ("mean", "std"):
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        )
        if not ok:
            raise ModescapeError(f"data.{name} must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if name == "lr_milestones":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            raise ModescapeError(f"{name} must be a list of integers, got {reprlib.repr(value)}")
        return tuple(value)
    if name == "root":
        if value is not None and not isinstance(value, str):
            raise ModescapeError(f"data.root must be a path string, got {reprlib.repr(value)}")
        return value
    if isinstance(sample, bool):
        ok = isinstance(value, bool)
    elif isinstance(sample, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(sample, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(sample, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        kind = type(sample).__name__
        raise ModescapeError(
            f"config key {name!r} must be of type {kind}, got {reprlib.repr(value)}"
        )
    return value


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
    except (ValueError, RecursionError) as e:  # valid JSON, but too deep or too many digits
        raise ModescapeError(f"--set value {reprlib.repr(raw)} is not usable: {_why(e)}") from None


def _why(e: BaseException) -> str:
    """A parser's complaint in a few words (RecursionError's own text is about Python)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if "integer string conversion" in str(e):
        return "an integer with more digits than Python converts (4,300)"
    return reprlib.repr(str(e)) if len(str(e)) > 200 else str(e)


def _set_choice(section: object, name: str, what: str, options: type[StrEnum]) -> None:
    """Check a choice field and store it as the plain string (an enum member passed in would
    otherwise show in reprs and compare by identity in `is` checks)."""
    object.__setattr__(section, name, check_choice(what, getattr(section, name), options))
