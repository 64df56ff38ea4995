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

Trust: the manifest carries its own sha256 and the sha256 of every file of the run (member files
when the member finishes; until then member.json lists them). `Run` checks each file against it
when reading (digests cached per process by path, inode, size and mtime); a mismatch is one
ModescapeError naming the file unless the run is opened with `trust=True`. `verify_run` checks
everything at once (`modescape verify`). The format version is checked on open.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, overload

import numpy as np
import torch
from torch import nn

from modescape.codec import Record
from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.store.files import (
    load_npy,
    load_safetensors,
    read_json,
    verify_digest,
)
from modescape.store.integrity import SPLITS, run_problems
from modescape.store.manifest import create_run, read_manifest
from modescape.store.members import check_member_info, parse_metrics, rebuilt_member_info
from modescape.store.records import DataSummary, EpochMetrics, Manifest, MemberInfo, MemberStatus

if TYPE_CHECKING:
    from modescape.data.datasets import Dataset
    from modescape.store.schema import (
        AnalysisSummary,
        ConnectSummary,
        InstabilitySummary,
        LandscapeSummary,
        ShiftSummary,
        SubspaceSummary,
        SwagSummary,
    )

R = TypeVar("R", bound=Record)

SUMMARY = "summary.json"  # <run>/<study>/summary.json: every study's typed summary
# Rewritten in place every epoch, so only the manifest (written when the member finishes) can
# vouch for them; every other member file is written once and listed in member.json.
_REWRITTEN = ("metrics.jsonl", "resume.safetensors")


def init_run(
    path: str | Path,
    config: RunConfig,
    data_summary: DataSummary | None = None,
    labels: dict[str, np.ndarray] | None = None,
) -> Run:
    """Create the run directory atomically (see `store.manifest.create_run`), or check that an
    existing one was written with `config`; return it opened."""
    return Run(create_run(path, config, data_summary, labels))


