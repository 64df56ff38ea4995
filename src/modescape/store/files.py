"""Safe, atomic file I/O: the only way modescape writes or reads run data.

Every write goes to a temporary file in the same directory and is renamed over the target, so a
reader (or a process killed mid-write) sees either the old file or the new one, never half of
one. Nothing here can execute code on load: JSON for metadata, safetensors for tensors, `.npy`
with `allow_pickle=False` for arrays.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from modescape.errors import ModescapeError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> str:
    """Write `data` to `path` atomically; return its sha256 (hex)."""
    tmp, digest = stage_bytes(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


@contextlib.contextmanager
def _removed_on_error(tmp: Path, path: Path) -> Iterator[None]:
    """Remove the temporary file `tmp` if the block fails; an OSError without a file name (a full
    disk) is re-raised naming `path`, the file being written."""
    try:
        yield
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stage_bytes(path: str | Path, data: bytes) -> tuple[Path, str]:
    """Write `data` to a temporary file next to `path` (flushed to disk), to be moved onto it
    with `os.replace` later; return (the temporary file, the sha256 of `data`). Staging first
    lets a writer claim the disk space before recording what it will publish."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name tells a killed writer's leftovers from a live one's.
    prefix = f".{path.name}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    with _removed_on_error(Path(tmp), path):
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give files the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(tmp), hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# sha256 of files already hashed by this process, keyed by what changes when a file is rewritten
# (atomic writes give a new inode), so a file read many times is hashed once.
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def cached_sha256(path: str | Path) -> str:
    """sha256 of a file, cached per process by (path, inode, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def verify_digest(path: str | Path, expected: str, what: str = "the run's manifest") -> None:
    """Raise a ModescapeError naming `path` unless its sha256 is `expected`."""
    path = Path(path)
    if not path.exists():
        raise ModescapeError(f"missing file {path} (recorded in {what})")
    if cached_sha256(path) != expected:
        raise ModescapeError(
            f"checksum mismatch: {path} is not the file recorded in {what} (damaged or changed "
            "since it was written); pass --trust to read it anyway"
        )


def killpoint(name: str) -> None:
    """Fault injection: SIGKILL this process at write point `name` when asked to.

    `MODESCAPE_KILL_AT=name` kills at the first time `name` is reached, `name@N` at the N-th.
    Tests use it to prove that every write point is recoverable (no timing luck involved).
    """
    spec = os.environ.get("MODESCAPE_KILL_AT")
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _KILL_COUNTS[name] = _KILL_COUNTS.get(name, 0) + 1
    if _KILL_COUNTS[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_KILL_COUNTS: dict[str, int] = {}


def remove_stale_tmp(folder: str | Path, dead_only: bool = False) -> int:
    """Delete the temporary files of writes killed midway (`.<name>.<pid>.*.tmp`) under
    `folder`: all of them while holding the lock that makes this process the folder's one
    writer, else (`dead_only`) those whose writer is no longer alive. Returns how many."""
    removed = 0
    for tmp in Path(folder).rglob(".*.tmp"):
        if dead_only and _writer_alive(tmp.name):
            continue
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_file():
                tmp.unlink()
                removed += 1
    return removed


def _writer_alive(tmp_name: str) -> bool:
    """Whether the process that named this temporary file still runs (unknown: assume so)."""
    parts = tmp_name[: -len(".tmp")].rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True
    pid = int(parts[1])
    if pid == os.getpid():
        return False  # this process is past its writes when it cleans up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: str | Path, obj: Any) -> str:
    """Strict JSON (NaN and infinities become null, so any JSON reader accepts the file)."""
    return atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj: Any) -> bytes:
    """The bytes `write_json` writes."""
    text = json.dumps(
        nan_to_null(obj), indent=2, sort_keys=True, default=json_default, allow_nan=False
    )
    return (text + "\n").encode()


def read_json(path: str | Path, expect: type | None = None) -> Any:
    """Parse a JSON file; `expect` (e.g. dict) also checks the type of its top-level value."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModescapeError(f"missing file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModescapeError(f"corrupt JSON file {path}: {e}") from None
    except ValueError:  # valid JSON with an integer of more digits than Python converts
        raise ModescapeError(f"corrupt JSON file {path}: an integer too long to read") from None
    except RecursionError:
        raise ModescapeError(f"corrupt JSON file {path}: nested too deeply") from None
    if expect is not None and not isinstance(obj, expect):
        raise ModescapeError(
            f"corrupt JSON file {path}: expected a {_JSON_NAMES.get(expect, expect.__name__)}, "
            f"got {_JSON_NAMES.get(type(obj), type(obj).__name__)}"
        )
    return obj


_JSON_NAMES = {dict: "JSON object", list: "JSON array", str: "string", int: "number"}


