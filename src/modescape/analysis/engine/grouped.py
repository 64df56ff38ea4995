"""K weight points of one convnet in ONE forward pass: the "grouped" strategy of `batched`.

A small 1-D network (MNIST-1D SmallCNN: 130 kFLOP per example) spends most of a forward pass in
per-call overhead, so evaluating K weight points one after another is slow however the data is
batched. Here the K copies of the network run side by side and every layer is one call for all
of them. Activations are laid out *examples last*, `h[K, C, *S, N]` (point, channel, spatial,
example), so that every layer is a batched matmul whose wide dimension is `prod(S)·N`:

- ConvNd: the input is copied into a zero-padded buffer `[K, C(+1), *S_padded, N]`. A 1-D conv of
  stride 1 is then `k` accumulated batched matmuls `W[:, :, :, j] @ padded[..., j:j+L', :]`: with
  examples last, shifting by one position is an offset of N in the flattened `(L, N)` axis, so
  every operand is a plain strided view (no im2col copy). Other convs (2-D, strided) copy the
  windows into columns `[K, C·prod(k), prod(S')·N]` (one `as_strided` copy) and multiply by
  `[K, out, C·prod(k)]`. The bias rides along as an extra input channel of ones (a column of the
  stacked weights), so no separate broadcast-add. The first conv sees the *shared* input, so its
  operands are built once and multiplied by all K weights in one matmul `[K·out, C·k]`.
  Keras' asymmetric "same" padding (`layers.KerasSameConv*`) is padding like any other.
- MaxPool: the elementwise maximum of the kernel's strided slices, one spatial axis at a time
  (max-pooling is separable), padded with -inf; ceil_mode as PyTorch. ReLU is elementwise (in
  place, after the pool: ReLU → MaxPool equals MaxPool → ReLU on the smaller map).
  AdaptiveAvgPool to size 1 is a mean. Dropout is the identity (eval mode).
- BatchNorm (eval) is per channel: `h·α + β` in place, with `α = γ/sqrt(var + eps)` and
  `β = b − mean·α` prepared once per weight chunk (what PyTorch's CPU kernel computes).
- Flatten is a free view `[K, C·prod(S), N]` (channel-major per example, as `nn.Flatten`);
  Linear is `baddbmm(bias, W[K, out, in], h[K, in, N])`. A ResNet `BasicBlock` adds its shortcut
  in the same layout. The network's output `[K, classes, N]` is returned as a new `[K, N, classes]`.

Every intermediate lives in a buffer owned by the `GroupedNet` and reused from call to call (one
per layer, role and shape): allocating fresh activations per call made the allocator return and
re-fault pages on every pass, which cost more than the arithmetic. So a `GroupedNet` is not
re-entrant (one call at a time); the returned logits are a fresh tensor.

Why not `ConvNd(groups=K)` on `[N, K·C, *S]` (the classic trick)? On CPU, oneDNN's grouped
kernels were no faster than K separate calls for 1-D signals and 2-6x slower for 2-D images
(timings in benchmarks/README.md).

`compile_grouped(model)` returns None for what it does not know (any other module, a conv with
`groups`, dilation, string padding or a non-zero padding mode, a pool with dilation, an adaptive
pool to a size other than 1, BatchNorm without running statistics); `batched` then falls back to
the one-point-at-a-time loop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modescape.models.architectures import BasicBlock, Bottleneck, ConvNet, ResNet
from modescape.models.layers import KerasSameConv1d, KerasSameConv2d

# parameter / buffer name -> tensor[K, *shape], plus tensors the steps derive from them once per
# weight chunk (`Step.prepare`, names ending in ":grouped", inserted after the parameters).
Stacked = dict[str, Tensor]

_CONVS = (nn.Conv1d, nn.Conv2d)
_KERAS = (KerasSameConv1d, KerasSameConv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d)
_AVGPOOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_WINDOW_AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d)
_IDENTITY = (nn.Dropout, nn.Identity)  # Dropout: eval mode


class Workspace:
    """Buffers reused from call to call, one per (owner step, role, shape, dtype)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, Tensor] = {}

    def get(
        self,
        owner: object,
        role: str,
        shape: Sequence[int],
        dtype: torch.dtype,
        init: Callable[[Tensor], object] | None = None,
    ) -> Tensor:
        """The buffer; `init(buffer)` runs once, when it is allocated (borders, rows of ones)."""
        key = (id(owner), role, tuple(shape), dtype)
        buf = self._buffers.get(key)
        if buf is None:
            buf = torch.empty(tuple(shape), dtype=dtype)
            if init is not None:
                init(buf)
            self._buffers[key] = buf
        return buf


