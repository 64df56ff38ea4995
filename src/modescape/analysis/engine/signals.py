"""Small 1-D convnets one weight point at a time, signals first and channels last: "signals".

The "grouped" strategy (`engine.grouped`) runs K points side by side as batched matmuls, which
torch sends to MKL. On AMD hosts with AVX-512, MKL (AVX2 code there) ran these thin shapes at
less than half of oneDNN's rate; on AVX2-only hosts the two tie (benchmarks/README.md). This
strategy runs each point on its own through oneDNN's matmul (`torch.ops.mkldnn._linear_pointwise`,
the op inductor emits for CPU linears, with the bias and a following ReLU fused), in a layout
made for it: activations `h[n, L, C]` (signal, position, channel), so that

- a Conv1d of stride 1 is one matmul `cols[n·L', k·C] @ W[out, k·C]ᵀ`, whose columns are the
  `k` neighbouring positions × all channels: in this layout a window is `k·C` *contiguous*
  floats of the zero-padded input, so im2col is one strided copy;
- a MaxPool1d is the elementwise maximum of `k` strided views along L, written straight into the
  next conv's padded input (a ReLU after it is fused into the conv before it: ReLU and max
  commute, since ReLU is monotone);
- Flatten is free: the Linear after it gets its weight's columns permuted once per weight chunk
  (`nn.Flatten` is channel-major, `[C, L]`; here the features are `[L, C]`);
- BatchNorm (eval) is `h·α + β` per channel in place; AdaptiveAvgPool1d(1) a mean over L.

The first conv sees the shared input, so its columns are built once per data batch for all the
points of a weight chunk. Buffers are reused from call to call (the module docstring of
`engine.grouped` says why); oneDNN's op returns a fresh tensor, so `max_batch` keeps each
output under 2 MB: with huge pages on (what `import modescape` sets) a 2.8 MB output made every
call zero-fill two fresh huge pages, 1.6-1.7 ms against 0.39 ms with them off (measured on the
AVX-512 host).

`compile_signals(model)` returns None for anything else (2-D inputs, strided / dilated / grouped
convs, padded pools, other modules); `batched` then uses another strategy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from modescape.analysis.engine.grouped import Stacked, StepNet, Workspace
from modescape.models.architectures import ConvNet
from modescape.models.layers import KerasSameConv1d

# oneDNN's matmul with a fused post-op; present in every CPU build of torch 2.x with mkldnn.
_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
# The largest fresh output a call may return (see the module docstring).
MAX_OUTPUT_BYTES = 2 * 2**20 - 64 * 1024


def available() -> bool:
    """Whether this torch build has oneDNN's CPU matmul."""
    return _LINEAR is not None and torch.backends.mkldnn.is_available()


def _linear(h: Tensor, w: Tensor, b: Tensor | None, relu: bool) -> Tensor:
    return _LINEAR(h, w, b, "relu" if relu else "none", [], "")  # type: ignore[misc]


class _Step:
    relu = False  # a ReLU fused into this step's output

    def prepare(self, t: Stacked) -> None:
        """Derive this step's per-point operands from the stacked weights `[K, ...]`."""

    def out_bytes(self, shape: tuple[int, int]) -> int:
        """Bytes per example of the fresh tensor this step returns (0: none)."""
        return 0

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """`(L, C)` (or `(1, F)` once flat) of the output for an input of `shape`."""
        return shape

    def __call__(self, h: Tensor, k: int, t: Stacked, ws: Workspace, dst: Tensor | None) -> Tensor:
        raise NotImplementedError


