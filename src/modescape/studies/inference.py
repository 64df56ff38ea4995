"""Predictions of a fixed set of models on many inputs, as fast as this CPU runs them.

The dataset-shift study runs the same ~70 models (members, weight averages, late snapshots,
subspace samples) over 86 corrupted copies of the test set: each model is worth compiling once.
`ModelStack` keeps every distinct model of several families once (a model in two families, like
member 0's final snapshot among its late snapshots, is evaluated once) and, for images, runs each
through TorchScript frozen for inference (`torch.jit.freeze` + `optimize_for_inference`: oneDNN
convolutions with the ReLUs fused and the weights pre-packed): once warm, 1.15-1.25x the
throughput of the evaluation engine's eager loop for CIFAR-10's SmallCNN on this project's 2-core
CPU (benchmarks/README.md); probabilities agree with the eager ones to ~1e-6. Freezing costs
0.1-0.3 s per model and TorchScript never frees a trace (~1.5 MB per model), so only models
evaluated many times belong here: a model seen once (a subspace sample) is faster eagerly.
Custom architectures (a trace records one path through the code), models that cannot be traced
and 1-D signals (where the evaluation engine's grouped strategy wins) go through
`analysis.engine.batched.evaluate_many`.
"""

from __future__ import annotations

import copy
import logging
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Examples per frozen forward: as many as keep one forward's activations near this many bytes
# (between FREEZE_BATCH_MIN and FREEZE_BATCH_MAX), so that each layer's output is still in
# cache when the next layer reads it. CPU time of a 2,000-image ModelStack call on CIFAR-10, one
# thread, interleaved repeats on a loaded 2-core host (benchmarks/README.md): against 256 images
# per call, SmallCNN (≈170 KiB of activations per image) ran 1.12-1.14x faster at 128 and
# 1.06-1.14x at 64; MediumCNN seed (≈520 KiB) 1.10x at 32.
FREEZE_ACTIVATION_BYTES = 16 * 2**20
FREEZE_BATCH_MIN, FREEZE_BATCH_MAX = 16, 256


class ModelStack:
    """Every family's models as one list of distinct models, each evaluated on demand.

    `families`: {family: [state dict, ...]}; `rows[family]`: the index of each of its models in
    the stack."""

    def __init__(self, model: nn.Module, families: dict[str, list[dict[str, torch.Tensor]]]):
        from modescape.analysis.weightspace import as_flat

        self.model = model
        self.states: list[dict[str, torch.Tensor]] = []
        self.rows: dict[str, list[int]] = {}
        seen: dict[bytes, int] = {}
        for family, weights in families.items():
            params, buffers = as_flat(model, weights)
            self.rows[family] = []
            for i, state in enumerate(weights):
                key = params[i].numpy().tobytes()
                key += b"" if buffers is None else buffers[i].numpy().tobytes()
                if key not in seen:
                    seen[key] = len(self.states)
                    self.states.append(state)
                self.rows[family].append(seen[key])
        self._frozen: dict[int, torch.jit.ScriptModule | None] = {}
        self._batch: dict[tuple[int, ...], int] = {}  # per input shape

    def __len__(self) -> int:
        return len(self.states)

    def probs(self, rows: list[int], x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities of the models `rows` on inputs x[n, ...]: [len(rows), n, C]."""
        frozen = [self._freeze(r, x) for r in rows] if self._freezable(x) else []
        ready = [f for f in frozen if f is not None]
        if len(ready) < len(rows):
            from modescape.analysis.engine.batched import evaluate_many

            return evaluate_many(self.model, [self.states[r] for r in rows], x)
        out = []
        batch = self.batch_size(x)
        with torch.inference_mode():
            for f in ready:
                logits = [f(x[a : a + batch]) for a in range(0, len(x), batch)]
                out.append(torch.cat(logits).float().softmax(-1))
        return torch.stack(out)

    def batch_size(self, x: torch.Tensor) -> int:
        """Examples per frozen forward for inputs like `x` (see FREEZE_ACTIVATION_BYTES)."""
        shape = tuple(x.shape[1:])
        if shape not in self._batch:
            from modescape.analysis.engine.batched import activation_bytes_per_example

            fit = FREEZE_ACTIVATION_BYTES // activation_bytes_per_example(self.model, x)
            self._batch[shape] = int(min(max(fit, FREEZE_BATCH_MIN), FREEZE_BATCH_MAX))
        return self._batch[shape]

    def _freezable(self, x: torch.Tensor) -> bool:
        """Images through one of modescape's own architectures (whose forward pass takes the
        same path for every input, so a trace is the model): custom ones run eagerly."""
        return x.dim() == 4 and type(self.model).__module__.startswith("modescape.models.")

    def _freeze(self, row: int, x: torch.Tensor) -> torch.jit.ScriptModule | None:
        if row not in self._frozen:
            self._frozen[row] = freeze(self.model, self.states[row], x[:2], x[:8])
        return self._frozen[row]


def freeze(
    model: nn.Module, state: dict[str, torch.Tensor], example: torch.Tensor, check: torch.Tensor
) -> torch.jit.ScriptModule | None:
    """`model` with `state` loaded, traced on `example` and frozen for inference (eval mode);
    None when tracing or freezing fails, or when the frozen model's probabilities on `check`
    differ from the eager model's by more than 1e-4 (the caller then runs it eagerly)."""
    net = copy.deepcopy(model).eval()
    net.load_state_dict(state)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.compile, which compiles for tens of
            # seconds here; when it goes, `freeze` returns None and the eager engine takes over.
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(net, example, check_trace=False)  # type: ignore[no-untyped-call]
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            # A guard, not a proof: a trace records one path through the code.
            same = torch.allclose(frozen(check).softmax(-1), net(check).softmax(-1), atol=1e-4)
    except Exception as err:  # any model TorchScript cannot take: evaluated eagerly instead
        logger.debug("cannot freeze %s for inference (%s); evaluating it eagerly", type(net), err)
        return None
    if not same:
        logger.debug("frozen %s differs from the eager model; evaluating it eagerly", type(net))
        return None
    return frozen
