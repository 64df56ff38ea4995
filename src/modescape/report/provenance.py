"""What a reader needs to rerun or trust a run: the full resolved configuration of the run and of
every study, the code and package versions, the machine, and the wall time of every stage.

Everything is read from what the run recorded (manifest.json, member.json, the study summaries);
nothing here asks the machine the report is written on, which may not be the one that trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modescape.config import flat_settings
from modescape.registry import studies
from modescape.report.base import ReportContext, Table
from modescape.report.wording import sig


def flatten(d: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Nested settings as (dotted key, value) pairs in key order: {"train": {"lr": 1e-3}} ->
    [("train.lr", 0.001)]. Lists stay one value, written as JSON-like text."""
    return [(k, _text(v)) for k, v in flat_settings(d, sort_keys=True).items()]


def _text(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(_text(v)) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{}"
    if hasattr(value, "value"):  # a str enum
        return str(value.value)
    return value


def config_table(ctx: ReportContext) -> Table:
    """Every field of the run's configuration and of each study's settings, as `scope, key,
    value` rows (scope: run, then each registered study that ran)."""
    rows = [["run", k, v] for k, v in flatten(ctx.run.config.to_dict())]
    for name in (s.name for s in studies()):
        settings = study_config(ctx, name)
        if settings is not None:
            rows += [[name, k, v] for k, v in flatten(settings)]
    return Table(
        "config",
        ["scope", "key", "value"],
        rows,
        "The full resolved configuration of the run (config.json) and the settings each study "
        "ran with (its summary.json), flattened as section.key.",
        align_numbers=False,
        collapsed=True,
    )


def study_config(ctx: ReportContext, name: str) -> dict[str, Any] | None:
    """The settings study `name` ran with (its summary's `config`), None when it has not run."""
    res = ctx.study(name)
    if res is None:
        return None
    return dict(getattr(res.summary, "config", None) or {})


def environment_table(ctx: ReportContext) -> Table:
    """Code version, git commit, package versions and the machines, as recorded."""
    manifest = ctx.run.manifest
    versions = dict(manifest.versions)
    rows: list[list[Any]] = [
        ["modescape version", manifest.modescape_version or versions.get("modescape", "?")],
        ["git commit", versions.pop("modescape_git_commit", "not recorded")],
        ["run format", manifest.format],
        ["created", manifest.created or "?"],
    ]
    machine = {} if manifest.machine is None else manifest.machine.to_dict()
    machine["platform"] = versions.pop("platform", "not recorded")
    rows += [[f"package: {k}", v] for k, v in sorted(versions.items()) if k != "modescape"]
    rows += [[f"machine: {k}", v] for k, v in sorted(machine.items())]
    hosts = sorted(
        {
            f"{i.host or '?'} ({i.device or '?'}, {i.threads or '?'} thread"
            f"{'' if i.threads == 1 else 's'})"
            for i in ctx.member_infos
        }
    )
    rows.append(["members trained on", "; ".join(hosts)])
    return Table(
        "environment",
        ["item", "value"],
        rows,
        "Recorded when the run was created (versions, machine) and by each member (host).",
        align_numbers=False,
        collapsed=True,
    )


def timings_table(ctx: ReportContext) -> Table:
    """Wall time of every stage: each member's training, each analysis stage, each study."""
    rows: list[list[Any]] = []
    for m, info in zip(ctx.members, ctx.member_infos):
        rows.append(["training", f"member {m}", sig(info.time_s)])
    for name in (s.name for s in studies()):
        res = ctx.study(name)
        if res is None:
            continue
        stages = getattr(res.summary, "timings_s", None)  # per stage (the analysis) or in total
        if stages is not None:
            rows += [[name, stage.removesuffix("_s"), sig(t)] for stage, t in stages.items()]
        else:
            rows.append([name, "total", sig(getattr(res.summary, "elapsed_s", None))])
    return Table(
        "timings",
        ["stage", "part", "wall_time_s"],
        rows,
        "Wall time in seconds (blank: not recorded by the version that ran the stage; a study "
        "that reused cached results records the time of its last call).",
        collapsed=True,
    )


__all__ = ["config_table", "environment_table", "flatten", "study_config", "timings_table"]
