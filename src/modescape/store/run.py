"""The run directory: the single source every analysis reads.

    <run>/manifest.json              config, seeds, package versions, data summary, sha256 of files
    <run>/config.json                the resolved RunConfig
    <run>/labels/<split>.npy         int64[examples] for "val" (if any) and "test"
    <run>/members/m000/member.json   state, seed, snapshot epochs, time, files written (+ sha256)
    <run>/members/m000/snapshots/e0000.safetensors   weights + BatchNorm buffers after epoch 0..E
    <run>/members/m000/preds/<split>/e0000.npy       float32 softmax [examples, classes]
    <run>/members/m000/metrics.jsonl  one line per epoch
    <run>/members/m000/resume.safetensors  optimiser + RNG state of the last finished epoch

Each member writes only below its own folder, so member jobs on different machines never race;
the manifest is the one shared file and is updated under a file lock. Nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import fcntl
import platform
import sys
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from modescape import __version__
from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.seeding import derive_seed
from modescape.store.files import (
    load_npy,
    load_safetensors,
    read_json,
    sha256_file,
    write_json,
)

if TYPE_CHECKING:
    from modescape.data.datasets import Dataset

FORMAT = "modescape-run/1"
SPLITS = ("val", "test")


def member_seed(config: RunConfig, member: int) -> int:
    return derive_seed(config.seed, "member", member)


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("modescape", "torch", "numpy", "scipy", "scikit-learn", "safetensors", "mnist1d"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    return versions


def init_run(
    path: str | Path, config: RunConfig, data_summary: dict[str, Any] | None = None
) -> Run:
    """Create the run directory, or check that an existing one was written with `config`.

    Idempotent: calling it again with the same config returns the existing run untouched.
    """
    path = Path(path)
    if (path / "config.json").exists():
        stored = RunConfig.from_dict(read_json(path / "config.json"))
        if stored != config:
            raise ModescapeError(
                f"run directory {path} was written with another config "
                f"(differs in: {', '.join(_config_diff(stored.to_dict(), config.to_dict()))}); "
                "use a new --out directory, or the same settings to resume"
            )
        return Run(path)
    if path.exists() and not path.is_dir():
        raise ModescapeError(f"--out {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        raise ModescapeError(f"--out {path} exists, is not empty and holds no modescape run")
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "modescape_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.to_dict(),
        "seeds": {"base": config.seed}
        | {f"member_{i}": member_seed(config, i) for i in range(config.members)},
        "versions": package_versions(),
        "data": data_summary or {},
        "files": {},
    }
    # config.json last: its presence marks a complete initialisation.
    write_json(path / "manifest.json", manifest)
    write_json(path / "config.json", config.to_dict())
    return Run(path)


@contextlib.contextmanager
def _manifest_lock(path: Path) -> Iterator[None]:
    with open(path / ".manifest.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_manifest(path: str | Path, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into the manifest under a lock; dict values are merged one level deep."""
    path = Path(path)
    with _manifest_lock(path):
        manifest = read_json(path / "manifest.json")
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key] = manifest[key] | value
            else:
                manifest[key] = value
        write_json(path / "manifest.json", manifest)
    return manifest


def record_files(run_path: str | Path, files: dict[str, str]) -> None:
    """Record sha256 checksums (paths relative to the run) in the manifest."""
    update_manifest(run_path, files=files)


def write_study_summary(run: Run, folder: str, summary: dict[str, Any]) -> None:
    """Write `<run>/<folder>/summary.json` and record it and every file it lists (its "files",
    relative to the folder) in the run's manifest, so `modescape info` verifies them too."""
    digest = write_json(run.path / folder / "summary.json", summary)
    files = {f"{folder}/{rel}": d for rel, d in summary.get("files", {}).items()}
    record_files(run.path, files | {f"{folder}/summary.json": digest})


