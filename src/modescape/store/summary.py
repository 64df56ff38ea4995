"""What `modescape info` and `modescape verify` report about a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modescape.errors import ModescapeError
from modescape.store.files import cached_sha256
from modescape.store.run import SPLITS, Run


def verify_run(path: str | Path) -> list[str]:
    """Every integrity problem of the run at `path` ([] when all is well): what `modescape
    verify` lists."""
    try:
        return Run(path).verify()
    except ModescapeError as e:
        return [str(e)]


def run_summary(run: Run) -> dict[str, Any]:
    """What `modescape info` shows: config, data, and per member state, seed and accuracy;
    "problems" lists integrity problems (the CLI exits non-zero when there are any)."""
    problems = run.verify()
    view = Run(run.path, trust=True)  # show what is there; the problems say what to distrust
    manifest = view.manifest
    members = []
    for m in view.members:
        try:
            info, metrics = view.member_info(m), view.metrics(m)
        except ModescapeError as e:
            info, metrics = {"state": "unreadable", "reason": str(e)}, []
        last = (metrics or [{}])[-1]
        members.append(
            {
                "member": m,
                "state": info["state"],
                "epoch": info.get("epoch", 0),
                "snapshots": len(info.get("snapshots", [])),
                "seed": manifest.get("seeds", {}).get(f"member_{m}"),
                "test_acc": last.get("test_acc"),
                "val_acc": last.get("val_acc"),
                "time_s": info.get("time_s"),
                "reason": info.get("reason"),
            }
        )
    return {
        "path": str(run.path),
        "origin": describe_origin(manifest),
        "config": manifest["config"],
        "data": manifest.get("data", {}),
        "versions": manifest.get("versions", {}),
        "members": members,
        "problems": problems,
    }


_ORIGINS = {
    "seed-notebooks": "the seed notebooks' Keras files (pixels / 255; file {k} saved after "
    "epoch k + 1)",
    "stated": "epochs as named{offset}; pixels as data.scaling",
}


def describe_origin(manifest: dict[str, Any]) -> str:
    """One line saying where a run's snapshots came from: trained here, or imported (from
    which files, of which format and origin). `modescape info` and the report show it."""
    imported = manifest.get("imported")
    if not imported:
        return "trained by modescape"
    offset = int(imported.get("epoch_offset") or 0)
    how = _ORIGINS.get(str(imported.get("origin")), "origin not recorded")
    how = how.replace("{offset}", f" + {offset}" if offset else "")
    files = imported.get("files", {})
    return (
        f"imported, not trained here: {len(files)} {imported.get('format', '?')} file(s) "
        f"matching {imported.get('pattern')!r} under {imported.get('source')} ({how})"
    )


def run_problems(run: Run) -> list[str]:
    """Problems of `run`: its manifest's seal and config, recorded files missing or changed,
    unrecorded labels, members whose files cannot be read or whose finish was not recorded."""
    problems = []
    try:  # the manifest's own seal and config.json, even when `run` was opened with trust
        Run(run.path)
    except ModescapeError as e:
        problems.append(str(e))
    recorded = run.manifest.get("files", {})
    for rel, digest in sorted(recorded.items()):
        f = run.path / rel
        if not f.exists():
            problems.append(f"missing {rel}")
        elif cached_sha256(f) != digest:
            problems.append(f"checksum mismatch {rel}")
    for split in SPLITS:
        if run.data_summary.get(f"n_{split}") and f"labels/{split}.npy" not in recorded:
            problems.append(f"labels/{split}.npy is not recorded in the manifest")
    for m in run.members:
        problems += _member_problems(run, m, recorded)
    return problems


def _member_problems(run: Run, member: int, recorded: dict[str, str]) -> list[str]:
    rel = f"members/m{member:03d}/member.json"
    try:
        info = Run(run.path, trust=True).member_info(member)
        if info["state"] == "finished" and rel not in recorded:
            return [f"{rel}: finished but not recorded in the manifest (rerun train)"]
        if info["state"] == "finished":
            run.metrics(member)  # decodes every line
    except ModescapeError as e:
        return [str(e)]
    return []
