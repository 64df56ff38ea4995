"""Calibrated sampler scales: the scale at which subspace samples lose a target accuracy.

The notebook's plane scales (random radius 70, diagonal s up to 10, low-rank s = 6) were chosen
for a ~1M-parameter CNN; on a 6k-parameter network they wreck the model, on a larger one they may
barely move it. The diversity–accuracy plane is meaningful only when the samples sweep from the
reference's accuracy downwards, so for each sampler and member `calibrate` finds the scale σ* at
which samples drawn at exactly σ* (no U(0,1) factor) have lost `target_drop` accuracy; sampling
then draws t·σ*, t ~ U(0,1), and the cloud spans the band from the reference to ~target_drop below.

Search, deterministic for a seed: the same `calibration_probes` samples (one seed per sampler and
member, `derive_seed(seed, "calibrate", method, member)`, common random numbers across scales) are
drawn at each probed scale and their mean accuracy compared with the target. For the scale-free
samplers the bracket grows or shrinks geometrically by ×4 from the configured scale, then
`calibration_steps` geometric bisections narrow it; dropout's p is bisected linearly in (0, 0.99].
The returned scale is the bracket's upper end: probes at it reach the target. When no bracket
exists (`reached` False) the configured scale is returned instead of the search's last probe
(4^±24 times it): a Gaussian whose centre, the mean of a short window (e.g. the last 2 of 3
epochs), already scores below the target used to shrink to ~1e-15 with every sample equal to the
centre (JS diversity 0.0), and an unreachable target grew the weights to ~1e14 (NaN outputs).

The probes' mean hits the target by construction, but single samples at σ* scatter widely
around it (on the seed's CIFAR-10 CNNs, 32 fresh samples at a scale whose 4 probes lost 30–33
points lost 15–48): the search's few probes say little about the cloud. So `calibration_check`
fresh samples (their own seed, `derive_seed(seed, "calibration-check", method, member)`) are
drawn at σ* once it is found, and their accuracies are returned (`check_accuracies`, with their
mean and spread) for the caller to state beside the target.

Target accuracy: max(ref − target_drop, (ref + floor)/2), with `floor` the accuracy the caller
deems no better than guessing (e.g. 1/C): a weak reference is not asked to drop below chance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from modescape.analysis.samplers import SAMPLERS, sample
from modescape.analysis.subspace import SubspaceConfig, trajectory_tail
from modescape.errors import ModescapeError, choice_error
from modescape.seeding import derive_seed

log = logging.getLogger(__name__)

AccuracyFn = Callable[[torch.Tensor], torch.Tensor]  # weights [K, P] -> accuracies [K]
DROPOUT_MAX = 0.99  # p = 1 drops every weight; the sampler needs p < 1
_GROW = 4.0  # bracket growth factor per probe
_MAX_GROW = 24  # probes while bracketing: a factor 4^24 ≈ 3e14 either way


@dataclass(frozen=True)
class Calibration:
    """The calibrated scale of one sampler around one member, and how it was found.

    `reached` is False when no probed scale reached the target (the scale is then the largest
    probed, e.g. dropout at p = 0.99, or a diagonal Gaussian with σ = 0) or when even the
    smallest probed scale was already below it (the scale is then the smallest probed).
    """

    method: str
    member: int
    scale: float
    reference_accuracy: float
    centre_accuracy: float  # at scale 0: θ* for random/dropout, μ of the snapshots for Gaussians
    target_accuracy: float
    probe_accuracy: float  # mean accuracy of the probes at `scale`
    n_evaluations: int  # calls of accuracy_of
    reached: bool
    # accuracies of `config.calibration_check` fresh samples at `scale` (not used in the search)
    check_accuracies: tuple[float, ...] = ()

    @property
    def check_mean(self) -> float:
        """Mean accuracy of the fresh samples at the calibrated scale (NaN without any)."""
        a = self.check_accuracies
        return sum(a) / len(a) if a else math.nan

    @property
    def check_std(self) -> float:
        """Their standard deviation (ddof 0): the spread a single sample's accuracy has."""
        a = self.check_accuracies
        if not a:
            return math.nan
        m = self.check_mean
        return math.sqrt(sum((x - m) ** 2 for x in a) / len(a))


