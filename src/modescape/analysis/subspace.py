"""Subspace sampling around one trajectory and the diversity–accuracy plane (Fort et al. 2019).

Samplers turn a trajectory's last snapshots `snapshots[S, P]` (flat parameter vectors; the anchor
θ* is the final one, `snapshots[-1]`) into sampled weight vectors `[K, P]`:

- "random":          θ = θ* + t·v,  v Gaussian with ‖v‖₂ = 1 over all parameters,  t ~ scale·U(0,1)
- "dropout":         θ = θ* ⊙ m / (1 − p),  m_j ~ Bernoulli(1 − p),  p ~ scale·U(0,1)
- "diagonal":        θ ~ N(μ, (scale·σ)²) per parameter,  μ, σ over the snapshots
- "lowrank":         θ = μ + z·V,  V the top-k unit principal directions,  z ~ N(0, scale²·I_k)
- "lowrank_scaled":  as "lowrank" with direction i scaled by s_i/√(S−1) (SWAG-style)

Each sample is drawn in turn from one CPU generator, so a seed gives the same samples on any
device and whether they are produced all at once (`sample`) or in chunks (`iter_samples`, which
never holds K×P at once). Defaults follow the authors' notebook (deepmind-research,
`ensemble_loss_landscape/cifar10_medium_cnn_experiments.ipynb`): last 10 snapshots, population
std (`np.std`), PCA rank 5, 30 samples per subspace model, scale 1 for both Gaussians, random
radius `10·U(0,1)`. That notebook has no dropout subspace; its scale here (p up to 0.5) is
modescape's choice. The notebook also re-draws a random sample (up to 5 tries) until its
validation accuracy is ≥ 0.70; that filter needs an evaluation and is left to the caller.

The plane (the paper's diversity-versus-accuracy plots): each sample is a point
(acc, D(θ, θ_ref)/(1 − acc)), against two reference curves for a predictor of accuracy a
compared with a reference of accuracy a*.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from modescape.analysis.functionspace import agreement_with, normalized_diversity
from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.errors import ModescapeError, choice_error
from modescape.options import SubspaceMethod, values
from modescape.seeding import derive_seed, torch_generator

SAMPLERS = values(SubspaceMethod)
LOWRANK_VARIANTS = ("paper", "scaled")

Seed = int | torch.Generator


@dataclass(frozen=True)
class SubspaceConfig:
    methods: tuple[str, ...] = SAMPLERS
    n_samples: int = 30  # samples per subspace model (paper: 10–30; authors' notebook: 30)
    n_snapshots: int = 10  # last S snapshots of the trajectory (notebook: epochs 30–39 of 40)
    rank: int = 5  # PCA components k for the low-rank Gaussians (notebook: 5)
    random_scale: float = 10.0  # t ~ scale·U(0,1), an L2 radius (notebook: 10·U(0,1))
    dropout_scale: float = 0.5  # p ~ scale·U(0,1), must be < 1 (modescape's choice)
    diagonal_scale: float = 1.0  # s in N(μ, (s·σ)²) (notebook: 1.0)
    lowrank_scale: float = 1.0  # s in z ~ N(0, s²I_k), "paper" variant (notebook: 1.0)
    lowrank_scaled_scale: float = 1.0  # same, SWAG-style scaled components
    seed: int = 0  # base seed; method m, member i draw from derive_seed(seed, "subspace", m, i)

    def __post_init__(self) -> None:
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
        if self.seed < 0:
            raise ModescapeError(f"subspace.seed must be >= 0, got {self.seed}")

    def scale(self, method: str) -> float:
        if method not in SAMPLERS:
            raise choice_error("subspace sampler", method, SAMPLERS)
        return float(getattr(self, f"{method}_scale"))


# ---------------------------------------------------------------------------------------------
# Samplers


@dataclass(frozen=True)
class LowRankBasis:
    """PCA of centred snapshots: mean[P], components[k, P] (orthonormal rows), singular_values[k].

    `singular_values` are those of the centred matrix (snapshots − mean), not divided by √(S−1).
    """

    mean: torch.Tensor
    components: torch.Tensor
    singular_values: torch.Tensor
    n_snapshots: int


def lowrank_basis(snapshots: torch.Tensor, rank: int) -> LowRankBasis:
    """Top-`rank` principal directions of `snapshots[S, P]` centred by their mean.

    Computed through the S×S Gram matrix in float64 (S is ~10, P up to millions), which gives the
    same directions as sklearn's PCA / an SVD of the centred matrix up to sign.
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


