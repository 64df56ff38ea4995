"""What `modescape info` and `modescape verify` report about a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modescape.errors import ModescapeError
from modescape.registry import studies
from modescape.store.records import EpochMetrics, MemberInfo
from modescape.store.run import Run


def verify_run(path: str | Path) -> list[str]:
    """Every integrity problem of the run at `path` ([] when all is well): what `modescape
    verify` lists."""
    try:
        return Run(path).verify()
    except ModescapeError as e:
        return [str(e)]


def run_summary(run: Run) -> dict[str, Any]:
    """What `modescape info` shows: config, data, per member state, seed and accuracy, and which
    registered studies have run (`studies`: name → bool); "problems" lists integrity problems
    (the CLI exits non-zero when there are any)."""
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
        members.append(
            {
                "member": m,
                "state": info.state,
                "epoch": info.epoch,
                "snapshots": len(info.snapshots),
                "seed": manifest.get("seeds", {}).get(f"member_{m}"),
                "test_acc": last.test_acc,
                "val_acc": last.val_acc,
                "time_s": info.time_s,
                "reason": info.reason,
            }
        )
    done = set(view.studies_run())
    return {
        "path": str(run.path),
        "studies": {s.name: s.name in done for s in studies()},  # registered: has it run?
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
