"""The subspace samplers: weight vectors drawn around one trajectory.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from modescape.errors import ModescapeError, choice_error
from modescape.options import SubspaceMethod, values
from modescape.seeding import torch_generator

SAMPLERS = values(SubspaceMethod)
LOWRANK_VARIANTS = ("paper", "scaled")
ALWAYS_SWEEP = ("random", "dropout")  # t, p ~ scale·U(0,1) in every setting

Seed = int | torch.Generator


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
    check_snapshots(snapshots, need=2)
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
    stratified: bool = False,
) -> torch.Tensor:
    """Any of SAMPLERS on `snapshots[S, P]` (anchor = last row; "random"/"dropout" need S ≥ 1,
    the Gaussians S ≥ 2). `sweep`: a fresh scale·U(0,1) per sample (default: random and dropout
    yes, the Gaussians no); False pins every sample at `scale`. `stratified` (with a sweep): the
    n values of U(0,1) are one per stratum [k/n, (k+1)/n), in a seeded random order, so the
    cloud always reaches near scale 0 and near `scale`. Returns [n, P]."""
    rows = _rows(method, snapshots, n, scale, seed, rank=rank, sweep=sweep, stratified=stratified)
    return _collect(rows, n)


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
    stratified: bool = False,
) -> Iterator[torch.Tensor]:
    """`sample(...)` in pieces of at most `chunk` rows ([≤chunk, P] each); the concatenation is
    identical to `sample(...)` with the same seed, whatever the chunk."""
    check_count(chunk, "chunk")
    rows = _rows(method, snapshots, n, scale, seed, rank=rank, sweep=sweep, stratified=stratified)
    while block := [row for _, row in zip(range(chunk), rows)]:
        yield torch.stack(block)


def _rows(
    method: str,
    snapshots: torch.Tensor,
    n: int,
    scale: float,
    seed: Seed,
    *,
    rank: int = 5,
    sweep: bool | None = None,
    stratified: bool = False,
) -> Iterator[torch.Tensor]:
    """Validate eagerly, then return a generator of n rows [P] (fitting happens once, here)."""
    if method not in SAMPLERS:
        raise choice_error("subspace sampler", method, SAMPLERS)
    swept = method in ALWAYS_SWEEP if sweep is None else bool(sweep)
    check_count(n, "n")
    check_scale(method, scale)
    check_snapshots(snapshots, need=1 if method in ("random", "dropout") else 2)
    gen = sample_generator(seed)
    # Stratum of each sample (drawn first, so chunked and whole draws agree).
    strata = iter(torch.randperm(n, generator=gen).tolist()) if swept and stratified else None

    def level() -> float:  # this sample's scale: a fresh scale·U(0,1) when sweeping
        if not swept:
            return scale
        u = float(torch.rand((), generator=gen, dtype=torch.float64))
        return scale * ((next(strata) + u) / n if strata is not None else u)

    draw = _drawer(method, snapshots, rank, gen, level)
    return (draw() for _ in range(n))


def _drawer(
    method: str,
    snapshots: torch.Tensor,
    rank: int,
    gen: torch.Generator,
    level: Callable[[], float],
) -> Callable[[], torch.Tensor]:
    """A function drawing one sample [P] of `method`; `level()` gives each sample's scale."""
    P = snapshots.shape[1]
    dtype, device = snapshots.dtype, snapshots.device

    # Draws are made on the CPU (same samples on any device), then moved.
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
        # in float64 as lowrank_basis: late snapshots differ by a small fraction of the weights
        wide = snapshots.double()
        mu = wide.mean(dim=0).to(dtype)
        sigma = wide.std(dim=0, correction=0).to(dtype)
        del wide

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

    return draw


def _collect(rows: Iterator[torch.Tensor], n: int) -> torch.Tensor:
    """n rows into one preallocated [n, P] tensor (not a list of rows plus a stacked copy)."""
    first = next(rows)
    out = first.new_empty((n, first.shape[0]))
    out[0] = first
    for k, row in enumerate(rows, start=1):
        out[k] = row
    return out


def sample_generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ModescapeError("subspace samplers draw on the CPU: pass a CPU torch.Generator")
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ModescapeError(f"seed must be a non-negative int or a torch.Generator, got {seed!r}")
    return torch_generator(int(seed))


# ---------------------------------------------------------------------------------------------
# validation helpers


def _anchor_row(anchor: torch.Tensor) -> torch.Tensor:
    if not isinstance(anchor, torch.Tensor) or anchor.ndim != 1:
        shape = tuple(getattr(anchor, "shape", ()))
        raise ModescapeError(f"expected the anchor as a flat tensor [P], got shape {shape}")
    return anchor[None]


def check_count(n: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ModescapeError(f"{what} must be an integer >= 1, got {n!r}")


def check_scale(method: str, scale: float) -> None:
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ModescapeError(f"{method} scale must be a finite number > 0, got {scale!r}")
    if method == "dropout" and scale >= 1:
        raise ModescapeError(f"dropout scale is the largest drop probability, need < 1: {scale}")


def check_snapshots(snapshots: torch.Tensor, need: int) -> None:
    if not isinstance(snapshots, torch.Tensor) or snapshots.ndim != 2:
        shape = tuple(getattr(snapshots, "shape", ()))
        raise ModescapeError(f"expected snapshots as a tensor [S, P], got shape {shape}")
    if not snapshots.dtype.is_floating_point:
        raise ModescapeError(f"snapshots must be floating point, got {snapshots.dtype}")
    if snapshots.shape[0] < need:
        raise ModescapeError(f"need at least {need} snapshot(s), got {snapshots.shape[0]}")