class Step:
    """One layer for all K points: `h[K, C, *S, N]` (or `[K, F, N]` after Flatten) -> the same.

    The network input is the shared `x[N, C, *S]`; `shared` says h is still that tensor (never
    written to). A step may overwrite a non-shared `h` in place (it is a buffer of an earlier
    step that nothing reads again).
    """

    def prepare(self, t: Stacked) -> None:
        """Derive this step's operands from the stacked weights (once per weight chunk)."""

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        raise NotImplementedError


class Preparing(Protocol):
    """A compiled step: reads its operands from the stacked points (`prepare` derives what it
    needs from them once per weight chunk)."""

    def prepare(self, t: Stacked) -> None: ...


StepT = TypeVar("StepT", bound=Preparing)


class StepNet(Generic[StepT]):
    """Compiled steps and the names of the tensors they read, shared by the engine's strategies.

    `stack(params[K, P], buffers[K, B], ...)` splits flat vectors into `{name: [K, *shape]}` and
    prepares each step's operands (once per weight chunk).
    """

    def __init__(self, steps: Sequence[StepT], pnames: Sequence[str], bnames: Sequence[str]):
        self.steps = list(steps)
        self.pnames, self.bnames = list(pnames), list(bnames)
        self.workspace = Workspace()

    def stack(
        self,
        params: Tensor,
        buffers: Tensor,
        pshapes: Sequence[torch.Size],
        bshapes: Sequence[torch.Size],
    ) -> Stacked:
        out: Stacked = {}
        for names, shapes, flat in (
            (self.pnames, pshapes, params),
            (self.bnames, bshapes, buffers),
        ):
            sizes = [math.prod(s) for s in shapes]
            for name, part, shape in zip(names, torch.split(flat, sizes, -1), shapes):
                out[name] = part.reshape(flat.shape[0], *shape).contiguous()
        for step in self.steps:
            step.prepare(out)
        return out


class GroupedNet(StepNet[Step]):
    """The template's structure, run for K points at once.

    `stack` as `StepNet.stack`; `net(stacked, x[N, *in_shape])` returns logits
    `[K, N, classes]` (a new tensor). Not re-entrant: see the module docstring.
    """

    def __call__(self, stacked: Stacked, x: Tensor) -> Tensor:
        h, _ = _run(self.steps, x, True, stacked, self.workspace)
        return h.transpose(1, 2).contiguous()  # [K, classes, N] -> a new [K, N, classes]


def _run(
    steps: Sequence[Step], h: Tensor, shared: bool, t: Stacked, ws: Workspace
) -> tuple[Tensor, bool]:
    for step in steps:
        h, shared = step(h, shared, t, ws)
    return h, shared


def _num_points(t: Stacked) -> int:
    return next(iter(t.values())).shape[0]  # a parameter: prepared entries come after


def _examples_last(x: Tensor) -> Tensor:
    """`x[N, C, *S]` -> a `[C, *S, N]` view."""
    return x.permute(*range(1, x.dim()), 0)


def _stacked(h: Tensor, shared: bool, t: Stacked) -> Tensor:
    """The shared input as K identical points `[K, C, *S, N]` (an expanded view)."""
    if not shared:
        return h
    return _examples_last(h).expand(_num_points(t), *([-1] * h.dim()))


def _zeros_and_ones_channel(channel: int | None) -> Callable[[Tensor], None]:
    def init(buf: Tensor) -> None:
        buf.zero_()
        if channel is not None:
            buf[:, channel] = 1.0

    return init


