"""What `modescape info` and `modescape verify` report about a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modescape.codec import Record
from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.registry import studies
from modescape.store.records import DataSummary, EpochMetrics, Manifest, MemberInfo
from modescape.store.run import Run


def verify_run(path: str | Path) -> list[str]:
    """Every integrity problem of the run at `path` ([] when all is well): what `modescape
    verify` lists."""
    try:
        return Run(path).verify()
    except ModescapeError as e:
        return [str(e)]


@dataclass
class MemberSummary(Record):
    """One member's line of `modescape info`: its state, seed and last accuracies."""

    member: int
    state: str
    epoch: int
    snapshots: int
    seed: int | None
    test_acc: float | None
    val_acc: float | None
    time_s: float | None
    reason: str | None


@dataclass
class RunSummary(Record):
    """What `modescape info` shows (its `--json` is `to_dict()`): config, data, each member's
    state, seed and accuracy, which registered studies have run (`studies`: name -> bool) and
    the integrity problems found (the CLI exits non-zero when there are any)."""

    path: str
    studies: dict[str, bool]
    origin: str
    config: RunConfig
    data: DataSummary
    versions: dict[str, str]
    members: list[MemberSummary]
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        # the config as the run records it (`RunConfig.to_dict` leaves unused sections out)
        return super().to_dict() | {"config": self.config.to_dict()}


def run_summary(run: Run) -> RunSummary:
    """`modescape info` of `run`: see `RunSummary`."""
    problems = run.verify()
    view = Run(run.path, trust=True)  # show what is there; the problems say what to distrust
    manifest = view.manifest
    members = []
    for m in view.members:
        try:
            info, metrics = view.member_info(m), view.metrics(m)
        except ModescapeError as e:
            info, metrics = MemberInfo(m, "unreadable", reason=str(e)), []
        last = metrics[-1] if metrics else EpochMetrics(-1)
        seed = manifest.seeds.get(f"member_{m}")
        members.append(
            MemberSummary(
                m,
                info.state,
                info.epoch,
                len(info.snapshots),
                seed,
                last.test_acc,
                last.val_acc,
                info.time_s,
                info.reason,
            )
        )
    done = set(view.studies_run())
    return RunSummary(
        path=str(run.path),
        studies={s.name: s.name in done for s in studies()},  # registered: has it run?
        origin=describe_origin(manifest),
        config=view.config,
        data=manifest.data,
        versions=manifest.versions,
        members=members,
        problems=problems,
    )


_ORIGINS = {
    "seed-notebooks": "the seed notebooks' Keras files (pixels / 255; file {k} saved after "
    "epoch k + 1)",
    "stated": "epochs as named{offset}; pixels as data.scaling",
}


def describe_origin(manifest: Manifest) -> str:
    """One line saying where a run's snapshots came from: trained here, or imported (from
    which files, of which format and origin). `modescape info` and the report show it."""
    imported = manifest.imported
    if imported is None:
        return "trained by modescape"
    offset = imported.epoch_offset
    how = _ORIGINS.get(str(imported.origin), "origin not recorded")
    how = how.replace("{offset}", f" + {offset}" if offset else "")
    return (
        f"imported, not trained here: {len(imported.files)} {imported.format} file(s) "
        f"matching {imported.pattern!r} under {imported.source} ({how})"
    )
