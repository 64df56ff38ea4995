"""load_dataset: MNIST-1D generation, splits, scalings, caching, errors; the real CIFAR-10."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CIFAR10_CLASSES, SHARED
from mnist1d.data import get_dataset_args, make_dataset
from PIL import Image

from modescape.data import cifar
from modescape.data.datasets import DATASETS, SCALINGS, fingerprint, load_dataset
from modescape.errors import ModescapeError

REAL_CIFAR10 = SHARED / "datasets" / "cifar10-jpg.tar.gz"
CLASSES10 = CIFAR10_CLASSES


def write_binary_cifar10(folder: Path, n_train: int = 30, n_test: int = 10, seed: int = 0):
    """The official binary layout: records of 1 label byte + 3072 channel-major pixel bytes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n_train + n_test, 3, 32, 32), dtype=np.uint8)
    x[:, 1] //= 2  # channels with different statistics, so per-channel scaling is visible
    y = rng.integers(0, 10, size=n_train + n_test).astype(np.uint8)
    rec = np.concatenate([y[:, None], x.reshape(len(x), 3072)], 1)
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(rec[:n_train], 5), start=1):
        (folder / f"data_batch_{i}.bin").write_bytes(part.tobytes())
    (folder / "test_batch.bin").write_bytes(rec[n_train:].tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(CLASSES10) + "\n")
    return x[:n_train], y[:n_train].astype(np.int64), x[n_train:], y[n_train:].astype(np.int64)


def test_mnist1d_is_the_generator_output_and_leaves_global_rng_alone(tmp_path):
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(3), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = load_dataset("mnist1d", cache_dir=tmp_path, mnist1d_samples=500, mnist1d_seed=7)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)
    assert random.random() == expected_py
    assert ds.source["from_cache"] is False

    args = get_dataset_args()
    args.num_samples, args.seed = 500, 7
    ref = make_dataset(args)  # the independent reference: the generator called directly
    assert ds.x_train.shape == (400, 1, 40) and ds.x_test.shape == (100, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy(), ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test.numpy(), ref["y_test"])
    assert ds.x_val.shape == (0, 1, 40) and ds.y_val.shape == (0,)
    assert ds.in_shape == (1, 40) and ds.num_classes == 10
    assert ds.source["scaling"].startswith("none") and ds.source["scaling_requested"] == "unit"

    again = load_dataset("mnist1d", cache_dir=tmp_path, mnist1d_samples=500, mnist1d_seed=7)
    assert again.source["from_cache"] is True
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    other = load_dataset("mnist1d", cache_dir=tmp_path, mnist1d_samples=500, mnist1d_seed=8)
    assert other.source["from_cache"] is False and not torch.equal(other.x_train, ds.x_train)
    # scaling does not touch MNIST-1D
    std = load_dataset(
        "mnist1d", cache_dir=tmp_path, mnist1d_samples=500, mnist1d_seed=7, scaling="standardize"
    )
    assert std.source["scaling_requested"] == "standardize"
    assert torch.equal(std.x_train, ds.x_train)


def test_validation_split_is_the_last_training_examples(tmp_path):
    full = load_dataset("mnist1d", cache_dir=tmp_path, mnist1d_samples=200)
    ds = load_dataset("mnist1d", cache_dir=tmp_path, mnist1d_samples=200, val_size=15)
    assert len(ds.x_train) == 145 and len(ds.x_val) == 15 and len(ds.x_test) == 40
    assert torch.equal(ds.x_train, full.x_train[:145]) and torch.equal(ds.x_val, full.x_train[145:])
    assert torch.equal(ds.y_val, full.y_train[145:]) and torch.equal(ds.x_test, full.x_test)
    assert ds.source["val_size"] == 15 and ds.source["n_train"] == 145
    for bad in (-1, 160, 1000, 1.5, True):
        with pytest.raises(ModescapeError, match=r"val_size must be an integer in 0\.\.159"):
            load_dataset("mnist1d", cache_dir=tmp_path, mnist1d_samples=200, val_size=bad)


