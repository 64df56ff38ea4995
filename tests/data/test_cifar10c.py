import numpy as np
import pytest

from modescape.data.cifar10c import CIFAR10C_CORRUPTIONS, available_corruptions, load_cifar10c
from modescape.errors import ModescapeError

N = 6  # images per severity in the test folder (10,000 in the official release)


def write_folder(root, names=("fog", "contrast"), n=N):
    """A CIFAR-10-C folder in the official layout: pixel (0, 0, 0) holds severity·10 + row."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    for name in names:
        x = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        x[:, 0, 0, 0] = [10 * s + i for s in range(1, 6) for i in range(n)]
        np.save(root / f"{name}.npy", x)
    np.save(root / "labels.npy", np.tile(labels, 5).astype(np.uint8))  # official dtype
    return labels


def test_the_nineteen_corruptions():
    assert len(CIFAR10C_CORRUPTIONS) == 19 == len(set(CIFAR10C_CORRUPTIONS))
    assert CIFAR10C_CORRUPTIONS[:3] == ("gaussian_noise", "shot_noise", "impulse_noise")
    assert set(CIFAR10C_CORRUPTIONS[15:]) == {
        "speckle_noise",
        "gaussian_blur",
        "spatter",
        "saturate",
    }


def test_load_each_severity(tmp_path):
    labels = write_folder(tmp_path)
    full = np.load(tmp_path / "fog.npy")
    for s in range(1, 6):
        x, y = load_cifar10c(tmp_path, "fog", s)
        assert x.shape == (N, 32, 32, 3) and x.dtype == np.uint8
        assert type(x) is np.ndarray  # a copy in memory, not a view of the memory map
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, full[(s - 1) * N : s * N])
        np.testing.assert_array_equal(x[:, 0, 0, 0], 10 * s + np.arange(N))
        np.testing.assert_array_equal(y, labels)


def test_available_corruptions(tmp_path):
    write_folder(tmp_path, names=("contrast", "gaussian_noise"))
    (tmp_path / "notes.npy").write_bytes(b"")
    assert available_corruptions(tmp_path) == ("gaussian_noise", "contrast")
    with pytest.raises(ModescapeError, match="does not exist"):
        available_corruptions(tmp_path / "nope")


def test_bad_names_and_missing_files(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(ModescapeError, match="allowed: gaussian_noise"):
        load_cifar10c(tmp_path, "rain", 1)
    for bad in (0, 6, 1.5):
        with pytest.raises(ModescapeError, match=r"1\.\.5"):
            load_cifar10c(tmp_path, "fog", bad)
    with pytest.raises(ModescapeError, match=r"missing file .*snow\.npy"):
        load_cifar10c(tmp_path, "snow", 1)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((5 * N, 32, 32), np.uint8),  # no channel axis
        np.zeros((5 * N, 32, 32, 1), np.uint8),
        np.zeros((5 * N, 32, 32, 3), np.float32),
        np.zeros((5 * N + 1, 32, 32, 3), np.uint8),  # not five equal severities
        np.zeros((0, 32, 32, 3), np.uint8),
    ],
)
def test_bad_image_files(tmp_path, array):
    write_folder(tmp_path)
    np.save(tmp_path / "fog.npy", array)
    with pytest.raises(ModescapeError, match=r"fog\.npy: expected .*\(50000, 32, 32, 3\)"):
        load_cifar10c(tmp_path, "fog", 1)


def test_bad_label_files(tmp_path):
    labels = write_folder(tmp_path)
    cases = {
        "to match": np.tile(labels, 4),  # length differs from the images
        "integer labels": np.tile(labels, 5).astype(np.float32),
        r"0\.\.9": np.tile(labels, 5) + 10,
        "blocks": np.r_[np.tile(labels, 4), (labels + 1) % 10],
    }
    for message, bad in cases.items():
        np.save(tmp_path / "labels.npy", bad)
        with pytest.raises(ModescapeError, match=rf"labels\.npy: .*{message}"):
            load_cifar10c(tmp_path, "fog", 2)


def test_pickled_files_are_refused(tmp_path):
    write_folder(tmp_path)
    np.save(tmp_path / "labels.npy", np.array([{"a": 1}] * 5 * N, dtype=object), allow_pickle=True)
    with pytest.raises(ModescapeError, match=r"labels\.npy"):
        load_cifar10c(tmp_path, "fog", 1)
