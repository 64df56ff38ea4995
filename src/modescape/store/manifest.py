"""Creating a run directory and keeping its manifest: format version, seeds, data, checksums.

Creation is atomic: manifest.json, config.json and the labels are written into a hidden sibling
folder (`.<name>.creating-<pid>`) that is renamed onto the run's path only when complete, so a
process killed at any point leaves either no run or a whole one. A leftover creation folder of a
dead process is removed by the next creation. Later changes to the manifest happen under a file
lock, one read-modify-write at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modescape import __version__
from modescape.codec import encode

if TYPE_CHECKING:
    from modescape.store.run import Run
from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed
from modescape.store.files import (
    json_bytes,
    json_default,
    killpoint,
    nan_to_null,
    read_json,
    remove_stale_tmp,
    save_npy,
    stage_bytes,
    write_json,
)
from modescape.store.records import (
    ArchRecord,
    DataSummary,
    ImportRecord,
    MachineInfo,
    Manifest,
    SpawnRecord,
)

FORMAT = "modescape-run/1"
_FORMAT_RE = re.compile(r"modescape-run/(\d+)")
_CREATED_BY_INTERRUPTED = {"manifest.json", ".manifest.lock", "labels"}


def member_seed(config: RunConfig, member: int) -> int:
    return derive_seed(config.seed, "member", member)


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("modescape", "torch", "numpy", "scipy", "scikit-learn", "safetensors", "mnist1d"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    commit = source_commit()
    if commit:
        versions["modescape_git_commit"] = commit
    return versions


def machine_info() -> MachineInfo:
    """The machine a run was created on: architecture, CPU model and count (members record
    their own host, device and threads in member.json)."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return MachineInfo(platform.machine(), cpu, os.cpu_count())


def source_commit() -> str | None:
    """The git commit of the modescape source tree in use ("+dirty" with uncommitted changes),
    or None when it is not a git checkout (an installed wheel) or git is missing."""
    import subprocess

    src = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "."],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def check_format(manifest: dict[str, Any], path: Path) -> None:
    """Refuse runs of another format version (newer or older) or of something else entirely."""
    fmt = manifest.get("format")
    m = _FORMAT_RE.fullmatch(fmt) if isinstance(fmt, str) else None
    if m is None:
        raise ModescapeError(f"{path / 'manifest.json'} has no modescape run format ({fmt!r})")
    version, current = int(m.group(1)), int(_FORMAT_RE.fullmatch(FORMAT).group(1))  # type: ignore[union-attr]
    if version > current:
        raise ModescapeError(
            f"run {path} has format {fmt}, newer than {FORMAT} that modescape {__version__} "
            "reads; upgrade modescape to read it"
        )
    if version < current:  # no migration exists: reading it as current would misread its files
        raise ModescapeError(
            f"run {path} has format {fmt}, older than {FORMAT} that modescape {__version__} "
            "reads, and no migration from it exists; retrain it with this version"
        )


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with "sha256": the digest of everything else in it, so that a changed byte
    in the manifest itself (not only in the files it lists) is found. It works on the JSON
    object as read (a `Manifest` drops keys it does not know, which the digest covers)."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    text = json.dumps(
        nan_to_null(body), sort_keys=True, default=json_default, separators=(",", ":")
    )
    return body | {"sha256": hashlib.sha256(text.encode()).hexdigest()}


def read_manifest(path: Path, trust: bool = False) -> Manifest:
    """The manifest of run `path`, checked to be a manifest of a format this version reads and
    (unless `trust`) unchanged since modescape wrote it."""
    return Manifest.from_dict(_read_checked(path, trust))


def _read_checked(path: Path, trust: bool = False) -> dict[str, Any]:
    """manifest.json as its JSON object, checked as `read_manifest` says: what the locked
    rewrites change in place (keeping every key, known to this version or not)."""
    manifest: dict[str, Any] = read_json(path / "manifest.json", expect=dict)
    check_format(manifest, path)
    if not trust and "sha256" in manifest and seal(manifest)["sha256"] != manifest["sha256"]:
        raise ModescapeError(
            f"checksum mismatch: {path / 'manifest.json'} was changed since modescape wrote it "
            "(damaged or edited); pass --trust to read it anyway"
        )
    if not isinstance(manifest.get("files", {}), dict):
        raise ModescapeError(f"corrupt manifest {path / 'manifest.json'}: 'files' is not an object")
    return manifest


@dataclasses.dataclass(frozen=True)
class ManifestExtra:
    """What an imported or spawned run's manifest records beyond a trained run's (`seeds`:
    replaces the members' seeds, e.g. {} for checkpoints trained elsewhere)."""

    arch: ArchRecord | None = None
    imported: ImportRecord | None = None
    spawn: SpawnRecord | None = None
    seeds: dict[str, int] | None = None


