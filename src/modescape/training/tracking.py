"""Experiment trackers: each member's per-epoch record and the run config, in TensorBoard,
Weights & Biases or MLflow (optional extras: `pip install modescape[tensorboard]`, ...).

One tracker run per member, grouped by run directory: TensorBoard writes
`<logdir>/m000/`, `<logdir>/m001/`, ... (default logdir `<run>/tracking/tensorboard`); W&B uses
the run directory's name as the group and `m000` as the run name (offline unless `WANDB_MODE`
says otherwise); MLflow an experiment named after the run directory with one MLflow run per
member. The record logged is exactly the line metrics.jsonl gets (every number but "epoch",
which is the step).

Trackers never change what is trained: every call runs with the global torch, NumPy and Python
random states saved and restored (a tracker library may draw from them, e.g. for run ids), and
the trainer's own generators are private. A tracked run's snapshots are byte-identical to an
untracked one's. Tracking is an option of the launch (`--track`), not of the RunConfig, so
tracked and untracked runs share their config and can be resumed either way.
`export_run` writes an existing run to a tracker afterwards (for offline cluster nodes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from modescape.errors import ModescapeError, check_choice

log = logging.getLogger(__name__)


class TrackerKind(StrEnum):
    TENSORBOARD = "tensorboard"
    WANDB = "wandb"
    MLFLOW = "mlflow"


class MemberTracker(Protocol):
    """One member's tracker run."""

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_epoch(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


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


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record, without the step ("epoch") and unset values (lr None)."""
    return {
        k: float(v)
        for k, v in sorted(record.items())
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train.lr": 0.0016, ...}`: nested config sections as dotted keys (tracker params)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict) and v:
            out |= flat_config(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list | tuple | dict) else v
    return out


class _TensorBoard:
    def __init__(self, logdir: Path, member: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ModescapeError(
                "--track tensorboard needs the tensorboard package: pip install "
                f"modescape[tensorboard] ({e})"
            ) from None
        self.writer = SummaryWriter(log_dir=str(logdir / f"m{member:03d}"))

    def log_config(self, config: dict[str, Any]) -> None:
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=2, sort_keys=True)}\n```")

    def log_epoch(self, record: dict[str, Any]) -> None:
        for k, v in scalars(record).items():
            self.writer.add_scalar(k, v, global_step=int(record["epoch"]))
        self.writer.flush()  # an epoch is minutes: make it visible now, not at close

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run_path: Path, member: int):
        wandb = _import("wandb")
        self.wandb = wandb
        self.run = wandb.init(
            project="modescape",
            group=run_path.name,
            name=f"m{member:03d}",
            dir=str(run_path / "tracking"),
            mode="offline",
            reinit=True,
        )

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=int(record["epoch"]))

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run_path: Path, member: int):
        mlflow = _import("mlflow")
        self.mlflow = mlflow
        uri = (run_path / "tracking" / "mlruns").resolve().as_uri()
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        name = run_path.resolve().name
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        self.run_id = self.client.create_run(exp_id, run_name=f"m{member:03d}").info.run_id

    def log_config(self, config: dict[str, Any]) -> None:
        for k, v in flat_config(config).items():
            self.client.log_param(self.run_id, k, v)

    def log_epoch(self, record: dict[str, Any]) -> None:
        for k, v in scalars(record).items():
            self.client.log_metric(self.run_id, k, v, step=int(record["epoch"]))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as e:
        raise ModescapeError(
            f"--track {name} needs the {name} package: pip install modescape[{name}] ({e})"
        ) from None


class GuardedTracker:
    """A tracker whose every call leaves the global random states as they were."""

    def __init__(self, inner: MemberTracker):
        self.inner = inner

    def log_config(self, config: dict[str, Any]) -> None:
        with rng_untouched():
            self.inner.log_config(config)

    def log_epoch(self, record: dict[str, Any]) -> None:
        with rng_untouched():
            self.inner.log_epoch(record)

    def close(self) -> None:
        with rng_untouched():
            self.inner.close()


def open_tracker(
    kind: str, run_path: str | Path, member: int, logdir: str | Path | None = None
) -> GuardedTracker:
    """A tracker run for `member` of the run at `run_path` (`logdir`: TensorBoard only)."""
    check_choice("tracker", kind, TrackerKind)
    run_path = Path(run_path)
    with rng_untouched():
        if kind == TrackerKind.TENSORBOARD:
            folder = Path(logdir) if logdir else run_path / "tracking" / "tensorboard"
            inner: MemberTracker = _TensorBoard(folder, member)
        elif kind == TrackerKind.WANDB:
            inner = _WandB(run_path, member)
        else:
            inner = _MLflow(run_path, member)
    return GuardedTracker(inner)


def export_run(run_path: str | Path, kind: str, logdir: str | Path | None = None) -> Path:
    """Write every member's metrics and the config of an existing run to a tracker; returns the
    TensorBoard logdir (or the run's tracking folder). Refuses a TensorBoard logdir that
    already holds a member's events (exporting twice would double every curve)."""
    from modescape.store.run import load_run

    run = load_run(run_path)
    check_choice("tracker", kind, TrackerKind)
    folder = Path(logdir) if logdir else run.path / "tracking" / str(kind)
    if kind == TrackerKind.TENSORBOARD:
        taken = [m for m in run.members if any((folder / f"m{m:03d}").glob("events.*"))]
        if taken:
            raise ModescapeError(
                f"{folder} already holds TensorBoard events of member(s) {taken}; "
                "export into another --logdir"
            )
    config = run.manifest.get("config", run.config.to_dict())
    for m in run.members:
        records = run.metrics(m)
        if not records:
            continue
        tracker = open_tracker(kind, run.path, m, folder)
        try:
            tracker.log_config(config)
            for record in records:
                tracker.log_epoch(record)
        finally:
            tracker.close()
    log.info("exported %d member(s) of %s to %s", len(run.members), run.path, kind)
    return folder
