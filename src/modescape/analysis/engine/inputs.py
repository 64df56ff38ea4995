"""Inputs as tensors: a torch `Dataset` or `DataLoader` wherever the engine takes `x: Tensor`.

The engine evaluates many weight points on the same examples, so the examples are materialised
once, in order, into one `[N, ...]` tensor (and labels `int64[N]` when the items carry them):
streaming them again for every chunk of points would cost far more than holding them. Items
may be a tensor, or a tuple/list `(x, y, ...)` whose first entry is the input and second the
label (a tensor or an int). Anything else (a PIL image, a NumPy array from a transform-less
dataset) is a ModescapeError naming the item: converting it is the dataset's job.

A shuffled DataLoader (`shuffle=True`, a RandomSampler) is read in its dataset's index order
(same batch size and collate function): a fresh permutation per call would make identical calls
differ, e.g. in the BatchNorm statistics recomputed from the first batches of `train_x`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from modescape.errors import ModescapeError

Inputs = Tensor | Dataset | DataLoader


def _split_item(item: Any, where: str) -> tuple[Tensor, Tensor | None]:
    x, y = (item[0], item[1] if len(item) > 1 else None) if isinstance(item, tuple | list) else (
        item, None
    )  # fmt: skip
    if not torch.is_tensor(x):
        raise ModescapeError(
            f"{where} holds a {type(x).__name__}, not a tensor: give the dataset a transform "
            "that returns tensors (e.g. torchvision.transforms.ToTensor())"
        )
    if y is not None and not torch.is_tensor(y):
        if not isinstance(y, int):
            raise ModescapeError(f"{where}: the label is a {type(y).__name__}, not an int")
        y = torch.tensor(y)
    return x, y


def _items(data: Dataset | DataLoader) -> tuple[Iterable[Any], bool]:
    """(items or batches, whether they are batches)."""
    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler) and not data.sampler.replacement:
            ordered = DataLoader(data.dataset, batch_size=data.batch_size or 1, shuffle=False,
                                 collate_fn=data.collate_fn)  # fmt: skip
            return ordered, True
        return data, True
    if isinstance(data, IterableDataset) or not hasattr(data, "__len__"):
        return data, False
    return (data[i] for i in range(len(data))), False  # type: ignore[arg-type]


def materialize(data: Inputs, what: str = "inputs") -> tuple[Tensor, Tensor | None]:
    """`(x[N, ...], y int64[N] or None)` of a tensor, a Dataset or a DataLoader, in its order."""
    if torch.is_tensor(data):
        return data, None
    if not isinstance(data, Dataset | DataLoader):
        raise ModescapeError(
            f"{what} must be a tensor, a torch Dataset or a DataLoader, got {type(data).__name__}"
        )
    items, batched = _items(data)
    xs, ys = [], []
    for i, item in enumerate(items):
        x, y = _split_item(item, f"{'batch' if batched else 'item'} {i} of the {what}")
        xs.append(x if batched else x[None])
        ys.append(y if y is None or batched else y.reshape(1))
    if not xs:
        raise ModescapeError(f"the {what} hold no examples")
    labelled = [y is not None for y in ys]
    if any(labelled) and not all(labelled):
        raise ModescapeError(f"some items of the {what} carry labels and some do not")
    x = torch.cat(xs)
    y = torch.cat(ys).long() if all(labelled) else None
    return x, y


def inputs(data: Inputs, what: str = "inputs") -> Tensor:
    """The input tensor `[N, ...]` of a tensor, Dataset or DataLoader (labels dropped)."""
    return materialize(data, what)[0]


def inputs_and_labels(
    data: Inputs, y: Tensor | None, what: str = "inputs"
) -> tuple[Tensor, Tensor]:
    """`(x, y)`: labels given explicitly win; else those the dataset's items carry."""
    x, own = materialize(data, what)
    labels = y if y is not None else own
    if labels is None:
        raise ModescapeError(f"labels are needed: pass y, or {what} whose items are (x, y)")
    if len(labels) != len(x):
        raise ModescapeError(f"{len(x)} examples but {len(labels)} labels")
    return x, labels
