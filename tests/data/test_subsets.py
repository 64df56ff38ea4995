"""Seeded, stratified subsets, and the data settings around them (normalize, transforms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_data import write_binary_cifar10

from modescape.config import DataConfig, RunConfig
from modescape.data.datasets import fingerprint, load_dataset, scale_pixels, unscale_pixels
from modescape.data.subsets import class_quota, stratified_subset
from modescape.data.transforms import register_transform
from modescape.errors import ModescapeError


def test_quota_by_largest_remainder_matches_a_hand_count():
    # 10 of 50/30/20: exactly 5/3/2; 7 of them: 3.5/2.1/1.4 -> floors 3/2/1, one left for the
    # largest remainder (class 0's 0.5)
    assert class_quota(np.array([50, 30, 20]), 10).tolist() == [5, 3, 2]
    assert class_quota(np.array([50, 30, 20]), 7).tolist() == [4, 2, 1]
    assert class_quota(np.array([1, 99]), 50).sum() == 50


def test_subset_is_stratified_seeded_and_sorted():
    y = np.repeat(np.arange(4), [40, 30, 20, 10])
    a = stratified_subset(y, 20, seed=3, what="train")
    assert np.all(np.diff(a) > 0) and len(a) == 20
    assert np.bincount(y[a]).tolist() == [8, 6, 4, 2]
    assert np.array_equal(a, stratified_subset(y, 20, seed=3, what="train"))
    assert not np.array_equal(a, stratified_subset(y, 20, seed=4, what="train"))
    assert not np.array_equal(a, stratified_subset(y, 20, seed=3, what="test"))
    assert len(stratified_subset(y, 0, 0)) == len(y) == len(stratified_subset(y, 10**6, 0))
    with pytest.raises(ModescapeError, match="subset size"):
        stratified_subset(y, -1, 0)


def test_dataset_subsets_are_recorded_in_the_fingerprint(tmp_path):
    root = tmp_path / "c10"
    write_binary_cifar10(root, n_train=60, n_test=30)
    full = load_dataset("cifar10", root, cache_dir=tmp_path / "cache")
    small = load_dataset(
        "cifar10", root, cache_dir=tmp_path / "cache", train_size=20, test_size=10, val_size=5
    )
    assert (len(small.y_train), len(small.y_val), len(small.y_test)) == (15, 5, 10)
    # the subset's rows are rows of the full split, in their order
    keep = stratified_subset(full.y_train.numpy(), 20, 0, "train")
    assert torch.equal(torch.cat([small.x_train, small.x_val]), full.x_train[keep])
    other = load_dataset(
        "cifar10", root, cache_dir=tmp_path / "cache", train_size=20, test_size=10, val_size=5,
        subset_seed=1,
    )  # fmt: skip
    fps = [fingerprint(d) for d in (full, small, other)]
    assert "subset" not in fps[0] and fps[1]["subset"]["train_size"] == 20
    assert fps[1] != fps[2] and fps[1]["sizes"] == fps[2]["sizes"]


def test_normalize_is_torchvision_to_tensor_then_normalize(tmp_path):
    root = tmp_path / "c10"
    write_binary_cifar10(root, n_train=20, n_test=10)
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616)
    raw = load_dataset("cifar10", root, cache_dir=tmp_path / "cache", scaling="raw")
    d = load_dataset(
        "cifar10", root, cache_dir=tmp_path / "cache", scaling="normalize", mean=mean, std=std
    )
    # torchvision: ToTensor() = uint8 / 255; Normalize: (x - mean) / std per channel
    ref = (raw.x_test / 255.0 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert torch.allclose(d.x_test, ref, atol=1e-6)
    u8 = load_dataset(
        "cifar10", root, cache_dir=tmp_path / "cache", scaling="normalize", mean=mean, std=std,
        pixels="uint8",
    )  # fmt: skip
    assert torch.equal(scale_pixels(u8.x_test, u8.source), d.x_test)
    assert torch.allclose(unscale_pixels(d.x_test, d.source), raw.x_test, atol=1e-3)
    assert fingerprint(d)["mean"] == list(mean)
    with pytest.raises(ModescapeError, match="one number per channel"):
        load_dataset("cifar10", root, cache_dir=tmp_path / "cache", scaling="normalize",
                     mean=(0.5,), std=(0.5,))  # fmt: skip


def test_a_registered_transform_applies_to_every_path(tmp_path):
    root = tmp_path / "c10"
    write_binary_cifar10(root, n_train=20, n_test=10)
    register_transform("own-negate", lambda x: -x, replace=True)
    plain = load_dataset("cifar10", root, cache_dir=tmp_path / "cache")
    d = load_dataset("cifar10", root, cache_dir=tmp_path / "cache", transform="own-negate")
    u8 = load_dataset(
        "cifar10", root, cache_dir=tmp_path / "cache", transform="own-negate", pixels="uint8"
    )
    assert torch.equal(d.x_train, -plain.x_train)
    assert torch.equal(scale_pixels(u8.x_test, u8.source), d.x_test)
    assert fingerprint(d)["transform"] == "own-negate"
    register_transform("own-bad", lambda x: x[:, :1], replace=True)
    with pytest.raises(ModescapeError, match="shape"):
        load_dataset("cifar10", root, cache_dir=tmp_path / "cache", transform="own-bad")
    with pytest.raises(ModescapeError, match="register_transform"):
        load_dataset("cifar10", root, cache_dir=tmp_path / "cache", transform="nope")


def test_data_settings_validated_where_they_enter():
    cfg = RunConfig().with_overrides(["data.train_size=200", "data.test_size=100"])
    assert (cfg.data.train_size, cfg.data.test_size) == (200, 100)
    c10 = ["data.name=cifar10", "data.root=x", "data.scaling=normalize"]
    cfg = RunConfig().with_overrides([*c10, "data.mean=[0.5,0.5,0.5]", "data.std=[0.2,0.2,0.2]"])
    assert cfg.data.mean == (0.5, 0.5, 0.5)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ModescapeError, match=r"needs data\.mean"):
        RunConfig().with_overrides(c10)
    with pytest.raises(ModescapeError, match=r"only to data\.scaling"):
        DataConfig(mean=(0.5,), std=(0.5,))
    with pytest.raises(ModescapeError, match="val_size"):
        DataConfig(train_size=10, val_size=10)
    with pytest.raises(ModescapeError, match=r"data\.train_size must be >= 0"):
        DataConfig(train_size=-1)
