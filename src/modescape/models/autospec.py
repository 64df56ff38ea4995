"""Permutation specs read from the network itself: a `torch.fx` trace of the forward pass.

Works for convolution / dense / normalisation / residual networks (the kind of network the
paper studies) and for the blocks of ConvNeXt, MobileNet, DenseNet and ViT: a depthwise
convolution carries its input's permutation to its output (channel c only sees channel c), a
parameter combined elementwise with activations (a layer scale, a position embedding) is
permuted with them, `permute` / `transpose` move the channel axis, and the heads of an
`nn.MultiheadAttention` and of timm's `Attention` (recognised by its attributes) are permuted
as blocks (q, k, v rows and the output projection's columns together). A `torch.cat` along the
channels (DenseNet) splits the permutation: each segment keeps its input's.

Every traced tensor carries, for its channel axis, a permutation *variable*; a
Conv or Linear layer starts a new one for its outputs, elementwise ops, pooling and BatchNorm pass
it on, a residual addition unites the variables of its operands (they must be permuted alike), a
flatten turns a channel into a block of features. The network's inputs and outputs cannot be
permuted: their variables, and all united with them, stay fixed. Where the trace meets something
whose effect on channels it cannot tell (a reshape other than a flatten, a GroupNorm whose groups
mix several channels, a normalisation over a flattened block, a grouped convolution, a
concatenation along the channels, other attention written out of reshapes and matmuls, any
operation it does not know), it conservatively fixes the channels involved:
nothing is permuted across such an operation, so the function is kept and the alignment covers
the rest (e.g. the MLP hidden units of every transformer block). `align` checks every result
on a probe batch anyway, and a network torch.fx cannot trace is refused with a ModescapeError.
"""

from __future__ import annotations

import copy
import logging
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

log = logging.getLogger(__name__)

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


def is_timm_attention(m: nn.Module) -> bool:
    """timm's ViT `Attention` (qkv Linear -> heads -> scaled dot product -> proj Linear), read
    from its attributes: per-head q/k norms (shared across heads) and no other mixing."""
    qkv, proj, heads = getattr(m, "qkv", None), getattr(m, "proj", None), getattr(m, "num_heads", 0)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int)):
        return False
    head_norms = [getattr(m, n, None) for n in ("q_norm", "k_norm")]
    plain = all(n is None or isinstance(n, nn.Identity | nn.LayerNorm) for n in head_norms)
    plain = plain and isinstance(getattr(m, "norm", None), type(None) | nn.Identity)
    e = qkv.in_features
    shapes = heads > 0 and e % heads == 0 and qkv.out_features == 3 * e
    return plain and shapes and proj.in_features == e


class _Tracer(fx.Tracer):
    """Standard leaves plus subclasses of the layers the spec knows (e.g. Keras-padded convs)
    and, with `attention`, timm's attention modules (their heads are permuted as blocks)."""

    def __init__(self, attention: bool = True) -> None:
        super().__init__()
        self.attention = attention

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if self.attention and is_timm_attention(m):
            return True
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


class _Builder:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {FIXED: FIXED}
        self.sizes: dict[str, int] = {}
        self.axes: dict[str, tuple[str | None, ...]] = {}
        self.views: dict[str, tuple[int, ...]] = {}
        self.concats: dict[str, list[tuple[str, int]]] = {}

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
        if a in self.concats or b in self.concats:
            # a concatenation's segments permute apart; joined with anything else (a residual
            # addition, a second use), they are all kept in place
            for r in (a, b):
                for part, _ in self.concats.get(r, ()):
                    self.union(part, FIXED)
                if r in self.concats:
                    self.parent[r] = FIXED
                else:
                    self.union(r, FIXED)
            return
        if b == FIXED:
            a, b = b, a
        if a != FIXED and self.sizes[a] != self.sizes[b]:
            raise ModescapeError(
                f"automatic permutation spec: joining {self.sizes[a]} with {self.sizes[b]} units"
            )
        self.parent[b] = a

    def concat(self, parts: list[_Act], sizes: list[int]) -> str:
        """A variable for channels concatenated from `parts` (nested concatenations flattened)."""
        flat: list[tuple[str, int]] = []
        for a, n in zip(parts, sizes):
            root = self.find(a.perm)
            flat += self.concats.get(root, [(a.perm, n)])
        name = self.new(sum(sizes))
        self.concats[name] = flat
        return name

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


