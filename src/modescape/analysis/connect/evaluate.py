"""Along a curve: loss, error and the function at many t, against the straight line.

At each of `points` evenly spaced t (Garipov et al. 2018 use 61) the network at θ(t) is scored
on the training data (loss, error) and on the evaluation data (loss, error, and its predictions
against each end: agreement, disagreement, Jensen–Shannon diversity of the pair, and the
normalised diversity D / (1 − acc) against the nearer end, the coordinates of the paper's
diversity–accuracy plane; Fort, Hu & Lakshminarayanan 2019). The ends' predictions are those of
the curve's own t = 0 and t = 1, scored the same way.

BatchNorm: statistics recomputed on training batches at every t (Garipov's `update_bn`, policy
"recompute" of the landscape study, `engine.points`); networks without BatchNorm are evaluated as
they are ("none"). The policy is recorded in the result.

The straight line is the 2-bend curve: `evaluate_curve(model, ends, ...)` with `bends[2, P]`
scores it with exactly the same code, so curve and line differ only in their weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from modescape.analysis.connect.curves import curve_length, curve_points
from modescape.analysis.engine import batched
from modescape.analysis.engine.points import PointJob, resolve_policy
from modescape.analysis.functionspace import agreement_with, js_diversity, normalized_diversity
from modescape.analysis.landscape import barrier
from modescape.analysis.metrics import accuracy, nll
from modescape.analysis.weightspace import buffer_names, flatten_params
from modescape.results import CurveMeasures

ENDS = ("end0", "end1")
PROFILE_METRICS = ("train_loss", "train_error", "test_loss", "test_error")


@dataclass
class CurveProfile:
    """Metrics along a curve, each float64 `[T]` over `t`.

    `agreement[end]`, `disagreement[end]`, `js[end]`: the point's predictions against end0's and
    end1's (labels play no part). `diversity_nearer`: disagreement with the nearer end in t
    (end0 for t ≤ 0.5) divided by the point's own test error. `probs`: test predictions
    `[T, N, C]` (for ensembles along the curve; not stored by the study).
    """

    t: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    test_loss: np.ndarray
    test_error: np.ndarray
    agreement: dict[str, np.ndarray]
    disagreement: dict[str, np.ndarray]
    js: dict[str, np.ndarray]
    diversity_nearer: np.ndarray
    bn_policy: str
    settings: dict[str, object] = field(default_factory=dict)
    probs: Tensor | None = field(default=None, repr=False)

    def columns(self) -> dict[str, np.ndarray]:
        """Every `[T]` series by a flat name (a CSV's columns)."""
        out = {"t": self.t, **{m: getattr(self, m) for m in PROFILE_METRICS}}
        for name, series in (("agreement", self.agreement), ("disagreement", self.disagreement)):
            out |= {f"{name}_{e}": series[e] for e in ENDS}
        out |= {f"js_{e}": self.js[e] for e in ENDS}
        out["diversity_nearer"] = self.diversity_nearer
        return out


def evaluate_curve(
    model: nn.Module,
    bends: Tensor,
    shape: str,
    x: Tensor,
    y: Tensor,
    train_x: Tensor,
    train_y: Tensor,
    *,
    points: int = 61,
    bn_batches: int = 8,
    bn_batch_size: int = 256,
    keep_probs: bool = False,
    **engine: object,
) -> CurveProfile:
    """Score θ(t) at `points` evenly spaced t in [0, 1] (both ends included).

    `bends[n, P]` (n = 2: the straight line); `x, y` evaluation data; `train_x, train_y` the
    training examples to score (and, in order, the batches BatchNorm statistics are recomputed
    from: pass them shuffled). `engine`: options of `batched.iter_logits` (`strategy`, ...).
    """
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    params = curve_points(bends, shape, t)
    policy = resolve_policy(model, "recompute", train_x)
    job = PointJob(model, x, y, policy, train_x, bn_batches, bn_batch_size, engine)
    template = flatten_params(model.state_dict(), buffer_names(model))
    buffers = job.buffers(params, template.expand(points, -1))
    probs = batched.evaluate_many(model, params, x, buffers=buffers, **engine)  # [T, N, C]
    train = batched.score_many(model, params, train_x, train_y, buffers=buffers, **engine)
    y_np = y.numpy()
    test_error = np.array([1.0 - accuracy(p, y_np) for p in probs])
    test_loss = np.array([nll(p, y_np) for p in probs])
    ends = probs[[0, -1]]
    agree = agreement_with(probs, ends)  # [T, 2]
    js = {e: np.array([js_diversity(torch.stack([p, ends[i]])) for p in probs])
          for i, e in enumerate(ENDS)}  # fmt: skip
    nearer = np.where(t.numpy() <= 0.5, 1.0 - agree[:, 0], 1.0 - agree[:, 1])
    return CurveProfile(
        t=t.numpy(),
        train_loss=train.loss.double().numpy(),
        train_error=1.0 - train.accuracy.double().numpy(),
        test_loss=test_loss,
        test_error=test_error,
        agreement={e: agree[:, i] for i, e in enumerate(ENDS)},
        disagreement={e: 1.0 - agree[:, i] for i, e in enumerate(ENDS)},
        js=js,
        diversity_nearer=np.asarray(normalized_diversity(nearer, 1.0 - test_error)),
        bn_policy=policy,
        settings={
            "points": points,
            "bends": int(bends.shape[0]),
            "shape": shape,
            "num_examples": int(x.shape[0]),
            "train_examples": int(train_x.shape[0]),
            "bn_batches": bn_batches if policy == "recompute" else None,
            "bn_batch_size": bn_batch_size if policy == "recompute" else None,
        },
        probs=probs if keep_probs else None,
    )


def _stats(profile: CurveProfile) -> dict[str, dict[str, float]]:
    return {
        name: {"min": float(np.nanmin(v)), "max": float(np.nanmax(v)), "mean": float(np.nanmean(v))}
        for name, v in profile.columns().items()
        if name != "t"
    }


def summarize_curve(
    curve: CurveProfile, line: CurveProfile, bends: Tensor, shape: str
) -> CurveMeasures:
    """`CurveMeasures` of a curve's and the straight line's profiles (same t grid)."""
    mid = int(np.argmin(np.abs(curve.t - 0.5)))
    return CurveMeasures(
        error_barrier=barrier(curve.test_error),
        loss_barrier=barrier(curve.train_loss),
        line_error_barrier=barrier(line.test_error),
        line_loss_barrier=barrier(line.train_loss),
        length=curve_length(bends, shape),
        line_length=float((bends[-1].double() - bends[0].double()).norm()),
        midpoint={
            "t": float(curve.t[mid]),
            "disagreement_end0": float(curve.disagreement["end0"][mid]),
            "disagreement_end1": float(curve.disagreement["end1"][mid]),
            "ends_disagreement": float(curve.disagreement["end0"][-1]),
            "test_error": float(curve.test_error[mid]),
            "line_disagreement_end0": float(line.disagreement["end0"][mid]),
            "line_disagreement_end1": float(line.disagreement["end1"][mid]),
            "line_test_error": float(line.test_error[mid]),
        },
        stats=_stats(curve),
        line_stats=_stats(line),
    )
