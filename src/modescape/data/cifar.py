"""Readers for CIFAR-10/100 in the formats people have: python pickles, binary records, images.

Finding, hashing and downloading the source is `modescape.data.sources`.

Accepted, each either as the archive (`.tar`, `.tar.gz`, ...) or as its extracted folder:

- python:       `cifar-10-python.tar.gz` → `cifar-10-batches-py/{data_batch_1..5, test_batch,
                batches.meta}`; `cifar-100-python.tar.gz` → `cifar-100-python/{train, test, meta}`
- binary:       `cifar-10-binary.tar.gz` → `cifar-10-batches-bin/{data_batch_1..5.bin,
                test_batch.bin, batches.meta.txt}`; `cifar-100-binary.tar.gz` →
                `cifar-100-binary/{train.bin, test.bin, fine_label_names.txt}`
- image-folder: `train/<class>/*.png|jpg|...` and `test/<class>/*`, any image size, grayscale or RGB

Every reader returns `uint8 [N, C, H, W]` images and `int64 [N]` labels. The python format is
pickle, which can run code on load; it is read by `safe_unpickle`, which refuses every global
except the three numpy array constructors the official files use. Archives are read in memory,
never extracted, so member paths cannot write anywhere.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from modescape.data.sources import (
    CIFAR10_BATCHES,
    IMAGE_SUFFIXES,
    NUM_CLASSES,
    Source,
    SourceFiles,
    accepted_formats,
    find_layout,
)
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed, numpy_rng


class CifarArrays(NamedTuple):
    """What a reader returns: images `uint8 [N, C, H, W]`, labels `int64 [N]`, class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    format: str


# ---------------------------------------------------------------------------------------------
# Restricted unpickling


def _numpy_reconstruct() -> Callable[..., Any]:
    # `ndarray.__reduce__` names the array constructor of this numpy version (numpy.core in 1.x,
    # numpy._core in 2.x) without importing the deprecated module path.
    return np.empty(0).__reduce__()[0]


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _SafeUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction; dicts, lists, strings and numbers need no global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ModescapeError(
                f"refusing to unpickle {module}.{name}: CIFAR python files only contain numpy "
                f"arrays, dicts, lists, strings and numbers"
            ) from None


def safe_unpickle(data: bytes, where: str = "pickle") -> Any:
    """Unpickle `data` without running code; Python-2 strings come back as bytes."""
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ModescapeError:
        raise
    except Exception as e:  # a truncated or foreign file can fail in many ways
        raise ModescapeError(f"{where}: not a readable CIFAR python file ({e})") from None