def write_csv(path: str | Path, header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header line, as dicts of strings."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        raise ModescapeError(f"missing file {path}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise ModescapeError(f"corrupt CSV file {path}: {e}") from None


def save_npy(path: str | Path, array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


class _HashingWriter:
    """A file wrapper hashing what is written through it (for `save_npy_streamed`)."""

    def __init__(self, f: Any, h: Any) -> None:
        self.f, self.h = f, h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        written: int = self.f.write(data)
        return written


def save_npy_streamed(path: str | Path, array: np.ndarray) -> str:
    """`save_npy` (same bytes, atomic, returns the sha256) without holding the file in memory:
    for arrays of tens of MB, where `save_npy`'s in-memory copies would add to the peak RSS."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{os.getpid()}."  # as `stage_bytes`: a killed writer's leftovers
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    h = hashlib.sha256()
    with _removed_on_error(Path(tmp), path):
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            # Not a real file object: numpy writes the data in bounded chunks through it.
            wrapped = _HashingWriter(f, h)
            np.lib.format.write_array(wrapped, np.ascontiguousarray(array), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return h.hexdigest()


def load_npy_checked(path: str | Path, sha256: str) -> np.ndarray:
    """Load a `.npy` array whose file must have this sha256, reading it once into the array
    (hashed as it is read: no second copy of a large file in memory); never unpickles. A
    mismatch, or a damaged or unsafe file, raises ModescapeError naming the file."""
    path = Path(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if fortran or dtype.hasobject:
                raise ValueError("Fortran-ordered or object arrays are not read")
            header = f.tell()
            f.seek(0)
            h.update(f.read(header))
            array = np.empty(shape, dtype)
            view = memoryview(array.reshape(-1).view(np.uint8).data)
            done = 0
            while done < len(view):
                n = f.readinto(view[done : done + (1 << 24)])
                if not n:
                    raise ValueError("file is shorter than its header says")
                h.update(view[done : done + n])
                done += n
            if f.read(1):
                raise ValueError("file is longer than its header says")
    except FileNotFoundError:
        raise ModescapeError(f"missing file {path}") from None
    except (ValueError, OSError, EOFError, TypeError, SyntaxError) as e:
        raise ModescapeError(f"corrupt or unsafe .npy file {path}: {e}") from None
    if h.hexdigest() != sha256:
        raise ModescapeError(f"{path} does not match its recorded sha256")
    return array


def load_npy(path: str | Path, mmap: bool = False) -> np.ndarray:
    """Load a `.npy` array; never unpickles. `mmap=True` maps it read-only instead of reading it."""
    path = Path(path)
    try:
        array: np.ndarray = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        return array
    except FileNotFoundError:
        raise ModescapeError(f"missing file {path}") from None
    except (ValueError, OSError, EOFError, TypeError, SyntaxError) as e:
        # np.load's header parser raises all of these on damaged files
        raise ModescapeError(f"corrupt or unsafe .npy file {path}: {e}") from None


def save_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
) -> str:
    """Save tensors; `metadata` (JSON-serialisable) is stored under one key, `modescape`.

    One key because safetensors writes several metadata keys in hash order, and identical
    content must give identical bytes (resumed runs are compared byte for byte).
    """
    return atomic_write_bytes(path, safetensors_bytes(tensors, metadata))


def safetensors_bytes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
) -> bytes:
    """The bytes `save_safetensors` writes (to know their sha256 before they are written)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = None if metadata is None else {"modescape": json.dumps(metadata, sort_keys=True)}
    return st_save(tensors, metadata=meta)


def read_safetensors_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata written by `save_safetensors` ({} when there is none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise ModescapeError(f"missing file {path}") from None
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        raise ModescapeError(f"corrupt safetensors file {path}: {e}") from None
    try:
        out = json.loads(meta["modescape"]) if "modescape" in meta else {}
    except json.JSONDecodeError as e:
        raise ModescapeError(f"corrupt safetensors metadata in {path}: {e}") from None
    if not isinstance(out, dict):
        raise ModescapeError(f"corrupt safetensors metadata in {path}: not a JSON object")
    return out


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        return st_load(path.read_bytes())
    except FileNotFoundError:
        raise ModescapeError(f"missing file {path}") from None
    except (SafetensorError, ValueError, RuntimeError, TypeError) as e:
        raise ModescapeError(f"corrupt safetensors file {path}: {e}") from None


def nan_to_null(obj: Any) -> Any:
    """`obj` with every NaN or infinite float (NumPy ones and arrays included) as None, so that
    JSON holds `null` rather than the non-standard `NaN`."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_null(v) for v in obj]
    if isinstance(obj, np.floating):
        return nan_to_null(float(obj))
    if isinstance(obj, np.ndarray):
        return nan_to_null(obj.tolist())
    return obj


def json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray,)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