class Run:
    """A run directory opened for reading. Cheap to create; everything is read lazily."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.json").exists():
            if not self.path.exists():
                raise ModescapeError(f"run directory not found: {self.path}")
            raise ModescapeError(f"{self.path} is not a modescape run (no config.json)")
        self.config = RunConfig.from_dict(read_json(self.path / "config.json"))

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, members={self.config.members})"

    @property
    def manifest(self) -> dict[str, Any]:
        return read_json(self.path / "manifest.json")

    @cached_property
    def data_summary(self) -> dict[str, Any]:
        return self.manifest.get("data", {})

    # ---- members -------------------------------------------------------------------------
    @property
    def members(self) -> list[int]:
        return list(range(self.config.members))

    def member_dir(self, member: int) -> Path:
        self._check_member(member)
        return self.path / "members" / f"m{member:03d}"

    def member_info(self, member: int) -> dict[str, Any]:
        f = self.member_dir(member) / "member.json"
        if not f.exists():
            return {"member": member, "state": "pending", "epoch": 0, "snapshots": []}
        return read_json(f)

    def member_status(self, member: int) -> dict[str, Any]:
        info = self.member_info(member)
        return {
            "state": info["state"],
            "epoch": info.get("epoch", 0),
            "reason": info.get("reason"),
        }

    def finished_members(self) -> list[int]:
        return [m for m in self.members if self.member_info(m)["state"] == "finished"]

    def require_complete(self, allow_partial: bool = False) -> list[int]:
        """Members to analyse: all of them, or (allow_partial) the finished ones; else an error."""
        done = self.finished_members()
        missing = [m for m in self.members if m not in done]
        if missing and not allow_partial:
            states = ", ".join(
                f"m{m}: {self.member_status(m)['state']} at epoch {self.member_status(m)['epoch']}"
                for m in missing
            )
            raise ModescapeError(
                f"run {self.path} is incomplete ({states}); finish it with `modescape train "
                f"--out {self.path}` or analyse the finished members only with --partial"
            )
        if len(done) == 0:
            raise ModescapeError(f"run {self.path} has no finished member yet")
        return done

    def snapshot_epochs(self, member: int) -> list[int]:
        return list(self.member_info(member).get("snapshots", []))

    # ---- snapshots -----------------------------------------------------------------------
    def _epoch(self, member: int, epoch: int) -> int:
        epochs = self.snapshot_epochs(member)
        if not epochs:
            raise ModescapeError(f"member {member} of {self.path} has no snapshot yet")
        if epoch < 0:
            return epochs[epoch]
        if epoch not in epochs:
            raise ModescapeError(f"member {member} has no snapshot at epoch {epoch} (has {epochs})")
        return epoch

    def snapshot_path(self, member: int, epoch: int) -> Path:
        return self.member_dir(member) / "snapshots" / f"e{epoch:04d}.safetensors"

    def state_dict(self, member: int, epoch: int = -1) -> dict[str, torch.Tensor]:
        """Weights and buffers of `member` after `epoch` (negative counts from the last).

        Keys come in the model's own `state_dict()` order (safetensors files do not keep it).
        """
        tensors = load_safetensors(self.snapshot_path(member, self._epoch(member, epoch)))
        order = [k for k in self._state_keys if k in tensors]
        return {k: tensors[k] for k in order + sorted(set(tensors) - set(order))}

    @cached_property
    def _state_keys(self) -> list[str]:
        return list(self.build_model().state_dict())

    def build_model(self) -> nn.Module:
        """A freshly initialised model of the run's architecture (the global RNG is untouched)."""
        from modescape.models.registry import build_model

        m, d = self.config.model, self.data_summary
        shape, classes = tuple(d["in_shape"]), d["num_classes"]
        with torch.random.fork_rng(devices=[]):
            return build_model(m.arch, m.variant, shape, classes, m.dropout, **m.arch_kwargs)

    def model(self, member: int, epoch: int = -1) -> nn.Module:
        """A ready `nn.Module` in eval mode holding that snapshot."""
        model = self.build_model()
        model.load_state_dict(self.state_dict(member, epoch))
        return model.eval()

    # ---- cached predictions --------------------------------------------------------------
    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if (self.path / "labels" / f"{s}.npy").exists())

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ModescapeError(f"run {self.path} has no {split!r} split (has {self.splits})")

    def labels(self, split: str = "test") -> np.ndarray:
        """int64[examples]"""
        self._check_split(split)
        return load_npy(self.path / "labels" / f"{split}.npy")

    def prediction_path(self, split: str, member: int, epoch: int) -> Path:
        return self.member_dir(member) / "preds" / split / f"e{epoch:04d}.npy"

    def predictions(self, split: str, member: int, epoch: int = -1) -> np.ndarray:
        """float32 softmax probabilities [examples, classes] of one snapshot."""
        self._check_split(split)
        return load_npy(self.prediction_path(split, member, self._epoch(member, epoch)))

    def trajectory(self, split: str, member: int) -> np.ndarray:
        """probs[epochs, examples, classes] of every snapshot of one member, in epoch order."""
        return np.stack([self.predictions(split, member, e) for e in self.snapshot_epochs(member)])

    def final_predictions(self, split: str, members: list[int] | None = None) -> np.ndarray:
        """probs[members, examples, classes] of each member's last snapshot."""
        members = self.members if members is None else members
        return np.stack([self.predictions(split, m, -1) for m in members])

    def metrics(self, member: int) -> list[dict[str, Any]]:
        import json

        f = self.member_dir(member) / "metrics.jsonl"
        if not f.exists():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]

    def dataset(self) -> Dataset:
        return open_dataset(self.config)

    # ---- integrity -----------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Problems found: files recorded in the manifest that are missing or changed."""
        problems = []
        for rel, digest in sorted(self.manifest.get("files", {}).items()):
            f = self.path / rel
            if not f.exists():
                problems.append(f"missing {rel}")
            elif sha256_file(f) != digest:
                problems.append(f"checksum mismatch {rel}")
        return problems

    def _check_member(self, member: int) -> None:
        if not 0 <= member < self.config.members:
            raise ModescapeError(
                f"member {member} out of range: run {self.path} has members "
                f"0..{self.config.members - 1}"
            )

    # ---- study results: typed summaries (modescape.studies.schema), read lazily ---------------
    def study_summary(self, folder: str) -> Any:
        """The typed summary of `<run>/<folder>/summary.json` (analysis, subspace, landscape,
        shift); a ModescapeError naming the command to run when the study has not run."""
        from modescape.studies import schema

        f = self.path / folder / schema.SUMMARY
        if folder not in schema.SUMMARY_TYPES:
            raise ModescapeError(
                f"no study {folder!r} (studies: {', '.join(schema.SUMMARY_TYPES)})"
            )
        if not f.exists():
            command = "analyze" if folder == schema.ANALYSIS else folder
            raise ModescapeError(
                f"run {self.path} has no {folder} results; run `modescape {command} {self.path}`"
            )
        return schema.SUMMARY_TYPES[folder].from_dict(read_json(f))

    @property
    def analysis(self) -> Any:
        """`AnalysisSummary` of `modescape analyze`."""
        return self.study_summary("analysis")

    @property
    def subspace(self) -> Any:
        """`SubspaceSummary` of `modescape subspace`."""
        return self.study_summary("subspace")

    @property
    def landscape(self) -> Any:
        """`LandscapeSummary` of `modescape landscape`."""
        return self.study_summary("landscape")

    @property
    def shift(self) -> Any:
        """`ShiftSummary` of `modescape shift`."""
        return self.study_summary("shift")


