"""Permutation specs read from the network itself: a `torch.fx` trace of the forward pass.

Works for plain convolution / dense / normalisation / residual networks (the kind of network the
paper studies). Every traced tensor carries, for its channel axis, a permutation *variable*; a
Conv or Linear layer starts a new one for its outputs, elementwise ops, pooling and BatchNorm pass
it on, a residual addition unites the variables of its operands (they must be permuted alike), a
flatten turns a channel into a block of features. The network's inputs and outputs cannot be
permuted: their variables, and all united with them, stay fixed. Where the trace meets something
whose effect on channels it cannot tell (a reshape other than a flatten, a GroupNorm whose groups
mix several channels, a normalisation over a flattened block), it conservatively fixes the
channels involved; where it meets an operation it does not know at all, it stops with a
ModescapeError asking for a spec. `align` checks every result on a probe batch anyway.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from modescape.errors import ModescapeError
from modescape.models.specs import PermutationSpec

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LEAVES = (*_CONVS, nn.Linear, *_BNS, nn.LayerNorm, nn.GroupNorm)
_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardtanh, nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
    nn.Softmax, nn.LogSoftmax, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
    nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
_PASS_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardswish, F.softplus,
    F.dropout, F.softmax, F.log_softmax, torch.relu, torch.sigmoid, torch.tanh, torch.softmax,
    torch.log_softmax, F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    operator.neg, operator.pos, torch.neg,
}  # fmt: skip
_JOIN_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.mul, operator.truediv,
                   torch.add, torch.sub, torch.mul}  # fmt: skip
_PASS_METHODS = {"relu", "sigmoid", "tanh", "softmax", "log_softmax", "contiguous", "clone",
                 "float", "to", "type_as", "detach", "neg"}  # fmt: skip
_SHAPE_METHODS = {"view", "reshape", "flatten"}
_IGNORED_METHODS = {"size", "dim"}
FIXED = "<fixed>"


@dataclass(frozen=True)
class _Act:
    """A traced tensor: permutation variable `perm` on `axis`, in blocks of `block` features."""

    perm: str
    axis: int
    block: int = 1


class _Tracer(fx.Tracer):
    """Standard leaves plus subclasses of the layers the spec knows (e.g. Keras-padded convs)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


class _Builder:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {FIXED: FIXED}
        self.sizes: dict[str, int] = {}
        self.axes: dict[str, tuple[str | None, ...]] = {}
        self.views: dict[str, tuple[int, ...]] = {}

    def new(self, size: int) -> str:
        name = f"v{len(self.parent)}"
        self.parent[name] = name
        self.sizes[name] = size
        return name

    def find(self, p: str) -> str:
        while self.parent[p] != p:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        return p

    def union(self, p: str | None, q: str | None) -> None:
        if p is None or q is None:
            return
        a, b = self.find(p), self.find(q)
        if a == b:
            return
        if b == FIXED:
            a, b = b, a
        if a != FIXED and self.sizes[a] != self.sizes[b]:
            raise ModescapeError(
                f"automatic permutation spec: joining {self.sizes[a]} with {self.sizes[b]} units"
            )
        self.parent[b] = a

    def entry(self, key: str, axes: tuple[str | None, ...]) -> None:
        """Record (or, for a module used twice, unite) the axes of one state-dict entry."""
        if key in self.axes:
            for p, q in zip(self.axes[key], axes):
                self.union(p, q)
        else:
            self.axes[key] = axes


def _tensor_args(args: object) -> Iterator[fx.Node]:
    for a in _flat(args):
        if isinstance(a, fx.Node):
            yield a