def calibrate(
    method: str,
    trajectory: torch.Tensor,
    member: int,
    config: SubspaceConfig,
    accuracy_of: AccuracyFn,
    *,
    floor: float = 0.0,
) -> Calibration:
    """Find the scale of `method` at which samples around `member` lose `config.target_drop`.

    trajectory: [S, P] flat weights (the last `config.n_snapshots` are used, anchor = last row);
    accuracy_of: evaluates weight vectors [K, P] and returns accuracies [K] (any float tensor);
    floor: accuracy not to aim below (the target is max(ref − drop, (ref + floor)/2)).
    """
    if method not in SAMPLERS:
        raise choice_error("subspace sampler", method, SAMPLERS)
    if not 0 <= floor < 1:
        raise ModescapeError(f"floor must be in [0, 1), got {floor}")
    tail = trajectory_tail(config, method, trajectory)
    ref_acc = _accuracies(accuracy_of, tail[-1:])[0]
    # Gaussians are centred on μ: when μ is below the reference, the cloud cannot get closer.
    gaussian = method not in ("random", "dropout")
    mu = tail.double().mean(dim=0, keepdim=True).to(tail.dtype)  # the samplers' centre
    centre = _accuracies(accuracy_of, mu)[0] if gaussian else ref_acc
    target = max(ref_acc - config.target_drop, (ref_acc + floor) / 2)
    seed = derive_seed(config.seed, "calibrate", method, member)
    cache: dict[float, float] = {}

    def acc_at(scale: float) -> float:
        if scale not in cache:
            probes = sample(
                method, tail, config.calibration_probes, scale, seed, rank=config.rank, sweep=False
            )
            cache[scale] = float(sum(_accuracies(accuracy_of, probes)) / len(probes))
        return cache[scale]

    if gaussian and centre <= target:
        # μ itself already scores at or below the target (a short window, e.g. the last 2 of 3
        # epochs, whose mean is far from the final weights): shrinking the scale cannot lift the
        # cloud above μ, and the search would end at a scale ~4^-24 whose samples all equal μ
        # (JS diversity 0). Not reached; the configured scale (`--<method>-scale`) stands in.
        lo = hi = config.scale(method)
        reached = False
        log.warning(
            "calibration of %s around member %d: the Gaussian's centre (mean of the last %d "
            "snapshots) scores %.3f, already at or below the target %.3f (reference %.3f); "
            "using the configured scale %.4g (--%s-scale)",
            method, member, len(tail), centre, target, ref_acc, hi, method.replace("_", "-"),
        )  # fmt: skip
    elif method == "dropout":
        lo, hi, reached = _bracket_linear(acc_at, target)
    else:
        lo, hi, reached = _bracket_geometric(acc_at, target, config.scale(method))
    if reached:
        for _ in range(config.calibration_steps):
            mid = (lo + hi) / 2 if method == "dropout" else math.sqrt(lo * hi)
            lo, hi = (mid, hi) if acc_at(mid) > target else (lo, mid)
    elif not (gaussian and centre <= target):
        # the bracket's end is 4^±24 times the start: samples there are meaningless (weights of
        # 1e14 overflow to NaN), so the configured scale stands in; the summary says not reached
        hi = config.scale(method) if method != "dropout" else hi
        log.warning(
            "calibration of %s around member %d did not bracket accuracy %.3f "
            "(reference %.3f); using scale %.4g",
            method, member, target, ref_acc, hi,
        )  # fmt: skip
    check_seed = derive_seed(config.seed, "calibration-check", method, member)
    fresh = sample(
        method, tail, config.calibration_check, hi, check_seed, rank=config.rank, sweep=False
    )
    return Calibration(
        method=method,
        member=member,
        scale=float(hi),
        reference_accuracy=ref_acc,
        centre_accuracy=centre,
        target_accuracy=float(target),
        probe_accuracy=acc_at(hi),
        n_evaluations=len(cache) + 2 + int(gaussian),
        reached=reached,
        check_accuracies=tuple(_accuracies(accuracy_of, fresh)),
    )


def calibrate_scale(
    method: str,
    trajectory: torch.Tensor,
    member: int,
    config: SubspaceConfig,
    accuracy_of: AccuracyFn,
    *,
    floor: float = 0.0,
) -> float:
    """`calibrate(...).scale`: pass it to `sample_subspace(..., scale=...)`."""
    return calibrate(method, trajectory, member, config, accuracy_of, floor=floor).scale


def calibrate_methods(
    config: SubspaceConfig,
    trajectory: torch.Tensor,
    member: int,
    accuracy_of: AccuracyFn,
    *,
    floor: float = 0.0,
) -> dict[str, Calibration]:
    """`calibrate` for every method of `config` around one member: {method: Calibration}."""
    return {
        m: calibrate(m, trajectory, member, config, accuracy_of, floor=floor)
        for m in config.methods
    }


def _bracket_geometric(
    acc_at: Callable[[float], float], target: float, start: float
) -> tuple[float, float, bool]:
    """(lo, hi, found) with acc_at(lo) > target >= acc_at(hi), hi/lo = 4, from `start`."""
    s = start
    if acc_at(s) > target:
        for _ in range(_MAX_GROW):
            if acc_at(s * _GROW) <= target:
                return s, s * _GROW, True
            s *= _GROW
        return s, s, False
    for _ in range(_MAX_GROW):
        if acc_at(s / _GROW) > target:
            return s / _GROW, s, True
        s /= _GROW
    return s, s, False


def _bracket_linear(acc_at: Callable[[float], float], target: float) -> tuple[float, float, bool]:
    """Dropout: (0, DROPOUT_MAX) when p = 0.99 reaches the target (p → 0 is the reference)."""
    return 0.0, DROPOUT_MAX, acc_at(DROPOUT_MAX) <= target


def _accuracies(accuracy_of: AccuracyFn, weights: torch.Tensor) -> list[float]:
    out = torch.as_tensor(accuracy_of(weights)).detach().reshape(-1)
    if out.numel() != weights.shape[0] or not torch.isfinite(out.double()).all():
        raise ModescapeError(
            f"accuracy_of must return {weights.shape[0]} finite accuracies, got {out.tolist()}"
        )
    return out.double().tolist()
