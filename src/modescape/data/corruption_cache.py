"""Corrupted test sets, generated once per dataset and kept beside the decoded-data cache.

A corrupted copy of a test set depends only on the clean array, the corruption, its severity and
the seed (`corruptions.corrupt`), not on the run or the models: a second run of the dataset-shift
study on the same data, or a second run after new members, reads it back instead of generating it
again (generating CIFAR-10's 85 settings took minutes, as long as evaluating them with a few
models).

Layout, under the decoded-data cache (`datasets.default_cache_dir()`, `$MODESCAPE_CACHE`):

    corruptions/<sha256 of the clean array, 16 hex>/<name>-s<severity>-seed<seed>.npy
    corruptions/<...>/<name>-s<severity>-seed<seed>.json   what it was made from, its sha256

The JSON is written after the array, so its presence marks a complete entry; it records the clean
array's full sha256, shape and dtype, the corruption's name, severity, seed, parameters and
`CORRUPTION_VERSION`, and the array's sha256, each checked on every read. A damaged or stale entry
is regenerated (with a warning), never trusted. `enabled=False` bypasses the cache entirely (the
shift study's `--no-cache-corruptions`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from modescape.data.corruptions import SIGNAL_PARAMS, corrupt
from modescape.data.image_corruptions import IMAGE_PARAMS
from modescape.errors import ModescapeError
from modescape.store.files import (
    load_npy_checked,
    read_json,
    remove_stale_tmp,
    save_npy_streamed,
    write_json,
)

log = logging.getLogger(__name__)

# Bump whenever `corrupt` changes what it returns for the same inputs, so old entries miss.
CORRUPTION_VERSION = 1


def array_digest(x: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order): the clean data's identity."""
    x = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()


class CorruptionCache:
    """Corrupted copies of one clean array `x` (all of it: `corrupt(x, ...)` with start 0).

    x: what `corrupt` takes (uint8 images [N, H, W, C] or float signals). `cache_dir`: the
    decoded-data cache folder; `enabled=False`: always generate, read and write nothing.
    `hits`, `misses` and `bytes_read` / `bytes_written` count what the cache did.
    """

    def __init__(self, x: np.ndarray, cache_dir: str | Path, enabled: bool = True) -> None:
        self.x = np.ascontiguousarray(x)
        self.enabled = enabled
        self.digest = array_digest(self.x) if enabled else ""
        self.folder = Path(cache_dir).expanduser() / "corruptions" / self.digest[:16]
        self.hits = self.misses = self.bytes_read = self.bytes_written = 0
        if enabled and self.folder.is_dir():  # a killed writer's partial file (tens of MB)
            remove_stale_tmp(self.folder, dead_only=True)

    def paths(self, name: str, severity: int, seed: int) -> tuple[Path, Path]:
        stem = f"{name}-s{severity}-seed{seed}"
        return self.folder / f"{stem}.npy", self.folder / f"{stem}.json"

    def key(self, name: str, severity: int, seed: int) -> dict[str, Any]:
        """Everything the corrupted array depends on (recorded in, and checked against, its
        JSON)."""
        params = (IMAGE_PARAMS if self.x.dtype == np.uint8 else SIGNAL_PARAMS).get(name)
        return {
            "version": CORRUPTION_VERSION,
            "clean_sha256": self.digest,
            "clean_shape": list(self.x.shape),
            "clean_dtype": self.x.dtype.str,
            "name": name,
            "severity": int(severity),
            "seed": int(seed),
            "params": repr(params[severity - 1]) if params and 1 <= severity <= 5 else None,
        }

    def get(self, name: str, severity: int, seed: int) -> np.ndarray:
        """`corrupt(x, name, severity, seed)`, from the cache when an intact entry exists."""
        if not self.enabled:
            return corrupt(self.x, name, severity, seed)
        key = self.key(name, severity, seed)
        npy, meta = self.paths(name, severity, seed)
        if meta.is_file():
            cached = self._read(npy, meta, key)
            if cached is not None:
                self.hits += 1
                return cached
            log.warning("corruption cache %s is damaged or stale; regenerating it", npy)
            meta.unlink(missing_ok=True)
        y = corrupt(self.x, name, severity, seed)
        digest = save_npy_streamed(npy, y)  # no in-memory copy of the file: peak RSS
        size = npy.stat().st_size
        write_json(meta, key | {"sha256": digest, "bytes": size})
        self.misses += 1
        self.bytes_written += size
        log.info(
            "corruption cache: wrote %s severity %d (%.1f MB) to %s",
            name, severity, size / 1e6, self.folder,
        )  # fmt: skip
        return y

    def _read(self, npy: Path, meta: Path, key: dict[str, Any]) -> np.ndarray | None:
        """The cached array if its JSON matches `key` and its bytes their sha256, else None."""
        try:
            record = read_json(meta, expect=dict)
            if {k: record.get(k) for k in key} != key:
                return None
            y = load_npy_checked(npy, str(record.get("sha256")))
        except ModescapeError:
            return None
        if y.shape != self.x.shape or y.dtype != self.x.dtype:
            return None
        self.bytes_read += y.nbytes
        return y

    def cached(self) -> set[tuple[str, int, int]]:
        """(name, severity, seed) of every entry recorded for this clean array with the current
        parameters and version (their JSON only: the arrays' checksums are checked on read).
        For pricing a sweep (`estimate.shift_cost`), not for trusting an entry."""
        found: set[tuple[str, int, int]] = set()
        if not self.enabled or not self.folder.is_dir():
            return found
        for meta in self.folder.glob("*.json"):
            try:
                record = read_json(meta, expect=dict)
                entry = (str(record["name"]), int(record["severity"]), int(record["seed"]))
            except (ModescapeError, KeyError, TypeError, ValueError):
                continue
            key = self.key(*entry)
            if {k: record.get(k) for k in key} == key and self.paths(*entry)[0].is_file():
                found.add(entry)
        return found

    def summary(self) -> str:
        """One log line: what the cache did in this sweep, and where."""
        if not self.enabled:
            return "corruption cache off: every corrupted set generated"
        return (
            f"corruption cache: {self.hits} read ({self.bytes_read / 1e6:.1f} MB), "
            f"{self.misses} generated ({self.bytes_written / 1e6:.1f} MB written) in {self.folder}"
        )


def cached_settings(x: np.ndarray, cache_dir: str | Path) -> set[tuple[str, int, int, int]]:
    """(name, severity, seed, n) of every cached corrupted set of the first n rows of `x` (a
    sweep may use a prefix of the test set: the shift study's `max_examples`). Reads JSON
    files and hashes each prefix length found once; for pricing a sweep, not for trusting it."""
    root = Path(cache_dir).expanduser() / "corruptions"
    x = np.ascontiguousarray(x)
    sizes: set[int] = set()
    for meta in root.glob("*/*.json") if root.is_dir() else ():
        try:
            shape = read_json(meta, expect=dict)["clean_shape"]
            if list(shape[1:]) == list(x.shape[1:]) and 0 < int(shape[0]) <= len(x):
                sizes.add(int(shape[0]))
        except (ModescapeError, KeyError, TypeError, ValueError, IndexError):
            continue
    found: set[tuple[str, int, int, int]] = set()
    for n in sizes:
        found |= {(*entry, n) for entry in CorruptionCache(x[:n], cache_dir).cached()}
    return found