def diagonal_gaussian(snapshots: torch.Tensor, n: int, scale: float, seed: Seed) -> torch.Tensor:
    """θ ~ N(μ, (scale·σ)²) independently per parameter; μ, σ the mean and population std
    (ddof = 0, as `np.std` in the authors' notebook) of `snapshots[S, P]`. Returns [n, P]."""
    return _collect(_rows("diagonal", snapshots, n, scale, seed), n)


def lowrank_gaussian(
    snapshots: torch.Tensor,
    n: int,
    scale: float,
    rank: int,
    seed: Seed,
    variant: str = "paper",
) -> torch.Tensor:
    """θ = μ + Σ_i c_i z_i v_i with z ~ N(0, scale²·I_k), v_i the top-k principal directions of
    `snapshots[S, P]` centred by μ, and

    - "paper":  c_i = 1 (unit-norm components; the authors' `pca.inverse_transform(z)`),
    - "scaled": c_i = s_i/√(S−1), s_i the i-th singular value of the centred snapshots, so the
      covariance is scale² × the rank-k truncation of the unbiased sample covariance (SWAG's
      low-rank term D̂D̂ᵀ/(S−1), without SWAG's ½ that shares variance with a diagonal part).

    Returns [n, P].
    """
    if variant not in LOWRANK_VARIANTS:
        raise choice_error("low-rank variant", variant, LOWRANK_VARIANTS)
    method = "lowrank" if variant == "paper" else "lowrank_scaled"
    return _collect(_rows(method, snapshots, n, scale, seed, rank=rank), n)


def sample(
    method: str, snapshots: torch.Tensor, n: int, scale: float, seed: Seed, *, rank: int = 5
) -> torch.Tensor:
    """Any of SAMPLERS on `snapshots[S, P]` (anchor = last row; "random"/"dropout" need S ≥ 1,
    the Gaussians S ≥ 2). Returns [n, P]."""
    return _collect(_rows(method, snapshots, n, scale, seed, rank=rank), n)


def iter_samples(
    method: str,
    snapshots: torch.Tensor,
    n: int,
    scale: float,
    seed: Seed,
    *,
    rank: int = 5,
    chunk: int = 8,
) -> Iterator[torch.Tensor]:
    """`sample(...)` in pieces of at most `chunk` rows ([≤chunk, P] each); the concatenation is
    identical to `sample(...)` with the same seed, whatever the chunk."""
    _check_n(chunk, "chunk")
    rows = _rows(method, snapshots, n, scale, seed, rank=rank)
    while block := [row for _, row in zip(range(chunk), rows)]:
        yield torch.stack(block)


def sample_subspace(
    config: SubspaceConfig, method: str, snapshots: torch.Tensor, member: int
) -> torch.Tensor:
    """`config.n_samples` samples of `method` around member `member`'s trajectory.

    snapshots: [S, P], the trajectory (or its tail); the last `config.n_snapshots` are used and
    the anchor is the final one. Seeded by derive_seed(config.seed, "subspace", method, member).
    """
    if method not in config.methods:
        raise choice_error("subspace sampler (not in config.methods)", method, config.methods)
    _check_snapshots(snapshots, need=1)
    if method not in ("random", "dropout") and snapshots.shape[0] < config.n_snapshots:
        raise ModescapeError(
            f"{method} needs the last {config.n_snapshots} snapshots (subspace.n_snapshots), "
            f"the trajectory has {snapshots.shape[0]}"
        )
    tail = snapshots[-config.n_snapshots :]
    seed = derive_seed(config.seed, "subspace", method, member)
    return sample(method, tail, config.n_samples, config.scale(method), seed, rank=config.rank)


