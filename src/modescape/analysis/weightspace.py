"""Flat parameter vectors, cosine similarity and distances in weight space (Fort et al. 2019).

Which parameters form θ is a named choice, recorded with every result:
- "all": every trainable parameter, kernels and biases (the paper);
- "kernels_bn": convolution / linear kernels plus normalisation gammas (BatchNorm in the seed
  notebooks; LayerNorm and GroupNorm treated alike for other networks);
- "no_bn_bias": convolution / linear kernels only.
BatchNorm running statistics are buffers, not parameters, and are never included.

Precision: dot products of ~1M-entry vectors are accumulated in float64. Cosines between
different members are ≈0.01, and the distance between two late snapshots comes from
‖a‖² + ‖b‖² − 2a·b, which cancels badly in float32.

Memory contract: every matrix comes from the Gram matrix G = W Wᵀ of the stacked vectors
W[models, P]. `gram_blockwise` builds G from column blocks of W (e.g. one parameter tensor of all
models at a time, as `iter_param_chunks` yields them), converting at most `max_columns` columns
to float64 at once, so 10 members × 41 snapshots of a 1M-parameter network never need the full
float64 W (3.3 GB); only the float32 block being multiplied and the [M, M] result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from modescape.errors import ModescapeError, choice_error
from modescape.models.registry import norm_parameter_names
from modescape.options import ParamSelection, values

PARAM_SELECTIONS = values(ParamSelection)
_KERNEL_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

StateDict = Mapping[str, torch.Tensor]
Tensor = torch.Tensor
Weights = Tensor | Sequence[StateDict]  # flat vectors [K, P] or K state dicts


def select_parameter_names(model: nn.Module, selection: str = "all") -> list[str]:
    """Names (as in `model.state_dict()`) of the parameters that form θ, in model order.

    Kernels are the `weight` of Conv1d/2d/3d and Linear modules; gammas the `weight` of the
    normalisation layers `models.registry.norm_parameter_names` finds (BatchNorm, LayerNorm,
    GroupNorm); their betas are biases, left out. For "kernels_bn" and "no_bn_bias", a parameter
    owned by any other module type raises ModescapeError: silently dropping it would change what
    θ means.
    """
    if selection not in PARAM_SELECTIONS:
        raise choice_error("parameter selection", selection, PARAM_SELECTIONS)
    norms = {n for names in norm_parameter_names(model).values() for n in names}
    names = []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if not param.requires_grad:
                continue
            if selection == "all":
                names.append(full)
                continue
            if isinstance(module, _KERNEL_MODULES):
                keep = param_name == "weight"
            elif full in norms:
                keep = param_name == "weight" and selection == "kernels_bn"
            else:
                raise ModescapeError(
                    f"parameter {full!r} belongs to a {type(module).__name__}, which selection "
                    f"{selection!r} does not know how to treat (known: Conv1d/2d/3d, Linear, "
                    "BatchNorm, LayerNorm, GroupNorm); use selection 'all'"
                )
            if keep:
                names.append(full)
    # named_modules visits modules in registration order, which is also state_dict order.
    return names


def flatten(
    state_dict: StateDict, names: Sequence[str], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Concatenate the named tensors of one state dict into θ: Tensor[P] of `dtype`."""
    missing = [n for n in names if n not in state_dict]
    if missing:
        raise ModescapeError(f"state dict lacks {len(missing)} parameter(s), e.g. {missing[0]!r}")
    if not names:
        return torch.zeros(0, dtype=dtype)
    return torch.cat([state_dict[n].detach().reshape(-1).to("cpu", dtype) for n in names])


