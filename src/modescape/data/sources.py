"""Where a CIFAR-10/100 or image-folder dataset lives: finding its layout, hashing it, downloading.

A source is an archive (`.tar`, `.tar.gz`, ...) or a folder holding one of the layouts that
`modescape.data.cifar` reads (python pickles, binary records, an image folder). Archives are read
in memory, never extracted, so member paths cannot write anywhere. A source's sha256 is the
dataset's identity: the decoded-array cache is keyed by it and the run records it.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modescape.errors import ModescapeError
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
