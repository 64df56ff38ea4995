"""Experiment trackers: each member's per-epoch record and the run config, in TensorBoard,
Weights & Biases or MLflow (optional extras: `pip install modescape[tensorboard]`, ...).

One tracker run per member, grouped by run directory: TensorBoard writes
`<logdir>/m000/`, `<logdir>/m001/`, ... (default logdir `<run>/tracking/tensorboard`); W&B uses
the run directory's name as the group and `m000` as the run name; MLflow an experiment named
after the run directory with one MLflow run per member. Each is configured as its users
configure it: its environment variables (WANDB_PROJECT, WANDB_MODE, WANDB_DIR,
MLFLOW_TRACKING_URI, ...) and `--track-option KEY=VALUE` (`Tracking`; the table of settings is
in `training.tracker_backends`). The record logged is exactly the line metrics.jsonl gets (every
number but "epoch", which is the step).

Trackers never change what is trained: every call runs with the global torch, NumPy and Python
random states saved and restored (a tracker library may draw from them, e.g. for run ids), and
the trainer's own generators are private. A tracked run's snapshots are byte-identical to an
untracked one's. Tracking is an option of the launch (`--track`), not of the RunConfig, so
tracked and untracked runs share their config and can be resumed either way.
`export_run` writes an existing run to a tracker afterwards (for offline cluster nodes); a
member already exported is skipped (W&B, MLflow) or the export refused (TensorBoard).
Any failure of a tracker library reaches the user as one ModescapeError line.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from modescape.errors import ModescapeError, check_choice, choice_error
from modescape.training.tracker_backends import BACKENDS, OPTIONS, import_tracker

log = logging.getLogger(__name__)


class TrackerKind(StrEnum):
    TENSORBOARD = "tensorboard"
    WANDB = "wandb"
    MLFLOW = "mlflow"


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Restore every global random state on exit, whatever the block draws."""
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class MemberTracker(Protocol):
    """One member's tracker run."""

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_epoch(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Tracking:
    """A tracker and its `--track-option` settings (validated here, picklable for workers)."""

    kind: str
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", check_choice("tracker", self.kind, TrackerKind))
        for key, _ in self.options:
            if key not in OPTIONS[self.kind]:
                raise choice_error(f"--track-option for {self.kind}:", key, OPTIONS[self.kind])

    @classmethod
    def parse(cls, kind: str, assignments: Sequence[str] = ()) -> Tracking:
        """From `--track KIND --track-option KEY=VALUE ...`."""
        pairs = []
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ModescapeError(f"--track-option expects KEY=VALUE, got {item!r}")
            pairs.append((key.strip(), value.strip()))
        return cls(kind, tuple(pairs))

    def settings(self) -> dict[str, str]:
        """Every option's value: `--track-option`, else the tracker's environment variable."""
        given = dict(self.options)
        out = {}
        for key, env in OPTIONS[self.kind].items():
            value = given.get(key) or (os.environ.get(env) if env else None)
            if value:
                out[key] = value
        return out


def as_tracking(track: str | Tracking) -> Tracking:
    return track if isinstance(track, Tracking) else Tracking(str(track))


def check_tracking(track: str | Tracking) -> Tracking:
    """Checked before any work: the tracker's name, options and package."""
    spec = as_tracking(track)
    if spec.kind != TrackerKind.TENSORBOARD:  # tensorboard's import is checked by its writer
        with rng_untouched():
            import_tracker(spec.kind)
    return spec


def run_key(run_path: Path) -> str:
    """A stable identity of a run for its tracker runs: its creation record, not its path."""
    from modescape.store.manifest import read_manifest

    try:
        m = read_manifest(run_path, trust=True)
        text = f"{m.created}|{m.config}"
    except (ModescapeError, OSError):
        text = str(run_path.resolve())
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@contextlib.contextmanager
def one_line_errors(kind: str) -> Iterator[None]:
    """A tracker library's exception (a traceback of its internals) as one ModescapeError."""
    try:
        yield
    except ModescapeError:
        raise
    except Exception as e:  # any library error: the user needs its message, not its frames
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ModescapeError(f"{kind} tracker failed: {type(e).__name__}: {first}") from None


class GuardedTracker:
    """A tracker whose every call leaves the global random states as they were, and whose
    library errors are one line."""

    def __init__(self, inner: MemberTracker, kind: str = "tracker"):
        self.inner = inner
        self.kind = kind
        self.skip = bool(getattr(inner, "skip", False))

    def log_config(self, config: dict[str, Any]) -> None:
        with rng_untouched(), one_line_errors(self.kind):
            self.inner.log_config(config)

    def log_epoch(self, record: dict[str, Any]) -> None:
        with rng_untouched(), one_line_errors(self.kind):
            self.inner.log_epoch(record)

    def close(self) -> None:
        with rng_untouched(), one_line_errors(self.kind):
            self.inner.close()


def open_tracker(
    kind: str | Tracking,
    run_path: str | Path,
    member: int,
    logdir: str | Path | None = None,
    *,
    job: str = "train",
) -> GuardedTracker:
    """A tracker run for `member` of the run at `run_path` (`logdir`: TensorBoard only;
    `job`: "train" continues a resumed member's tracker run, "export" marks a skip)."""
    spec = as_tracking(kind)
    run_path = Path(run_path)
    settings = spec.settings()
    if logdir is not None:
        settings["logdir"] = str(logdir)
    with rng_untouched(), one_line_errors(spec.kind):
        inner = BACKENDS[spec.kind](settings, run_path, member, run_key(run_path), job)
    return GuardedTracker(inner, spec.kind)


def export_run(
    run_path: str | Path, kind: str | Tracking, logdir: str | Path | None = None
) -> Path:
    """Write every member's metrics and the config of an existing run to a tracker; returns the
    TensorBoard logdir (or the run's tracking folder). Idempotent: W&B and MLflow skip members
    already exported; a TensorBoard logdir that already holds a member's events is refused
    (exporting twice would double every curve)."""
    from modescape.store.run import load_run

    run = load_run(run_path)
    spec = check_tracking(kind)
    if spec.kind == TrackerKind.TENSORBOARD:
        logdir = logdir or spec.settings().get("logdir")
    folder = Path(logdir) if logdir else run.path / "tracking" / str(spec.kind)
    if spec.kind == TrackerKind.TENSORBOARD:
        taken = [m for m in run.members if any((folder / f"m{m:03d}").glob("events.*"))]
        if taken:
            raise ModescapeError(
                f"{folder} already holds TensorBoard events of member(s) {taken}; "
                "export into another --logdir"
            )
    config = run.manifest.config or run.config.to_dict()
    done = 0
    for m in run.members:
        records = run.metrics(m)
        if not records:
            continue
        tracker = open_tracker(spec, run.path, m, folder if logdir else None, job="export")
        if tracker.skip:
            continue
        try:
            tracker.log_config(config)
            for record in records:
                tracker.log_epoch(record.to_dict())
        finally:
            tracker.close()
        done += 1
    log.info("exported %d member(s) of %s to %s", done, run.path, spec.kind)
    return folder