class _Conv(Step):
    def __init__(self, m: nn.Conv1d | nn.Conv2d, prefix: str):
        self.w_name = prefix + "weight"
        self.b_name = prefix + "bias" if m.bias is not None else None
        self.key = prefix + "weight:grouped"
        self.out_channels = m.out_channels
        self._bound: dict[tuple, _Bound] = {}
        self.kernel, self.stride = tuple(m.kernel_size), tuple(m.stride)
        self.padding = tuple(m.padding)  # type: ignore[arg-type]  (string padding rejected)
        self.keras = isinstance(m, _KERAS)
        # 1-D, stride 1: k shifted views of the padded input, no im2col copy.
        self.shift = len(self.kernel) == 1 and self.stride == (1,)

    def pads(self, size: Sequence[int]) -> list[tuple[int, int]]:
        """(before, after) zero padding per spatial axis for an input of `size`."""
        if not self.keras:
            return [(p, p) for p in self.padding]
        out = []
        for n, k, s in zip(size, self.kernel, self.stride):
            total = max((-(-n // s) - 1) * s + k - n, 0)  # Keras' "same" (layers.py)
            out.append((total // 2, total - total // 2))
        return out

    def prepare(self, t: Stacked) -> None:
        w = t[self.w_name]  # [K, out, C, *k]
        K, Co, C = w.shape[:3]
        bias = [] if self.b_name is None else [t[self.b_name][:, :, None]]
        # [K, out, C·prod(k)(+1)]: the im2col rows in the weight's (in, *k) order
        t[self.key] = torch.cat([w.reshape(K, Co, -1), *bias], 2).contiguous()
        if self.shift:  # [k, K, out, C(+1)]: one matrix per kernel offset, the bias in the first
            ws = w.new_zeros(self.kernel[0], K, Co, C + len(bias))
            ws[..., :C] = w.permute(3, 0, 1, 2)
            if bias:
                ws[0, :, :, C] = t[self.b_name]  # type: ignore[index]
            t[self.key + ":shift"] = ws

    def _bind(self, src_shape: Sequence[int], K: int, dtype: torch.dtype, ws: Workspace) -> _Bound:
        """Buffers and views for an input `[Kb, C, *S, N]` (Kb = 1: shared), made once per shape."""
        key = (tuple(src_shape), K, dtype)
        bound = self._bound.get(key)
        if bound is not None:
            return bound
        Kb, C, *S, N = src_shape
        Co = self.out_channels
        pads = self.pads(S)
        padded = [n + a + b for n, (a, b) in zip(S, pads)]
        out = [(n - k) // s + 1 for n, k, s in zip(padded, self.kernel, self.stride)]
        e = int(self.b_name is not None)
        bound = _Bound(y=ws.get(self, "out", (K, Co, *out, N), dtype))
        inner = (slice(None), slice(0, C), *(slice(a, a + n) for n, (a, _) in zip(S, pads)))
        if self.shift and Kb == K:  # not for the shared input: its columns are built only once
            ones = _zeros_and_ones_channel(C if e else None)
            buf = ws.get(self, "in", (Kb, C + e, *padded, N), dtype, ones)
            flat, L = buf.view(Kb, C + e, -1), out[0]
            bound.padded, bound.interior = buf, buf[inner]
            bound.shifted = [flat[:, :, j * N : (j + L) * N] for j in range(self.kernel[0])]
            bound.dst = bound.y.view(K, Co, -1)
            return self._bound.setdefault(key, bound)
        if any(a or b for a, b in pads):
            buf = ws.get(self, "in", (Kb, C, *padded, N), dtype, _zeros_and_ones_channel(None))
            bound.padded, bound.interior = buf, buf[inner]
        rows = C * math.prod(self.kernel)

        def ones_row(cols: Tensor) -> None:
            cols[:, rows:] = 1.0

        cols = ws.get(self, "cols", (Kb, rows + e, math.prod(out) * N), dtype, ones_row)
        bound.cols, bound.out = cols, out
        bound.col_rows = cols[:, :rows].view(Kb, C, *self.kernel, *out, N)
        bound.dst = bound.y.view(K * Co, -1) if Kb == 1 and K > 1 else bound.y.view(K, Co, -1)
        return self._bound.setdefault(key, bound)

    def interior(self, h: Tensor, t: Stacked, ws: Workspace) -> Tensor | None:
        """Where the step before may write this conv's input `h` directly (saving a copy)."""
        return self._bind(h.shape, _num_points(t), h.dtype, ws).interior

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        K = _num_points(t)
        src = _examples_last(h)[None] if shared else h  # [Kb, C, *S, N], Kb = 1 when shared
        b = self._bind(src.shape, K, h.dtype, ws)
        if b.interior is not None:
            if not (
                src.data_ptr() == b.interior.data_ptr() and src.stride() == b.interior.stride()
            ):
                b.interior.copy_(src)  # (else the step before wrote it there)
            src = b.padded
        if b.shifted:  # 1-D, stride 1: positions j .. j+L-1 of the padded input, all examples
            w = t[self.key + ":shift"]
            torch.bmm(w[0], b.shifted[0], out=b.dst)
            for j in range(1, len(b.shifted)):
                b.dst.baddbmm_(w[j], b.shifted[j])
            return b.y, False
        d, st = len(self.kernel), src.stride()
        windows = src.as_strided(
            b.col_rows.shape,
            (
                st[0],
                st[1],
                *st[2 : 2 + d],
                *(s * x for s, x in zip(self.stride, st[2 : 2 + d])),
                st[-1],
            ),
        )
        b.col_rows.copy_(windows)
        w = t[self.key]
        if b.dst.dim() == 2:  # the shared input's columns, once: one matmul [K·out, rows]
            torch.mm(w.view(b.dst.shape[0], -1), b.cols[0], out=b.dst)
        else:
            torch.bmm(w, b.cols.expand(K, -1, -1), out=b.dst)
        return b.y, False


@dataclass
class _Bound:
    """A conv's buffers and views for one input shape (see `_Conv._bind`)."""

    y: Tensor  # output [K, out, *S', N]
    dst: Tensor = field(default_factory=lambda: torch.empty(0))  # y as the matmul's output
    padded: Tensor = field(default_factory=lambda: torch.empty(0))  # zero-padded input buffer
    interior: Tensor | None = None  # the input's place inside `padded`
    shifted: list[Tensor] = field(default_factory=list)  # 1-D stride 1: operand per offset
    cols: Tensor = field(default_factory=lambda: torch.empty(0))  # im2col [Kb, rows(+1), S'·N]
    col_rows: Tensor = field(default_factory=lambda: torch.empty(0))
    out: list[int] = field(default_factory=list)


class _MaxPool(Step):
    def __init__(self, m: nn.MaxPool1d | nn.MaxPool2d):
        d = 1 if isinstance(m, nn.MaxPool1d) else 2

        def per_axis(v: int | tuple[int, ...]) -> tuple[int, ...]:
            return tuple(v) if isinstance(v, tuple) else (v,) * d

        self.kernel, self.stride = per_axis(m.kernel_size), per_axis(m.stride or m.kernel_size)
        self.padding, self.ceil_mode = per_axis(m.padding), m.ceil_mode

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        h = _stacked(h, shared, t)
        for i, (k, s, p) in enumerate(zip(self.kernel, self.stride, self.padding)):
            h = self._along(h, 2 + i, k, s, p, ws)
        return h, False

    def _along(self, h: Tensor, dim: int, k: int, s: int, p: int, ws: Workspace) -> Tensor:
        """1-D max-pooling of `h` along `dim`, with PyTorch's output size (incl. ceil_mode)."""
        n = h.shape[dim]
        span = n + 2 * p - k
        out = (-(-span // s) if self.ceil_mode else span // s) + 1
        if self.ceil_mode and (out - 1) * s >= n + p:  # PyTorch drops a window starting in padding
            out -= 1
        right = max((out - 1) * s + k - n - p, 0)  # what the last window reads past the end
        if p or right:
            shape = list(h.shape)
            shape[dim] = n + p + right
            padded = ws.get(self, f"pad{dim}", shape, h.dtype, lambda b: b.fill_(-math.inf))
            padded.narrow(dim, p, n).copy_(h)
            h = padded
        stop = (out - 1) * s + 1
        views = [
            h.narrow(dim, j, stop)[(slice(None),) * dim + (slice(None, None, s),)] for j in range(k)
        ]
        dst = ws.get(self, f"max{dim}", views[0].shape, h.dtype)
        if k == 1:
            return dst.copy_(views[0])
        torch.maximum(views[0], views[1], out=dst)
        for v in views[2:]:
            torch.maximum(dst, v, out=dst)
        return dst


class _AvgPool(Step):
    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        h = _stacked(h, shared, t)  # adaptive pool to 1: the mean over the spatial axes
        return h.mean(dim=tuple(range(2, h.dim() - 1)), keepdim=True), False


class _WindowAvgPool(Step):
    """Average pooling with kernel = stride k and no padding (Keras' AveragePooling "valid"):
    the trailing n mod k positions of each axis are dropped, each k-window averaged."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        h = _stacked(h, shared, t)
        for dim in range(2, h.dim() - 1):  # h[K, C, *S, N]
            n = h.shape[dim] // self.k
            h = h.narrow(dim, 0, n * self.k)
            shape = [*h.shape[:dim], n, self.k, *h.shape[dim + 1 :]]
            h = h.reshape(shape).mean(dim=dim + 1)
        return h, False


class _Norm(Step):
    def __init__(self, m: nn.BatchNorm1d | nn.BatchNorm2d, prefix: str):
        self.names = [prefix + n for n in ("running_mean", "running_var", "weight", "bias")]
        self.key, self.eps = prefix + "affine:grouped", m.eps

    def prepare(self, t: Stacked) -> None:
        mean, var, w, b = (t.get(n) for n in self.names)
        assert mean is not None and var is not None  # compile_grouped checked
        alpha = torch.rsqrt(var + self.eps) if w is None else w * torch.rsqrt(var + self.eps)
        beta = -mean * alpha if b is None else b - mean * alpha
        t[self.key] = torch.stack([alpha, beta])  # [2, K, C]

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        h = _stacked(h, shared, t)
        alpha, beta = (v.view(*v.shape, *[1] * (h.dim() - 2)) for v in t[self.key])
        dst = ws.get(self, "out", h.shape, h.dtype) if shared else h
        return torch.addcmul(beta, h, alpha, out=dst), False


class _ReLU(Step):
    def __init__(self) -> None:
        self.into: _Conv | None = None  # the conv right after, whose padded input it can write

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        if shared:
            return F.relu(h), True
        dst = None if self.into is None else self.into.interior(h, t, ws)
        if dst is None:
            return h.clamp_min_(0.0), False
        return torch.clamp_min(h, 0.0, out=dst), False


class _Flatten(Step):
    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        h = _stacked(h, shared, t)  # [K, C, *S, N] -> [K, C·prod(S), N]: channel-major features
        return h.reshape(h.shape[0], -1, h.shape[-1]), False


class _Linear(Step):
    def __init__(self, prefix: str, has_bias: bool):
        self.w_name, self.b_name = prefix + "weight", prefix + "bias" if has_bias else None

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        w = t[self.w_name]  # [K, out, in] @ h[K, in, N]
        dst = ws.get(self, "out", (w.shape[0], w.shape[1], h.shape[-1]), h.dtype)
        if self.b_name is None:
            return torch.bmm(w, h, out=dst), False
        return torch.baddbmm(t[self.b_name][:, :, None], w, h, out=dst), False


class _Block(Step):
    def __init__(self, main: list[Step], shortcut: list[Step]):
        self.main, self.shortcut = main, shortcut

    def prepare(self, t: Stacked) -> None:
        for step in self.main + self.shortcut:
            step.prepare(t)

    def __call__(self, h: Tensor, shared: bool, t: Stacked, ws: Workspace) -> tuple[Tensor, bool]:
        y, _ = _run(self.main, h, shared, t, ws)  # ends in bn2: a buffer of conv2, ours to change
        s, s_shared = _run(self.shortcut, h, shared, t, ws)
        return y.add_(_stacked(s, s_shared, t)).clamp_min_(0.0), False


def _block_step(block: BasicBlock, prefix: str) -> Step | None:
    main = _compile(
        [
            (block.conv1, prefix + "conv1."),
            (block.bn1, prefix + "bn1."),
            (block.relu, ""),
            (block.conv2, prefix + "conv2."),
            (block.bn2, prefix + "bn2."),
        ]
    )
    shortcut = _compile([(block.shortcut, prefix + "shortcut.")])
    if main is None or shortcut is None or not isinstance(main[-1], _Norm):
        return None
    return _Block(main, shortcut)


def _bottleneck_step(block: Bottleneck, prefix: str) -> Step | None:
    names = ("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3")
    main = _compile([(getattr(block, n), "" if n == "relu" else f"{prefix}{n}.") for n in names])
    shortcut = _compile([(block.shortcut, prefix + "shortcut.")])
    if main is None or shortcut is None or not isinstance(main[-1], _Norm):
        return None
    return _Block(main, shortcut)


def _compile(items: Sequence[tuple[nn.Module, str]]) -> list[Step] | None:
    """Steps for `(module, parameter-name prefix)` pairs, in order; None if one is unsupported."""
    steps: list[Step] = []
    for m, prefix in items:
        step: Step | list[Step] | None = None
        if isinstance(m, nn.Sequential):
            children = [(c, f"{prefix}{n}.") for n, c in m.named_children()]
            for i in range(len(children) - 1):
                # ReLU -> MaxPool == MaxPool -> ReLU (ReLU is monotone): ReLU on the smaller map.
                if isinstance(children[i][0], nn.ReLU) and isinstance(
                    children[i + 1][0], _MAXPOOLS
                ):
                    children[i], children[i + 1] = children[i + 1], children[i]
            step = _compile(children)
        elif isinstance(m, _CONVS):
            plain = m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            keras_ok = not isinstance(m, _KERAS) or set(m.padding) == {0}  # type: ignore[arg-type]
            if plain and keras_ok and set(m.dilation) == {1}:
                step = _Conv(m, prefix)
        elif isinstance(m, _NORMS):
            step = _Norm(m, prefix) if m.running_mean is not None else None
        elif isinstance(m, nn.Linear):
            step = _Linear(prefix, m.bias is not None)
        elif isinstance(m, nn.Flatten):
            step = _Flatten() if (m.start_dim, m.end_dim) == (1, -1) else None
        elif isinstance(m, nn.ReLU):
            step = _ReLU()
        elif isinstance(m, _MAXPOOLS):
            step = _MaxPool(m) if set(_tuple(m.dilation)) == {1} else None
        elif isinstance(m, _AVGPOOLS):
            step = _AvgPool() if set(_tuple(m.output_size)) == {1} else None
        elif isinstance(m, _WINDOW_AVGPOOLS):
            k, st, pad = (_tuple(v) for v in (m.kernel_size, m.stride, m.padding))
            plain = len(set(k)) == 1 and k == st and set(pad) == {0} and not m.ceil_mode
            step = _WindowAvgPool(k[0]) if plain else None
        elif isinstance(m, _IDENTITY):
            step = []
        elif isinstance(m, BasicBlock):
            step = _block_step(m, prefix)
        elif isinstance(m, Bottleneck):
            step = _bottleneck_step(m, prefix)
        if step is None:
            return None
        steps += step if isinstance(step, list) else [step]
    for before, after in itertools.pairwise(steps):
        if isinstance(before, _ReLU) and isinstance(after, _Conv):
            before.into = after
    return steps


def _linear_after_flatten(steps: Sequence[Step]) -> bool:
    """Whether the steps flatten before their first Linear: the grouped layout keeps examples
    last, so a Linear on an unflattened map (torch applies it to the last spatial axis) has no
    grouped form and the model takes the loop."""
    kinds = [type(s) for s in steps]
    if _Flatten not in kinds:
        return False
    return _Linear not in kinds[: kinds.index(_Flatten)]


def _tuple(v: object) -> tuple:
    return tuple(v) if isinstance(v, tuple | list) else (v,)


def compile_grouped(model: nn.Module) -> GroupedNet | None:
    """A `GroupedNet` for a modescape `ConvNet` / `ResNet` or an `nn.Sequential` of supported
    modules ending in Flatten ... Linear (logits); None when that is not the case."""
    if isinstance(model, ConvNet):
        parts = [(model.features, "features."), (model.neck, "neck."), (model.head, "head.")]
    elif isinstance(model, ResNet):
        parts = [(getattr(model, n), n + ".") for n in ("stem", "blocks", "neck", "head")]
    elif isinstance(model, nn.Sequential):
        parts = [(model, "")]
    else:
        return None
    steps = _compile(parts)
    if steps is None or not _linear_after_flatten(steps):
        return None
    pnames = [n for n, _ in model.named_parameters()]
    bnames = [n for n, b in model.named_buffers() if b.is_floating_point()]
    return GroupedNet(steps, pnames, bnames)
