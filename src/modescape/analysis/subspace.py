"""Subspace sampling around one trajectory (Fort et al. 2019): settings, per-member samples, models.

The samplers themselves are in `modescape.analysis.samplers`, the plane in
`modescape.analysis.plane`, calibration in `modescape.analysis.calibration` (imported from
there). Settings (`SubspaceConfig.mode`), from the authors' notebook (deepmind-research,
`ensemble_loss_landscape/cifar10_medium_cnn_experiments.ipynb`; last 10 snapshots, population std
`np.std`, PCA rank 5 in both of its sections):

- "paper": its diversity–accuracy plane section exactly: random radius 70·U(0,1), diagonal
  s = 10·U(0,1) drawn per sample, low-rank s = 6, dropout p = 0.1·U(0,1), 50 samples per method
  (the scaled low-rank variant is not in the notebook and gets the low-rank s). These were chosen
  for a ~1M-parameter CNN; on small networks they destroy the model.
- "calibrated" (default): every sampler sweeps t·scale, t ~ U(0,1) (stratified: one t in each
  [k/n, (k+1)/n), in a seeded random order, so the cloud reaches both ends), with `scale` found
  per sampler and member by `calibration.calibrate_scale` (the scale at which samples lose
  `target_drop` accuracy), so the cloud spans the band from the reference's accuracy downwards on
  any network. Gaussian samplers are centred on μ, the mean of the last snapshots: on a run whose
  last snapshots are still improving, μ itself is below the reference and no scale brings their
  cloud closer (`Calibration.centre_accuracy` says so).
  Until a scale is calibrated the config's `*_scale` fields are used, which default to the
  notebook's ensembling section (random 10, diagonal 1, low-rank 1, dropout 0.1; 30 samples per
  subspace model).

The notebook's ensembling section re-draws a random sample (up to 5 tries) until its validation
accuracy is ≥ 0.70; that filter needs an evaluation and is left to the caller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import torch

from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.analysis.samplers import (
    ALWAYS_SWEEP,
    SAMPLERS,
    check_count,
    check_scale,
    check_snapshots,
    sample,
)
from modescape.errors import ModescapeError, choice_error
from modescape.seeding import derive_seed

MAX_SAMPLES = 10_000  # samples per sampler and member


class SamplerMode(enum.StrEnum):
    """Where the samplers' scales come from (see the module docstring)."""

    PAPER = "paper"  # the notebook's diversity–accuracy plane section, pinned
    CALIBRATED = "calibrated"  # per sampler and member, t·scale with a calibrated scale


# The notebook's diversity–accuracy plane section (n_samples and each sampler's scale).
PAPER_PLANE: dict[str, float] = {
    "n_samples": 50, "random": 70.0, "dropout": 0.1, "diagonal": 10.0, "lowrank": 6.0,
    "lowrank_scaled": 6.0,
}  # fmt: skip
PAPER_SWEEPS = ("random", "dropout", "diagonal")  # diagonal's s = 10·U(0,1) per sample
# Its ensembling section: the starting point of calibration and the fixed scales otherwise.
ENSEMBLING: dict[str, float] = {
    "n_samples": 30, "random": 10.0, "dropout": 0.1, "diagonal": 1.0, "lowrank": 1.0,
    "lowrank_scaled": 1.0,
}  # fmt: skip