def open_dataset(config: RunConfig) -> Dataset:
    """The dataset a run config names (decoded arrays come from the cache after the first load)."""
    from modescape.data.datasets import load_dataset

    d = config.data
    return load_dataset(
        d.name,
        d.root,
        val_size=d.val_size,
        scaling=d.scaling,
        download=d.download,
        mnist1d_samples=d.mnist1d_samples,
        mnist1d_seed=d.mnist1d_seed,
    )


def load_run(path: str | Path) -> Run:
    return Run(path)


def run_summary(run: Run) -> dict[str, Any]:
    """What `modescape info` shows: config, data, and per member state, seed and accuracy."""
    manifest = run.manifest
    members = []
    for m in run.members:
        info = run.member_info(m)
        last = (run.metrics(m) or [{}])[-1]
        members.append(
            {
                "member": m,
                "state": info["state"],
                "epoch": info.get("epoch", 0),
                "snapshots": len(info.get("snapshots", [])),
                "seed": manifest["seeds"].get(f"member_{m}"),
                "test_acc": last.get("test_acc"),
                "val_acc": last.get("val_acc"),
                "time_s": info.get("time_s"),
                "reason": info.get("reason"),
            }
        )
    return {
        "path": str(run.path),
        "config": manifest["config"],
        "data": manifest.get("data", {}),
        "versions": manifest.get("versions", {}),
        "members": members,
        "problems": run.verify(),
    }


def write_member_info(run_path: str | Path, member: int, info: dict[str, Any]) -> None:
    write_json(Path(run_path) / "members" / f"m{member:03d}" / "member.json", info)


def _config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out