class Run:
    """A run directory opened for reading. Cheap to create; everything is read lazily.

    Every file read through it is checked against the sha256 recorded when it was written (the
    manifest, or member.json for the files of an unfinished member); a mismatch is a
    ModescapeError naming the file, unless the run was opened with `trust=True`.
    """

    def __init__(self, path: str | Path, *, trust: bool | None = None):
        self.path = Path(path)
        self.trust = _DEFAULT_TRUST[0] if trust is None else trust
        trust = self.trust
        if not (self.path / "config.json").exists():
            if not self.path.exists():
                raise ModescapeError(f"run directory not found: {self.path}")
            raise ModescapeError(f"{self.path} is not a modescape run (no config.json)")
        # The format first: a newer run's config may not parse.
        manifest = read_manifest(self.path, trust)
        config = read_json(self.path / "config.json", expect=dict)
        if not trust and manifest.config and manifest.config != config:
            raise ModescapeError(
                f"{self.path / 'config.json'} differs from the config recorded in its manifest "
                "(damaged or edited); pass --trust to read it anyway"
            )
        self.config = RunConfig.from_dict(config)
        self._manifest: tuple[tuple[int, int, int], Manifest] | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, members={self.config.members})"

    @property
    def manifest(self) -> Manifest:
        """manifest.json, reread only when the file changed (it is consulted on every read)."""
        st = (self.path / "manifest.json").stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._manifest is None or self._manifest[0] != key:
            self._manifest = (key, read_manifest(self.path, self.trust))
        return self._manifest[1]

    @cached_property
    def data_summary(self) -> DataSummary:
        """The manifest's data record: the dataset the run was created with."""
        return self.manifest.data

    # ---- verification ----------------------------------------------------------------------
    def expected_digest(self, rel: str) -> str | None:
        """The sha256 recorded for `rel` (a path inside the run), or None if none is."""
        digest = self.manifest.files.get(rel)
        parts = rel.split("/")
        member_file = len(parts) > 2 and parts[0] == "members"
        if digest is None and member_file and parts[-1] not in (*_REWRITTEN, "member.json"):
            info = self._member_json(int(parts[1][1:]))
            digest = None if info is None else info.files.get(rel)
        return digest

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.path))

    def verified(self, path: str | Path) -> Path:
        """`path` (inside the run), after checking it against its recorded sha256."""
        path = Path(path)
        if not self.trust:
            try:
                rel = str(path.relative_to(self.path))
            except ValueError:
                return path
            digest = self.expected_digest(rel)
            if digest is not None:
                verify_digest(path, digest, f"the manifest of {self.path}")
        return path

    def read_npy(self, rel: str, mmap: bool = False) -> np.ndarray:
        """A verified `.npy` file of the run, e.g. a study output "analysis/weights/cosine.npy"."""
        return load_npy(self.verified(self.path / rel), mmap=mmap)

    def read_record(self, rel: str, record: type[R]) -> R:
        """A verified JSON file of the run read as `record` (a `Record` type), e.g.
        `run.read_record("subspace/preds/random/m000.calibration.json", CalibrationRecord)`;
        a study's summary is `study(name)`."""
        return record.from_dict(read_json(self.verified(self.path / rel), expect=dict))

    # ---- members -------------------------------------------------------------------------
    @property
    def members(self) -> list[int]:
        return list(range(self.config.members))

    def member_dir(self, member: int) -> Path:
        self._check_member(member)
        return self.path / "members" / f"m{member:03d}"

    def _member_json(self, member: int) -> MemberInfo | None:
        f = self.member_dir(member) / "member.json"
        if not f.exists():
            return None
        return check_member_info(read_json(self.verified(f), expect=dict), f)

    def member_info(self, member: int) -> MemberInfo:
        """member.json; rebuilt from the files on disk (state "interrupted") when it is lost."""
        info = self._member_json(member)
        return self._rebuilt_info(member) if info is None else info

    def _rebuilt_info(self, member: int) -> MemberInfo:
        return rebuilt_member_info(self.member_dir(member), member, self.path)

    def member_status(self, member: int) -> MemberStatus:
        return self.member_info(member).status()

    def finished_members(self) -> list[int]:
        return [m for m in self.members if self.member_info(m).state == "finished"]

    def require_complete(self, allow_partial: bool = False) -> list[int]:
        """Members to analyse: all of them, or (allow_partial) the finished ones; else an error."""
        done = self.finished_members()
        missing = [m for m in self.members if m not in done]
        if missing and not allow_partial:
            states = ", ".join(
                f"m{m}: {s.state} at epoch {s.epoch}"
                for m in missing
                for s in [self.member_status(m)]
            )
            raise ModescapeError(
                f"run {self.path} is incomplete ({states}); finish it with `modescape train "
                f"--out {self.path}` or analyse the finished members only with --partial"
            )
        if len(done) == 0:
            raise ModescapeError(f"run {self.path} has no finished member yet")
        return done

    def snapshot_epochs(self, member: int) -> list[int]:
        return list(self.member_info(member).snapshots)

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
        path = self.verified(self.snapshot_path(member, self._epoch(member, epoch)))
        tensors = load_safetensors(path)
        expected = self._state_keys
        if set(expected) - set(tensors):
            missing = sorted(set(expected) - set(tensors))[:3]
            raise ModescapeError(f"snapshot {path} lacks tensors of the run's model: {missing}")
        for k, shape in self._state_shapes.items():
            if tuple(tensors[k].shape) != shape:
                raise ModescapeError(
                    f"snapshot {path}: {k} has shape {tuple(tensors[k].shape)}, the run's model "
                    f"needs {shape}"
                )
        order = [k for k in self._state_keys if k in tensors]
        return {k: tensors[k] for k in order + sorted(set(tensors) - set(order))}

    @cached_property
    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.build_model().state_dict().items()}

    @property
    def _state_keys(self) -> list[str]:
        return list(self._state_shapes)

    def build_model(self) -> nn.Module:
        """A freshly initialised model of the run's architecture (the global RNG is untouched)."""
        from modescape.models.registry import build_model

        m, d = self.config.model, self.data_summary
        if d.num_classes is None:
            raise ModescapeError(f"run {self.path} records no dataset (manifest 'data')")
        shape, classes = tuple(d.in_shape), d.num_classes
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
        """The evaluation splits with examples (from the data summary; older runs: labels)."""
        d = self.data_summary
        if all(d.size(s) is not None for s in SPLITS):
            return tuple(s for s in SPLITS if d.size(s))
        return tuple(s for s in SPLITS if (self.path / "labels" / f"{s}.npy").exists())

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ModescapeError(f"run {self.path} has no {split!r} split (has {self.splits})")

    def labels(self, split: str = "test") -> np.ndarray:
        """int64[examples]"""
        self._check_split(split)
        f = self.verified(self.path / "labels" / f"{split}.npy")
        y = load_npy(f)
        n = self.data_summary.size(split)
        if y.ndim != 1 or y.dtype.kind not in "iu" or (n is not None and len(y) != n):
            raise ModescapeError(
                f"labels file {f} must hold int64[{n}] (the run's {split} examples), got "
                f"{y.dtype}{list(y.shape)}"
            )
        return y

    def prediction_path(self, split: str, member: int, epoch: int) -> Path:
        return self.member_dir(member) / "preds" / split / f"e{epoch:04d}.npy"

    def predictions(self, split: str, member: int, epoch: int = -1) -> np.ndarray:
        """float32 softmax probabilities [examples, classes] of one snapshot."""
        self._check_split(split)
        f = self.verified(self.prediction_path(split, member, self._epoch(member, epoch)))
        p = load_npy(f)
        d = self.data_summary
        want = (d.size(split), d.num_classes)
        if (
            p.ndim != 2
            or p.dtype.kind != "f"
            or any(w is not None and got != w for got, w in zip(p.shape, want))
        ):
            raise ModescapeError(
                f"predictions file {f} must hold float32[{want[0]}, {want[1]}] (examples, "
                f"classes), got {p.dtype}{list(p.shape)}"
            )
        return p

    def trajectory(self, split: str, member: int) -> np.ndarray:
        """probs[epochs, examples, classes] of every snapshot of one member, in epoch order."""
        return np.stack([self.predictions(split, member, e) for e in self.snapshot_epochs(member)])

    def final_predictions(self, split: str, members: list[int] | None = None) -> np.ndarray:
        """probs[members, examples, classes] of each member's last snapshot."""
        members = self.members if members is None else members
        return np.stack([self.predictions(split, m, -1) for m in members])

    def metrics(self, member: int) -> list[EpochMetrics]:
        """One record per epoch, from metrics.jsonl ([] before the first epoch)."""
        f = self.member_dir(member) / "metrics.jsonl"
        if not f.exists():
            if not self.trust and self.expected_digest(self._rel(f)) is not None:
                raise ModescapeError(f"missing file {f} (recorded in the manifest of {self.path})")
            return []
        return parse_metrics(self.verified(f))

    def dataset(self, pixels: str = "float") -> Dataset:
        """The run's dataset (`pixels`: how images are held, see `load_dataset`)."""
        return open_dataset(self.config, pixels=pixels)

    def check_dataset(self, data: Dataset) -> None:
        """Refuse a dataset other than the one the run was created with (its fingerprint:
        source checksum, split sizes, classes, input shape)."""
        from modescape.data.datasets import fingerprint

        recorded = self.data_summary.fingerprint
        if recorded is None:
            return  # a run created before fingerprints were recorded
        now = fingerprint(data)
        diff = [k for k in sorted(set(recorded) | set(now)) if recorded.get(k) != now.get(k)]
        if diff:
            raise ModescapeError(
                f"the dataset changed since run {self.path} was created (differs in: "
                f"{', '.join(diff)}); members trained on other data cannot form one ensemble. "
                "Restore the data, or start a new run with --out"
            )

    # ---- integrity -----------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Problems found: recorded files missing or changed, unreadable or unrecorded members."""
        return run_problems(self)

    def _check_member(self, member: int) -> None:
        if not 0 <= member < self.config.members:
            raise ModescapeError(
                f"member {member} out of range: run {self.path} has members "
                f"0..{self.config.members - 1}"
            )

    # ---- study results: typed summaries, read lazily ------------------------------------------
    # One overload per built-in study (its registry entry's summary type); a plug-in study's
    # summary is its own `Record` subclass.
    @overload
    def study(self, name: Literal["analysis", "analyze"]) -> AnalysisSummary: ...
    @overload
    def study(self, name: Literal["subspace"]) -> SubspaceSummary: ...
    @overload
    def study(self, name: Literal["landscape"]) -> LandscapeSummary: ...
    @overload
    def study(self, name: Literal["shift"]) -> ShiftSummary: ...
    @overload
    def study(self, name: Literal["swag"]) -> SwagSummary: ...
    @overload
    def study(self, name: Literal["connect"]) -> ConnectSummary: ...
    @overload
    def study(self, name: Literal["instability"]) -> InstabilitySummary: ...
    @overload
    def study(self, name: str) -> Record: ...
    def study(self, name: str) -> Record:
        """The typed summary of the registered study `name` (`<run>/<name>/summary.json`, read
        with the study's summary type, see `modescape.registry`); a ModescapeError naming the
        command to run when the study has not run."""
        from modescape.registry import study

        s = study(name)
        rel = f"{s.name}/{SUMMARY}"
        if not (self.path / rel).exists():
            raise ModescapeError(
                f"run {self.path} has no {s.name} results; run `modescape {s.cli} {self.path}`"
            )
        summary_type = s.get("summary")
        if not (isinstance(summary_type, type) and issubclass(summary_type, Record)):
            raise ModescapeError(f"study {s.name!r}: its summary type is not a Record")
        return self.read_record(rel, summary_type)

    def studies_run(self) -> list[str]:
        """The registered studies whose results this run has (summary.json written)."""
        from modescape.registry import studies

        return [s.name for s in studies() if (self.path / s.name / SUMMARY).exists()]

    @property
    def analysis(self) -> AnalysisSummary:
        """`AnalysisSummary` of `modescape analyze`."""
        return self.study("analysis")

    @property
    def subspace(self) -> SubspaceSummary:
        """`SubspaceSummary` of `modescape subspace`."""
        return self.study("subspace")

    @property
    def landscape(self) -> LandscapeSummary:
        """`LandscapeSummary` of `modescape landscape`."""
        return self.study("landscape")

    @property
    def swag(self) -> SwagSummary:
        """`SwagSummary` of `modescape swag`."""
        return self.study("swag")

    @property
    def shift(self) -> ShiftSummary:
        """`ShiftSummary` of `modescape shift`."""
        return self.study("shift")


def open_dataset(config: RunConfig, pixels: str = "float") -> Dataset:
    """The dataset a run config names (decoded arrays come from the cache after the first load).
    `pixels`: "float", "channels_last" or "uint8" images (`data.datasets.load_dataset`)."""
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
        pixels=pixels,
        train_size=d.train_size,
        test_size=d.test_size,
        subset_seed=d.subset_seed,
        mean=d.mean or None,
        std=d.std or None,
        transform=d.transform or None,
    )


def load_run(path: str | Path, *, trust: bool | None = None) -> Run:
    """Open a run; `trust=True` reads files even where their checksums do not match (default:
    `set_default_trust`, off unless the CLI's --trust turned it on)."""
    return Run(path, trust=trust)


_DEFAULT_TRUST = [False]


def set_default_trust(trust: bool) -> None:
    """Whether runs opened without an explicit `trust` skip checksum checks, process-wide: how
    the CLI's `--trust` reaches every study without each one taking a flag."""
    _DEFAULT_TRUST[0] = bool(trust)