def stack_flat(
    state_dicts: Sequence[StateDict], names: Sequence[str], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Flat vectors of several state dicts: Tensor[M, P]."""
    return torch.stack([flatten(sd, names, dtype) for sd in state_dicts])


def param_names(model: nn.Module) -> list[str]:
    """Names of the model's parameters, in the order of its flat vector (`named_parameters`)."""
    return [name for name, _ in model.named_parameters()]


def buffer_names(model: nn.Module) -> list[str]:
    """Names of the floating-point buffers (BatchNorm running mean/var), in module order.

    Integer buffers (`num_batches_tracked`) are left out: they never enter a forward pass in eval
    mode and cannot be interpolated.
    """
    return [name for name, b in model.named_buffers() if b.is_floating_point()]


def shapes_of(model: nn.Module, names: Sequence[str]) -> list[torch.Size]:
    """Shapes of the named parameters or buffers of `model`."""
    state = model.state_dict()
    return [state[name].shape for name in names]


def flatten_params(state_dict: StateDict, names: Sequence[str]) -> Tensor:
    """`flatten` in float32, the precision networks are evaluated in: `[P]`."""
    return flatten(state_dict, names, torch.float32)


def unflatten(
    vector: Tensor, names: Sequence[str], shapes: Sequence[torch.Size]
) -> dict[str, Tensor]:
    """Split `vector[..., P]` into named tensors of `shapes` (views, no copy; leading dims kept)."""
    sizes = [math.prod(s) for s in shapes]
    if vector.shape[-1] != sum(sizes):
        raise ModescapeError(
            f"flat vector has {vector.shape[-1]} entries, the model needs {sum(sizes)}"
        )
    lead = vector.shape[:-1]
    parts = torch.split(vector, sizes, dim=-1)
    return {n: p.view(*lead, *s) for n, p, s in zip(names, parts, shapes)}


def as_flat(model: nn.Module, weights: Weights) -> tuple[Tensor, Tensor | None]:
    """`weights` as `(params[K, P], buffers[K, B] or None)`.

    A list of state dicts gives its buffers too (when they hold them); a tensor gives none.
    """
    if isinstance(weights, Tensor):
        flat = weights.float()
        if flat.dim() == 1:
            flat = flat[None]
        return flat, None
    pnames, bnames = param_names(model), buffer_names(model)
    params = torch.stack([flatten_params(sd, pnames) for sd in weights])
    has_buffers = bool(bnames) and all(all(n in sd for n in bnames) for sd in weights)
    buffers = torch.stack([flatten_params(sd, bnames) for sd in weights]) if has_buffers else None
    return params, buffers


def iter_param_chunks(
    state_dicts: Sequence[StateDict], names: Sequence[str]
) -> Iterable[torch.Tensor]:
    """Yield W one parameter at a time: for each name, Tensor[M, numel] across the M models.

    The mappings may be lazy (e.g. backed by safetensors' `safe_open`): each tensor is read once.
    """
    for name in names:
        yield torch.stack([sd[name].detach().reshape(-1).cpu() for sd in state_dicts])


def gram_blockwise(chunks: Iterable[torch.Tensor], max_columns: int = 1 << 16) -> np.ndarray:
    """Gram matrix G = W Wᵀ (float64 [M, M]) from column blocks of W.

    chunks: tensors [M, p_i] (any float dtype) whose concatenation along dim 1 is W[M, P]. Each
    is converted to float64 at most `max_columns` columns at a time.
    """
    gram = None
    for chunk in chunks:
        chunk = torch.as_tensor(chunk)
        if chunk.ndim != 2:
            raise ModescapeError(f"Gram chunks must be [models, columns], got {tuple(chunk.shape)}")
        if gram is None:
            gram = torch.zeros(chunk.shape[0], chunk.shape[0], dtype=torch.float64)
        elif chunk.shape[0] != gram.shape[0]:
            raise ModescapeError(f"chunk has {chunk.shape[0]} models, expected {gram.shape[0]}")
        for start in range(0, chunk.shape[1], max_columns):
            block = chunk[:, start : start + max_columns].to(torch.float64)
            gram += block @ block.T
    if gram is None:
        raise ModescapeError("no parameters to compare (empty selection?)")
    return gram.numpy()


def _gram(W: torch.Tensor | np.ndarray) -> np.ndarray:
    W = torch.as_tensor(W)
    if W.ndim != 2:
        raise ModescapeError(f"W must be [models, parameters], got {tuple(W.shape)}")
    return gram_blockwise([W])


def gram_to_cosine(gram: np.ndarray) -> np.ndarray:
    """cos[i, j] = G_ij / (‖θ_i‖ ‖θ_j‖); a zero vector gives NaN in its row and column."""
    norms = np.sqrt(np.diag(gram))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = gram / np.outer(norms, norms)
    return np.clip(cos, -1.0, 1.0)  # rounding can push |cos| of parallel vectors past 1


def gram_to_distance(gram: np.ndarray) -> np.ndarray:
    """L2 distances ‖θ_i − θ_j‖ from the Gram matrix (float64; exact zero diagonal)."""
    sq = np.diag(gram)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def cosine_matrix(W: torch.Tensor | np.ndarray) -> np.ndarray:
    """Raw (uncentred) cosine similarity of the rows of W[M, P]: float64 [M, M]."""
    return gram_to_cosine(_gram(W))


def distance_matrix(W: torch.Tensor | np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of W[M, P]: float64 [M, M]."""
    return gram_to_distance(_gram(W))


@dataclass(frozen=True)
class TrajectoryMatrices:
    """Cosines and distances among all snapshots of several trajectories.

    Rows and columns of `cosine` and `distance` are member-major: index m·E + e is member m after
    snapshot e. Snapshot 0 is each trajectory's first stored point (its initialisation when the
    run keeps one), which `distance_from_start` measures from.
    """

    cosine: np.ndarray  # [M·E, M·E]
    distance: np.ndarray  # [M·E, M·E]
    norms: np.ndarray  # [M, E], ‖θ‖ of every snapshot
    n_members: int
    n_epochs: int

    def _pick(self, kind: str) -> np.ndarray:
        if kind not in ("cosine", "distance"):
            raise choice_error("matrix kind", kind, ("cosine", "distance"))
        return self.cosine if kind == "cosine" else self.distance

    def full(self, kind: str = "cosine") -> np.ndarray:
        """The (members·epochs)² matrix."""
        return self._pick(kind)

    def within(self, kind: str = "cosine") -> np.ndarray:
        """Each trajectory against itself: [M, E, E]."""
        M, E = self.n_members, self.n_epochs
        blocks = self._pick(kind).reshape(M, E, M, E)
        return blocks[np.arange(M), :, np.arange(M), :]

    def across(self, kind: str = "cosine", epoch: int = -1) -> np.ndarray:
        """Members against each other at one snapshot (default the final one): [M, M]."""
        E = self.n_epochs
        if not -E <= epoch < E:
            raise ModescapeError(f"epoch {epoch} out of range for {E} snapshots")
        idx = np.arange(self.n_members) * E + (epoch % E)
        return self._pick(kind)[np.ix_(idx, idx)]

    def distance_from_start(self) -> np.ndarray:
        """‖θ_{m,e} − θ_{m,0}‖ for every member and snapshot: [M, E]."""
        return self.within("distance")[:, :, 0]


def trajectory_matrices_from_gram(
    gram: np.ndarray, n_members: int, n_epochs: int
) -> TrajectoryMatrices:
    """Wrap a member-major Gram matrix [M·E, M·E] (e.g. from `gram_blockwise`)."""
    if gram.shape != (n_members * n_epochs, n_members * n_epochs):
        raise ModescapeError(f"Gram matrix {gram.shape} does not fit {n_members}×{n_epochs}")
    norms = np.sqrt(np.diag(gram)).reshape(n_members, n_epochs)
    return TrajectoryMatrices(
        gram_to_cosine(gram), gram_to_distance(gram), norms, n_members, n_epochs
    )


def trajectory_matrices(
    snapshots: torch.Tensor | np.ndarray | Sequence[Sequence[StateDict]],
    names: Sequence[str] | None = None,
    max_columns: int = 1 << 16,
) -> TrajectoryMatrices:
    """Within-trajectory, across-member and full cosine/distance matrices in one Gram pass.

    snapshots: either W[members, epochs, P] (flat vectors), or for each member the list of its
    snapshot state dicts (same length for every member; mappings may be lazy), with `names` from
    `select_parameter_names`. The second form goes through `gram_blockwise`, one parameter
    tensor of all M·E snapshots at a time.
    """
    if isinstance(snapshots, torch.Tensor | np.ndarray):
        W = torch.as_tensor(snapshots)
        if W.ndim != 3:
            raise ModescapeError(f"W must be [members, epochs, P], got {tuple(W.shape)}")
        M, E = W.shape[:2]
        gram = gram_blockwise([W.reshape(M * E, -1)], max_columns)
        return trajectory_matrices_from_gram(gram, M, E)
    if names is None:
        raise ModescapeError("names are required when snapshots are state dicts")
    lengths = {len(member) for member in snapshots}
    if len(lengths) != 1:
        raise ModescapeError(f"members have different snapshot counts: {sorted(lengths)}")
    flat = [sd for member in snapshots for sd in member]
    gram = gram_blockwise(iter_param_chunks(flat, names), max_columns)
    return trajectory_matrices_from_gram(gram, len(snapshots), lengths.pop())


def average_state_dicts(state_dicts: Sequence[StateDict]) -> dict[str, torch.Tensor]:
    """Weight averaging: the element-wise mean of several state dicts of one architecture.

    Floating tensors (parameters and float buffers such as BN running means) are averaged in
    float64 and cast back to their dtype; integer/bool buffers (e.g. BN `num_batches_tracked`)
    are taken from the last state dict. Averaged BN running statistics do not describe the
    averaged weights: recompute them (a pass over training batches in train mode) before use.
    """
    if not state_dicts:
        raise ModescapeError("nothing to average")
    keys = list(state_dicts[-1].keys())
    for i, sd in enumerate(state_dicts):
        if set(sd.keys()) != set(keys):
            raise ModescapeError(f"state dict {i} has different keys from the last one")
    out = {}
    for key in keys:
        last = state_dicts[-1][key]
        if not torch.is_floating_point(last):
            out[key] = last.clone()
            continue
        shapes = {tuple(sd[key].shape) for sd in state_dicts}
        if len(shapes) != 1:
            raise ModescapeError(f"tensor {key!r} has different shapes: {sorted(shapes)}")
        mean = torch.stack([sd[key].detach().to(torch.float64) for sd in state_dicts]).mean(0)
        out[key] = mean.to(last.dtype)
    return out
