"""Every integrity problem of a run (`Run.verify`, `modescape verify`): the manifest's seal,
recorded files missing or changed, unrecorded labels, members whose files cannot be read.

It reads the run only through the `Run` it is given (reopening it with `type(run)`), so the run
module imports this one and not the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modescape.errors import ModescapeError
from modescape.store.files import cached_sha256

if TYPE_CHECKING:
    from modescape.store.run import Run

SPLITS = ("val", "test")  # the evaluation splits whose labels the manifest must record


def run_problems(run: Run) -> list[str]:
    """Problems of `run`: its manifest's seal and config, recorded files missing or changed,
    unrecorded labels, members whose files cannot be read or whose finish was not recorded."""
    problems = []
    try:  # the manifest's own seal and config.json, even when `run` was opened with trust
        type(run)(run.path)
    except ModescapeError as e:
        problems.append(str(e))
    recorded = run.manifest.files
    for rel, digest in sorted(recorded.items()):
        f = run.path / rel
        if not f.exists():
            problems.append(f"missing {rel}")
        elif cached_sha256(f) != digest:
            problems.append(f"checksum mismatch {rel}")
    for split in SPLITS:
        if run.data_summary.size(split) and f"labels/{split}.npy" not in recorded:
            problems.append(f"labels/{split}.npy is not recorded in the manifest")
    for m in run.members:
        problems += _member_problems(run, m, recorded)
    return problems


def _member_problems(run: Run, member: int, recorded: dict[str, str]) -> list[str]:
    rel = f"members/m{member:03d}/member.json"
    try:
        info = type(run)(run.path, trust=True).member_info(member)
        if info.state == "finished" and rel not in recorded:
            return [f"{rel}: finished but not recorded in the manifest (rerun train)"]
        if info.state == "finished":
            run.metrics(member)  # decodes every line
    except ModescapeError as e:
        return [str(e)]
    return []