def _is_tuple(node: fx.Node) -> bool:
    return isinstance(node.meta.get("tensor_meta"), tuple | list)


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def auto_spec(model: nn.Module, probe: torch.Tensor, attention: bool = True) -> PermutationSpec:
    """The permutation spec of `model`, traced with `torch.fx` on `probe (batch, *in_shape)`.

    The model is not modified (a copy is traced in eval mode). `attention`: recognise timm's
    attention modules by their attributes and permute their heads (`align` retries without
    when the result does not keep the function: a look-alike computing something else).
    """
    model = copy.deepcopy(model).eval()
    try:
        graph = _Tracer(attention).trace(model)
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
        if act is not None and (_shape(node) is not None or _is_tuple(node)):
            acts[node] = act  # a tuple (attention's output, weights): read by getitem
    stored = set(model.state_dict())
    for key in [k for k in b.axes if k not in stored]:  # e.g. a non-persistent buffer
        for p in b.axes.pop(key):
            b.union(p, FIXED)  # cannot be permuted, so neither can what it combines with
    return _named(b)


def _named(b: _Builder) -> PermutationSpec:
    """The spec with its variables named P0, P1, ... (concatenations C0, ...) in order of first
    use; fixed ones (and concatenations of fixed segments only) become None."""
    names: dict[str, str] = {}
    concats: dict[str, tuple[tuple[str | None, int], ...]] = {}
    for axes in b.axes.values():
        for p in axes:
            root = b.find(p) if p is not None else FIXED
            for q, _ in b.concats.get(root, [(root, 0)]):
                if b.find(q) != FIXED:
                    names.setdefault(b.find(q), f"P{len(names)}")
    for axes in b.axes.values():
        for p in axes:
            root = b.find(p) if p is not None else FIXED
            parts = tuple((names.get(b.find(q)), n) for q, n in b.concats.get(root, ()))
            if root not in names and any(q is not None for q, _ in parts):
                names[root] = f"C{len(concats)}"
                concats[names[root]] = parts
    axes_out = {
        k: tuple(names.get(b.find(p)) if p is not None else None for p in axes)
        for k, axes in b.axes.items()
    }
    sizes = {name: b.sizes[root] for root, name in names.items() if name not in concats}
    return PermutationSpec(axes_out, dict(b.views), sizes, concats)


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
        return _function(node, ins, b, acts)
    if node.op == "call_method":
        return _method(node, ins, b)
    raise ModescapeError(f"automatic permutation spec: unknown fx node {node.op}")


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
            return _grouped_conv(b, name, m, x)
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
    if isinstance(m, nn.MultiheadAttention):
        return _attention(b, name, m, ins, ndim)
    if is_timm_attention(m):
        return _timm_attention(b, name, m, x, ndim)
    if isinstance(m, nn.Flatten):
        return _flatten(b, x, shape, m.start_dim, m.end_dim)
    if isinstance(m, _PASS_MODULES):
        return x
    return _opaque(b, ins, f"module {name} ({type(m).__name__})")


def _grouped_conv(b: _Builder, name: str, m: nn.Module, x: _Act) -> _Act:
    """Depthwise: output channel c is a function of input channel c alone, so the input's
    permutation carries through (weight `[C, 1, k...]` permuted on axis 0). Other grouped
    convolutions mix channels within groups: fixed on both sides."""
    if m.groups == m.in_channels == m.out_channels and x.axis == 1 and x.block == 1:
        b.entry(f"{name}.weight", (x.perm, *(None,) * (m.weight.dim() - 1)))
        if m.bias is not None:
            b.entry(f"{name}.bias", (x.perm,))
        return _Act(x.perm, 1)
    b.union(x.perm, FIXED)
    return _Act(FIXED, 1)


