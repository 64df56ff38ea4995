"""One member's files in a run directory: member.json (checked, written, rebuilt when lost) and
metrics.jsonl (one JSON object per epoch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modescape.errors import ModescapeError
from modescape.store.files import read_safetensors_metadata, write_json
from modescape.store.records import MEMBER_STATES, EpochMetrics, MemberInfo


def check_member_info(info: dict[str, Any], f: Path) -> MemberInfo:
    """`info` (read from member.json `f`) as a record, if it has a valid state, files and
    snapshot list."""
    if info.get("state") not in MEMBER_STATES or not isinstance(info.get("files", {}), dict):
        raise ModescapeError(f'corrupt member file {f}: no valid "state" or "files"')
    snaps = info.get("snapshots", [])
    if not (isinstance(snaps, list) and all(isinstance(e, int) for e in snaps)):
        raise ModescapeError(f'corrupt member file {f}: "snapshots" is not a list of epochs')
    return MemberInfo.from_dict({"member": _member_of(f)} | info)


def _member_of(f: Path) -> int:
    """The member a member.json belongs to, from its folder (mNNN): older files lack "member"."""
    name = f.parent.name
    return int(name[1:]) if name[1:].isdigit() else -1


def rebuilt_member_info(mdir: Path, member: int, run_path: Path) -> MemberInfo:
    """member.json rebuilt from the files on disk when it was lost: "pending" without a resume
    file, else "interrupted" at the resume file's epoch."""
    resume = mdir / "resume.safetensors"
    if not resume.exists():
        return MemberInfo(member, "pending")
    # Snapshots after the last committed epoch may be half-finished work: leave them out.
    epoch = int(read_safetensors_metadata(resume).get("epoch", -1))
    on_disk = [p.stem[1:] for p in (mdir / "snapshots").glob("e*.safetensors")]
    snaps = sorted(int(e) for e in on_disk if e.isdigit() and int(e) <= epoch)
    return MemberInfo(
        member,
        "interrupted",
        epoch=max(epoch, 0),
        snapshots=snaps,
        reason=f"member.json was lost; rebuilt from {len(snaps)} snapshots on disk "
        f"(run `modescape train --out {run_path}` to restore it)",
    )


def parse_metrics(f: Path) -> list[EpochMetrics]:
    """The records of metrics.jsonl `f`, one per epoch; a broken line is one clear error."""
    try:
        lines = f.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise ModescapeError(f"corrupt metrics file {f}: {e}") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ModescapeError(f"corrupt line {i} of {f}: {e}") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise ModescapeError(f"corrupt line {i} of {f}: not a JSON object with an epoch")
        out.append(EpochMetrics.from_dict(record))
    return out


def write_member_info(run_path: str | Path, info: MemberInfo) -> str:
    """Write member.json of `info.member`; return its sha256."""
    path = Path(run_path) / "members" / f"m{info.member:03d}" / "member.json"
    return write_json(path, info.to_dict())
