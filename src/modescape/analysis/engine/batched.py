"""Evaluating many weight vectors of one architecture per pass over the data.

A loss plane, an interpolation path or a cloud of subspace samples is the same computation: K flat
parameter vectors `weights[K, P]` of one network, each run on the same N examples. This module is
that engine. The model passed in is used only as a *template* (its structure, its parameter order
and, if asked, its buffers): the weights come from the flat vectors and are copied into a private
copy of it (or passed through `torch.func.functional_call`), so the model itself is never modified.

Four strategies, all in `torch.inference_mode()` and eval mode (dropout off):

- ``"loop"``: for each data chunk, for each weight point, one forward pass of a private copy of
  the model into which the point is copied (a few memcpys; `functional_call` re-wires every module
  per call, which costs more than a small 1-D network's forward). For 4-D inputs the copy and the
  data are channels_last.
- ``"grouped"`` (`engine.grouped`): `chunk` points in ONE forward pass, every layer a batched
  matmul over the stacked weights (shifted-view or im2col convolutions), its buffers reused from
  block to block. SmallCNN, MediumCNN and ResNet20 (and `nn.Sequential`s of their layer types)
  are supported; anything else falls back to "loop". `chunk` defaults to `GROUPED_CHUNK` points
  per torch thread and the data batch is cut so that chunk × batch ≈ `GROUPED_WORK` per thread.
- ``"signals"`` (`engine.signals`): small 1-D convnets one point at a time through oneDNN's
  matmul, signals first and channels last (im2col windows are contiguous there), with bias and
  ReLU fused; the data batch is the largest that keeps each fresh output under 2 MB (its own
  rule: `batch_size` does not apply). A model it does not know falls back to "grouped".
- ``"vmap"``: `torch.func.vmap` over a stack of `chunk` weight points, one call per data chunk.

``strategy="auto"`` (the rule, `auto_strategy`): "grouped" for 1-D signals `x[N, C, L]` when the
model is supported and one example's activations (every module output of one forward pass) take
at most `GROUPED_MAX_ACTIVATION_BYTES`: a small network, whose per-point call overhead outweighs
its arithmetic; "signals" instead at one thread where oneDNN outruns MKL (`onednn_ahead`).
"loop" otherwise: images (oneDNN's direct 2-D convolutions beat im2col even for 8×8 maps) and
larger 1-D networks. Timings and the arithmetic floor: benchmarks/README.md.

Data chunks form the outer loop and weight points the inner one, so each data chunk is read once
for all points of a weight chunk (and stays in cache while they run).

BatchNorm: running statistics are *buffers*, not parameters. `buffers` gives them per point (or
shared); `recompute_bn_buffers` recomputes them for off-trajectory points.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from modescape.analysis.engine import loopnet
from modescape.analysis.engine.grouped import GroupedNet, compile_grouped
from modescape.analysis.engine.inputs import Inputs, inputs, inputs_and_labels
from modescape.analysis.engine.signals import SignalsNet, compile_signals
from modescape.analysis.engine.signals import available as signals_available
from modescape.analysis.weightspace import (
    Weights,
    as_flat,
    buffer_names,
    flatten_params,
    param_names,
    shapes_of,
    unflatten,
)
from modescape.errors import ModescapeError, choice_error
from modescape.options import BNPolicy, values

STRATEGIES = ("auto", "loop", "grouped", "signals", "vmap")
OUTPUTS = ("probs", "logits")
BN_POLICIES = values(BNPolicy)


# ---------------------------------------------------------------------------------------------
# the engine


# Activation bytes of one "loop" forward: CIFAR SmallCNN (≈240 KB per image), 1 thread, ms per
# point for 2,000 images at batch 32/64/128/256: 71/70/82/152 (channels_last); 225 at 128 NCHW.
LOOP_ACTIVATION_BYTES = 16 * 2**20
# Point-examples per grouped call (chunk × data batch) and points per chunk: 16 × 32 was among
# the fastest for the MNIST-1D SmallCNN (8-16 points × 32-64 examples within noise; 32-64 points
# ≈15% slower); larger blocks fall out of cache.
# Both scale with torch's thread count: with 2 threads, 32 points × 32 examples ran 7% faster
# than 16 × 32 (each thread gets its own 16 matrices of every batched matmul).
GROUPED_WORK = 512
GROUPED_CHUNK = 16
# "auto" groups 1-D networks up to this many activation bytes per example: MNIST-1D SmallCNN
# (≈18 KiB) and MediumCNN seed (≈59 KiB) ran faster grouped, MediumCNN paper (≈112 KiB) slower.
GROUPED_MAX_ACTIVATION_BYTES = 64 * 1024
# `score_many` scores up to this many logits at once (a weight chunk's, over its data batches).
SCORE_BLOCK = 2**20


def auto_strategy(model: nn.Module, x: Tensor, per_example: int | None = None) -> str:
    """What `strategy="auto"` runs: "grouped" for small 1-D networks, else "loop" (see above).

    `per_example`: `activation_bytes_per_example(model, x)` if already known.
    """
    if x.dim() != 3 or compile_grouped(model) is None:
        return "loop"
    if per_example is None:
        per_example = activation_bytes_per_example(model, x)
    if per_example > GROUPED_MAX_ACTIVATION_BYTES:
        return "loop"
    # "signals" at one thread only: at two it tied with "grouped" where oneDNN was ahead, and
    # lost to it on a loaded host (one parallel region per layer and point: benchmarks/README.md)
    one_thread = torch.get_num_threads() == 1
    if one_thread and onednn_ahead() and compile_signals(model) is not None:
        return "signals"
    return "grouped"


def onednn_ahead() -> bool:
    """Whether oneDNN's fp32 matmul ("signals") beats torch's MKL batched matmul ("grouped").

    With AVX-512 oneDNN runs AVX-512 kernels, while MKL runs its AVX2 ones on AMD CPUs: on an AMD
    EPYC with AVX-512 the MNIST-1D shapes ran at 185-193 GFLOP/s against 76-84, and a
    signals-first pass 1.15-1.3x faster than "grouped" at one thread. On AVX2 both libraries reach
    the same ≈80 GFLOP/s per core and the two strategies tie (benchmarks/README.md), so the
    incumbent "grouped" stays.
    """
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512") and signals_available()


def _resolve_strategy(
    strategy: str, model: nn.Module, x: Tensor, per_example: int | None = None
) -> str:
    if strategy not in STRATEGIES:
        raise choice_error("evaluation strategy", strategy, STRATEGIES)
    if strategy == "auto":
        return auto_strategy(model, x, per_example)
    if strategy == "signals" and (x.dim() != 3 or compile_signals(model) is None):
        strategy = "grouped"  # a structure signals.py does not know (documented fallback)
    if strategy == "grouped" and compile_grouped(model) is None:
        return "loop"  # a structure grouped.py does not know (documented fallback)
    return strategy


def activation_bytes_per_example(model: nn.Module, x: Tensor) -> int:
    """Bytes of all module outputs for one example in one forward pass (a memory estimate)."""
    total = 0

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, Tensor):
            total += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            out = model(x[:1])
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return max(total + out.numel() * out.element_size() + x[:1].numel() * x.element_size(), 1)


@dataclass(frozen=True)
class Plan:
    """How a call splits the work: `batch_size` examples per forward, `chunk` points at a time."""

    strategy: str
    batch_size: int
    chunk: int


def plan(
    model: nn.Module,
    x: Tensor,
    num_points: int,
    *,
    strategy: str = "auto",
    batch_size: int = 256,
    chunk: int | str = "auto",
    memory_budget_mb: float = 1024.0,
) -> Plan:
    """Choose data-chunk and point-chunk sizes so activations stay within `memory_budget_mb`.

    For "loop" only one point runs at a time, so `chunk` bounds nothing but the stored logits, and
    the data batch is cut to `LOOP_ACTIVATION_BYTES` of activations (larger ones leave cache); for
    "vmap" activations grow with chunk × batch_size, and "auto" makes the chunk as large as the
    budget allows at the requested batch size (at most 64: wider gave no further gain). For
    "grouped" the chunk defaults to `GROUPED_CHUNK` per thread (evened out: the K points in equal
    chunks) and the data batch shrinks so that chunk × batch stays near `GROUPED_WORK`
    point-examples per thread
    (`batch_size` is then an upper bound).
    """
    if batch_size < 1:
        raise ModescapeError(f"batch_size must be positive, got {batch_size}")
    per_example = activation_bytes_per_example(model, x)
    strategy = _resolve_strategy(strategy, model, x, per_example)
    budget = memory_budget_mb * 2**20
    threads = max(1, torch.get_num_threads())
    max_examples = max(int(budget // per_example), 1)  # examples (× points) alive at once
    batch = min(batch_size, x.shape[0], max_examples)
    if chunk == "auto":
        grouped = GROUPED_CHUNK * threads
        chunk_n = {"vmap": max_examples // batch, "grouped": grouped}.get(strategy, 64)
        chunk_n = min(max(chunk_n, 1), 64)
    elif isinstance(chunk, int) and chunk >= 1:
        chunk_n = chunk
    else:
        raise ModescapeError(f"chunk must be a positive int or 'auto', got {chunk!r}")
    chunk_n = min(chunk_n, max(num_points, 1))
    if strategy == "loop":  # one point's activations should stay cache-sized (see docstring)
        batch = max(1, min(batch, LOOP_ACTIVATION_BYTES // per_example))
    if strategy == "grouped":
        chunk_n = min(chunk_n, max_examples)
        if chunk == "auto":  # equal chunks: 84 points as 6 × 14, not 5 × 16 + 4
            chunk_n = -(-num_points // -(-num_points // chunk_n)) if num_points > 0 else chunk_n
        work = GROUPED_WORK * threads
        batch = max(1, min(batch, work // chunk_n, max_examples // chunk_n))
    if strategy == "signals":  # one point at a time: the batch from the output-size rule
        net = compile_signals(model)
        assert net is not None  # _resolve_strategy checked
        most = min(net.max_batch(x.shape[1:]), max_examples, x.shape[0])
        batch = -(-x.shape[0] // -(-x.shape[0] // most))  # equal batches: 1,000 as 2 × 500
    return Plan(strategy, batch, chunk_n)


class _Evaluator:
    """Runs the template's structure on flat weights, one data chunk at a time.

    `bind(strategy, params[k, P], buffers[k, B])` prepares one weight chunk and returns a
    function of a data chunk `x[n, ...]` giving logits `[k, n, C]`.
    """

    def __init__(self, model: nn.Module, x: Tensor):
        self.model = model
        self.pnames, self.bnames = param_names(model), buffer_names(model)
        self.pshapes, self.bshapes = shapes_of(model, self.pnames), shapes_of(model, self.bnames)
        self.default_buffers = flatten_params(model.state_dict(), self.bnames)
        self.channels_last = x.dim() == 4
        self.in_shape = tuple(x.shape[1:])
        self._net: nn.Module | None = None
        self._grouped: GroupedNet | None = None
        self._signals: SignalsNet | None = None

    def bind(self, strategy: str, params: Tensor, buffers: Tensor) -> Callable[[Tensor], Tensor]:
        if strategy == "grouped":
            if self._grouped is None:
                self._grouped = compile_grouped(self.model)
            assert self._grouped is not None  # plan() resolved "grouped" only if it compiles
            net = self._grouped
            stacked = net.stack(params, buffers, self.pshapes, self.bshapes)
            return lambda xb: net(stacked, xb)
        if strategy == "signals":
            if self._signals is None:
                self._signals = compile_signals(self.model)
            assert self._signals is not None  # plan() resolved "signals" only if it compiles
            sig = self._signals
            sig.max_batch(self.in_shape)  # the Flatten's length, which `stack` reads
            stacked = sig.stack(params, buffers, self.pshapes, self.bshapes)
            return lambda xb: sig(stacked, xb)
        if strategy == "vmap":
            return lambda xb: self.vmap(params, buffers, xb)
        return lambda xb: self.loop(params, buffers, xb)

    def _private_net(self) -> tuple[nn.Module, list[Tensor], list[Tensor]]:
        """A private copy whose tensors are overwritten per point (channels_last for 2-D).

        Copying a point into it costs a few memcpys; `functional_call` instead re-wires every
        module on every call, which costs more than the forward pass of a small 1-D network.
        """
        if self._net is None:
            net = copy.deepcopy(self.model).eval().requires_grad_(False)
            net = loopnet.rearrange(net)  # same outputs, faster pooling (engine/loopnet.py)
            if self.channels_last:
                # Both operands channels_last lets oneDNN skip reorders inside every conv.
                net = net.to(memory_format=torch.channels_last)
            self._net = net
            state = dict(net.named_parameters()) | dict(net.named_buffers())
            self._ps = [state[n] for n in self.pnames]
            self._bs = [state[n] for n in self.bnames]
        return self._net, self._ps, self._bs

    def loop(self, params: Tensor, buffers: Tensor, xb: Tensor) -> Tensor:
        net, ps, bs = self._private_net()
        out = []
        for p, b in zip(params, buffers):
            for dst, src in zip(ps, unflatten(p, self.pnames, self.pshapes).values()):
                dst.copy_(src)
            for dst, src in zip(bs, unflatten(b, self.bnames, self.bshapes).values()):
                dst.copy_(src)
            out.append(net(xb))
        return torch.stack(out)

    def vmap(self, params: Tensor, buffers: Tensor, xb: Tensor) -> Tensor:
        fixed = {n: b for n, b in self.model.named_buffers() if n not in self.bnames}

        def one(p: Tensor, b: Tensor) -> Tensor:
            tensors = unflatten(p, self.pnames, self.pshapes)
            tensors.update(unflatten(b, self.bnames, self.bshapes))
            return functional_call(self.model, {**tensors, **fixed}, (xb,))

        return vmap(one)(params, buffers)


def iter_logits(
    model: nn.Module,
    weights: Weights,
    x: Inputs,
    *,
    buffers: Tensor | None = None,
    strategy: str = "auto",
    batch_size: int = 256,
    chunk: int | str = "auto",
    memory_budget_mb: float = 1024.0,
) -> Iterator[tuple[slice, slice, Tensor]]:
    """Yield `(point_slice, example_slice, logits[k, n, C])` blocks covering all K × N outputs.

    `x`: inputs `[N, ...]`, or a torch Dataset / DataLoader (materialised once, in order).
    `buffers`: `[K, B]` per point, `[B]` shared, or None (the state dicts' own buffers when
    `weights` is a list of state dicts holding them, else the model's current buffers).
    Order: weight chunks outside, data chunks inside them, points innermost.
    """
    x = inputs(x)
    params, own_buffers = as_flat(model, weights)
    K = params.shape[0]
    ev = _Evaluator(model, x)
    if buffers is None:
        buffers = own_buffers if own_buffers is not None else ev.default_buffers
    buffers = buffers.float()
    if buffers.dim() == 1:
        buffers = buffers.expand(K, -1)
    if buffers.shape != (K, len(ev.default_buffers)):
        raise ModescapeError(
            f"buffers have shape {tuple(buffers.shape)}, expected ({K}, {len(ev.default_buffers)})"
        )
    p = plan(
        model,
        x,
        K,
        strategy=strategy,
        batch_size=batch_size,
        chunk=chunk,
        memory_budget_mb=memory_budget_mb,
    )
    if ev.channels_last and p.strategy == "loop":
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for k0 in range(0, K, p.chunk):
                ks = slice(k0, min(k0 + p.chunk, K))
                run = ev.bind(p.strategy, params[ks], buffers[ks])
                for n0 in range(0, x.shape[0], p.batch_size):
                    ns = slice(n0, min(n0 + p.batch_size, x.shape[0]))
                    yield ks, ns, run(x[ns]).float()
    finally:
        model.train(was_training)


def evaluate_many(
    model: nn.Module,
    weights: Weights,
    x: Inputs,
    *,
    output: str = "probs",
    buffers: Tensor | None = None,
    strategy: str = "auto",
    batch_size: int = 256,
    chunk: int | str = "auto",
    memory_budget_mb: float = 1024.0,
) -> Tensor:
    """Predictions of K weight points on N examples: `[K, N, C]` float32.

    `weights`: `[K, P]` flat vectors (in `param_names(model)` order) or K state dicts.
    `x`: inputs `[N, ...]`, or a torch Dataset / DataLoader (materialised once, in order).
    `output`: "probs" (softmax) or "logits". See `iter_logits` for the other arguments.
    """
    if output not in OUTPUTS:
        raise choice_error("output", output, OUTPUTS)
    x = inputs(x)
    params, own_buffers = as_flat(model, weights)
    out: Tensor | None = None
    for ks, ns, logits in iter_logits(
        model,
        params,
        x,
        buffers=own_buffers if buffers is None else buffers,
        strategy=strategy,
        batch_size=batch_size,
        chunk=chunk,
        memory_budget_mb=memory_budget_mb,
    ):
        if out is None:
            out = torch.empty(params.shape[0], x.shape[0], logits.shape[-1])
        out[ks, ns] = logits.softmax(-1) if output == "probs" else logits
    assert out is not None
    return out


@dataclass
class Scores:
    """Per-point summaries over N examples; each array is `[K]`.

    `loss`: mean cross-entropy (natural log); `accuracy`: fraction correct; `agreement[name]`:
    fraction of examples where the point's argmax equals the reference predictions `name`.
    """

    loss: Tensor
    accuracy: Tensor
    agreement: dict[str, Tensor] = field(default_factory=dict)


def score_many(
    model: nn.Module,
    weights: Weights,
    x: Inputs,
    y: Tensor | None = None,
    *,
    reference_preds: Mapping[str, Tensor] | None = None,
    on_block: Callable[[int], None] | None = None,
    **kwargs: object,
) -> Scores:
    """Loss, accuracy and agreement with reference predictions for K points, without storing
    the `[K, N, C]` probabilities. `reference_preds[name]`: class indices `int64[N]`.

    `on_block(num_points_done_in_block)` is called after each block (for progress bars).
    `x` may be a Dataset / DataLoader whose items are `(x, y)`; then `y` may be left out.
    Other keyword arguments as `iter_logits`.
    """
    x, y = inputs_and_labels(x, y)
    refs = dict(reference_preds or {})
    for name, r in refs.items():
        if r.shape != (x.shape[0],):
            raise ModescapeError(f"reference predictions {name!r} must have shape ({x.shape[0]},)")
    params, own_buffers = as_flat(model, weights)
    if own_buffers is not None and kwargs.get("buffers") is None:
        kwargs["buffers"] = own_buffers
    K = params.shape[0]
    loss_sum, correct = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    agree = {name: torch.zeros(K, dtype=torch.float64) for name in refs}
    y = y.long()
    N = x.shape[0]
    pending: list[Tensor] = []  # a weight chunk's logits over consecutive data batches

    def flush(ks: slice, stop: int) -> None:
        # Scored a chunk at a time, not a data batch at a time: a dozen small ops per data batch
        # cost ~5% of a small network's evaluation.
        logits = pending[0] if len(pending) == 1 else torch.cat(pending, 1)
        k, n, _ = logits.shape
        ns = slice(stop - n, stop)
        yb = y[ns]
        # Cross-entropy as logsumexp − the label's logit: log_softmax over 10 classes costs 3x.
        ce = torch.logsumexp(logits, -1) - logits.gather(-1, yb.expand(k, n)[..., None])[..., 0]
        loss_sum[ks] += ce.sum(1, dtype=torch.float64)
        pred = logits.argmax(-1)
        correct[ks] += (pred == yb).sum(1)
        for name, r in refs.items():
            agree[name][ks] += (pred == r[ns]).sum(1)
        pending.clear()

    for ks, ns, logits in iter_logits(model, params, x, **kwargs):  # type: ignore[arg-type]
        pending.append(logits)
        if ns.stop == N or sum(t.numel() for t in pending) >= SCORE_BLOCK:
            flush(ks, ns.stop)
        if on_block is not None and ns.stop == N:
            on_block(logits.shape[0])
    return Scores(
        loss=(loss_sum / N).float(),
        accuracy=(correct / N).float(),
        agreement={name: (a / N).float() for name, a in agree.items()},
    )
