"""Scoring many weight points of one network, as the loss-landscape planes and paths need.

A `PointJob` holds what every evaluation shares (model, data, BatchNorm policy, engine options)
and scores flat parameter vectors `[K, P]` with their buffers `[K, B]`: loss, accuracy and
agreement with reference predictions. Anchors may be flat vectors or state dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from modescape.analysis import weightspace
from modescape.analysis.engine import batched, bn
from modescape.analysis.engine.batched import BN_POLICIES, Scores
from modescape.analysis.engine.inputs import Inputs, inputs, inputs_and_labels
from modescape.analysis.weightspace import StateDict
from modescape.errors import choice_error
from modescape.models import registry

log = logging.getLogger(__name__)

Anchor = Tensor | StateDict


def flat_anchor(model: nn.Module, anchor: Anchor) -> tuple[Tensor, Tensor]:
    """(params[P], buffers[B]) of an anchor; a flat vector takes the template's buffers."""
    if isinstance(anchor, Tensor):
        bnames = weightspace.buffer_names(model)
        return anchor.detach().reshape(-1).float(), weightspace.flatten_params(
            model.state_dict(), bnames
        )
    params, buffers = weightspace.as_flat(model, [anchor])
    if buffers is None:
        buffers = weightspace.flatten_params(model.state_dict(), weightspace.buffer_names(model))[
            None
        ]
    return params[0], buffers[0]


def resolve_policy(model: nn.Module, bn_policy: str, train_x: Tensor | None) -> str:
    if bn_policy not in BN_POLICIES:
        raise choice_error("BatchNorm policy", bn_policy, BN_POLICIES)
    if not registry.has_batchnorm(model):
        return "none"
    if bn_policy == "recompute" and train_x is None:
        # The default policy must not make the plain call fail on a BatchNorm model; the
        # result records "interpolate", so nobody mistakes it for recomputed statistics.
        log.warning(
            "bn_policy 'recompute' needs training inputs (train_x); without them the "
            "BatchNorm statistics are interpolated between the anchors (bn_policy "
            "'interpolate') instead. Pass train_x to recompute them at every point"
        )
        return "interpolate"
    return bn_policy


def prepare_data(
    x: Inputs, y: Tensor | None, train_x: Inputs | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Tensors of the evaluation data (a Dataset / DataLoader materialised once)."""
    x, y = inputs_and_labels(x, y)
    return x, y, None if train_x is None else inputs(train_x, "training inputs")


@dataclass(frozen=True)
class PointJob:
    """What every point evaluation shares: model, data, references, BN policy, engine options."""

    model: nn.Module
    x: Tensor
    y: Tensor
    policy: str
    train_x: Tensor | None
    bn_batches: int
    bn_batch_size: int
    engine: Mapping[str, object]

    def buffers(self, params: Tensor, interpolated: Tensor) -> Tensor | None:
        """Per-point buffers `[K, B]`; `interpolated` is used by the "interpolate" policy."""
        if self.policy == "recompute":
            assert self.train_x is not None
            return bn.recompute_bn_buffers(
                self.model,
                params,
                self.train_x,
                num_batches=self.bn_batches,
                batch_size=self.bn_batch_size,
            )
        if self.policy == "interpolate":
            return interpolated
        return None  # "keep" / "none": the template's buffers

    def probs(self, params: Tensor, interpolated: Tensor) -> Tensor:
        buffers = self.buffers(params, interpolated)
        return batched.evaluate_many(self.model, params, self.x, buffers=buffers, **self.engine)

    def score(
        self,
        params: Tensor,
        interpolated: Tensor,
        refs: Mapping[str, Tensor],
        on_block: Callable[[int], None] | None = None,
    ) -> Scores:
        buffers = self.buffers(params, interpolated)
        return batched.score_many(
            self.model,
            params,
            self.x,
            self.y,
            buffers=buffers,
            reference_preds=refs,
            on_block=on_block,
            **self.engine,
        )


def work_estimate(model: nn.Module, x: Tensor, points: int, job: PointJob) -> str:
    """`points × examples` and, when countable, the forward FLOPs of the whole evaluation."""
    text = f"{points:,} weight points × {x.shape[0]:,} examples"
    if job.policy == "recompute":
        assert job.train_x is not None
        n_bn = min(job.train_x.shape[0], job.bn_batches * job.bn_batch_size)
        text += f" (+ {n_bn:,} training examples per point for BatchNorm statistics)"
        per_point = x.shape[0] + n_bn
    else:
        per_point = x.shape[0]
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            model.eval()(x[:1])
        text += f" ≈ {counter.get_total_flops() * per_point * points / 1e12:.2f} TFLOP"
    except Exception:
        pass
    return text


def agreement_refs(
    job: PointJob,
    reference_probs: Mapping[str, Tensor] | None,
    defaults: Mapping[str, tuple[Tensor, Tensor]],
) -> dict[str, Tensor]:
    """Reference class predictions `int64[N]`: given probabilities, else the named anchors'."""
    if reference_probs is not None:
        return {name: p.argmax(-1) for name, p in reference_probs.items()}
    names = list(defaults)
    params = torch.stack([defaults[n][0] for n in names])
    bufs = torch.stack([defaults[n][1] for n in names])
    probs = job.probs(params, bufs)
    return {name: probs[i].argmax(-1) for i, name in enumerate(names)}