def _rows(
    method: str, snapshots: torch.Tensor, n: int, scale: float, seed: Seed, *, rank: int = 5
) -> Iterator[torch.Tensor]:
    """Validate eagerly, then return a generator of n rows [P] (fitting happens once, here)."""
    if method not in SAMPLERS:
        raise choice_error("subspace sampler", method, SAMPLERS)
    _check_n(n, "n")
    _check_scale(method, scale)
    _check_snapshots(snapshots, need=1 if method in ("random", "dropout") else 2)
    gen = _generator(seed)
    P = snapshots.shape[1]
    dtype, device = snapshots.dtype, snapshots.device

    # Draws are made on the CPU (same samples on any device), then moved.
    def uniform() -> float:
        return float(torch.rand((), generator=gen, dtype=torch.float64))

    def normal(size: int) -> torch.Tensor:
        return torch.randn(size, generator=gen, dtype=dtype).to(device)

    if method == "random":
        anchor = snapshots[-1]

        def draw() -> torch.Tensor:
            t = scale * uniform()
            v = normal(P)
            return anchor + (t / torch.linalg.vector_norm(v.double()).item()) * v

    elif method == "dropout":
        anchor = snapshots[-1]

        def draw() -> torch.Tensor:
            p = scale * uniform()
            keep = (torch.rand(P, generator=gen, dtype=torch.float64) >= p).to(device)
            return torch.where(keep, anchor / (1.0 - p), torch.zeros((), dtype=dtype))

    elif method == "diagonal":
        mu = snapshots.mean(dim=0)
        sigma = snapshots.std(dim=0, correction=0)

        def draw() -> torch.Tensor:
            return mu + scale * sigma * normal(P)

    else:
        basis = lowrank_basis(snapshots, rank)
        coef = torch.ones(rank, dtype=dtype, device=device)
        if method == "lowrank_scaled":
            coef = basis.singular_values / math.sqrt(basis.n_snapshots - 1)

        def draw() -> torch.Tensor:
            z = scale * normal(rank)
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
# The diversity–accuracy plane


