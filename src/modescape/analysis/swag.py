"""SWA, SWAG, MultiSWAG and MC dropout: the single-mode methods the literature compares with.

Definitions, as their authors' reference code has them:

- SWA (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima"): the mean θ̄ of the
  iterates collected at a constant or cyclical learning rate after the main schedule; networks
  with BatchNorm get their running statistics recomputed for θ̄ (`torch.optim.swa_utils.update_bn`).
- SWAG (Maddox et al. 2019, "A Simple Baseline for Bayesian Uncertainty in Deep Learning";
  `wjmaddox/swa_gaussian`): running first and second moments θ̄, E[θ²] of the collected iterates,
  σ² = E[θ²] − θ̄² clamped at 0, and the last K (= 20) deviations D = [θ_i − θ̄_i] (θ̄_i the
  running mean just after collecting θ_i, as the reference code computes them). A sample is

      θ = θ̄ + √s · (σ ⊙ z₁ + D z₂ / √(K' − 1)),   z₁ ~ N(0, I_P),  z₂ ~ N(0, I_K')

  with K' the number of deviation columns kept (K once K iterates were collected) and ONE z₂
  for the whole network (a z₂ per parameter tensor would make the low-rank part block-diagonal,
  a known port pitfall), σ a standard deviation (not the variance, another one). s = 0.5 gives
  Σ = ½(diag σ² + DDᵀ/(K'−1)), the paper's SWAG; the diagonal variant drops the D term and uses
  s = 1, i.e. N(θ̄, diag σ²) (SWAG-Diagonal). The reference code divides by √(K − 1) with K the
  maximum rank even when fewer columns exist; dividing by the columns present keeps DDᵀ/(K'−1)
  a sample covariance when a short collection phase keeps fewer than K.
- MultiSWAG (Wilson & Izmailov 2020, "Bayesian Deep Learning and a Probabilistic Perspective of
  Generalization"): one SWAG per independently trained member; the predictive averages the
  samples of all of them (`pool_samples` / `pool_predictions`).
- MC dropout (Gal & Ghahramani 2016): dropout layers left on at test time, T stochastic passes
  averaged (`mc_dropout_probs`); it perturbs activations, unlike the paper's "dropout subspace",
  which perturbs weights.

Everything here is a pure function of tensors; the trainer keeps a `SwagMoments` in its resume
state during a collection phase and the studies evaluate what these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from modescape.analysis.metrics import ArrayLike, as_numpy
from modescape.analysis.samplers import Seed, check_count, sample_generator
from modescape.errors import ModescapeError, check_choice, choice_error
from modescape.options import SwagMethod, values
from modescape.seeding import derive_seed

MAX_RANK = 20  # K in Maddox et al. 2019 (their `max_num_models`)
SWAG_VARIANTS = ("full", "diag")
DEFAULT_SCALE = {"full": 0.5, "diag": 1.0}  # Σ = ½(diag + DDᵀ/(K−1)); SWAG-Diagonal N(θ̄, σ²)
VAR_CLAMP = 0.0  # σ² = max(E[θ²] − θ̄², 0): cancellation can make it slightly negative
SWAG_METHODS = values(SwagMethod)


@dataclass(frozen=True)
class SwagConfig:
    """Settings of the SWA/SWAG/MultiSWAG/MC-dropout study (defaults: the authors' papers)."""

    methods: tuple[str, ...] = SWAG_METHODS
    n_samples: int = 30  # SWAG samples per member at test time (Maddox et al. 2019: 30)
    scale: float = 0.5  # SWAG's s: Σ = s·(diag σ² + DDᵀ/(K−1)) (paper: 0.5)
    diag_scale: float = 1.0  # SWAG-Diagonal's s: N(θ̄, s·diag σ²)
    mc_passes: int = 30  # MC-dropout forward passes per member
    seed: int = 0  # member m draws from derive_seed(seed, "swag", method, m)

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods:
            raise ModescapeError("swag.methods must name at least one method")
        for m in self.methods:
            check_choice("swag method", m, SwagMethod)
        for name in ("n_samples", "mc_passes"):
            check_count(getattr(self, name), f"swag.{name}")
            if getattr(self, name) > 10_000:
                raise ModescapeError(f"swag.{name} must be at most 10,000")
        for name in ("scale", "diag_scale"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ModescapeError(f"swag.{name} must be a finite number > 0, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ModescapeError(f"swag.seed must be an integer >= 0, got {self.seed!r}")

    @property
    def needs_collection(self) -> bool:
        """Whether a method needs the collection phase's statistics (all but MC dropout)."""
        return any(m != SwagMethod.MC_DROPOUT for m in self.methods)


@dataclass(frozen=True)
class SwagMoments:
    """The SWAG statistics of `n` collected iterates of one member.

    mean[P], sq_mean[P] (E[θ²]) in float64 (late iterates differ by a small fraction of the
    weights, so E[θ²] − θ̄² cancels badly in float32); deviations[K', P], the last K' ≤ max_rank
    deviation columns θ_i − θ̄_i as rows, oldest first (float32, as the reference stores them).
    """

    mean: torch.Tensor
    sq_mean: torch.Tensor
    deviations: torch.Tensor
    n: int
    max_rank: int = MAX_RANK

    @property
    def variance(self) -> torch.Tensor:
        """σ² = E[θ²] − θ̄², clamped at 0: [P] float64."""
        return (self.sq_mean - self.mean.square()).clamp_min(VAR_CLAMP)

    @property
    def rank(self) -> int:
        return int(self.deviations.shape[0])

    def covariance(self, variant: str = "full", scale: float | None = None) -> torch.Tensor:
        """The covariance the samples have, [P, P] float64 (small P only: for tests and checks)."""
        scale = _scale(variant, scale)
        cov = torch.diag(self.variance)
        if variant == "full" and self.rank >= 2:
            d = self.deviations.double()
            cov = cov + d.T @ d / (self.rank - 1)
        return scale * cov


def empty_moments(n_params: int, max_rank: int = MAX_RANK) -> SwagMoments:
    """Statistics of no iterates yet (the start of a collection phase)."""
    if max_rank < 0:
        raise ModescapeError(f"SWAG max_rank must be >= 0, got {max_rank}")
    zeros = torch.zeros(n_params, dtype=torch.float64)
    return SwagMoments(zeros, zeros.clone(), torch.zeros(0, n_params), 0, max_rank)


def collect(moments: SwagMoments, theta: torch.Tensor) -> SwagMoments:
    """`moments` updated with one more iterate theta[P] (running means, as `SWAG.collect_model`:
    θ̄ ← (n θ̄ + θ)/(n + 1), likewise E[θ²]; then the deviation θ − θ̄ with the updated θ̄ is
    appended and the oldest dropped beyond max_rank). Returns a new SwagMoments."""
    if theta.ndim != 1 or theta.shape[0] != moments.mean.shape[0]:
        raise ModescapeError(
            f"iterate must be a flat vector of {moments.mean.shape[0]} entries, "
            f"got shape {tuple(theta.shape)}"
        )
    t = theta.detach().double().cpu()
    n = moments.n
    mean = moments.mean * (n / (n + 1)) + t / (n + 1)
    sq_mean = moments.sq_mean * (n / (n + 1)) + t.square() / (n + 1)
    devs = moments.deviations
    if moments.max_rank > 0:
        devs = torch.cat([devs, (t - mean).float()[None]])[-moments.max_rank :]
    return replace(moments, mean=mean, sq_mean=sq_mean, deviations=devs, n=n + 1)


def fit_moments(iterates: torch.Tensor, max_rank: int = MAX_RANK) -> SwagMoments:
    """SWAG statistics of iterates[T, P] collected in this order (T ≥ 1)."""
    if iterates.ndim != 2 or iterates.shape[0] < 1:
        raise ModescapeError(f"expected iterates as [T >= 1, P], got {tuple(iterates.shape)}")
    m = empty_moments(iterates.shape[1], max_rank)
    for theta in iterates:
        m = collect(m, theta)
    return m


def swa_weights(moments: SwagMoments) -> torch.Tensor:
    """SWA's solution: the mean of the collected iterates, [P] float32."""
    _check_collected(moments, 1)
    return moments.mean.float()


def swag_samples(
    moments: SwagMoments,
    n: int,
    seed: Seed,
    *,
    variant: str = "full",
    scale: float | None = None,
) -> torch.Tensor:
    """n SWAG samples [n, P] (float32); `variant` "full" (diagonal + low-rank, default scale 0.5)
    or "diag" (default scale 1). Same seed, same samples, however they are consumed."""
    return torch.stack(list(iter_swag_samples(moments, n, seed, variant=variant, scale=scale)))


def iter_swag_samples(
    moments: SwagMoments,
    n: int,
    seed: Seed,
    *,
    variant: str = "full",
    scale: float | None = None,
) -> Iterator[torch.Tensor]:
    """`swag_samples` one sample [P] at a time (never n × P at once)."""
    s = _scale(variant, scale)
    check_count(n, "n")
    _check_collected(moments, 2 if variant == "full" else 1)
    gen = sample_generator(seed)
    sigma = moments.variance.sqrt()
    devs = moments.deviations.double()
    K = moments.rank
    P = sigma.shape[0]
    for _ in range(n):
        # z₁ then z₂ from one CPU stream: the draws do not depend on device or chunking.
        z1 = torch.randn(P, generator=gen, dtype=torch.float64)
        step = sigma * z1
        if variant == "full":
            z2 = torch.randn(K, generator=gen, dtype=torch.float64)  # one z₂ for all of θ
            step = step + (z2 @ devs) / math.sqrt(K - 1)
        yield (moments.mean + math.sqrt(s) * step).float()


def pool_samples(
    moments: Sequence[SwagMoments],
    n_per_member: int,
    seed: int,
    *,
    variant: str = "full",
    scale: float | None = None,
) -> torch.Tensor:
    """MultiSWAG: `n_per_member` samples from each member's SWAG, stacked member by member:
    [M × n_per_member, P]. Member m draws from derive_seed(seed, "multiswag", m), so its samples
    are those `swag_samples` gives it alone with that seed."""
    if not moments:
        raise ModescapeError("MultiSWAG needs at least one member's SWAG statistics")
    return torch.cat(
        [
            swag_samples(m, n_per_member, derive_seed(seed, "multiswag", i), variant=variant,
                         scale=scale)
            for i, m in enumerate(moments)
        ]
    )  # fmt: skip


def pool_predictions(per_member: Sequence[ArrayLike]) -> tuple[np.ndarray, np.ndarray]:
    """MultiSWAG's predictive from each member's sample predictions probs[S_m, N, C]: returns
    (pooled samples [ΣS_m, N, C], predictive [N, C] float64 = mean over every pooled sample, kept
    in float64: rounded to float32, near-equal classes become ties that move the accuracy).
    Members with equally many samples weigh equally, as in Wilson & Izmailov's MultiSWAG."""
    arrays = [as_numpy(p) for p in per_member]
    if not arrays or any(a.ndim != 3 for a in arrays):
        raise ModescapeError("pool_predictions needs one probs[samples, examples, classes] each")
    if len({a.shape[1:] for a in arrays}) != 1:
        raise ModescapeError(f"members' predictions differ in shape: {[a.shape for a in arrays]}")
    pooled = np.concatenate(arrays)
    return pooled, pooled.mean(axis=0, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# MC dropout


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dropout modules (nn.Dropout and its 1-d/2-d/3-d/alpha relatives)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@torch.no_grad()
def mc_dropout_probs(
    model: nn.Module, x: torch.Tensor, passes: int, seed: int, *, batch: int = 1000
) -> torch.Tensor:
    """MC dropout (Gal & Ghahramani 2016): `passes` forward passes of x with the dropout layers in
    train mode and everything else (BatchNorm) in eval mode. Returns probs[passes, N, C] float32;
    their mean over passes is the MC-dropout predictive.

    Pass t draws its masks from derive_seed(seed, "mc_dropout", t) inside a forked RNG (dropout
    layers draw from the global generator, which is restored afterwards), so the passes do not
    depend on what ran before and leave no trace. With p = 0 every pass is the deterministic model.
    """
    check_count(passes, "passes")
    layers = dropout_layers(model)
    if not layers:
        raise ModescapeError(
            "MC dropout needs a model with dropout layers (e.g. the seed variants: "
            "--set model.variant=seed)"
        )
    was_training = model.training
    model.eval()
    for m in layers:
        m.train()
    out = []
    try:
        for t in range(passes):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "mc_dropout", t))
                chunks = [
                    torch.softmax(model(x[i : i + batch]).float(), dim=1)
                    for i in range(0, len(x), batch)
                ]
            out.append(torch.cat(chunks).cpu())
    finally:
        model.train(was_training)
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# helpers


def _scale(variant: str, scale: float | None) -> float:
    if variant not in SWAG_VARIANTS:
        raise choice_error("SWAG variant", variant, SWAG_VARIANTS)
    s = DEFAULT_SCALE[variant] if scale is None else scale
    if not (isinstance(s, int | float) and math.isfinite(s) and s > 0):
        raise ModescapeError(f"SWAG scale must be a finite number > 0, got {s!r}")
    return float(s)


def _check_collected(moments: SwagMoments, need: int) -> None:
    if moments.n < need or (need >= 2 and moments.rank < 2):
        raise ModescapeError(
            f"SWAG needs at least {need} collected iterate(s) (and 2 deviation columns for the "
            f"low-rank part), has {moments.n} (rank {moments.rank}): lengthen the collection "
            f"phase (train.collect)"
        )
