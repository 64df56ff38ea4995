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
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_FOLDER_LAYOUT = ("image-folder", (), ("train", "test"))
_LAYOUTS: dict[str, tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = {
    "cifar10": (
        ("python", (*CIFAR10_BATCHES, "test_batch", "batches.meta"), ()),
        ("binary", (*(b + ".bin" for b in CIFAR10_BATCHES), "test_batch.bin"), ()),
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


# Bounds on what reading a source may hold, checked against the sizes an archive's index or a
# folder's listing declares, before a byte is read: a 1.5 GB zero-filled `data_batch_1` in a
# small .tar.gz must be refused at its header, not after decompressing it into memory.
MAX_MEMBERS = 500_000  # files in an archive (CIFAR as images: 60,000)
MAX_HELD_BYTES = 2 << 30  # member bytes of one archive held in memory at once
MAX_IMAGE_BYTES = 64 << 20  # one image file
_MIB = 1 << 20
# The official files' sizes, with room for pickle overhead: a CIFAR-10 batch is 10,000 images of
# 3,072 bytes (30.7 MB), CIFAR-100's train file 50,000 (153.7 MB); class-name files are tiny.
_FILE_LIMITS = {
    "train": 160 * _MIB, "train.bin": 160 * _MIB, "test": 32 * _MIB, "test.bin": 32 * _MIB,
    "test_batch": 32 * _MIB, "test_batch.bin": 32 * _MIB,
    **{b: 32 * _MIB for b in CIFAR10_BATCHES}, **{b + ".bin": 32 * _MIB for b in CIFAR10_BATCHES},
}  # fmt: skip
_META_NAMES = ("batches.meta", "meta", "batches.meta.txt", "fine_label_names.txt")
_OTHER_LIMIT = 160 * _MIB  # a file of no known role: never read, but an archive must skip it


def file_limit(rel: str) -> int:
    """The largest size a file of a CIFAR layout or an image folder may have (bytes)."""
    base = rel.rsplit("/", 1)[-1]
    if base in _FILE_LIMITS:
        return _FILE_LIMITS[base]
    if base in _META_NAMES:
        return _MIB
    return MAX_IMAGE_BYTES if base.lower().endswith(IMAGE_SUFFIXES) else _OTHER_LIMIT


def _too_large(where: Path, rel: str, size: int) -> ModescapeError:
    return ModescapeError(
        f"{where}: {rel} holds {size:,} bytes, more than such a file may have "
        f"({file_limit(rel):,}): not a dataset file"
    )


class SourceFiles:
    """Read-only view of the regular files of a folder or a tar archive, by relative path.

    `names` and `sizes` come from the folder's listing or the archive's index; a reader calls
    `load(rels)` with the files it needs, which checks their sizes against `file_limit` before
    anything is read (an archive's index was checked whole: each member against its limit,
    their total against MAX_HELD_BYTES) and reads an archive's in one pass; then `read`."""

    def __init__(self, sizes: dict[str, int], where: Path, archive: bool):
        self.sizes = sizes
        self.names = sorted(sizes)
        self.where = where
        self.archive = archive
        self._held: dict[str, bytes] = {}

    @classmethod
    def from_dir(cls, root: Path) -> SourceFiles:
        return cls({rel: size for rel, size, _ in _walk(root)}, root, archive=False)

    @classmethod
    def from_tar(cls, path: Path) -> SourceFiles:
        """The archive's index: regular members' names and declared sizes (no content read)."""
        sizes: dict[str, int] = {}
        total = 0
        try:
            with tarfile.open(path, "r:*") as tf:
                for i, m in enumerate(tf):  # each header is checked before its data is skipped
                    name = m.name.removeprefix("./")
                    if i >= MAX_MEMBERS or total + m.size > MAX_HELD_BYTES:
                        raise ModescapeError(
                            f"archive {path} holds more than {MAX_MEMBERS:,} members or "
                            f"{MAX_HELD_BYTES:,} bytes: larger than any dataset modescape reads "
                            "from an archive (extract it and pass the folder)"
                        )
                    if m.isfile():
                        if m.size > file_limit(name):
                            raise _too_large(path, name, m.size)
                        sizes[name] = m.size
                        total += m.size
                    tf.members.clear()  # the index is `sizes`: keep no TarInfo per member
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            raise ModescapeError(f"cannot read archive {path}: {e}") from None
        return cls(sizes, path, archive=True)

    def load(self, rels: list[str]) -> None:
        """Check the files a reader needs against their limits; an archive's are read now, in
        one sequential pass (a .tar.gz cannot seek cheaply)."""
        for rel in rels:
            if self.sizes[rel] > file_limit(rel):
                raise _too_large(self.where, rel, self.sizes[rel])
        if not self.archive:
            return
        wanted = set(rels) - set(self._held)
        try:
            with tarfile.open(self.where, "r:*") as tf:
                for m in tf:
                    name = m.name.removeprefix("./")
                    if m.isfile() and name in wanted and m.size == self.sizes[name]:
                        self._held[name] = tf.extractfile(m).read()  # type: ignore[union-attr]
                    tf.members.clear()
        except (tarfile.TarError, OSError, EOFError, ValueError) as e:
            raise ModescapeError(f"cannot read archive {self.where}: {e}") from None
        missing = sorted(wanted - set(self._held))
        if missing:
            raise ModescapeError(f"archive {self.where} changed while read: {missing[0]}")

    def read(self, rel: str) -> bytes:
        if rel not in self.sizes:
            raise ModescapeError(f"{self.where}: missing {rel}")
        if self.archive:
            if rel not in self._held:
                self.load([rel])
            return self._held[rel]
        with open(self.where / rel, "rb") as f:  # at most the limit, whatever the file became
            data = f.read(file_limit(rel) + 1)
        if len(data) > file_limit(rel):
            raise _too_large(self.where, rel, max(len(data), self.sizes[rel]))
        return data


def find_layout(
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
    found = find_layout(
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