def test_scalings_raw_unit_standardize(tmp_path):
    xtr, ytr, xte, yte = write_binary_cifar10(tmp_path / "cifar-10-batches-bin")
    kw = {"cache_dir": tmp_path / "cache", "val_size": 10}
    raw = load_dataset("cifar10", tmp_path, scaling="raw", **kw)
    np.testing.assert_array_equal(raw.x_train.numpy(), xtr[:20].astype(np.float32))
    np.testing.assert_array_equal(raw.x_val.numpy(), xtr[20:].astype(np.float32))
    np.testing.assert_array_equal(raw.y_train.numpy(), ytr[:20])
    np.testing.assert_array_equal(raw.y_test.numpy(), yte)
    assert raw.in_shape == (3, 32, 32) and raw.classes == CLASSES10

    unit = load_dataset("cifar10", tmp_path, scaling="unit", **kw)
    np.testing.assert_array_equal(unit.x_test.numpy(), xte.astype(np.float32) / np.float32(255))
    assert unit.x_train.max() <= 1 and unit.x_train.min() >= 0

    std = load_dataset("cifar10", tmp_path, scaling="standardize", **kw)
    ref = xtr[:20].astype(np.float64)  # statistics of the train split only, not validation
    mean, sd = ref.mean(axis=(0, 2, 3)), ref.std(axis=(0, 2, 3))
    np.testing.assert_allclose(std.source["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(std.source["std"], sd, rtol=1e-6)
    np.testing.assert_allclose(std.x_train.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std(dim=(0, 2, 3), correction=0).numpy(), 1, rtol=1e-5)
    expected_test = (xte - mean[None, :, None, None]) / sd[None, :, None, None]
    np.testing.assert_allclose(std.x_test.numpy(), expected_test, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        std.x_val.numpy(),
        (xtr[20:] - mean[:, None, None]) / sd[:, None, None],
        rtol=1e-5,
        atol=1e-5,
    )
    json.dumps(std.source)  # the record goes into run manifests


def test_decoded_images_are_cached_and_not_decoded_again(tmp_path, monkeypatch):
    calls = []
    real_decode = cifar._decode
    monkeypatch.setattr(cifar, "_decode", lambda files, p: calls.append(p) or real_decode(files, p))
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for k in range(n):
            p = root / split / ("cat", "dog")[k % 2] / f"{k}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)).save(p)
    cache = tmp_path / "cache"

    first = load_dataset("folder", root, cache_dir=cache, scaling="raw")
    n_first = len(calls)
    assert n_first >= 8 and first.source["from_cache"] is False
    folder = Path(first.source["cache"])
    assert {p.name for p in folder.iterdir()} == {
        "x_train.npy",
        "y_train.npy",
        "x_test.npy",
        "y_test.npy",
        "meta.json",
    }
    assert np.load(folder / "x_train.npy", allow_pickle=False).dtype == np.uint8
    assert np.load(folder / "y_train.npy", allow_pickle=False).dtype == np.int64

    second = load_dataset("folder", root, cache_dir=cache, scaling="raw")
    assert len(calls) == n_first and second.source["from_cache"] is True
    assert torch.equal(second.x_train, first.x_train) and torch.equal(second.y_test, first.y_test)
    assert second.classes == ("cat", "dog") and second.in_shape == (3, 5, 4)

    # a damaged cache is rebuilt, not trusted
    (folder / "x_test.npy").write_bytes(b"\x93NUMPY truncated")
    third = load_dataset("folder", root, cache_dir=cache, scaling="raw")
    assert len(calls) > n_first and third.source["from_cache"] is False
    assert torch.equal(third.x_test, first.x_test)

    # bytes flipped inside a cached array (still a valid .npy) are caught by its checksum
    n_before = len(calls)
    data = bytearray((folder / "x_train.npy").read_bytes())
    data[-1] ^= 0xFF
    (folder / "x_train.npy").write_bytes(bytes(data))
    fifth = load_dataset("folder", root, cache_dir=cache, scaling="raw")
    assert len(calls) > n_before and fifth.source["from_cache"] is False
    assert torch.equal(fifth.x_train, first.x_train)

    # a changed folder is a different source: new key, decoded again
    n_before = len(calls)
    Image.fromarray(rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)).save(root / "train/cat/9.png")
    fourth = load_dataset("folder", root, cache_dir=cache, scaling="raw")
    assert fourth.source["sha256"] != first.source["sha256"] and len(fourth.x_train) == 7
    assert len(calls) > n_before


def test_bad_options_are_named(tmp_path):
    with pytest.raises(ModescapeError, match=r"unknown dataset 'cifar11' \(allowed: mnist1d, "):
        load_dataset("cifar11")
    with pytest.raises(ModescapeError, match=r"unknown scaling 'minmax' \(allowed: raw, unit"):
        load_dataset("mnist1d", scaling="minmax")
    with pytest.raises(ModescapeError, match="needs root"):
        load_dataset("cifar10", cache_dir=tmp_path)
    with pytest.raises(ModescapeError, match="does not exist"):
        load_dataset("cifar100", tmp_path / "missing", cache_dir=tmp_path)
    with pytest.raises(ModescapeError, match="mnist1d_samples"):
        load_dataset("mnist1d", cache_dir=tmp_path, mnist1d_samples=0)
    assert DATASETS == ("mnist1d", "cifar10", "cifar100", "folder")
    assert SCALINGS == ("raw", "unit", "standardize", "normalize")


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CIFAR10.is_file(), reason=f"{REAL_CIFAR10} (real CIFAR-10) is absent")
def test_real_cifar10_jpeg_archive(tmp_path):
    ds = load_dataset("cifar10", REAL_CIFAR10, cache_dir=tmp_path, scaling="unit")
    assert ds.x_train.shape == (50_000, 3, 32, 32) and ds.x_test.shape == (10_000, 3, 32, 32)
    assert ds.classes == CLASSES10 and ds.in_shape == (3, 32, 32)
    assert torch.equal(torch.bincount(ds.y_train), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(ds.y_test), torch.full((10,), 1000))
    # official CIFAR-10 test-set channel means (JPEG agrees to about three decimals)
    means = ds.x_test.mean(dim=(0, 2, 3)).numpy()
    np.testing.assert_allclose(means, [0.4942, 0.4851, 0.4504], atol=2e-3)
    cached = load_dataset("cifar10", REAL_CIFAR10, cache_dir=tmp_path, val_size=500)
    assert cached.source["from_cache"] is True and len(cached.x_val) == 500
    assert len(torch.unique(cached.y_val)) == 10  # the fixed order mixes classes
    assert torch.equal(cached.x_train, ds.x_train[:49_500])