def diversity_accuracy_points(
    ref_probs: ArrayLike, probs: ArrayLike, labels: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Points (acc, D(θ, θ_ref)/(1 − acc)) of K predictors against one reference.

    ref_probs: [N, C] (the reference, one member's final snapshot); probs: [K, N, C] (samples or
    other members); labels: int [N]. Returns float64 `acc[K]` and `norm_div[K]`; the normaliser is
    each predictor's own error, and norm_div is NaN where acc == 1.
    """
    p, y = _check_plane_inputs(probs, labels)
    ref = as_numpy(ref_probs)
    if ref.shape != p.shape[1:]:
        raise ModescapeError(f"ref_probs must have shape {p.shape[1:]} ([N, C]), got {ref.shape}")
    acc = (p.argmax(axis=-1) == y).mean(axis=1, dtype=np.float64)
    d = 1.0 - agreement_with(p, ref)[:, 0]
    return acc, np.asarray(normalized_diversity(d, acc), dtype=np.float64).reshape(-1)


def reference_curves(
    ref_acc: float, num_classes: int, acc_grid: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """The plane's two reference curves at accuracies `acc_grid[G]`, plotted as d(a)/(1 − a).

    - upper, independent errors: d_up(a) = a*(1−a) + a(1−a*) + (1−a*)(1−a)(C−2)/(C−1), the
      expected disagreement of a predictor of accuracy a whose errors are independent of the
      reference's and uniform over the C − 1 wrong classes;
    - lower, perturbed reference: d_low(a) = (a* − a)/(a* + (a* − 1)/(C − 1)), the disagreement
      left when a fraction of the reference's predictions is replaced by uniformly random classes
      until its accuracy drops to a (meaningful for 1/C ≤ a ≤ a*; the formula is returned as is).

    Both equal 1 at a = 1/C. Returns float64 `(upper[G], lower[G])`; NaN where a == 1.
    """
    a_star = float(ref_acc)
    C = int(num_classes)
    if C < 2:
        raise ModescapeError(f"num_classes must be >= 2, got {num_classes}")
    if not 1.0 / C < a_star <= 1.0:
        raise ModescapeError(f"ref_acc must be in (1/C, 1] = ({1 / C:.4g}, 1], got {ref_acc}")
    a = as_numpy(acc_grid, np.float64)
    if np.any((a < 0) | (a > 1)):
        raise ModescapeError("acc_grid values must lie in [0, 1]")
    d_up = a_star * (1 - a) + a * (1 - a_star) + (1 - a_star) * (1 - a) * (C - 2) / (C - 1)
    d_low = (a_star - a) / (a_star + (a_star - 1) / (C - 1))
    return (
        np.asarray(normalized_diversity(d_up, a), dtype=np.float64),
        np.asarray(normalized_diversity(d_low, a), dtype=np.float64),
    )


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


@dataclass(frozen=True)
class PlaneSummary:
    """How far subspace samples get from the reference, next to independent members.

    `best_sample_norm_div`: the largest normalised diversity among samples whose accuracy is
    within `tol` of the reference's (NaN when none is). `member_*`: one entry per member.
    """

    ref_acc: float
    tol: float
    n_samples: int
    n_within_tol: int
    best_sample_norm_div: float
    best_sample_acc: float
    member_acc: tuple[float, ...]
    member_norm_div: tuple[float, ...]

    def text(self) -> str:
        pts = 100 * self.tol
        head = f"Reference accuracy {self.ref_acc:.3f}. "
        if self.n_within_tol:
            head += (
                f"Of {self.n_samples} subspace samples, {self.n_within_tol} are within "
                f"{pts:.1f} accuracy points of it; the most diverse of them reaches normalised "
                f"diversity {self.best_sample_norm_div:.2f} (accuracy {self.best_sample_acc:.3f})."
            )
        else:
            head += f"None of {self.n_samples} subspace samples is within {pts:.1f} points of it."
        if not self.member_norm_div:
            return head
        members = ", ".join(
            f"{d:.2f} (acc {a:.3f})" for a, d in zip(self.member_acc, self.member_norm_div)
        )
        return f"{head} Independent members: {members}."


def plane_summary(
    ref_probs: ArrayLike,
    sample_probs: ArrayLike,
    member_probs: ArrayLike,
    labels: ArrayLike,
    *,
    tol: float = 0.02,
) -> PlaneSummary:
    """Among samples within `tol` (absolute accuracy, 0.02 = 2 points) of the reference's
    accuracy, the largest normalised diversity, versus that of each independent member.

    ref_probs: [N, C]; sample_probs: [K, N, C]; member_probs: [M, N, C] (M may be 0); labels: [N].
    """
    if not 0 <= tol <= 1:
        raise ModescapeError(f"tol must be in [0, 1], got {tol}")
    ref = as_numpy(ref_probs)
    _, y = _check_plane_inputs(ref[None], labels)
    ref_acc = float((ref.argmax(-1) == y).mean())
    s_acc, s_div = diversity_accuracy_points(ref, sample_probs, labels)
    near = (np.abs(s_acc - ref_acc) <= tol + 1e-12) & ~np.isnan(s_div)
    best = int(np.flatnonzero(near)[np.argmax(s_div[near])]) if near.any() else -1
    members = as_numpy(member_probs)
    if members.shape[0]:
        m_acc, m_div = diversity_accuracy_points(ref, members, labels)
    else:
        m_acc, m_div = np.zeros(0), np.zeros(0)
    return PlaneSummary(
        ref_acc=ref_acc,
        tol=float(tol),
        n_samples=len(s_acc),
        n_within_tol=int(near.sum()),
        best_sample_norm_div=float(s_div[best]) if best >= 0 else float("nan"),
        best_sample_acc=float(s_acc[best]) if best >= 0 else float("nan"),
        member_acc=tuple(map(float, m_acc)),
        member_norm_div=tuple(map(float, m_div)),
    )


def _check_plane_inputs(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = as_numpy(probs), as_numpy(labels)
    if p.ndim != 3 or p.shape[1] == 0:
        raise ModescapeError(f"probs must be [models, examples, classes], got shape {p.shape}")
    if y.shape != (p.shape[1],) or not np.issubdtype(y.dtype, np.integer):
        raise ModescapeError(f"labels must be int [{p.shape[1]}], got {y.dtype} {y.shape}")
    return p, y


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
