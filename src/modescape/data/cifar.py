"""Readers for CIFAR-10/100 in the formats people have: python pickles, binary records, images.

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

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from modescape.errors import ModescapeError
from modescape.seeding import derive_seed, numpy_rng
from modescape.store.files import sha256_file

# Official archives (https://www.cs.toronto.edu/~kriz/cifar.html). Tests override url/md5.
DOWNLOADS: dict[str, dict[str, str]] = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "filename": "cifar-10-python.tar.gz",
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "filename": "cifar-100-python.tar.gz",
    },
}
ARCHIVE_NAMES = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-binary.tar.gz"),
    "folder": (),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

# (format, files that must exist, folders that must exist), relative to the layout's folder.
_CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_FOLDER_LAYOUT = ("image-folder", (), ("train", "test"))
_LAYOUTS: dict[str, tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = {
    "cifar10": (
        ("python", (*_CIFAR10_BATCHES, "test_batch", "batches.meta"), ()),
        ("binary", (*(b + ".bin" for b in _CIFAR10_BATCHES), "test_batch.bin"), ()),
        _FOLDER_LAYOUT,
    ),
    "cifar100": (
        ("python", ("train", "test", "meta"), ()),
        ("binary", ("train.bin", "test.bin", "fine_label_names.txt"), ()),
        _FOLDER_LAYOUT,
    ),
    "folder": (_FOLDER_LAYOUT,),
}


class CifarArrays(NamedTuple):
    """What a reader returns: images `uint8 [N, C, H, W]`, labels `int64 [N]`, class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    format: str


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and its identity (the cache key)."""

    path: Path  # the archive file, or the folder that holds the layout
    kind: str  # "archive" | "directory"
    sha256: str
    sha256_of: str  # what was hashed, in words


def accepted_formats(name: str) -> str:
    """One line per accepted format, for error messages."""
    folder = "an image folder train/<class>/*, test/<class>/* (or a .tar/.tar.gz of one)"
    if name == "folder":
        return folder
    archives = ARCHIVE_NAMES[name]
    lines = []
    for (fmt, files, _), archive in zip(_LAYOUTS[name][:2], archives):
        lines.append(f"the {fmt} archive {archive} or its extracted folder ({', '.join(files)})")
    return "; ".join([*lines, folder])


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
# Files of a folder or an archive


def _walk(root: Path) -> list[tuple[str, int, int]]:
    """(relative posix path, size, mtime_ns) of every regular file under `root`, sorted.

    scandir rather than os.walk + Path.stat: 3× faster on 60,000 files. Like os.walk it does not
    descend into symlinked folders (no cycles); symlinked files count as files.
    """
    out, stack = [], [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel) as entries:
            for e in entries:
                r = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append(r)
                elif e.is_file():
                    st = e.stat()
                    out.append((r, st.st_size, st.st_mtime_ns))
    return sorted(out)


class _Files:
    """Read-only view of the regular files of a folder or a tar archive, by relative path."""

    def __init__(self, names: list[str], read: Callable[[str], bytes]):
        self.names = sorted(names)
        self.read = read

    @classmethod
    def from_dir(cls, root: Path) -> _Files:
        return cls([rel for rel, _, _ in _walk(root)], lambda rel: (root / rel).read_bytes())

    @classmethod
    def from_tar(cls, path: Path) -> _Files:
        # One sequential pass: a .tar.gz cannot seek cheaply, and CIFAR fits in memory.
        members: dict[str, bytes] = {}
        try:
            with tarfile.open(path, "r:*") as tf:
                for m in tf:
                    if m.isfile():
                        name = m.name.removeprefix("./")
                        members[name] = tf.extractfile(m).read()  # type: ignore[union-attr]
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ModescapeError(f"cannot read archive {path}: {e}") from None
        return cls(list(members), members.__getitem__)


def _find_layout(
    name: str, prefixes: list[str], is_file: Callable[[str], bool], is_dir: Callable[[str], bool]
) -> tuple[str, str] | None:
    """First (format, prefix) whose marker files and folders all exist; prefixes end in '/'."""
    for prefix in prefixes:
        for fmt, files, dirs in _LAYOUTS[name]:
            if all(is_file(prefix + f) for f in files) and all(is_dir(prefix + d) for d in dirs):
                return fmt, prefix
    return None


def _dir_layout(root: Path, name: str) -> tuple[str, Path] | None:
    """The layout in `root` or one of its sub-folders (an extracted archive's top folder)."""
    prefixes = ["", *sorted(p.name + "/" for p in root.iterdir() if p.is_dir())]
    found = _find_layout(
        name, prefixes, lambda r: (root / r).is_file(), lambda r: (root / r).is_dir()
    )
    return None if found is None else (found[0], root / found[1])


# ---------------------------------------------------------------------------------------------
# Finding (and downloading) the source


def download_archive(
    name: str, dest_dir: str | Path, *, url: str | None = None, md5: str | None = None
) -> Path:
    """Fetch the official python archive of `name` into `dest_dir`; verify its md5.

    Streams to a temporary file beside the target and renames it only after the checksum
    matches, so a failed or corrupt download leaves nothing behind.
    """
    if name not in DOWNLOADS:
        raise ModescapeError(f"no download known for {name!r} (known: {', '.join(DOWNLOADS)})")
    entry = DOWNLOADS[name]
    url, md5 = url or entry["url"], md5 or entry["md5"]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / entry["filename"]
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{target.name}.", suffix=".part")
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as r:
            for block in iter(lambda: r.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        if h.hexdigest() != md5:
            raise ModescapeError(
                f"download of {url} has md5 {h.hexdigest()}, expected {md5}; nothing was kept"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as e:
        raise ModescapeError(f"cannot download {url}: {e}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def find_source(name: str, root: str | Path, *, download: bool = False) -> Source:
    """Resolve `root` to the archive or folder holding dataset `name` and hash it.

    `root` may be an archive, a layout folder, or a folder holding either (one level up). An
    archive is identified by the sha256 of its bytes; a folder by the sha256 of its sorted
    listing of (relative path, size, mtime_ns), which catches added, removed, renamed,
    resized or rewritten files without reading 60,000 images (like make/rsync, an in-place edit
    that keeps size and mtime goes unnoticed).
    """
    root = Path(root).expanduser()
    if not root.exists():
        if not (download and name in DOWNLOADS):
            raise ModescapeError(f"{name} root {root} does not exist")
        root.mkdir(parents=True)
    if root.is_file():
        if not tarfile.is_tarfile(root):
            raise ModescapeError(
                f"{name} root {root} is not a tar archive; accepted: {accepted_formats(name)}"
            )
        return Source(root, "archive", sha256_file(root), "archive bytes")
    found = _dir_layout(root, name)
    if found is not None:
        listing = "".join(f"{rel}\t{size}\t{mtime}\n" for rel, size, mtime in _walk(found[1]))
        sha = hashlib.sha256(listing.encode()).hexdigest()
        return Source(found[1], "directory", sha, "sorted listing of (path, size, mtime_ns)")
    for archive in ARCHIVE_NAMES[name]:
        if (root / archive).is_file():
            return find_source(name, root / archive)
    if download and name in DOWNLOADS:
        return find_source(name, download_archive(name, root))
    hint = " or pass download=True" if name in DOWNLOADS else ""
    raise ModescapeError(
        f"{name} root {root} is in no known format; accepted: {accepted_formats(name)}{hint}"
    )


# ---------------------------------------------------------------------------------------------
# Readers


def read_source(name: str, source: Source) -> CifarArrays:
    """Decode every image of `source` (a `find_source` result) into arrays."""
    if source.kind == "archive":
        files = _Files.from_tar(source.path)
        dirs = {n.rsplit("/", i)[0] for n in files.names for i in range(1, n.count("/") + 1)}
        tops = sorted({n.split("/")[0] + "/" for n in files.names if "/" in n})
        names = set(files.names)
        found = _find_layout(name, ["", *tops], names.__contains__, dirs.__contains__)
        if found is None:
            raise ModescapeError(
                f"archive {source.path} holds no {name} layout; accepted: {accepted_formats(name)}"
            )
        fmt, prefix = found
    else:
        root = source.path
        found = _find_layout(
            name, [""], lambda r: (root / r).is_file(), lambda r: (root / r).is_dir()
        )
        if found is None:
            raise ModescapeError(f"{root} no longer holds a {name} layout")
        (fmt, _), files, prefix = found, _Files.from_dir(root), ""
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
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(data):
        raise ModescapeError(f"{where}: {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ModescapeError(f"{where}: labels outside 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), y


def _read_python(name: str, files: _Files, prefix: str) -> CifarArrays:
    def load(rel: str) -> dict[str, Any]:
        return _str_keys(safe_unpickle(files.read(prefix + rel), prefix + rel), prefix + rel)

    if name == "cifar10":
        meta_key, label_key, train, test = "label_names", "labels", _CIFAR10_BATCHES, "test_batch"
        meta = load("batches.meta")
    else:
        meta_key, label_key, train, test = "fine_label_names", "fine_labels", ("train",), "test"
        meta = load("meta")
    if meta_key not in meta:
        raise ModescapeError(f"{prefix}meta file lacks {meta_key!r} (has {sorted(meta)})")
    classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in meta[meta_key])

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


def _read_binary(name: str, files: _Files, prefix: str) -> CifarArrays:
    if name == "cifar10":
        n_label_bytes, train, test = 1, [b + ".bin" for b in _CIFAR10_BATCHES], "test_batch.bin"
        names_file = "batches.meta.txt"
    else:  # CIFAR-100 records start with the coarse label, then the fine one
        n_label_bytes, train, test = 2, ["train.bin"], "test.bin"
        names_file = "fine_label_names.txt"
    if prefix + names_file not in files.names:
        raise ModescapeError(f"missing {prefix}{names_file} (the class names)")
    text = files.read(prefix + names_file).decode()
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


def _read_folder(name: str, files: _Files, prefix: str) -> CifarArrays:
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
    first = _decode(files, by_split["train"][classes[0]][0])
    out = []
    for split in ("train", "test"):
        paths = [(p, c) for c, name_ in enumerate(classes) for p in by_split[split].get(name_, [])]
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


def _decode(files: _Files, path: str) -> np.ndarray:
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
