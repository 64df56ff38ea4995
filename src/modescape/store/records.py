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
    spawn: SpawnChild | None = field(default=None, metadata=OMIT_NONE)
    imported: bool | None = field(default=None, metadata=OMIT_NONE)

    def status(self) -> MemberStatus:
        return MemberStatus(self.state, self.epoch, self.reason, self.pid, self.host)


@dataclass
class SpawnChild(Record):
    """member.json's "spawn" record of a spawned child: child `child` of spawn point `point`
    (at `at` epochs: `epoch` whole epochs and `step` steps) of member `parent_member` of the
    run `parent`."""

    point: int
    child: int
    parent: str
    parent_member: int
    at: float
    epoch: int
    step: int


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
    # where the data came from: archive, cache, generator arguments (each dataset records its
    # own keys, `data.sources`), kept as that JSON
    source: dict[str, Any] = field(default_factory=dict)
    # source checksum, split sizes, classes, input shape (`data.datasets.fingerprint`), compared
    # key by key with the fingerprint of the data a command loads (`Run.check_dataset`)
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


# ---- the manifest ------------------------------------------------------------------------------
@dataclass
class MachineInfo(Record):
    """The machine a run was created on (`store.manifest.machine_info`); members record their
    own host, device and threads in member.json."""

    machine: str = ""
    cpu: str = ""
    cpu_count: int | None = None


@dataclass
class ArchRecord(Record):
    """Where the run's architecture came from (`models.registry.describe_arch`): "source" is
    "builtin", "registered" or "import"; the last four are None when unknown (a factory
    defined in a notebook or a script that is not an installed package)."""

    arch: str
    source: str
    factory: str
    distribution: str | None = None
    version: str | None = None
    file: str | None = None
    sha256: str | None = None


@dataclass
class Preprocessing(Record):
    """How an imported run's inputs are scaled, and who stated it (a flag, the dataset, a
    Lightning checkpoint's hyper-parameters); mean / std only for a stated normalisation."""

    scaling: str
    stated_by: str
    mean: list[float] | None = field(default=None, metadata=OMIT_NONE)
    std: list[float] | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class FileDigest(Record):
    path: str
    sha256: str


@dataclass
class ImportRecord(Record):
    """The manifest's "imported" record (`modescape import`): the checkpoints a run was made
    of. `members`: the run's member index (as text) -> the id in the source file names;
    `files`: source file (relative to `source`) -> sha256. `lightning` is the checkpoint's own
    Lightning record (version, epoch, hyper_parameters): the user's hyper-parameters, of no
    fixed shape, kept as the JSON they were."""

    source: str
    format: str
    pattern: str
    origin: str | None
    epoch_offset: int
    preprocessing: Preprocessing
    members: dict[str, int]
    files: dict[str, str]
    keras_config: FileDigest | None = field(default=None, metadata=OMIT_NONE)
    lightning: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    key_prefix: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class SpawnPointRecord(Record):
    """One spawn point (`training.spawn.SpawnPoint`): `at` as asked, in epochs; `epoch` whole
    epochs of the parent's training before it and `step` optimiser steps into the next."""

    at: float
    epoch: int
    step: int


@dataclass
class SpawnRecord(Record):
    """The manifest's "spawn" record of a spawn run (`modescape spawn`): the request (compared
    on a rerun), the parent member's seed and the sha256 of the parent snapshots the replay
    passes (epoch as text -> sha256, None where the parent recorded none)."""

    parent: str
    member: int
    children: int
    steps_per_epoch: int
    points: list[SpawnPointRecord]
    parent_seed: int | None = None
    parent_snapshots: dict[str, str | None] = field(default_factory=dict)


@dataclass
class SpawnReplay(Record):
    """The manifest's "spawn_replay": where the parent's replay ran and which of its snapshots
    it reproduced exactly (`verified_epochs`) or reset to (`reset_epochs`)."""

    device: str
    threads: int
    precision: str | None = None
    verified_epochs: list[int] = field(default_factory=list)
    reset_epochs: list[int] = field(default_factory=list)


@dataclass
class Manifest(Record):
    """<run>/manifest.json (`store.manifest`), read by `Run.manifest`. `config` is the resolved
    RunConfig as JSON (`Run.config` is it typed; kept as written so that config.json is
    compared with it exactly); `seeds`: "base" and "member_<i>"; `files`: path inside the run
    -> sha256; `sha256` the manifest's own seal. `arch`, `imported`, `spawn` and
    `spawn_replay` are absent where they do not apply."""

    format: str
    modescape_version: str = ""
    created: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    machine: MachineInfo | None = field(default=None, metadata=OMIT_NONE)
    data: DataSummary = field(default_factory=DataSummary)
    files: dict[str, str] = field(default_factory=dict)
    arch: ArchRecord | None = field(default=None, metadata=OMIT_NONE)
    imported: ImportRecord | None = field(default=None, metadata=OMIT_NONE)
    spawn: SpawnRecord | None = field(default=None, metadata=OMIT_NONE)
    spawn_replay: SpawnReplay | None = field(default=None, metadata=OMIT_NONE)
    sha256: str | None = field(default=None, metadata=OMIT_NONE)