def _str_keys(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ModescapeError(f"{where}: expected a pickled dict, got {type(d).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in d.items()}


# ---------------------------------------------------------------------------------------------
# Readers


def read_source(name: str, source: Source) -> CifarArrays:
    """Decode every image of `source` (a `find_source` result) into arrays."""
    if source.kind == "archive":
        files = SourceFiles.from_tar(source.path)
        dirs = {n.rsplit("/", i)[0] for n in files.names for i in range(1, n.count("/") + 1)}
        tops = sorted({n.split("/")[0] + "/" for n in files.names if "/" in n})
        names = set(files.names)
        found = find_layout(name, ["", *tops], names.__contains__, dirs.__contains__)
        if found is None:
            raise ModescapeError(
                f"archive {source.path} holds no {name} layout; accepted: {accepted_formats(name)}"
            )
        fmt, prefix = found
    else:
        root = source.path
        found = find_layout(
            name, [""], lambda r: (root / r).is_file(), lambda r: (root / r).is_dir()
        )
        if found is None:
            raise ModescapeError(f"{root} no longer holds a {name} layout")
        (fmt, _), files, prefix = found, SourceFiles.from_dir(root), ""
    reader = {"python": _read_python, "binary": _read_binary, "image-folder": _read_folder}[fmt]
    arrays = reader(name, files, prefix)
    expected = NUM_CLASSES.get(name)
    if expected is not None and len(arrays.classes) != expected:
        raise ModescapeError(
            f"{source.path}: {name} needs {expected} classes, found {len(arrays.classes)}"
        )
    return arrays


def _pixels(data: Any, labels: Any, n_classes: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one batch: `uint8 (N, 3072)` rows (channel-major 3×32×32) and N labels < n_classes."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ModescapeError(f"{where}: expected uint8 data of shape (N, 3072), got {data!r:.80}")
    if data.shape[1] != 3072:
        raise ModescapeError(f"{where}: expected data of shape (N, 3072), got {data.shape}")
    y = _labels(labels, where)
    if len(y) != len(data):
        raise ModescapeError(f"{where}: {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ModescapeError(f"{where}: labels outside 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), y


def _labels(labels: Any, where: str) -> np.ndarray:
    """int64 labels from a batch's list (or array) of integers; anything else is named."""
    ok = isinstance(labels, list | tuple | np.ndarray)
    if ok and not isinstance(labels, np.ndarray):
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in labels)
    if ok and isinstance(labels, np.ndarray):
        ok = labels.dtype.kind in "iu"
    if not ok:
        raise ModescapeError(f"{where}: labels must be a list of integers, got {labels!r:.80}")
    try:
        return np.asarray(labels, dtype=np.int64).reshape(-1)
    except OverflowError:  # a Python int beyond int64
        raise ModescapeError(f"{where}: labels outside the int64 range") from None


def _class_names(names: Any, where: str) -> tuple[str, ...]:
    """Class names from a meta file's list of bytes or str."""
    if not isinstance(names, list | tuple) or not all(isinstance(c, bytes | str) for c in names):
        raise ModescapeError(f"{where}: class names must be a list of strings, got {names!r:.80}")
    try:
        return tuple(c.decode() if isinstance(c, bytes) else c for c in names)
    except UnicodeDecodeError:
        raise ModescapeError(f"{where}: class names are not UTF-8 text") from None


def _read_python(name: str, files: SourceFiles, prefix: str) -> CifarArrays:
    def load(rel: str) -> dict[str, Any]:
        return _str_keys(safe_unpickle(files.read(prefix + rel), prefix + rel), prefix + rel)

    if name == "cifar10":
        meta_key, label_key, train, test = "label_names", "labels", CIFAR10_BATCHES, "test_batch"
        meta_file = "batches.meta"
    else:
        meta_key, label_key, train, test = "fine_label_names", "fine_labels", ("train",), "test"
        meta_file = "meta"
    files.load([prefix + r for r in (meta_file, *train, test)])
    meta = load(meta_file)
    if meta_key not in meta:
        raise ModescapeError(f"{prefix}meta file lacks {meta_key!r} (has {sorted(meta)})")
    classes = _class_names(meta[meta_key], prefix + meta_file)

    def split(rels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for rel in rels:
            d = load(rel)
            if "data" not in d or label_key not in d:
                raise ModescapeError(f"{prefix}{rel}: needs keys 'data' and {label_key!r}")
            x, y = _pixels(d["data"], d[label_key], len(classes), prefix + rel)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    return CifarArrays(*split(train), *split((test,)), classes, "python")


def _read_binary(name: str, files: SourceFiles, prefix: str) -> CifarArrays:
    if name == "cifar10":
        n_label_bytes, train, test = 1, [b + ".bin" for b in CIFAR10_BATCHES], "test_batch.bin"
        names_file = "batches.meta.txt"
    else:  # CIFAR-100 records start with the coarse label, then the fine one
        n_label_bytes, train, test = 2, ["train.bin"], "test.bin"
        names_file = "fine_label_names.txt"
    if prefix + names_file not in files.names:
        raise ModescapeError(f"missing {prefix}{names_file} (the class names)")
    files.load([prefix + r for r in (names_file, *train, test)])
    try:
        text = files.read(prefix + names_file).decode()
    except UnicodeDecodeError:
        raise ModescapeError(f"{prefix}{names_file}: class names are not UTF-8 text") from None
    classes = tuple(line.strip() for line in text.splitlines() if line.strip())
    record = n_label_bytes + 3072

    def split(rels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for rel in rels:
            raw = np.frombuffer(files.read(prefix + rel), dtype=np.uint8)
            if raw.size % record:
                raise ModescapeError(
                    f"{prefix}{rel}: {raw.size} bytes is not a whole number of "
                    f"{record}-byte records ({n_label_bytes} label byte(s) + 3072 pixels)"
                )
            rows = raw.reshape(-1, record)
            x, y = _pixels(
                rows[:, n_label_bytes:], rows[:, n_label_bytes - 1], len(classes), prefix + rel
            )
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    return CifarArrays(*split(train), *split([test]), classes, "binary")


def _read_folder(name: str, files: SourceFiles, prefix: str) -> CifarArrays:
    """Images `<prefix>{train,test}/<class>/<file>`; classes = sorted class folders of train/.

    Decoded in sorted-path order (class by class), then put in a fixed pseudo-random order per
    split, like the official files: otherwise "the last 500 training images" would all be trucks.
    Decoding is serial: on 32×32 JPEGs a thread pool was slower (per-image Python overhead).
    """
    by_split: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for n in files.names:
        parts = n[len(prefix) :].split("/") if n.startswith(prefix) else []
        is_image = len(parts) == 3 and parts[2].lower().endswith(IMAGE_SUFFIXES)
        if is_image and parts[0] in by_split and not parts[2].startswith("."):
            by_split[parts[0]].setdefault(parts[1], []).append(n)
    classes = tuple(sorted(by_split["train"]))
    if not classes:
        raise ModescapeError(f"{prefix}train/ holds no <class>/<image> files")
    unknown = sorted(set(by_split["test"]) - set(classes))
    if unknown:  # a test split may lack a class, but may not invent one
        raise ModescapeError(
            f"{prefix}test/ has classes {unknown} that train/ lacks (train/ classes: "
            f"{', '.join(classes)})"
        )
    files.load([p for split in by_split.values() for ps in split.values() for p in ps])
    first = _decode(files, by_split["train"][classes[0]][0])
    out = []
    for split in ("train", "test"):
        paths = [(p, c) for c, name_ in enumerate(classes) for p in by_split[split].get(name_, [])]
        _check_decoded_size(len(paths), first.shape, prefix + split)
        x = np.empty((len(paths), *first.shape), dtype=np.uint8)
        for i, (p, _) in enumerate(paths):
            img = _decode(files, p)
            if img.shape != first.shape:
                raise ModescapeError(
                    f"{p}: image of shape {_shape_text(img)} differs from the others "
                    f"({_shape_text(first)}); all images must share size and mode"
                )
            x[i] = img
        y = np.array([c for _, c in paths], dtype=np.int64)
        order = numpy_rng(derive_seed(0, "image-folder-order", split)).permutation(len(y))
        out += [x[order], y[order]]
    return CifarArrays(*out, classes, "image-folder")


MAX_DECODED_BYTES = 2 << 30  # the decoded images of one split, allocated at once


def _check_decoded_size(n: int, shape: tuple[int, ...], where: str) -> None:
    """Refuse a split whose decoded images would exceed MAX_DECODED_BYTES before allocating it
    (the first image's size times the count: every image must share it)."""
    need = n * int(np.prod(shape))
    if need > MAX_DECODED_BYTES:
        raise ModescapeError(
            f"{where}: {n:,} images of shape {tuple(shape)} decode to {need:,} bytes, more than "
            f"the {MAX_DECODED_BYTES:,} modescape holds (resize the images or use fewer)"
        )


def _decode(files: SourceFiles, path: str) -> np.ndarray:
    """One image as `uint8 [C, H, W]`: C = 1 for grayscale (modes 1, L), 3 for colour (RGB, P)."""
    try:
        with Image.open(io.BytesIO(files.read(path))) as im:
            if im.mode in ("1", "P"):
                im = im.convert("L" if im.mode == "1" else "RGB")
            if im.mode not in ("L", "RGB"):
                raise ModescapeError(f"{path}: image mode {im.mode} (allowed: L, RGB, P, 1)")
            a = np.asarray(im, dtype=np.uint8)
    except Image.DecompressionBombError as e:  # would decode to gigabytes: refuse, not hang
        raise ModescapeError(f"{path}: image too large to decode ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ModescapeError(f"{path}: unreadable image ({e})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _shape_text(chw: np.ndarray) -> str:
    c, h, w = chw.shape
    return f"{w}×{h} {'grayscale' if c == 1 else 'RGB'}"
