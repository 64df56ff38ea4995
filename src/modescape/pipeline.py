"""`modescape run`: from nothing to a report in one call (train → analyse → report).

Each step is idempotent: finished members are skipped, so rerunning after an interruption picks
up where it stopped, and the analyses are recomputed from the cached predictions in seconds.
Progress goes to the `modescape.pipeline` logger (the CLI shows INFO messages on stderr).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modescape.config import LAUNCH_RANGES, RunConfig, check_range
from modescape.errors import ModescapeError, check_choice
from modescape.options import Executor
from modescape.registry import Study, studies

if TYPE_CHECKING:
    from modescape.training.tracking import Tracking

log = logging.getLogger(__name__)


def train_run(
    config: RunConfig,
    out: str | Path,
    *,
    members: list[int] | None = None,
    executor: str = "serial",
    workers: int = 2,
    device: str = "auto",
    retries: int = 0,
    slurm: Any = None,
    progress: bool = True,
    track: str | Tracking | None = None,
) -> Path:
    """Create or reopen the run and train `members` (default all) with the chosen executor.

    An empty `members` (a shard with no member, e.g. `--shard 3/4` of 3 members) creates or
    checks the run directory and trains nothing, with a warning that says so. `track` names an
    experiment tracker for every member (`training.tracking`; not part of the config)."""
    from modescape.training.launch import run_members
    from modescape.training.prepare import prepare_run
    from modescape.training.trainer import train

    _check_launch(executor, workers, retries, device, track)
    if members is not None and len(members) == 0:
        log.warning("no member to train in %s: the selection of %d member(s) is empty", out,
                    config.members)  # fmt: skip
        return prepare_run(out, config, device=device).path
    if executor == Executor.SERIAL:
        return train(
            config, out, members=members, device=device, progress=progress, track=track
        ).path
    run = prepare_run(out, config, device=device)
    job_fn = None
    if track is not None:  # a picklable job function for the pool and SLURM tasks
        import functools

        from modescape.training.trainer import train_member

        job_fn = functools.partial(train_member, track=track)
        members = run.members if members is None else members
    result = run_members(
        run.path, members, executor, job_fn=job_fn, workers=workers, device=device,
        retries=retries, slurm=slurm,
    )  # fmt: skip
    for job_id in result.job_ids:
        log.info("SLURM array job %s (sacct -j %s shows its tasks)", job_id, job_id)
    if not result.ok:
        reasons = "; ".join(f"member {m}: {r}" for m, r in sorted(result.failed.items()))
        raise ModescapeError(
            f"{len(result.failed)} member(s) failed ({reasons}); "
            "run the same command again to resume them"
        )
    return run.path


def _check_launch(
    executor: str, workers: int, retries: int, device: str, track: str | Tracking | None
) -> None:
    """Checked before the run directory exists, so a typo leaves nothing behind."""
    from modescape.training.loop import resolve_device

    check_choice("executor", executor, Executor)
    check_range("workers", workers, LAUNCH_RANGES["workers"])
    check_range("retries", retries, LAUNCH_RANGES["retries"])
    if executor == Executor.SLURM:  # SLURM tasks resolve the device on their own node
        from modescape.training.slurm import check_slurm_available

        check_slurm_available()
    else:
        resolve_device(device)
    if track is not None:
        from modescape.training.tracking import check_tracking

        check_tracking(track)


def _resolved_cpu(device: str) -> bool:
    from modescape.training.loop import resolve_device

    return resolve_device(device).type == "cpu"


def study_defaults(config: RunConfig) -> dict[str, Any]:
    """The settings `modescape run` gives each registered study that applies to `config` (by
    name): its `default_settings`, sized by the run's profile (`modescape.profiles`)."""
    from modescape.profiles import study_settings

    return {
        s.name: study_settings(config.profile, s.name, s.default_settings(config))
        for s in studies()
        if s.applies_to(config)
    }


def check_skip(skip: Sequence[str]) -> tuple[str, ...]:
    """The studies `modescape run --skip` leaves out, checked: any registered study but the
    weight/function-space analysis, which the report's overview is built on."""
    allowed = [s.name for s in studies() if s.name != "analysis"]
    return tuple(check_choice("study to skip", name, allowed) for name in skip)


def study_stages(
    config: RunConfig, skip: Sequence[str] = ()
) -> list[tuple[str, Callable[[Path], Any]]]:
    """What `run_pipeline` runs after training, in order: (study name, function of the run
    directory) for every registered study that applies to `config` (`modescape.registry`) and
    is not in `skip`, each with the settings `modescape run` uses for it, the run's profile
    included (benchmarks time them one by one)."""
    skip = check_skip(skip)
    chosen = study_defaults(config)
    return [
        (s.name, _stage(s, chosen[s.name]))
        for s in studies()
        if s.applies_to(config) and s.name not in skip
    ]


def _stage(study: Study, settings: Any) -> Callable[[Path], Any]:
    return lambda path: study.get("runner")(path, settings)


def estimate_run(config: RunConfig, skip: Sequence[str] = ()) -> Any:
    """The estimated cost of `run_pipeline(config, skip=skip)` here: training and each study,
    from a short timed probe (`modescape.estimate`); `.lines()` prints it."""
    from modescape.estimate import estimate_run as estimate

    return estimate(config, skip=check_skip(skip))


def run_pipeline(
    config: RunConfig,
    out: str | Path,
    *,
    executor: str = "serial",
    workers: int = 2,
    device: str = "auto",
    track: str | Tracking | None = None,
    estimate: bool = True,
    skip: Sequence[str] = (),
) -> Path:
    """Train every member, run every study (but those named in `skip`), write the report;
    return the report's path.

    `estimate`: first log the estimated cost of each stage (a probe of a few seconds; on CPU
    only, as the probe times this process's CPU)."""
    from modescape.report.html import write_report

    out = Path(out)
    started = time.perf_counter()
    stages = study_stages(config, skip)  # checks `skip` before anything is trained
    if estimate and _resolved_cpu(device) and executor == Executor.SERIAL:
        from modescape.estimate import log_estimate

        log_estimate(estimate_run(config, skip))
    log.info(
        "[1/3] training %d x %s on %s (%d epochs) in %s",
        config.members, config.model.arch, config.data.name, config.train.epochs, out,
    )  # fmt: skip
    train_run(config, out, executor=executor, workers=workers, device=device, track=track)
    log.info("[2/3] analysing %s", out)
    for _, stage in stages:
        stage(out)
    log.info("[3/3] writing the report in %s", out / "report")
    index = write_report(out)
    log.info("done in %.0f s: open %s", time.perf_counter() - started, index)
    return index
