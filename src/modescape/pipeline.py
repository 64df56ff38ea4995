"""`modescape run`: from nothing to a report in one call (train → analyse → report).

Each step is idempotent: finished members are skipped, so rerunning after an interruption picks
up where it stopped, and the analyses are recomputed from the cached predictions in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modescape.config import RunConfig
from modescape.errors import ModescapeError


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
) -> Path:
    """Create or reopen the run and train `members` (default all) with the chosen executor."""
    from modescape.train.launch import run_members
    from modescape.train.trainer import train

    if executor == "serial":
        return train(config, out, members=members, device=device, progress=progress).path
    from modescape.train.trainer import prepare_run

    run = prepare_run(out, config)
    result = run_members(
        run.path,
        members,
        executor,
        workers=workers,
        device=device,
        retries=retries,
        slurm=slurm,
    )
    if not result.ok:
        reasons = "; ".join(f"member {m}: {r}" for m, r in sorted(result.failed.items()))
        raise ModescapeError(
            f"{len(result.failed)} member(s) failed ({reasons}); "
            "run the same command again to resume them"
        )
    return run.path


def subspace_defaults(config: RunConfig):
    """The paper's subspace settings, shrunk to what a short run has (`modescape run --epochs 3`):
    the Gaussians need at least two snapshots after initialisation."""
    from modescape.analysis.subspace import SAMPLERS, SubspaceConfig

    kept = config.train.epochs // config.train.snapshot_every
    if kept < 2:
        return SubspaceConfig(methods=("random", "dropout"), n_snapshots=2, rank=1)
    n = min(10, kept)
    return SubspaceConfig(methods=SAMPLERS, n_snapshots=n, rank=min(5, n - 1))


def run_pipeline(
    config: RunConfig,
    out: str | Path,
    *,
    executor: str = "serial",
    workers: int = 2,
    device: str = "auto",
    log: Callable[[str], Any] = print,
) -> Path:
    """Train every member, run every analysis, write the report; return the report's path."""
    from modescape.report.html import write_report
    from modescape.studies.landscape import run_landscape
    from modescape.studies.shift import run_shift
    from modescape.studies.subspace import run_subspace
    from modescape.studies.weights_functions import analyze_run

    out = Path(out)
    started = time.perf_counter()
    log(
        f"[1/3] training {config.members} x {config.model.arch} on {config.data.name} "
        f"({config.train.epochs} epochs) in {out}"
    )
    train_run(config, out, executor=executor, workers=workers, device=device)
    log(f"[2/3] analysing {out}")
    indent = lambda msg: log(f"      {msg}")  # noqa: E731
    analyze_run(out, log=indent)
    run_subspace(out, subspace_defaults(config), log=indent)
    run_landscape(out, log=indent)
    run_shift(out, log=indent)
    log(f"[3/3] writing the report in {out / 'report'}")
    index = write_report(out)
    log(f"done in {time.perf_counter() - started:.0f} s: open {index}")
    return index
