"""Subspace sampling around one trajectory (SPEC §7).

Samplers turn a trajectory's last snapshots `snapshots[S, P]` (flat parameter vectors; the anchor
θ* is the final one, `snapshots[-1]`) into sampled weight vectors `[K, P]`:

- "random":          θ = θ* + t·v,  v Gaussian with ‖v‖₂ = 1 over all parameters,  t ~ scale·U(0,1)
- "dropout":         θ = θ* ⊙ m / (1 − p),  m_j ~ Bernoulli(1 − p),  p ~ scale·U(0,1)
- "diagonal":        θ ~ N(μ, (s·σ)²) per parameter,  μ, σ over the snapshots
- "lowrank":         θ = μ + z·V,  V the top-k unit principal directions,  z ~ N(0, s²·I_k)
- "lowrank_scaled":  as "lowrank" with direction i scaled by s_i/√(S−1) (SWAG-style)

For the Gaussians s is `scale`, or with `sweep=True` a fresh s = scale·U(0,1) per sample; the
random and dropout samplers always sweep (t, p ~ scale·U(0,1)); `sweep=False` pins them at scale
(what calibration probes). Each sample is drawn in turn from one CPU generator, so a seed gives
the same samples on any device and whether they are produced all at once (`sample`) or in chunks
(`iter_samples`, which never holds K×P at once). Low-rank directions have fixed signs (largest-|.|
entry positive), so samples do not depend on LAPACK's eigenvector signs.

Settings (`SubspaceConfig.mode`), from the authors' notebook (deepmind-research,
`ensemble_loss_landscape/cifar10_medium_cnn_experiments.ipynb`; last 10 snapshots, population std
`np.std`, PCA rank 5 in both of its sections):

- "paper": its diversity–accuracy plane section exactly: random radius 70·U(0,1), diagonal
  s = 10·U(0,1) drawn per sample, low-rank s = 6, dropout p = 0.1·U(0,1), 50 samples per method
  (the scaled low-rank variant is not in the notebook and gets the low-rank s). These were chosen
  for a ~1M-parameter CNN; on small networks they destroy the model.
- "calibrated" (default): every sampler sweeps t·scale, t ~ U(0,1), with `scale` found per sampler
  and member by `modescape.analysis.calibration.calibrate_scale` (the scale at which samples lose
  `target_drop` accuracy), so the cloud spans the band from the reference's accuracy downwards on
  any network. Until a scale is calibrated the config's `*_scale` fields are used, which default
  to the notebook's ensembling section (random 10, diagonal 1, low-rank 1, dropout 0.1; 30
  samples per subspace model).

The notebook's ensembling section re-draws a random sample (up to 5 tries) until its validation
accuracy is ≥ 0.70; that filter needs an evaluation and is left to the caller. The plane itself is
in `modescape.analysis.plane` (re-exported here).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.analysis.plane import PlaneSummary as PlaneSummary
from modescape.analysis.plane import diversity_accuracy_points as diversity_accuracy_points
from modescape.analysis.plane import plane_summary as plane_summary
from modescape.analysis.plane import reference_curves as reference_curves
from modescape.errors import ModescapeError, choice_error
from modescape.seeding import derive_seed, torch_generator

SAMPLERS = ("random", "dropout", "diagonal", "lowrank", "lowrank_scaled")
LOWRANK_VARIANTS = ("paper", "scaled")
ALWAYS_SWEEP = ("random", "dropout")  # t, p ~ scale·U(0,1) in every setting (SPEC §7)

Seed = int | torch.Generator


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
        _check_n(self.n_samples, "subspace.n_samples")
        if self.n_snapshots < 2:
            raise ModescapeError(f"subspace.n_snapshots must be >= 2, got {self.n_snapshots}")
        if not 1 <= self.rank <= self.n_snapshots - 1:
            raise ModescapeError(
                f"subspace.rank must be in [1, n_snapshots - 1 = {self.n_snapshots - 1}] "
                f"(S centred snapshots span at most S - 1 directions), got {self.rank}"
            )
        for m in SAMPLERS:
            _check_scale(m, self.scale(m))
        if not (isinstance(self.target_drop, int | float) and 0 < self.target_drop < 1):
            raise ModescapeError(f"subspace.target_drop must be in (0, 1), got {self.target_drop}")
        _check_n(self.calibration_probes, "subspace.calibration_probes")
        _check_n(self.calibration_steps, "subspace.calibration_steps")
        if self.seed < 0:
            raise ModescapeError(f"subspace.seed must be >= 0, got {self.seed}")

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


# ---------------------------------------------------------------------------------------------
# Samplers


@dataclass(frozen=True)
class LowRankBasis:
    """PCA of centred snapshots: mean[P], components[k, P] (orthonormal rows), singular_values[k].

    `singular_values` are those of the centred matrix (snapshots − mean), not divided by √(S−1).
    Each component's largest-|.| entry is positive (the first such entry on a tie).
    """

    mean: torch.Tensor
    components: torch.Tensor
    singular_values: torch.Tensor
    n_snapshots: int


def lowrank_basis(snapshots: torch.Tensor, rank: int) -> LowRankBasis:
    """Top-`rank` principal directions of `snapshots[S, P]` centred by their mean.

    Computed through the S×S Gram matrix in float64 (S is ~10, P up to millions), which gives the
    same directions as sklearn's PCA / an SVD of the centred matrix up to sign; the sign is then
    fixed (largest-|.| entry positive) because LAPACK's is arbitrary and differs between builds.
    """
    _check_snapshots(snapshots, need=2)
    S = snapshots.shape[0]
    if not 1 <= rank <= S - 1:
        raise ModescapeError(
            f"rank must be in [1, S - 1 = {S - 1}] for {S} snapshots "
            f"(S centred snapshots span at most S - 1 directions), got {rank}"
        )
    # Centred in float64: late snapshots differ from each other by a small fraction of the weights.
    mean = snapshots.double().mean(dim=0)
    X = snapshots.double() - mean
    eigvals, U = torch.linalg.eigh(X @ X.T)  # ascending
    eigvals, U = eigvals.flip(0)[:rank], U.flip(1)[:, :rank]
    sv = eigvals.clamp_min(0).sqrt()
    # A (numerically) zero singular value has no direction in the snapshots' span.
    if sv[-1] <= 1e-6 * max(float(sv[0]), 1e-30):
        raise ModescapeError(
            f"the centred snapshots span fewer than rank={rank} directions "
            f"(singular values {sv.tolist()}); lower the rank or use more distinct snapshots"
        )
    components = (U.T @ X) / sv[:, None]  # rows v_i = X^T u_i / s_i, unit norm
    # Negation is exact in floating point, so a flipped u_i gives back the very same v_i.
    peak = components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    components = torch.where(peak < 0, -components, components)
    dtype = snapshots.dtype
    return LowRankBasis(mean.to(dtype), components.to(dtype), sv.to(dtype), S)


def random_subspace(anchor: torch.Tensor, n: int, scale: float, seed: Seed) -> torch.Tensor:
    """θ = θ* + t·v with a fresh unit-norm Gaussian direction v and t ~ scale·U(0,1) per sample.

    anchor: [P]. Returns [n, P]; ‖θ_k − θ*‖ = t_k ≤ scale.
    """
    return _collect(_rows("random", _anchor_row(anchor), n, scale, seed), n)


def dropout_subspace(anchor: torch.Tensor, n: int, scale: float, seed: Seed) -> torch.Tensor:
    """Drop each entry of θ* with probability p ~ scale·U(0,1) (fresh p per sample), rescale the
    kept ones by 1/(1 − p). anchor: [P]; scale in (0, 1). Returns [n, P]."""
    return _collect(_rows("dropout", _anchor_row(anchor), n, scale, seed), n)


def diagonal_gaussian(
    snapshots: torch.Tensor, n: int, scale: float, seed: Seed, *, sweep: bool = False
) -> torch.Tensor:
    """θ ~ N(μ, (s·σ)²) independently per parameter; μ, σ the mean and population std
    (ddof = 0, as `np.std` in the authors' notebook) of `snapshots[S, P]`; s = scale, or
    s ~ scale·U(0,1) per sample with `sweep`. Returns [n, P]."""
    return _collect(_rows("diagonal", snapshots, n, scale, seed, sweep=sweep), n)


def lowrank_gaussian(
    snapshots: torch.Tensor,
    n: int,
    scale: float,
    rank: int,
    seed: Seed,
    variant: str = "paper",
    *,
    sweep: bool = False,
) -> torch.Tensor:
    """θ = μ + Σ_i c_i z_i v_i with z ~ N(0, s²·I_k) (s = scale, or s ~ scale·U(0,1) per sample
    with `sweep`), v_i the top-k principal directions of `snapshots[S, P]` centred by μ, and

    - "paper":  c_i = 1 (unit-norm components; the authors' `pca.inverse_transform(z)`),
    - "scaled": c_i = s_i/√(S−1), s_i the i-th singular value of the centred snapshots, so the
      covariance is scale² × the rank-k truncation of the unbiased sample covariance (SWAG's
      low-rank term D̂D̂ᵀ/(S−1), without SWAG's ½ that shares variance with a diagonal part).

    Returns [n, P].
    """
    if variant not in LOWRANK_VARIANTS:
        raise choice_error("low-rank variant", variant, LOWRANK_VARIANTS)
    method = "lowrank" if variant == "paper" else "lowrank_scaled"
    return _collect(_rows(method, snapshots, n, scale, seed, rank=rank, sweep=sweep), n)


def sample(
    method: str,
    snapshots: torch.Tensor,
    n: int,
    scale: float,
    seed: Seed,
    *,
    rank: int = 5,
    sweep: bool | None = None,
) -> torch.Tensor:
    """Any of SAMPLERS on `snapshots[S, P]` (anchor = last row; "random"/"dropout" need S ≥ 1,
    the Gaussians S ≥ 2). `sweep`: a fresh scale·U(0,1) per sample (default: random and dropout
    yes, the Gaussians no); False pins every sample at `scale`. Returns [n, P]."""
    return _collect(_rows(method, snapshots, n, scale, seed, rank=rank, sweep=sweep), n)


def iter_samples(
    method: str,
    snapshots: torch.Tensor,
    n: int,
    scale: float,
    seed: Seed,
    *,
    rank: int = 5,
    chunk: int = 8,
    sweep: bool | None = None,
) -> Iterator[torch.Tensor]:
    """`sample(...)` in pieces of at most `chunk` rows ([≤chunk, P] each); the concatenation is
    identical to `sample(...)` with the same seed, whatever the chunk."""
    _check_n(chunk, "chunk")
    rows = _rows(method, snapshots, n, scale, seed, rank=rank, sweep=sweep)
    while block := [row for _, row in zip(range(chunk), rows)]:
        yield torch.stack(block)


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
    "calibrated" mode every sampler sweeps t·scale, t ~ U(0,1); in "paper" mode the notebook's.
    Returns [n_samples, P].
    """
    if method not in config.methods:
        raise choice_error("subspace sampler (not in config.methods)", method, config.methods)
    tail = trajectory_tail(config, method, snapshots)
    s = config.scale(method) if scale is None else float(scale)
    seed = derive_seed(config.seed, "subspace", method, member)
    return sample(
        method, tail, config.n_samples, s, seed, rank=config.rank, sweep=config.sweeps(method)
    )


def trajectory_tail(config: SubspaceConfig, method: str, snapshots: torch.Tensor) -> torch.Tensor:
    """The snapshots `method` uses: the last `config.n_snapshots` rows of `snapshots[S, P]`
    (random and dropout need only the anchor, so a shorter trajectory is fine for them)."""
    _check_snapshots(snapshots, need=1)
    if method not in ALWAYS_SWEEP and snapshots.shape[0] < config.n_snapshots:
        raise ModescapeError(
            f"{method} needs the last {config.n_snapshots} snapshots (subspace.n_snapshots), "
            f"the trajectory has {snapshots.shape[0]}"
        )
    return snapshots[-config.n_snapshots :]


def _rows(
    method: str,
    snapshots: torch.Tensor,
    n: int,
    scale: float,
    seed: Seed,
    *,
    rank: int = 5,
    sweep: bool | None = None,
) -> Iterator[torch.Tensor]:
    """Validate eagerly, then return a generator of n rows [P] (fitting happens once, here)."""
    if method not in SAMPLERS:
        raise choice_error("subspace sampler", method, SAMPLERS)
    swept = method in ALWAYS_SWEEP if sweep is None else bool(sweep)
    _check_n(n, "n")
    _check_scale(method, scale)
    _check_snapshots(snapshots, need=1 if method in ("random", "dropout") else 2)
    gen = _generator(seed)
    P = snapshots.shape[1]
    dtype, device = snapshots.dtype, snapshots.device

    # Draws are made on the CPU (same samples on any device), then moved.
    def uniform() -> float:
        return float(torch.rand((), generator=gen, dtype=torch.float64))

    def level() -> float:  # this sample's scale: a fresh scale·U(0,1) when sweeping
        return scale * uniform() if swept else scale

    def normal(size: int) -> torch.Tensor:
        return torch.randn(size, generator=gen, dtype=dtype).to(device)

    if method == "random":
        anchor = snapshots[-1]

        def draw() -> torch.Tensor:
            t = level()
            v = normal(P)
            return anchor + (t / torch.linalg.vector_norm(v.double()).item()) * v

    elif method == "dropout":
        anchor = snapshots[-1]

        def draw() -> torch.Tensor:
            p = level()
            keep = (torch.rand(P, generator=gen, dtype=torch.float64) >= p).to(device)
            return torch.where(keep, anchor / (1.0 - p), torch.zeros((), dtype=dtype))

    elif method == "diagonal":
        mu = snapshots.mean(dim=0)
        sigma = snapshots.std(dim=0, correction=0)

        def draw() -> torch.Tensor:
            return mu + level() * sigma * normal(P)

    else:
        basis = lowrank_basis(snapshots, rank)
        coef = torch.ones(rank, dtype=dtype, device=device)
        if method == "lowrank_scaled":
            coef = basis.singular_values / math.sqrt(basis.n_snapshots - 1)

        def draw() -> torch.Tensor:
            z = level() * normal(rank)
            return basis.mean + (z * coef) @ basis.components

    return (draw() for _ in range(n))


def _collect(rows: Iterator[torch.Tensor], n: int) -> torch.Tensor:
    """n rows into one preallocated [n, P] tensor (not a list of rows plus a stacked copy)."""
    first = next(rows)
    out = first.new_empty((n, first.shape[0]))
    out[0] = first
    for k, row in enumerate(rows, start=1):
        out[k] = row
    return out


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ModescapeError("subspace samplers draw on the CPU: pass a CPU torch.Generator")
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ModescapeError(f"seed must be a non-negative int or a torch.Generator, got {seed!r}")
    return torch_generator(int(seed))


# ---------------------------------------------------------------------------------------------
# Subspace models


def subspace_model_probs(sample_probs: ArrayLike, per_model: int) -> np.ndarray:
    """Subspace models: the mean predictive distribution of consecutive groups of `per_model`
    samples. sample_probs: [K, N, C] with K a multiple of per_model. Returns [K/per_model, N, C]
    (float32 in, float32 out; the mean is taken in float64)."""
    p = as_numpy(sample_probs)
    _check_n(per_model, "per_model")
    if p.ndim != 3:
        raise ModescapeError(f"sample_probs must be [samples, examples, classes], got {p.shape}")
    K = p.shape[0]
    if K == 0 or K % per_model:
        raise ModescapeError(f"{K} samples do not split into groups of per_model={per_model}")
    grouped = p.reshape(K // per_model, per_model, *p.shape[1:])
    return grouped.mean(axis=1, dtype=np.float64).astype(p.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# validation helpers


def _anchor_row(anchor: torch.Tensor) -> torch.Tensor:
    if not isinstance(anchor, torch.Tensor) or anchor.ndim != 1:
        shape = tuple(getattr(anchor, "shape", ()))
        raise ModescapeError(f"expected the anchor as a flat tensor [P], got shape {shape}")
    return anchor[None]


def _check_n(n: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ModescapeError(f"{what} must be an integer >= 1, got {n!r}")


def _check_scale(method: str, scale: float) -> None:
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ModescapeError(f"{method} scale must be a finite number > 0, got {scale!r}")
    if method == "dropout" and scale >= 1:
        raise ModescapeError(f"dropout scale is the largest drop probability, need < 1: {scale}")


def _check_snapshots(snapshots: torch.Tensor, need: int) -> None:
    if not isinstance(snapshots, torch.Tensor) or snapshots.ndim != 2:
        shape = tuple(getattr(snapshots, "shape", ()))
        raise ModescapeError(f"expected snapshots as a tensor [S, P], got shape {shape}")
    if not snapshots.dtype.is_floating_point:
        raise ModescapeError(f"snapshots must be floating point, got {snapshots.dtype}")
    if snapshots.shape[0] < need:
        raise ModescapeError(f"need at least {need} snapshot(s), got {snapshots.shape[0]}")
