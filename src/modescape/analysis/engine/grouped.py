"""K weight points of one convnet in ONE forward pass: the "grouped" strategy of `batched`.

A small 1-D network (MNIST-1D SmallCNN: 130 kFLOP per example) spends most of a forward pass in
per-call overhead, so evaluating K weight points one after another is slow however the data is
batched. Here the K copies of the network run side by side and every layer is one call for all
of them. Activations are laid out *examples last*, `h[K, C, *S, N]` (point, channel, spatial,
example), so that every layer is a batched matmul whose wide dimension is `prod(S)·N`:

- ConvNd: the zero-padded input is unfolded into columns `[K, C·prod(k), prod(S')·N]` and
  multiplied by the stacked weights `[K, out, C·prod(k)]` (`baddbmm`). The first conv sees the
  *shared* input, so its columns are built once and multiplied by all K weights in one matmul
  `[K·out, C·prod(k)]`.
- MaxPool: the elementwise maximum of the kernel's strided slices, one spatial axis at a time
  (max-pooling is separable), padded with -inf; ceil_mode as PyTorch. ReLU is elementwise.
  AdaptiveAvgPool to size 1 is a mean. Dropout is the identity (eval mode).
- BatchNorm (eval) is per channel: `F.batch_norm` on `[1, K·C, prod(S)·N]` with the K points'
  running statistics and affine parameters concatenated.
- Flatten is a free view `[K, C·prod(S), N]` (channel-major per example, as `nn.Flatten`);
  Linear is `baddbmm(bias, W[K, out, in], h[K, in, N])`. A ResNet `BasicBlock` adds its shortcut
  in the same layout. The network's output `[K, classes, N]` is returned as `[K, N, classes]`.

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
from collections.abc import Callable, Mapping, Sequence
from functools import reduce

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modescape.models.architectures import BasicBlock, ConvNet, ResNet

Stacked = Mapping[str, Tensor]  # parameter / buffer name -> tensor[K, *shape]
# One layer for all K points: h[K, C, *S, N] (or [K, F, N] after Flatten) -> the same layout.
# The network input is the shared x[N, C, *S]; `shared` says h is still that tensor.
Step = Callable[[Tensor, bool, Stacked], tuple[Tensor, bool]]

_CONVS = (nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d)
_AVGPOOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_IDENTITY = (nn.Dropout, nn.Identity)  # Dropout: eval mode


class GroupedNet:
    """The template's structure, run for K points at once.

    `stack(params[K, P], buffers[K, B], ...)` splits flat vectors into `{name: [K, *shape]}`
    (once per weight chunk); `net(stacked, x[N, *in_shape])` returns logits `[K, N, classes]`.
    """

    def __init__(self, steps: Sequence[Step], pnames: Sequence[str], bnames: Sequence[str]):
        self.steps = list(steps)
        self.pnames, self.bnames = list(pnames), list(bnames)

    def stack(
        self,
        params: Tensor,
        buffers: Tensor,
        pshapes: Sequence[torch.Size],
        bshapes: Sequence[torch.Size],
    ) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for names, shapes, flat in (
            (self.pnames, pshapes, params),
            (self.bnames, bshapes, buffers),
        ):
            sizes = [math.prod(s) for s in shapes]
            for name, part, shape in zip(names, torch.split(flat, sizes, -1), shapes):
                out[name] = part.reshape(flat.shape[0], *shape).contiguous()
        return out

    def __call__(self, stacked: Stacked, x: Tensor) -> Tensor:
        h, _ = _run(self.steps, x, True, stacked)
        return h.transpose(1, 2)  # [K, classes, N] -> [K, N, classes]


def _run(steps: Sequence[Step], h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
    for step in steps:
        h, shared = step(h, shared, t)
    return h, shared


def _examples_last(x: Tensor) -> Tensor:
    """`x[N, C, *S]` -> `[C, *S, N]` (contiguous)."""
    return x.permute(*range(1, x.dim()), 0).contiguous()


def _stacked(h: Tensor, shared: bool, t: Stacked) -> Tensor:
    """The shared input as K identical points `[K, C, *S, N]` (an expanded view)."""
    if not shared:
        return h
    K = next(iter(t.values())).shape[0]
    return _examples_last(h).expand(K, *([-1] * h.dim()))


def _conv_step(m: nn.Conv1d | nn.Conv2d, prefix: str) -> Step:
    w_name, b_name = prefix + "weight", prefix + "bias" if m.bias is not None else None

    def step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
        w = t[w_name]
        K, out_ch = w.shape[:2]
        if shared:  # columns built once; one matmul [K·out, C·k] @ [C·k, S'·N] for all points
            cols, size = _columns(_examples_last(h)[None], m)
            w2 = w.reshape(K * out_ch, -1)
            y = w2 @ cols[0] if b_name is None else torch.addmm(t[b_name].view(-1, 1), w2, cols[0])
        else:
            cols, size = _columns(h, m)
            w3 = w.reshape(K, out_ch, -1)
            y = w3 @ cols if b_name is None else torch.baddbmm(t[b_name][:, :, None], w3, cols)
        return y.view(K, out_ch, *size), False

    return step


def _columns(h: Tensor, m: nn.Conv1d | nn.Conv2d) -> tuple[Tensor, tuple[int, ...]]:
    """im2col: `h[K, C, *S, N]` -> `cols[K, C·prod(k), prod(S')·N]` and `(*S', N)`.

    One copy per kernel offset straight from `h` (zero padding written only where a window
    reaches past the border), instead of a padded copy followed by a reshaping one.
    """
    K, C, *S, N = h.shape
    ks, ss, ps = m.kernel_size, m.stride, m.padding
    out = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(S, ks, ss, ps)]
    cols = h.new_empty(K, C, *ks, *out, N)  # rows in the weight's (in, *k) order
    for offsets in itertools.product(*(range(k) for k in ks)):
        dst = cols[(slice(None), slice(None), *offsets)]  # [K, C, *S', N]
        src_idx, dst_idx = [], []
        for n, o, s, p, j in zip(S, out, ss, ps, offsets):
            # output position i reads input i·s + j − p, valid when it lies in [0, n)
            lo = min(max(-((j - p) // s), 0), o)  # ceil((p − j) / s), clipped to [0, o]
            hi = max(min((n - 1 - j + p) // s + 1, o), lo)
            dst_idx.append(slice(lo, hi))
            start = lo * s + j - p
            src_idx.append(
                slice(start, start + (hi - lo - 1) * s + 1, s) if hi > lo else slice(0, 0)
            )
        for axis, (sl, o) in enumerate(zip(dst_idx, out)):  # the border: zero padding
            if sl.start > 0:
                dst.narrow(2 + axis, 0, sl.start).zero_()
            if sl.stop < o:
                dst.narrow(2 + axis, sl.stop, o - sl.stop).zero_()
        dst[(slice(None), slice(None), *dst_idx)] = h[(slice(None), slice(None), *src_idx)]
    return cols.view(K, C * math.prod(ks), -1), (*out, N)


def _maxpool_step(m: nn.MaxPool1d | nn.MaxPool2d) -> Step:
    d = 1 if isinstance(m, nn.MaxPool1d) else 2

    def per_axis(v: int | tuple[int, ...]) -> tuple[int, ...]:
        return tuple(v) if isinstance(v, tuple) else (v,) * d

    ks, ss = per_axis(m.kernel_size), per_axis(m.stride or m.kernel_size)
    ps = per_axis(m.padding)

    def step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
        h = _stacked(h, shared, t)
        for i, (k, s, p) in enumerate(zip(ks, ss, ps)):
            h = _max_along(h, 2 + i, k, s, p, m.ceil_mode)
        return h, False

    return step


def _max_along(h: Tensor, dim: int, k: int, s: int, p: int, ceil_mode: bool) -> Tensor:
    """1-D max-pooling of `h` along `dim`, with PyTorch's output size (incl. ceil_mode)."""
    n = h.shape[dim]
    span = n + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # PyTorch drops a last window starting in padding
        out -= 1
    right = max((out - 1) * s + k - n - p, 0)  # what the last window reads past the end
    if p or right:
        shape = list(h.shape)
        shape[dim] = n + p + right
        padded = h.new_full(shape, -math.inf)
        padded.narrow(dim, p, n).copy_(h)
        h = padded
    stop = (out - 1) * s + 1
    return reduce(torch.maximum, [h.narrow(dim, j, stop)[_every(dim, s)] for j in range(k)])