class _Conv(_Step):
    def __init__(self, m: nn.Conv1d, prefix: str):
        self.w_name = prefix + "weight"
        self.b_name = prefix + "bias" if m.bias is not None else None
        self.key = prefix + "weight:signals"
        self.k, self.out_channels = m.kernel_size[0], m.out_channels
        self.keras = isinstance(m, KerasSameConv1d)
        self.pad = (m.padding[0], m.padding[0])  # type: ignore[index]

    def pads(self, n: int) -> tuple[int, int]:
        if not self.keras:
            return self.pad
        total = max(self.k - 1, 0)  # Keras' "same" at stride 1 (layers.py)
        return total // 2, total - total // 2

    def prepare(self, t: Stacked) -> None:
        w = t[self.w_name]  # [K, out, C, k] -> [K, out, k·C]: a window is k positions × C
        t[self.key] = w.permute(0, 1, 3, 2).reshape(w.shape[0], w.shape[1], -1).contiguous()

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        a, b = self.pads(shape[0])
        return shape[0] + a + b - self.k + 1, self.out_channels

    def out_bytes(self, shape: tuple[int, int]) -> int:
        return math.prod(self.shape(shape)) * 4

    def padded(self, n: int, shape: tuple[int, int], ws: Workspace) -> tuple[Tensor, Tensor]:
        """The zero-padded input buffer `[n, L + pads, C]` and the input's place in it."""
        (L, C), (a, b) = shape, self.pads(shape[0])
        buf = ws.get(self, "in", (n, L + a + b, C), torch.float32, lambda z: z.zero_())
        return buf, buf[:, a : a + L]

    def columns(self, h: Tensor, ws: Workspace, written: bool) -> Tensor:
        """im2col `[n·L', k·C]` of `h[n, L, C]` (`written`: h is already in the padded buffer)."""
        n, L, C = h.shape
        a, b = self.pads(L)
        if self.k == 1 and a == b == 0:
            return h.reshape(n * L, C)
        buf, inner = self.padded(n, (L, C), ws)
        if not written:
            inner.copy_(h)
        Lo = L + a + b - self.k + 1
        cols = ws.get(self, "cols", (n * Lo, self.k * C), torch.float32)
        windows = buf.as_strided((n, Lo, self.k * C), (buf.stride(0), C, 1))
        cols.view(n, Lo, self.k * C).copy_(windows)
        return cols

    def run(self, cols: Tensor, n: int, k: int, t: Stacked) -> Tensor:
        b = None if self.b_name is None else t[self.b_name][k]
        return _linear(cols, t[self.key][k], b, self.relu).view(n, -1, self.out_channels)

    def needs_buffer(self) -> bool:
        """Whether the input is copied into a padded buffer (else it is used as it is)."""
        return self.k > 1 or self.pads(0) != (0, 0)