def create_run(
    path: str | Path,
    config: RunConfig,
    data_summary: DataSummary | None = None,
    labels: dict[str, np.ndarray] | None = None,
    extra: ManifestExtra | None = None,
) -> Path:
    """Create the run directory atomically, or check that an existing one has `config`.

    `labels` (split -> int64[examples]) are written and recorded with the manifest; `extra`
    holds the records of an imported or spawned run written with it. Idempotent: calling it
    again with the same config leaves the existing run untouched. Returns the path.
    """
    path = Path(path)
    if (path / "config.json").exists():
        check_config(path, config)
        return path
    if path.exists() and not path.is_dir():
        raise ModescapeError(f"--out {path} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ModescapeError(f"--out {path}: {parent} is a file, not a directory")
            break
    _clear_interrupted_creation(path)
    if path.is_dir() and any(path.iterdir()) and not (path / "config.json").exists():
        raise ModescapeError(f"--out {path} exists, is not empty and holds no modescape run")
    made = [p for p in path.parents if not p.exists()]  # removed again if creation fails
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_creations(path)
    tmp = path.parent / f".{path.name}.creating-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_new_run(tmp, config, data_summary, labels or {}, extra or ManifestExtra())
        killpoint("create.rename")
        _move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in made:  # innermost first; only what this call made and left empty
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check_config(path, config)  # a concurrent creator may have won the race
    return path


def _write_new_run(
    tmp: Path,
    config: RunConfig,
    data: DataSummary | None,
    labels: dict[str, np.ndarray],
    extra: ManifestExtra,
) -> None:
    files = {f"labels/{s}.npy": save_npy(tmp / "labels" / f"{s}.npy", y) for s, y in labels.items()}
    killpoint("create.labels")
    seeds = {"base": config.seed} | {
        f"member_{i}": member_seed(config, i) for i in range(config.members)
    }
    manifest = Manifest(
        format=FORMAT,
        modescape_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        config=config.to_dict(),
        seeds=seeds if extra.seeds is None else extra.seeds,
        versions=package_versions(),
        machine=machine_info(),
        data=data or DataSummary(),
        files=files,
        arch=extra.arch,
        imported=extra.imported,
        spawn=extra.spawn,
    ).to_dict()
    if data is None:  # a run created without a dataset (tests, plug-ins) records {}, as always
        manifest["data"] = {}
    write_json(tmp / "manifest.json", seal(manifest))
    killpoint("create.manifest")
    write_json(tmp / "config.json", config.to_dict())
    killpoint("create.config")


def _move_into_place(tmp: Path, path: Path) -> None:
    try:
        os.rename(tmp, path)  # replaces an empty folder; fails on a non-empty one
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not (path / "config.json").exists():
            msg = f"--out {path} exists, is not empty and holds no modescape run"
            raise ModescapeError(msg) from None


def _clear_interrupted_creation(path: Path) -> None:
    """Remove what an older modescape (non-atomic creation) left when killed mid-creation:
    a manifest (and labels) without config.json, and nothing else."""
    if not (path / "manifest.json").is_file():
        return
    names = {p.name for p in path.iterdir() if not p.name.endswith(".tmp")}
    if names <= _CREATED_BY_INTERRUPTED:
        shutil.rmtree(path)


def _remove_dead_creations(path: Path) -> None:
    for tmp in path.parent.glob(f".{path.name}.creating-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def check_config(path: Path, config: RunConfig) -> None:
    stored = RunConfig.from_dict(read_json(path / "config.json", expect=dict))
    if config.train.precision == "auto":  # "auto" reopens a run in the precision it was created in
        train = dataclasses.replace(config.train, precision=stored.train.precision)
        config = dataclasses.replace(config, train=train)
    if stored != config:
        raise ModescapeError(
            f"run directory {path} was written with another config "
            f"(differs in: {', '.join(config_diff(stored.to_dict(), config.to_dict()))}); "
            "use a new --out directory, or the same settings to resume"
        )


@contextlib.contextmanager
def manifest_lock(path: Path) -> Iterator[None]:
    with open(path / ".manifest.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_manifest(path: str | Path, **changes: Any) -> None:
    """Merge `changes` (top-level keys of the manifest: records or JSON values) into the
    manifest under a lock; dict values are merged one level deep."""

    def merge(manifest: dict[str, Any]) -> None:
        for key, change in changes.items():
            value = encode(change)
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key] = manifest[key] | value
            else:
                manifest[key] = value

    _rewrite_manifest(Path(path), merge)


def _rewrite_manifest(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read, change (in place) and reseal the manifest, one process at a time."""
    with manifest_lock(path):
        for tmp in path.glob(".manifest.json.*.tmp"):  # a killed writer's; we hold the lock
            tmp.unlink(missing_ok=True)
        manifest = _read_checked(path)
        change(manifest)
        write_json(path / "manifest.json", seal(manifest))


def record_files(run_path: str | Path, files: dict[str, str]) -> None:
    """Record sha256 checksums (paths relative to the run) in the manifest."""
    update_manifest(run_path, files=files)


def replace_folder_files(run_path: str | Path, folder: str, files: dict[str, str]) -> None:
    """Record `files` (paths relative to the run) as everything under `<folder>/`: digests of
    files an earlier call wrote there and this one did not are dropped (a study rerun with other
    settings removes them)."""

    def replace(manifest: dict[str, Any]) -> None:
        old = manifest.get("files", {})
        kept = {k: v for k, v in old.items() if not k.startswith(folder + "/")}
        manifest["files"] = kept | files

    _rewrite_manifest(Path(run_path), replace)


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def write_study_summary(run: Run, folder: str, summary: dict[str, Any]) -> None:
    """Publish `<run>/<folder>/summary.json` (`summary`: the study's summary record as
    `to_dict()` gives it) and record it and every file it lists (its "files", relative to the
    folder) in the manifest of `run`, replacing what was recorded under the folder.

    The summary's bytes are staged first, then the manifest updated, then the summary renamed
    into place: a full disk fails before anything is published (summary.json and the manifest
    stay consistent), and a kill leaves at most a manifest ahead of summary.json, which `verify`
    reports and a rerun of the study repairs. Kill points: "<folder>.summary" (before), and
    "<folder>.manifest" (between the manifest update and the rename).
    """
    killpoint(f"{folder}.summary")
    target = run.path / folder / "summary.json"
    tmp, digest = stage_bytes(target, json_bytes(summary))
    try:
        files = {f"{folder}/{rel}": d for rel, d in summary.get("files", {}).items()}
        replace_folder_files(run.path, folder, files | {f"{folder}/summary.json": digest})
        killpoint(f"{folder}.manifest")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_tmp(run.path / folder, dead_only=True)  # writes of a killed earlier call