def _flat(x: object) -> Iterator[object]:
    if isinstance(x, list | tuple):
        for y in x:
            yield from _flat(y)
    elif isinstance(x, dict):
        for y in x.values():
            yield from _flat(y)
    else:
        yield x


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def auto_spec(model: nn.Module, probe: torch.Tensor) -> PermutationSpec:
    """The permutation spec of `model`, traced with `torch.fx` on `probe (batch, *in_shape)`.

    The model is not modified (a copy is traced in eval mode).
    """
    model = copy.deepcopy(model).eval()
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # fx raises many kinds on data-dependent control flow
        raise ModescapeError(
            f"automatic permutation spec: torch.fx cannot trace {type(model).__name__} "
            f"({type(e).__name__}: {e}); pass spec= (a PermutationSpec or axes_to_perm dict)"
        ) from e
    gm = fx.GraphModule(model, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(probe)
    b = _Builder()
    acts: dict[fx.Node, _Act] = {}
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        act = _visit(node, acts, modules, b)
        if act is not None and _shape(node) is not None:
            acts[node] = act
    names: dict[str, str] = {}
    for axes in b.axes.values():
        for p in axes:
            if p is not None and b.find(p) != FIXED:
                names.setdefault(b.find(p), f"P{len(names)}")
    axes_out = {
        k: tuple(names.get(b.find(p)) if p is not None else None for p in axes)
        for k, axes in b.axes.items()
    }
    sizes = {name: b.sizes[root] for root, name in names.items()}
    return PermutationSpec(axes_out, dict(b.views), sizes)


def _visit(
    node: fx.Node, acts: dict[fx.Node, _Act], modules: dict[str, nn.Module], b: _Builder
) -> _Act | None:
    ins = [acts[a] for a in _tensor_args(node.args) if a in acts]
    ins += [acts[a] for a in _tensor_args(node.kwargs) if a in acts]
    if node.op in ("placeholder", "get_attr"):
        return _Act(FIXED, 1)
    if node.op == "output":
        for a in ins:
            b.union(a.perm, FIXED)
        return None
    if node.op == "call_module":
        return _module(node, modules[str(node.target)], ins, b)
    if node.op == "call_function":
        return _function(node, ins, b)
    if node.op == "call_method":
        return _method(node, ins, b)
    raise ModescapeError(f"automatic permutation spec: unknown fx node {node.op}")


def _unknown(what: str) -> ModescapeError:
    return ModescapeError(
        f"automatic permutation spec: cannot follow {what} through the network; pass spec= "
        "(a PermutationSpec or a git-re-basin axes_to_perm dict)"
    )


def _fix_unless(b: _Builder, a: _Act, ok: bool) -> _Act:
    """`a` where it is understood; otherwise its channels are fixed (a safe, smaller alignment)."""
    if ok:
        return a
    b.union(a.perm, FIXED)
    return _Act(FIXED, a.axis)


def _module(node: fx.Node, m: nn.Module, ins: list[_Act], b: _Builder) -> _Act:
    name, x = str(node.target), ins[0] if ins else _Act(FIXED, 1)
    shape = _shape(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
    ndim = len(shape) if shape else 2
    if isinstance(m, _CONVS):
        if m.groups != 1:
            raise _unknown(f"grouped convolution {name}")
        x = _fix_unless(b, x, x.axis == 1 and x.block == 1)
        out = b.new(m.out_channels)
        b.entry(f"{name}.weight", (out, x.perm, *(None,) * (m.weight.dim() - 2)))
        if m.bias is not None:
            b.entry(f"{name}.bias", (out,))
        return _Act(out, 1)
    if isinstance(m, nn.Linear):
        x = _fix_unless(b, x, x.axis == ndim - 1)
        out = b.new(m.out_features)
        if x.block > 1 and x.perm != FIXED:
            b.views[f"{name}.weight"] = (m.out_features, m.in_features // x.block, x.block)
            b.entry(f"{name}.weight", (out, x.perm, None))
        else:
            b.entry(f"{name}.weight", (out, x.perm))
        if m.bias is not None:
            b.entry(f"{name}.bias", (out,))
        return _Act(out, ndim - 1)
    if isinstance(m, (*_BNS, nn.GroupNorm)):
        whole = not isinstance(m, nn.GroupNorm) or m.num_groups in (1, m.num_channels)
        x = _fix_unless(b, x, x.axis == 1 and x.block == 1 and whole)
        for key, _ in [*m.named_parameters(), *m.named_buffers()]:
            if key != "num_batches_tracked":
                b.entry(f"{name}.{key}", (x.perm,))
        return x
    if isinstance(m, nn.LayerNorm):
        first = ndim - len(m.normalized_shape)
        x = _fix_unless(b, x, x.block == 1)
        pos = x.axis - first
        for key, p in m.named_parameters():
            b.entry(f"{name}.{key}", tuple(x.perm if i == pos else None for i in range(p.dim())))
        return x
    if isinstance(m, nn.Flatten):
        return _flatten(b, x, shape, m.start_dim, m.end_dim)
    if isinstance(m, _PASS_MODULES):
        return x
    raise _unknown(f"module {name} ({type(m).__name__})")


def _flatten(b: _Builder, x: _Act, shape: tuple[int, ...] | None, start: int, end: int) -> _Act:
    if shape is None or x.perm == FIXED:
        return _Act(FIXED, 1)
    n = len(shape)
    start, end = start % n, end % n
    if x.axis < start:
        return x
    if x.axis == start and end == n - 1:
        return _Act(x.perm, start, x.block * math.prod(shape[start + 1 :]))
    return _fix_unless(b, x, False)


def _function(node: fx.Node, ins: list[_Act], b: _Builder) -> _Act | None:
    fn = node.target
    if _shape(node) is None:
        return None  # sizes, shapes: no tensor
    if fn in _PASS_FUNCTIONS and ins:
        return ins[0]
    if fn in _JOIN_FUNCTIONS and ins:
        for a in ins[1:]:
            if a.axis != ins[0].axis or a.block != ins[0].block:
                b.union(a.perm, FIXED)
                b.union(ins[0].perm, FIXED)
            b.union(ins[0].perm, a.perm)
        return _Act(b.find(ins[0].perm), ins[0].axis, ins[0].block)
    if fn is torch.flatten and ins:
        pos = list(node.args[1:3])  # torch.flatten(x, start_dim=0, end_dim=-1)
        start = node.kwargs.get("start_dim", pos[0] if pos else 0)
        end = node.kwargs.get("end_dim", pos[1] if len(pos) > 1 else -1)
        return _flatten(b, ins[0], _shape(node.args[0]), int(start), int(end))
    raise _unknown(f"function {getattr(fn, '__name__', fn)}")


def _method(node: fx.Node, ins: list[_Act], b: _Builder) -> _Act | None:
    name = str(node.target)
    if name in _IGNORED_METHODS or _shape(node) is None:
        return None
    x = ins[0] if ins else _Act(FIXED, 1)
    if name in _PASS_METHODS:
        return x
    if name in _SHAPE_METHODS:
        before, after = _shape(node.args[0]), _shape(node)
        if before == after:
            return x
        if before and after and len(after) == 2 and after[0] == before[0]:
            return _flatten(b, x, before, 1, -1)
        return _fix_unless(b, x, False)
    if name in ("mean", "sum", "amax"):
        before = _shape(node.args[0]) or ()
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        dims = [d % len(before) for d in dims]
        keep = bool(node.kwargs.get("keepdim", len(node.args) > 2 and node.args[2]))
        if dims and x.axis not in dims and x.block == 1:
            return _Act(x.perm, x.axis if keep else x.axis - sum(d < x.axis for d in dims))
        return _fix_unless(b, x, False)
    raise _unknown(f"method .{name}()")
