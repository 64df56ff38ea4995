"""A torch Dataset or DataLoader wherever the engine and the landscape take `x: Tensor`."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from modescape.analysis import landscape
from modescape.analysis.engine import batched
from modescape.analysis.engine.inputs import materialize
from modescape.errors import ModescapeError


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(24, 3)
    )


def _data(n: int = 20):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def test_dataset_and_loader_give_the_tensor_results():
    model, (x, y) = _bn_net(), _data()
    weights = [model.state_dict(), {k: v * 1.1 for k, v in model.state_dict().items()}]
    ref = batched.evaluate_many(model, weights, x)
    ds = TensorDataset(x, y)
    assert torch.equal(batched.evaluate_many(model, weights, ds), ref)
    assert torch.equal(batched.evaluate_many(model, weights, DataLoader(ds, batch_size=7)), ref)
    scores = batched.score_many(model, weights, DataLoader(ds, batch_size=6))  # labels from items
    assert torch.equal(scores.accuracy, batched.score_many(model, weights, x, y).accuracy)


class _NumpyItems(Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        return np.zeros((1, 8), np.float32), i


def test_non_tensor_items_are_a_clear_error():
    with pytest.raises(ModescapeError, match=r"item 0 of the inputs holds a ndarray, not a tensor"):
        materialize(_NumpyItems())
    x, y = materialize(TensorDataset(*_data(5)))
    assert x.shape == (5, 1, 8) and y.dtype == torch.int64
    with pytest.raises(ModescapeError, match="labels are needed"):
        landscape.interpolate_path(_bn_net(), *_two_points(), TensorDataset(_data(5)[0]))


def _two_points():
    sd = _bn_net().state_dict()
    return sd, {k: v + 0.1 if v.is_floating_point() else v for k, v in sd.items()}


def test_batchnorm_without_train_x_falls_back_to_interpolate(caplog):
    model, (x, y) = _bn_net(), _data()
    s1, s2 = _two_points()
    with caplog.at_level(logging.WARNING, logger="modescape"):
        path = landscape.interpolate_path(model, s1, s2, TensorDataset(x, y), n_points=3)
    assert path.bn_policy == "interpolate"
    assert "interpolate" in caplog.text and "train_x" in caplog.text
    same = landscape.interpolate_path(model, s1, s2, x, y, n_points=3, bn_policy="interpolate")
    assert torch.equal(path.loss, same.loss)
    loader = DataLoader(TensorDataset(_data(40)[0]), batch_size=16)
    recomputed = landscape.interpolate_path(
        model, s1, s2, x, y, n_points=3, train_x=loader, bn_batches=2, bn_batch_size=16
    )
    assert recomputed.bn_policy == "recompute"
    assert not torch.equal(recomputed.loss, path.loss)
    plane = landscape.evaluate_plane(
        model, {k: v * 0 for k, v in s1.items()}, s1, s2, x, y, resolution=3, progress=False
    )
    assert plane.bn_policy == "interpolate"


def test_a_shuffled_loader_gives_the_same_barrier_on_every_call():
    """BatchNorm statistics recomputed from `train_x` do not depend on the loader's order."""
    model, (x, y) = _bn_net(), _data(64)
    other = {k: v * 0.9 + 0.05 for k, v in model.state_dict().items()}
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    xs, ys = materialize(loader)
    assert torch.equal(xs, x) and torch.equal(ys, y)  # read in the dataset's order
    paths = [
        landscape.interpolate_path(model, model.state_dict(), other, x, y, n_points=5,
                                   train_x=loader, bn_batches=1, bn_batch_size=16)
        for _ in range(2)
    ]  # fmt: skip
    ref = landscape.interpolate_path(model, model.state_dict(), other, x, y, n_points=5,
                                     train_x=x, bn_batches=1, bn_batch_size=16)  # fmt: skip
    assert paths[0].loss_barrier == paths[1].loss_barrier == ref.loss_barrier


def test_plane_settings_by_their_cli_name_or_a_clear_error():
    model, (x, y) = _bn_net(), _data()
    sd = model.state_dict()
    t1 = {k: v * 1.1 for k, v in sd.items()}
    t2 = {k: v * 0.9 + 0.01 for k, v in sd.items()}
    plane = landscape.evaluate_plane(model, sd, t1, t2, x, y, grid=5, train_x=x)
    assert len(plane.a_values) >= 5  # grid= is the CLI's --grid: the resolution
    with pytest.raises(ModescapeError, match=r"unknown keyword argument 'gird'.*resolution"):
        landscape.evaluate_plane(model, sd, t1, t2, x, y, gird=5, train_x=x)