def _attention(
    b: _Builder, name: str, m: nn.MultiheadAttention, ins: list[_Act], ndim: int
) -> _Act:
    """Multi-head attention: heads are interchangeable, so one permutation of the heads moves
    the rows of q, k and v (`in_proj_weight` viewed as [3, heads, head_dim, embed]) and the
    matching columns of `out_proj` ([embed, heads, head_dim]) as blocks; the query, key and
    value inputs share `in_proj_weight`'s input axis (their channels are permuted alike), and
    `out_proj` starts a new permutation of the output. Variants with separate q/k/v weights,
    bias_k / bias_v or zero attention are left fixed (`_opaque`)."""
    inputs = ins[:3]
    plain = m._qkv_same_embed_dim and m.bias_k is None and not m.add_zero_attn
    ok = (
        plain
        and len(inputs) == 3
        and all(a.perm == FIXED or (a.axis == ndim - 1 and a.block == 1) for a in inputs)
    )
    if not ok:
        return _opaque(b, ins, f"attention {name}")
    for a in inputs[1:]:
        b.union(inputs[0].perm, a.perm)
    x = b.find(inputs[0].perm)
    heads, e = m.num_heads, m.embed_dim
    hp, out = b.new(heads), b.new(e)
    b.views[f"{name}.in_proj_weight"] = (3, heads, e // heads, e)
    b.entry(f"{name}.in_proj_weight", (None, hp, None, x))
    if m.in_proj_bias is not None:
        b.views[f"{name}.in_proj_bias"] = (3, heads, e // heads)
        b.entry(f"{name}.in_proj_bias", (None, hp, None))
    b.views[f"{name}.out_proj.weight"] = (e, heads, e // heads)
    b.entry(f"{name}.out_proj.weight", (out, hp, None))
    if m.out_proj.bias is not None:
        b.entry(f"{name}.out_proj.bias", (out,))
    return _Act(out, ndim - 1)


def _timm_attention(b: _Builder, name: str, m: nn.Module, x: _Act, ndim: int) -> _Act:
    """timm's `Attention`: `qkv.weight` viewed as [3, heads, head_dim, embed] and
    `proj.weight` as [embed, heads, head_dim], heads permuted as blocks (see `_attention`)."""
    x = _fix_unless(b, x, x.perm == FIXED or (x.axis == ndim - 1 and x.block == 1))
    heads, e = int(m.num_heads), int(m.qkv.in_features)
    hp, out = b.new(heads), b.new(int(m.proj.out_features))
    b.views[f"{name}.qkv.weight"] = (3, heads, e // heads, e)
    b.entry(f"{name}.qkv.weight", (None, hp, None, x.perm))
    if m.qkv.bias is not None:
        b.views[f"{name}.qkv.bias"] = (3, heads, e // heads)
        b.entry(f"{name}.qkv.bias", (None, hp, None))
    b.views[f"{name}.proj.weight"] = (int(m.proj.out_features), heads, e // heads)
    b.entry(f"{name}.proj.weight", (out, hp, None))
    if m.proj.bias is not None:
        b.entry(f"{name}.proj.bias", (out,))
    for norm in ("q_norm", "k_norm"):  # over head_dim, shared by every head: not permuted
        for key, p in getattr(m, norm).named_parameters():
            b.entry(f"{name}.{norm}.{key}", (None,) * p.dim())
    return _Act(out, ndim - 1)


def _opaque(b: _Builder, ins: list[_Act], what: str) -> _Act:
    """An operation whose effect on channels is not modelled: its inputs' channels are fixed and
    its output starts fixed, so no permutation crosses it (the function is kept)."""
    log.debug("automatic permutation spec: %s keeps its channels in place", what)
    for a in ins:
        b.union(a.perm, FIXED)
    return _Act(FIXED, 1)


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


def _function(
    node: fx.Node, ins: list[_Act], b: _Builder, acts: dict[fx.Node, _Act]
) -> _Act | None:
    fn = node.target
    if _shape(node) is None:
        return None  # sizes, shapes: no tensor
    if fn in _PASS_FUNCTIONS and ins:
        return ins[0]
    if fn is operator.getitem and ins and _is_tuple(node.args[0]):  # type: ignore[arg-type]
        # item 0 of a module's tuple: what the module returned as its output's act (item 1 of
        # attention, the weights averaged over heads, carries no channels)
        return ins[0] if node.args[1] == 0 else _Act(FIXED, 1)
    if fn in _JOIN_FUNCTIONS and ins:
        ins = _join_parameters(node, acts, b) or ins
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
    if fn in (torch.permute, torch.transpose) and ins:
        return _moved(node, ins[0], b, "permute" if fn is torch.permute else "transpose")
    if fn is torch.cat and ins:
        return _cat(node, ins, b, acts)
    return _opaque(b, ins, f"function {getattr(fn, '__name__', fn)}")


def _cat(node: fx.Node, ins: list[_Act], b: _Builder, acts: dict[fx.Node, _Act]) -> _Act:
    """`torch.cat` along the channels (DenseNet): the output's channels are the inputs' side by
    side, each segment permuted by its input's permutation (a concatenation variable). Along
    another axis (tokens), or with an input it cannot follow: opaque."""
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    parts = list(_tensor_args(tensors)) if isinstance(tensors, list | tuple) else []
    shapes = [s for a in parts if a in acts and (s := _shape(a)) is not None]
    n = len(_shape(node) or ())
    if not (parts and isinstance(dim, int) and n and len(shapes) == len(parts)):
        return _opaque(b, ins, "function cat")
    axis = dim % n
    part_acts = [acts[a] for a in parts]
    if not all(a.axis == axis and a.block == 1 for a in part_acts):
        return _opaque(b, ins, "function cat")
    sizes = [s[axis] for s in shapes]
    return _Act(b.concat(part_acts, sizes), axis)


def _join_parameters(node: fx.Node, acts: dict[fx.Node, _Act], b: _Builder) -> list[_Act]:
    """An elementwise op of activations and parameters (`x * gamma`, `x + pos_embed`): each
    parameter whose size on the activations' channel axis matches is permuted with them
    (recorded as an entry) instead of fixing the channels. Returns the activations' acts, or []
    when there is nothing of the kind."""
    args = list(_tensor_args(node.args))
    params = [a for a in args if a.op == "get_attr"]
    others = [acts[a] for a in args if a.op != "get_attr" and a in acts]
    out = _shape(node)
    if not params or not others or out is None or others[0].block != 1:
        return []
    x = others[0]
    for p in params:
        shape = _shape(p) or ()
        pos = x.axis - (len(out) - len(shape))
        if not (0 <= pos < len(shape)) or x.perm == FIXED or shape[pos] != out[x.axis]:
            b.union(x.perm, FIXED)
            return []
    for p in params:
        shape = _shape(p) or ()
        pos = x.axis - (len(out) - len(shape))
        b.entry(str(p.target), tuple(x.perm if i == pos else None for i in range(len(shape))))
    return others


def _moved(node: fx.Node, x: _Act, b: _Builder, how: str) -> _Act:
    """The channel axis after `permute(dims)` / `transpose(d0, d1)`."""
    n = len(_shape(node) or ())
    if x.block != 1 or not n:
        return _fix_unless(b, x, False)
    args = list(node.args[1:]) or list(node.kwargs.values())
    if how == "permute":
        if len(args) == 1 and isinstance(args[0], list | tuple):
            args = list(args[0])  # x.permute((0, 2, 3, 1)) as well as x.permute(0, 2, 3, 1)
        dims = [int(d) % n for d in args]
        if sorted(dims) != list(range(n)):
            return _fix_unless(b, x, False)
        return _Act(x.perm, dims.index(x.axis))
    d0, d1 = (int(d) % n for d in args[:2])
    axis = d1 if x.axis == d0 else d0 if x.axis == d1 else x.axis
    return _Act(x.perm, axis)


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
    if name in ("permute", "transpose"):
        return _moved(node, x, b, name)
    if name in ("mean", "sum", "amax"):
        before = _shape(node.args[0]) or ()
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        dims = [d % len(before) for d in dims]
        keep = bool(node.kwargs.get("keepdim", len(node.args) > 2 and node.args[2]))
        if dims and x.axis not in dims and x.block == 1:
            return _Act(x.perm, x.axis if keep else x.axis - sum(d < x.axis for d in dims))
        return _fix_unless(b, x, False)
    return _opaque(b, ins, f"method .{name}()")