def _every(dim: int, s: int) -> tuple[slice, ...]:
    return (slice(None),) * dim + (slice(None, None, s),)


def _avgpool_step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
    h = _stacked(h, shared, t)  # adaptive pool to 1: the mean over the spatial axes
    return h.mean(dim=tuple(range(2, h.dim() - 1)), keepdim=True), False


def _norm_step(m: nn.BatchNorm1d | nn.BatchNorm2d, prefix: str) -> Step:
    names = [prefix + n for n in ("running_mean", "running_var", "weight", "bias")]

    def step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
        h = _stacked(h, shared, t).contiguous()
        mean, var, w, b = (t[n].reshape(-1) if n in t else None for n in names)
        flat = h.view(1, h.shape[0] * h.shape[1], -1)
        return F.batch_norm(flat, mean, var, w, b, False, 0.0, m.eps).view(h.shape), False

    return step


def _relu_step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
    return F.relu(h), shared


def _flatten_step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
    h = _stacked(h, shared, t)  # [K, C, *S, N] -> [K, C·prod(S), N]: channel-major features
    return h.reshape(h.shape[0], -1, h.shape[-1]), False


def _linear_step(prefix: str, has_bias: bool) -> Step:
    def step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
        w = t[prefix + "weight"]  # [K, out, in] @ h[K, in, N]
        if has_bias:
            return torch.baddbmm(t[prefix + "bias"][:, :, None], w, h), False
        return torch.bmm(w, h), False

    return step


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
    if main is None or shortcut is None:
        return None

    def step(h: Tensor, shared: bool, t: Stacked) -> tuple[Tensor, bool]:
        y, _ = _run(main, h, shared, t)
        s, s_shared = _run(shortcut, h, shared, t)
        return F.relu(y + _stacked(s, s_shared, t)), False

    return step


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
            if plain and set(m.dilation) == {1}:
                step = _conv_step(m, prefix)
        elif isinstance(m, _NORMS):
            step = _norm_step(m, prefix) if m.running_mean is not None else None
        elif isinstance(m, nn.Linear):
            step = _linear_step(prefix, m.bias is not None)
        elif isinstance(m, nn.Flatten):
            step = _flatten_step if (m.start_dim, m.end_dim) == (1, -1) else None
        elif isinstance(m, nn.ReLU):
            step = _relu_step
        elif isinstance(m, _MAXPOOLS):
            step = _maxpool_step(m) if set(_tuple(m.dilation)) == {1} else None
        elif isinstance(m, _AVGPOOLS):
            step = _avgpool_step if set(_tuple(m.output_size)) == {1} else None
        elif isinstance(m, _IDENTITY):
            step = []
        elif isinstance(m, BasicBlock):
            step = _block_step(m, prefix)
        if step is None:
            return None
        steps += step if isinstance(step, list) else [step]
    return steps


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
    if steps is None or _flatten_step not in steps:
        return None
    pnames = [n for n, _ in model.named_parameters()]
    bnames = [n for n, b in model.named_buffers() if b.is_floating_point()]
    return GroupedNet(steps, pnames, bnames)
