"""Every set of named choices, defined once as a str enum.

Config fields, CLI `choices=` and the "allowed: ..." part of error messages all derive from these
classes, so a new option is added in one place. Members are `str` subclasses: they compare equal to
their value (`Arch.SMALLCNN == "smallcnn"`), and JSON files keep plain strings.

This module imports nothing from the package (and nothing heavy): every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum


class Dataset(StrEnum):
    MNIST1D = "mnist1d"
    CIFAR10 = "cifar10"
    CIFAR100 = "cifar100"
    FOLDER = "folder"  # any train/<class>/*, test/<class>/* image folder


class Scaling(StrEnum):
    RAW = "raw"  # raw pixel values (the paper)
    UNIT = "unit"  # pixels / 255 (the seed notebooks)
    STANDARDIZE = "standardize"  # per-channel mean 0, std 1
    # pixels / 255, then (x - mean) / std per channel with the given data.mean / data.std:
    # torchvision's ToTensor + Normalize(mean, std), what most PyTorch image pipelines feed
    NORMALIZE = "normalize"


class Arch(StrEnum):
    SMALLCNN = "smallcnn"
    MEDIUMCNN = "mediumcnn"
    RESNET20 = "resnet20"


class Variant(StrEnum):
    PAPER = "paper"  # as described in the paper
    SEED = "seed"  # as in the authors' seed notebooks


class Optimizer(StrEnum):
    ADAM = "adam"
    SGD = "sgd"  # momentum 0.9


class Schedule(StrEnum):
    STEP = "step"  # lr * factor^(1 + (e - start) // every) from epoch `start` on
    MILESTONES = "milestones"  # lr * factor^(number of milestones reached)
    CONSTANT = "constant"


class CollectSchedule(StrEnum):
    """The learning rate of a SWA/SWAG collection phase (Izmailov et al. 2018)."""

    CONSTANT = "constant"  # collect.lr throughout
    CYCLIC = (
        "cyclic"  # each cycle falls linearly from collect.lr to collect.lr_min; collect at its end
    )


class SwagMethod(StrEnum):
    """The single-mode methods of the literature (`modescape swag`, analysis/swag.py)."""

    SWA = "swa"  # mean of the collected iterates (Izmailov et al. 2018)
    SWAG = "swag"  # diagonal + low-rank Gaussian (Maddox et al. 2019)
    SWAG_DIAG = "swag_diag"  # SWAG's diagonal part alone
    MULTISWAG = "multiswag"  # SWAG samples of every member pooled (Wilson & Izmailov 2020)
    MC_DROPOUT = "mc_dropout"  # dropout on at test time (Gal & Ghahramani 2016)


class BatchSampler(StrEnum):
    """How a training epoch draws its minibatches."""

    PERMUTATION = "permutation"  # a fresh permutation per epoch
    REPLACEMENT = "replacement"  # with replacement (the authors' notebook)


class Precision(StrEnum):
    """Training arithmetic. Predictions, snapshots and every analysis stay float32."""

    AUTO = "auto"  # bf16 for images on a CPU with bf16 instructions, else fp32 (`training.loop`)
    FP32 = "fp32"
    BF16 = "bf16"  # autocast; recorded, not bit-exact with fp32


class Recipe(StrEnum):
    PAPER = "paper"
    SEED = "seed"
    DEMO = "demo"
    RESNET = "resnet"


class ImportOrigin(StrEnum):
    """Where imported checkpoints came from, which fixes what a file does not record: how the
    model's inputs were scaled and what the number in its name means."""

    # The authors' seed notebooks (Keras): pixels / 255, the seed recipe, and the file named
    # `..._checkpoint_{k}` written by `on_epoch_end(k)` (0-based), i.e. after epoch k + 1.
    SEED_NOTEBOOKS = "seed-notebooks"
    # Anything else: {epoch} + --epoch-offset is the number of epochs trained (0: the
    # initialisation), and the run's data.scaling is what the model was trained on.
    STATED = "stated"


class Profile(StrEnum):
    """Named sizes of a whole `modescape run` (`modescape.profiles`)."""

    PAPER = "paper"  # the paper's settings: the default
    QUICK = "quick"  # minutes on a laptop CPU, real data included: subsets, fewer epochs


class Executor(StrEnum):
    SERIAL = "serial"  # this process
    LOCAL = "local"  # a pool of local processes
    SLURM = "slurm"  # one SLURM array task per member


class Split(StrEnum):
    TEST = "test"
    VAL = "val"


class ParamSelection(StrEnum):
    """Which weights the weight-space analyses compare."""

    ALL = "all"  # every parameter (the paper)
    KERNELS_BN = "kernels_bn"  # kernels and BatchNorm scales (the seed notebooks)
    NO_BN_BIAS = "no_bn_bias"  # kernels only


class BNPolicy(StrEnum):
    """BatchNorm statistics of an interpolated weight vector."""

    RECOMPUTE = "recompute"  # recomputed on a training subset
    INTERPOLATE = "interpolate"  # interpolated like the weights
    KEEP = "keep"  # the first anchor's


class AlignMethod(StrEnum):
    """How the permutation aligning one member onto another is found (Ainsworth, Hayase &
    Srinivasa 2022, "Git Re-Basin")."""

    WEIGHTS = "weights"  # weight matching: maximise the weights' inner product
    ACTIVATIONS = "activations"  # activation matching: units' correlations on training inputs


class CurveShape(StrEnum):
    """How a connector between two modes is parametrised by its bends (Garipov et al. 2018)."""

    BEZIER = "bezier"  # θ(t) = Σ_k C(n−1, k) t^k (1−t)^(n−1−k) w_k (Garipov's default)
    POLYCHAIN = "polychain"  # piecewise linear through the bends (Fort & Jastrzebski 2019)


class CurveRecipe(StrEnum):
    """How a connector is trained."""

    GARIPOV = "garipov"  # SGD momentum 0.9; lr constant for 50%, linear to 1% at 90%, then flat
    RUN = "run"  # the run's own optimiser and learning-rate schedule (e.g. the paper's Adam)


class SubspaceMethod(StrEnum):
    RANDOM = "random"
    DROPOUT = "dropout"
    DIAGONAL = "diagonal"
    LOWRANK = "lowrank"
    LOWRANK_SCALED = "lowrank_scaled"


class SubsetMode(StrEnum):
    """Which examples the trajectory embeddings use."""

    FIRST = "first"  # the first n (the seed notebooks)
    RANDOM = "random"  # a seeded random subset (the paper)


def values(options: type[StrEnum]) -> tuple[str, ...]:
    """The plain-string values of an option enum, in definition order: `('adam', 'sgd')`."""
    return tuple(o.value for o in options)