@dataclass(frozen=True)
class SubspaceConfig:
    """Sampler settings. A field left None takes the mode's value at construction ("paper":
    PAPER_PLANE; "calibrated": ENSEMBLING), so after __init__ every field holds a number."""

    methods: tuple[str, ...] = SAMPLERS
    mode: SamplerMode = SamplerMode.CALIBRATED
    n_samples: int | None = None  # samples per method and member (paper 50, calibrated 30)
    n_snapshots: int = 10  # last S snapshots of the trajectory (notebook: epochs 30–39 of 40)
    rank: int = 5  # PCA components k for the low-rank Gaussians (notebook: 5)
    random_scale: float | None = None  # t ~ scale·U(0,1), an L2 radius
    dropout_scale: float | None = None  # p ~ scale·U(0,1), must be < 1
    diagonal_scale: float | None = None  # s in N(μ, (s·σ)²)
    lowrank_scale: float | None = None  # s in z ~ N(0, s²I_k), "paper" variant
    lowrank_scaled_scale: float | None = None  # same, SWAG-style scaled components
    target_drop: float = 0.30  # calibration: accuracy the full-scale samples lose (0.30 = 30 pts)
    calibration_probes: int = 4  # calibration: samples averaged per probed scale
    calibration_steps: int = 12  # calibration: bisection steps once the scale is bracketed
    # calibration: fresh samples drawn at the calibrated scale, whose accuracies (mean and
    # spread) say what the drop is for samples the search never saw
    calibration_check: int = 16
    seed: int = 0  # base seed; method m, member i draw from derive_seed(seed, "subspace", m, i)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", SamplerMode(self.mode))
        except ValueError:
            raise choice_error("subspace mode", self.mode, [m.value for m in SamplerMode]) from None
        table = PAPER_PLANE if self.mode is SamplerMode.PAPER else ENSEMBLING
        if self.n_samples is None:
            object.__setattr__(self, "n_samples", int(table["n_samples"]))
        for m in SAMPLERS:
            if getattr(self, f"{m}_scale") is None:
                object.__setattr__(self, f"{m}_scale", table[m])
        object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods:
            raise ModescapeError("subspace.methods must name at least one sampler")
        for m in self.methods:
            if m not in SAMPLERS:
                raise choice_error("subspace sampler", m, SAMPLERS)
        check_count(self.n_samples, "subspace.n_samples")
        # Upper bounds before anything is allocated ([n_samples, P] per sampler and member).
        for name, value, most in (
            ("n_samples", self.n_samples, MAX_SAMPLES),
            ("n_snapshots", self.n_snapshots, 100_000),
            ("calibration_probes", self.calibration_probes, 1_000),
            ("calibration_steps", self.calibration_steps, 100),
            ("calibration_check", self.calibration_check, 1_000),
        ):
            if isinstance(value, int) and value > most:
                raise ModescapeError(f"subspace.{name} must be at most {most:,}, got {value:,}")
        if self.n_snapshots < 2:
            raise ModescapeError(f"subspace.n_snapshots must be >= 2, got {self.n_snapshots}")
        # rank <= n_snapshots - 1 (S centred snapshots span at most S - 1 directions) is fitted
        # to the run by the study, with a warning, like the snapshot window itself
        # (`studies.subspace.fit_to_run`); the samplers refuse a rank their snapshots lack.
        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise ModescapeError(f"subspace.rank must be an integer >= 1, got {self.rank!r}")
        for m in SAMPLERS:
            check_scale(m, self.scale(m))
        if not (isinstance(self.target_drop, int | float) and 0 < self.target_drop < 1):
            raise ModescapeError(f"subspace.target_drop must be in (0, 1), got {self.target_drop}")
        check_count(self.calibration_probes, "subspace.calibration_probes")
        check_count(self.calibration_steps, "subspace.calibration_steps")
        check_count(self.calibration_check, "subspace.calibration_check")
        if not 0 <= self.seed <= 2**63 - 1:  # derive_seed's range: a larger one is a typo
            raise ModescapeError(f"subspace.seed must be in [0, 2**63 - 1], got {self.seed}")

    def scale(self, method: str) -> float:
        """The configured scale of `method` (before any calibration)."""
        if method not in SAMPLERS:
            raise choice_error("subspace sampler", method, SAMPLERS)
        return float(getattr(self, f"{method}_scale"))

    def sweeps(self, method: str) -> bool:
        """Whether `method` draws a fresh scale·U(0,1) per sample in this mode."""
        if method not in SAMPLERS:
            raise choice_error("subspace sampler", method, SAMPLERS)
        return self.mode is SamplerMode.CALIBRATED or method in PAPER_SWEEPS


def sample_subspace(
    config: SubspaceConfig,
    method: str,
    snapshots: torch.Tensor,
    member: int,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """`config.n_samples` samples of `method` around member `member`'s trajectory.

    snapshots: [S, P], the trajectory (or its tail); the last `config.n_snapshots` are used and
    the anchor is the final one. Seeded by derive_seed(config.seed, "subspace", method, member).
    `scale`: the calibrated scale (`calibrate_scale`); None uses `config.scale(method)`. In
    "calibrated" mode every sampler sweeps t·scale, t ~ U(0,1) stratified (one t per
    [k/n, (k+1)/n), seeded order); in "paper" mode the notebook's i.i.d. draws.
    Returns [n_samples, P].
    """
    if method not in config.methods:
        raise choice_error("subspace sampler (not in config.methods)", method, config.methods)
    tail = trajectory_tail(config, method, snapshots)
    s = config.scale(method) if scale is None else float(scale)
    seed = derive_seed(config.seed, "subspace", method, member)
    # Calibrated clouds are stratified in t so that they reach both ends of the band.
    stratified = config.mode is SamplerMode.CALIBRATED
    return sample(
        method,
        tail,
        config.n_samples,
        s,
        seed,
        rank=config.rank,
        sweep=config.sweeps(method),
        stratified=stratified,
    )


def trajectory_tail(config: SubspaceConfig, method: str, snapshots: torch.Tensor) -> torch.Tensor:
    """The snapshots `method` uses: the last `config.n_snapshots` rows of `snapshots[S, P]`
    (random and dropout need only the anchor, so a shorter trajectory is fine for them)."""
    check_snapshots(snapshots, need=1)
    if method not in ALWAYS_SWEEP and snapshots.shape[0] < config.n_snapshots:
        raise ModescapeError(
            f"{method} needs the last {config.n_snapshots} snapshots (subspace.n_snapshots), "
            f"the trajectory has {snapshots.shape[0]}"
        )
    return snapshots[-config.n_snapshots :]


# ---------------------------------------------------------------------------------------------
# Subspace models


def subspace_model_probs(sample_probs: ArrayLike, per_model: int) -> np.ndarray:
    """Subspace models: the mean predictive distribution of consecutive groups of `per_model`
    samples. sample_probs: [K, N, C] with K a multiple of per_model. Returns [K/per_model, N, C]
    in float64 (a mean rounded back to float32 turns near-equal classes into ties)."""
    p = as_numpy(sample_probs)
    check_count(per_model, "per_model")
    if p.ndim != 3:
        raise ModescapeError(f"sample_probs must be [samples, examples, classes], got {p.shape}")
    K = p.shape[0]
    if K == 0 or K % per_model:
        raise ModescapeError(f"{K} samples do not split into groups of per_model={per_model}")
    grouped = p.reshape(K // per_model, per_model, *p.shape[1:])
    return grouped.mean(axis=1, dtype=np.float64)