class _MaxPool(_Step):
    def __init__(self, k: int, s: int, ceil_mode: bool):
        self.k, self.s, self.ceil_mode = k, s, ceil_mode

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        span = shape[0] - self.k
        out = (-(-span // self.s) if self.ceil_mode else span // self.s) + 1
        if self.ceil_mode and (out - 1) * self.s >= shape[0]:  # as PyTorch: no window in padding
            out -= 1
        return out, shape[1]

    def __call__(self, h: Tensor, k: int, t: Stacked, ws: Workspace, dst: Tensor | None) -> Tensor:
        n, L, C = h.shape
        Lo = self.shape((L, C))[0]
        right = max((Lo - 1) * self.s + self.k - L, 0)  # ceil_mode: the last window's overhang
        if right:
            padded = ws.get(self, "pad", (n, L + right, C), h.dtype, lambda b: b.fill_(-math.inf))
            padded[:, :L].copy_(h)
            h = padded
        stop = (Lo - 1) * self.s + 1
        views = [h[:, j : j + stop : self.s] for j in range(self.k)]
        if dst is None:
            dst = ws.get(self, "out", (n, Lo, C), torch.float32)
        if self.k == 1:
            dst.copy_(views[0])
        else:
            torch.maximum(views[0], views[1], out=dst)
            for v in views[2:]:
                torch.maximum(dst, v, out=dst)
        if self.relu:
            dst.clamp_min_(0.0)
        return dst


class _ReLU(_Step):
    def __call__(self, h: Tensor, k: int, t: Stacked, ws: Workspace, dst: Tensor | None) -> Tensor:
        return h.clamp_min_(0.0)


class _Norm(_Step):
    def __init__(self, m: nn.BatchNorm1d, prefix: str):
        self.names = [prefix + n for n in ("running_mean", "running_var", "weight", "bias")]
        self.key, self.eps = prefix + "affine:signals", m.eps

    def prepare(self, t: Stacked) -> None:
        mean, var, w, b = (t.get(n) for n in self.names)
        assert mean is not None and var is not None  # compile_signals checked
        alpha = torch.rsqrt(var + self.eps) if w is None else w * torch.rsqrt(var + self.eps)
        beta = -mean * alpha if b is None else b - mean * alpha
        t[self.key] = torch.stack([alpha, beta], 1)  # [K, 2, C]

    def __call__(self, h: Tensor, k: int, t: Stacked, ws: Workspace, dst: Tensor | None) -> Tensor:
        alpha, beta = t[self.key][k]  # per channel: the last axis of h[n, L, C] or h[n, F]
        torch.addcmul(beta, h, alpha, out=h)
        return h.clamp_min_(0.0) if self.relu else h


class _Mean(_Step):
    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return 1, shape[1]

    def __call__(self, h: Tensor, k: int, t: Stacked, ws: Workspace, dst: Tensor | None) -> Tensor:
        out = torch.mean(h, 1, keepdim=True)
        return out.clamp_min_(0.0) if self.relu else out


class _Flatten(_Step):
    def __init__(self) -> None:
        self.length = 1  # L of the input, set by compile_signals from the example shape

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        self.length = shape[0]
        return 1, shape[0] * shape[1]

    def __call__(self, h: Tensor, k: int, t: Stacked, ws: Workspace, dst: Tensor | None) -> Tensor:
        return h.reshape(h.shape[0], 1, -1)


class _Linear(_Step):
    def __init__(self, prefix: str, has_bias: bool, out: int, flatten: _Flatten | None):
        self.w_name, self.b_name = prefix + "weight", prefix + "bias" if has_bias else None
        self.key, self.flatten, self.out = prefix + "weight:signals", flatten, out

    def prepare(self, t: Stacked) -> None:
        w = t[self.w_name]  # [K, out, in]
        L = 1 if self.flatten is None else self.flatten.length
        if L > 1:  # nn.Flatten's features are [C, L]; ours are [L, C]
            K, out, F = w.shape
            w = w.view(K, out, F // L, L).transpose(2, 3).reshape(K, out, F)
        t[self.key] = w.contiguous()

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return 1, self.out

    def out_bytes(self, shape: tuple[int, int]) -> int:
        return self.out * 4

    def __call__(self, h: Tensor, k: int, t: Stacked, ws: Workspace, dst: Tensor | None) -> Tensor:
        b = None if self.b_name is None else t[self.b_name][k]
        y = _linear(h.reshape(h.shape[0], -1), t[self.key][k], b, self.relu)
        return y.view(h.shape[0], 1, -1)


class SignalsNet(StepNet[_Step]):
    """The template's structure, one point at a time in the layout of the module docstring.

    `stack(params[K, P], buffers[K, B], ...)` as `StepNet.stack`; `net(stacked, x[n, C, L])`
    returns logits `[K, n, classes]` (a new tensor). Not re-entrant (buffers are shared).
    """

    def max_batch(self, in_shape: Sequence[int]) -> int:
        """The largest data batch whose fresh outputs stay within MAX_OUTPUT_BYTES, for inputs
        `[n, C, L]` (also tells the Flatten its length: call it before `stack`)."""
        s, worst = (in_shape[1], in_shape[0]), 1
        for step in self.steps:
            worst = max(worst, step.out_bytes(s))
            s = step.shape(s)
        return max(1, MAX_OUTPUT_BYTES // worst)

    def __call__(self, t: Stacked, x: Tensor) -> Tensor:
        n, ws = x.shape[0], self.workspace
        first, rest = self.steps[0], self.steps[1:]
        assert isinstance(first, _Conv)
        cols = first.columns(x.transpose(1, 2), ws, False)  # the shared input's, for all K points
        into = [  # a pool followed by a conv writes straight into the conv's padded input
            isinstance(a, _MaxPool) and isinstance(b, _Conv) and b.needs_buffer()
            for a, b in zip(rest, [*rest[1:], None])
        ]
        K = next(iter(t.values())).shape[0]
        out = torch.empty(K, n, self.classes(x.shape[1:]))
        for k in range(K):
            h, written = first.run(cols, n, k, t), False
            for i, step in enumerate(rest):
                if isinstance(step, _Conv):
                    h, written = step.run(step.columns(h, ws, written), n, k, t), False
                    continue
                dst = None
                if into[i]:
                    nxt = rest[i + 1]
                    assert isinstance(nxt, _Conv)
                    dst = nxt.padded(n, step.shape(tuple(h.shape[1:])), ws)[1]
                h = step(h, k, t, ws, dst)
                written = dst is not None
            out[k] = h.view(n, -1)
        return out

    def classes(self, in_shape: Sequence[int]) -> int:
        s = (in_shape[1], in_shape[0])
        for step in self.steps:
            s = step.shape(s)
        return s[0] * s[1]


_CONV_STEPS = (_Conv, _Linear, _Norm, _Mean, _MaxPool)


def _fuse_relu(steps: list[_Step]) -> bool:
    """Fuse a ReLU into the step before it (through a max-pool: they commute); False if none."""
    i = len(steps) - 1
    through_pool = i >= 1 and isinstance(steps[i], _MaxPool) and not steps[i].relu
    if through_pool and isinstance(steps[i - 1], _Conv | _Linear | _Norm) and not steps[i - 1].relu:
        i -= 1
    if i < 0 or not isinstance(steps[i], _CONV_STEPS) or steps[i].relu:
        return False
    steps[i].relu = True
    return True


def _step(m: nn.Module, prefix: str, steps: list[_Step]) -> bool:
    """Append the step(s) of module `m` to `steps`; False if it is not supported."""
    if isinstance(m, nn.Sequential):
        return all(_step(c, f"{prefix}{n}.", steps) for n, c in m.named_children())
    if isinstance(m, nn.Conv1d):
        plain = m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)
        keras_ok = not isinstance(m, KerasSameConv1d) or m.padding == (0,)
        if not (plain and keras_ok and m.stride == (1,) and m.dilation == (1,)):
            return False
        steps.append(_Conv(m, prefix))
    elif isinstance(m, nn.BatchNorm1d):
        flat = any(isinstance(s, _Flatten) for s in steps)  # features [L, C]: not its channels
        if m.running_mean is None or m.running_var is None or flat:
            return False
        steps.append(_Norm(m, prefix))
    elif isinstance(m, nn.MaxPool1d):
        k, s = _one(m.kernel_size), _one(m.stride or m.kernel_size)
        if m.return_indices or _one(m.padding) or _one(m.dilation) != 1 or min(k, s) < 1:
            return False
        steps.append(_MaxPool(k, s, m.ceil_mode))
    elif isinstance(m, nn.ReLU):
        if not _fuse_relu(steps):
            steps.append(_ReLU())
    elif isinstance(m, nn.AdaptiveAvgPool1d):
        if _one(m.output_size) != 1:
            return False
        steps.append(_Mean())
    elif isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (1, -1):
            return False
        steps.append(_Flatten())
    elif isinstance(m, nn.Linear):
        if not any(isinstance(s, _Flatten) for s in steps):  # on [n, C, L] it would act on L
            return False
        # the Flatten this Linear reads (through elementwise steps), if no Linear came since
        flat = None
        for s in reversed(steps):
            if isinstance(s, _Linear | _Flatten):
                flat = s if isinstance(s, _Flatten) else None
                break
        steps.append(_Linear(prefix, m.bias is not None, m.out_features, flat))
    elif not isinstance(m, nn.Dropout | nn.Identity):  # Dropout: eval mode
        return False
    return True


def _one(v: int | tuple[int, ...] | None) -> int:
    if isinstance(v, tuple):
        return v[0] if len(v) == 1 else -1
    return -1 if v is None else v


def compile_signals(model: nn.Module) -> SignalsNet | None:
    """A `SignalsNet` for a 1-D modescape `ConvNet` or `nn.Sequential` (first a Conv1d, ending in
    Flatten ... Linear) of the supported modules; None otherwise or without oneDNN."""
    if not available():
        return None
    if isinstance(model, ConvNet):
        parts = [(model.features, "features."), (model.neck, "neck."), (model.head, "head.")]
    elif isinstance(model, nn.Sequential):
        parts = [(model, "")]
    else:
        return None
    steps: list[_Step] = []
    if not all(_step(m, prefix, steps) for m, prefix in parts):
        return None
    if not steps or not isinstance(steps[0], _Conv) or not isinstance(steps[-1], _Linear):
        return None
    pnames = [n for n, _ in model.named_parameters()]
    bnames = [n for n, b in model.named_buffers() if b.is_floating_point()]
    return SignalsNet(steps, pnames, bnames)
