"""The run's own records as types, shared by the code that writes them and `Run`, which reads
them back: a member's member.json (`MemberInfo`) and its status, the manifest's data record
(`DataSummary`) and one epoch of metrics.jsonl (`EpochMetrics`). JSON <-> dataclass goes
through `modescape.codec`, so the files keep their keys (and their bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modescape.codec import OMIT_NONE, Record

MEMBER_STATES = ("pending", "running", "interrupted", "finished", "failed")


@dataclass
class MemberInfo(Record):
    """<run>/members/mNNN/member.json. `files`: the sha256 of every file the member wrote
    (until it finishes, when the manifest takes them over); `seed`, `time_s` and
    `resume_previous` are None for an imported member; what a trainer records about where it
    ran (host, pid, device, threads, precision) and a spawned child's `spawn` record are
    absent where never set."""

    member: int
    state: str  # one of MEMBER_STATES
    epoch: int = 0
    snapshots: list[int] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    time_s: float | None = None
    reason: str | None = None  # why the member failed or was rebuilt; null once finished
    host: str | None = field(default=None, metadata=OMIT_NONE)
    pid: int | None = field(default=None, metadata=OMIT_NONE)
    device: str | None = field(default=None, metadata=OMIT_NONE)
    threads: int | None = field(default=None, metadata=OMIT_NONE)
    precision: str | None = field(default=None, metadata=OMIT_NONE)
    # the sha256 of the resume file one epoch earlier (a crash between the two writes)
    resume_previous: str | None = None
    spawn: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    imported: bool | None = field(default=None, metadata=OMIT_NONE)

    def status(self) -> MemberStatus:
        return MemberStatus(self.state, self.epoch, self.reason, self.pid, self.host)


@dataclass(frozen=True)
class MemberStatus:
    """Where one member stands (`Run.member_status`, `modescape status`)."""

    state: str
    epoch: int
    reason: str | None
    pid: int | None
    host: str | None


@dataclass
class DataSummary(Record):
    """The manifest's "data" record: the dataset a run was created with. Every field has a
    default: a run created without data (tests, `init_run(path, config)`) records `{}`."""

    name: str = ""
    in_shape: list[int] = field(default_factory=list)
    num_classes: int | None = None
    classes: list[str] = field(default_factory=list)
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    source: dict[str, Any] = field(default_factory=dict)
    # source checksum, split sizes, classes, input shape (`data.datasets.fingerprint`)
    fingerprint: dict[str, Any] | None = None

    def size(self, split: str) -> int | None:
        """Examples in `split` ("train", "val", "test"); None where not recorded."""
        n: int | None = getattr(self, f"n_{split}", None)
        return n


# metrics.jsonl: the scalar columns every trainer may write (the importer writes fewer)
METRIC_KEYS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "time_train_s",
    "time_eval_s",
)


@dataclass
class EpochMetrics(Record):
    """One line of metrics.jsonl: the scalars after `epoch` (None: not measured that epoch,
    e.g. no training loss at epoch 0, no validation split)."""

    epoch: int
    train_loss: float | None = field(default=None, metadata=OMIT_NONE)
    train_acc: float | None = field(default=None, metadata=OMIT_NONE)
    val_loss: float | None = field(default=None, metadata=OMIT_NONE)
    val_acc: float | None = field(default=None, metadata=OMIT_NONE)
    test_loss: float | None = field(default=None, metadata=OMIT_NONE)
    test_acc: float | None = field(default=None, metadata=OMIT_NONE)
    lr: float | None = None  # null at epoch 0 and in imported runs
    time_train_s: float | None = field(default=None, metadata=OMIT_NONE)
    time_eval_s: float | None = field(default=None, metadata=OMIT_NONE)

    def value(self, key: str) -> float | None:
        """The column `key` (one of METRIC_KEYS), e.g. f"{split}_acc"."""
        if key not in METRIC_KEYS:
            raise KeyError(key)
        v: float | None = getattr(self, key)
        return v
