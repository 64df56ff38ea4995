"""The corrupted-test-set cache: generated once, read back byte for byte, keyed by everything a
corrupted set depends on, and never trusted when damaged."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import modescape.data.corruption_cache as cc
from modescape.data.corruption_cache import CorruptionCache, array_digest, cached_settings
from modescape.data.corruptions import corrupt


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)


def _no_generation(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("generated although the cache holds it")

    monkeypatch.setattr(cc, "corrupt", fail)


def test_second_call_reads_the_cache_with_the_same_bytes(images, tmp_path, monkeypatch):
    first = CorruptionCache(images, tmp_path).get("gaussian_noise", 3, seed=7)
    np.testing.assert_array_equal(first, corrupt(images, "gaussian_noise", 3, 7))
    _no_generation(monkeypatch)
    again = CorruptionCache(images, tmp_path)  # a new sweep, e.g. a second run on the same data
    second = again.get("gaussian_noise", 3, seed=7)
    assert second.tobytes() == first.tobytes() and second.dtype == np.uint8
    assert (again.hits, again.misses) == (1, 0)
    assert "1 read" in again.summary()


def test_signals_are_cached_too(tmp_path, monkeypatch):
    x = np.random.default_rng(1).standard_normal((10, 1, 40)).astype(np.float32)
    first = CorruptionCache(x, tmp_path).get("translation", 2, seed=0)
    _no_generation(monkeypatch)
    assert CorruptionCache(x, tmp_path).get("translation", 2, seed=0).tobytes() == first.tobytes()


@pytest.mark.parametrize("change", ["severity", "seed", "name", "data", "version"], ids=lambda c: c)
def test_a_changed_setting_misses(images, tmp_path, monkeypatch, change):
    CorruptionCache(images, tmp_path).get("contrast", 2, seed=0)
    name, severity, seed, x = "contrast", 2, 0, images
    if change == "severity":
        severity = 3
    elif change == "seed":
        seed = 1
    elif change == "name":
        name = "brightness"
    elif change == "data":
        x = images.copy()
        x[0, 0, 0, 0] ^= 1
    else:
        monkeypatch.setattr(cc, "CORRUPTION_VERSION", cc.CORRUPTION_VERSION + 1)
    cache = CorruptionCache(x, tmp_path)
    got = cache.get(name, severity, seed)
    assert (cache.hits, cache.misses) == (0, 1)
    np.testing.assert_array_equal(got, corrupt(x, name, severity, seed))


def test_a_damaged_cache_file_is_detected_and_regenerated(images, tmp_path, caplog):
    cache = CorruptionCache(images, tmp_path)
    good = cache.get("shot_noise", 5, seed=0)
    npy, _ = cache.paths("shot_noise", 5, 0)
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF  # one pixel flipped: still a valid .npy, but not the bytes recorded
    npy.write_bytes(bytes(raw))
    again = CorruptionCache(images, tmp_path)
    with caplog.at_level(logging.WARNING, logger=cc.__name__):
        got = again.get("shot_noise", 5, seed=0)
    assert "damaged or stale" in caplog.text
    assert (again.hits, again.misses) == (0, 1)
    assert got.tobytes() == good.tobytes()
    # ... and rewritten intact: the next read is a hit
    third = CorruptionCache(images, tmp_path)
    assert third.get("shot_noise", 5, seed=0).tobytes() == good.tobytes() and third.hits == 1


def test_turned_off_the_cache_reads_and_writes_nothing(images, tmp_path):
    cache = CorruptionCache(images, tmp_path, enabled=False)
    got = cache.get("pixelate", 4, seed=0)
    np.testing.assert_array_equal(got, corrupt(images, "pixelate", 4, 0))
    assert not (tmp_path / "corruptions").exists()
    assert "off" in cache.summary()


def test_array_digest_covers_dtype_and_shape(images):
    assert array_digest(images) != array_digest(images.reshape(12, 8, 24, 1))
    assert array_digest(images) != array_digest(images.astype(np.int16))
    assert array_digest(images) == array_digest(images.copy())


def test_cached_lists_the_current_entries_of_this_data(images, tmp_path, monkeypatch):
    cache = CorruptionCache(images, tmp_path)
    cache.get("contrast", 1, seed=0)
    cache.get("fog", 4, seed=3)
    assert CorruptionCache(images, tmp_path).cached() == {("contrast", 1, 0), ("fog", 4, 3)}
    assert CorruptionCache(images[:5], tmp_path).cached() == set()
    assert CorruptionCache(images, tmp_path, enabled=False).cached() == set()
    monkeypatch.setattr(cc, "CORRUPTION_VERSION", cc.CORRUPTION_VERSION + 1)
    assert CorruptionCache(images, tmp_path).cached() == set()


def test_a_killed_writers_partial_file_is_removed(images, tmp_path):
    import subprocess
    import sys

    cache = CorruptionCache(images, tmp_path)
    cache.get("contrast", 1, seed=0)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    npy, _ = cache.paths("contrast", 2, 0)
    partial = npy.parent / f".{npy.name}.{int(dead.stdout)}.abc.tmp"
    partial.write_bytes(b"half a file")
    CorruptionCache(images, tmp_path)  # the next sweep on this data
    assert not partial.exists() and cache.paths("contrast", 1, 0)[0].exists()


def test_cached_settings_finds_the_prefixes_of_the_test_set(images, tmp_path):
    CorruptionCache(images, tmp_path).get("contrast", 1, seed=0)
    CorruptionCache(images[:5], tmp_path).get("fog", 2, seed=0)
    CorruptionCache(images[::-1], tmp_path).get("fog", 3, seed=0)  # not a prefix: other data
    assert cached_settings(images, tmp_path) == {("contrast", 1, 0, 12), ("fog", 2, 0, 5)}
    assert cached_settings(images[:5], tmp_path) == {("fog", 2, 0, 5)}
    assert cached_settings(images, tmp_path / "empty") == set()