def _image_folder(root: Path, classes: tuple[str, ...], n: int = 4) -> None:
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for k in range(n):
            p = root / split / classes[k % len(classes)] / f"{k}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(p)


def test_one_class_folder_is_refused(tmp_path):
    _image_folder(tmp_path / "one", ("cat",))
    with pytest.raises(ModescapeError, match=r"found 1 class \(cat\).*at least 2"):
        load_dataset("folder", tmp_path / "one", cache_dir=tmp_path / "cache")


def test_fingerprint_changes_with_the_data(tmp_path):
    root = tmp_path / "pets"
    _image_folder(root, ("cat", "dog"))
    a = fingerprint(load_dataset("folder", root, cache_dir=tmp_path / "c"))
    assert a == fingerprint(load_dataset("folder", root, cache_dir=tmp_path / "c"))
    assert a["classes"] == ["cat", "dog"] and a["sizes"] == {"train": 4, "val": 0, "test": 4}
    _image_folder(root, ("cat", "dog"), n=6)  # two more images per split
    b = fingerprint(load_dataset("folder", root, cache_dir=tmp_path / "c"))
    assert b["source_sha256"] != a["source_sha256"] and b["sizes"]["train"] == 6
    m1 = fingerprint(load_dataset("mnist1d", mnist1d_samples=100, cache_dir=tmp_path / "c"))
    m2 = fingerprint(load_dataset("mnist1d", mnist1d_samples=120, cache_dir=tmp_path / "c"))
    assert m1["source_sha256"] != m2["source_sha256"]


@pytest.mark.parametrize("scaling", ["raw", "unit", "standardize"])
def test_uint8_and_channels_last_images_hold_the_same_inputs(tmp_path, scaling):
    """pixels="uint8" scaled by `scale_pixels` and pixels="channels_last" equal the float
    dataset bit for bit (the studies and the trainer rely on it)."""
    from PIL import Image

    from modescape.data.datasets import scale_pixels

    root = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for split, n in (("train", 8), ("test", 4)):
        for k in range(n):
            p = root / split / ("a", "b")[k % 2] / f"{k}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(p)
    kw = {"cache_dir": tmp_path / "cache", "scaling": scaling, "val_size": 2}
    ref = load_dataset("folder", root, **kw)
    u8 = load_dataset("folder", root, pixels="uint8", **kw)
    cl = load_dataset("folder", root, pixels="channels_last", **kw)
    assert u8.x_train.dtype == torch.uint8
    assert u8.source | {"from_cache": None} == ref.source | {"from_cache": None}
    for split in ("train", "val", "test"):
        x = getattr(ref, f"x_{split}")
        assert torch.equal(scale_pixels(getattr(u8, f"x_{split}"), u8.source), x)
        assert torch.equal(scale_pixels(getattr(u8, f"x_{split}")[1:3], u8.source), x[1:3])
        assert torch.equal(getattr(cl, f"x_{split}"), x)
    assert cl.x_train.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ModescapeError, match="pixels"):
        load_dataset("folder", root, pixels="int8", **kw)
