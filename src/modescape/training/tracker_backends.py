"""The three trackers, each configured the way its own users configure it.

Every setting is read, in order, from `--track-option KEY=VALUE`, then the tracker's own
environment variable, then a default that keeps everything inside the run directory:

| tracker     | option         | environment               | default                           |
|-------------|----------------|---------------------------|-----------------------------------|
| tensorboard | logdir         |                           | <run>/tracking/tensorboard        |
| wandb       | project        | WANDB_PROJECT             | modescape                         |
|             | entity         | WANDB_ENTITY              | the account's default             |
|             | mode           | WANDB_MODE                | offline (cluster nodes are)       |
|             | dir            | WANDB_DIR                 | <run>/tracking                    |
|             | group          | WANDB_RUN_GROUP           | the run directory's name          |
|             | tags           | WANDB_TAGS (comma list)   | none                              |
|             | job_type       | WANDB_JOB_TYPE            | train / export                    |
| mlflow      | tracking_uri   | MLFLOW_TRACKING_URI       | sqlite:///<run>/tracking/mlflow.db|
|             | experiment     | MLFLOW_EXPERIMENT_NAME    | the run directory's name          |

MLflow 3 no longer accepts a plain folder as its store, hence SQLite by default.

Each member is one tracker run with a stable identity (`run_key`: the run's creation record
and the member): W&B gets it as the run id, MLflow as tags. A resumed member continues its
tracker run; an export finds the member already exported and skips it, so exporting twice
changes nothing (TensorBoard, which has no run identity, refuses a logdir that holds events).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from modescape.config import flat_settings
from modescape.errors import ModescapeError

log = logging.getLogger(__name__)

OPTIONS: dict[str, dict[str, str | None]] = {  # option -> environment variable
    "tensorboard": {"logdir": None},
    "wandb": {
        "project": "WANDB_PROJECT",
        "entity": "WANDB_ENTITY",
        "mode": "WANDB_MODE",
        "dir": "WANDB_DIR",
        "group": "WANDB_RUN_GROUP",
        "tags": "WANDB_TAGS",
        "job_type": "WANDB_JOB_TYPE",
    },
    "mlflow": {"tracking_uri": "MLFLOW_TRACKING_URI", "experiment": "MLFLOW_EXPERIMENT_NAME"},
}
WANDB_MODES = ("offline", "online", "disabled")


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record, without the step ("epoch") and unset values (lr None)."""
    return {
        k: float(v)
        for k, v in sorted(record.items())
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """`{"train.lr": 0.0016, ...}`: nested config sections as dotted keys (tracker params),
    lists and empty sections as JSON text (a tracker param is a scalar)."""
    return {
        k: json.dumps(v) if isinstance(v, list | tuple | dict) else v
        for k, v in flat_settings(config).items()
    }


def import_tracker(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as e:
        raise ModescapeError(
            f"--track {name} needs the {name} package: pip install modescape[{name}] ({e})"
        ) from None


class TensorBoard:
    def __init__(self, settings: dict[str, str], run_path: Path, member: int, key: str, job: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ModescapeError(
                "--track tensorboard needs the tensorboard package: pip install "
                f"modescape[tensorboard] ({e})"
            ) from None
        logdir = Path(settings.get("logdir") or run_path / "tracking" / "tensorboard")
        self.writer = SummaryWriter(log_dir=str(logdir / f"m{member:03d}"))
        self.skip = False

    def log_config(self, config: dict[str, Any]) -> None:
        self.writer.add_text("config", f"```\n{json.dumps(config, indent=2, sort_keys=True)}\n```")

    def log_epoch(self, record: dict[str, Any]) -> None:
        for k, v in scalars(record).items():
            self.writer.add_scalar(k, v, global_step=int(record["epoch"]))
        self.writer.flush()  # an epoch is minutes: make it visible now, not at close

    def close(self) -> None:
        self.writer.close()


class WandB:
    def __init__(self, settings: dict[str, str], run_path: Path, member: int, key: str, job: str):
        wandb = import_tracker("wandb")
        mode = settings.get("mode") or "offline"
        if mode not in WANDB_MODES:
            raise ModescapeError(f"wandb mode {mode!r} (allowed: {', '.join(WANDB_MODES)})")
        folder = Path(settings.get("dir") or run_path / "tracking")
        folder.mkdir(parents=True, exist_ok=True)
        run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{run_path.name}-{key}-m{member:03d}")[-64:]
        self.skip = job == "export" and mode == "offline" and _offline_exists(folder, run_id)
        if self.skip:
            log.info("wandb: member %d already exported (offline run %s); skipped", member, run_id)
            return
        tags = [t.strip() for t in (settings.get("tags") or "").split(",") if t.strip()]
        self.run = wandb.init(
            project=settings.get("project") or "modescape",
            entity=settings.get("entity") or None,
            group=settings.get("group") or run_path.name,
            name=f"m{member:03d}",
            id=run_id,
            # a resumed member continues its run; an export never appends to an existing one
            resume="allow" if job == "train" else "never",
            job_type=settings.get("job_type") or job,
            tags=tags or None,
            dir=str(folder),
            mode=mode,
            reinit="finish_previous",
        )

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.run.log(scalars(record), step=int(record["epoch"]))

    def close(self) -> None:
        self.run.finish()


def _offline_exists(folder: Path, run_id: str) -> bool:
    """Whether W&B's offline folder (`<dir>/wandb/offline-run-<time>-<id>`) holds this run."""
    return any((folder / "wandb").glob(f"offline-run-*-{run_id}"))


class MLflow:
    def __init__(self, settings: dict[str, str], run_path: Path, member: int, key: str, job: str):
        mlflow = import_tracker("mlflow")
        uri, artifacts = settings.get("tracking_uri"), None
        if not uri:  # inside the run, artifacts too (MLflow's default is ./mlruns of the cwd)
            folder = (run_path / "tracking").resolve()
            folder.mkdir(parents=True, exist_ok=True)
            uri, artifacts = f"sqlite:///{folder / 'mlflow.db'}", (folder / "mlflow").as_uri()
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        name = settings.get("experiment") or run_path.resolve().name
        exp = self.client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else self.client.create_experiment(name, artifact_location=artifacts)
        )
        tags = {"modescape.run": key, "modescape.member": str(member), "modescape.job": job}
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = self.client.search_runs([exp_id], filter_string=query, max_results=1)
        self.skip = job == "export" and bool(found)
        if self.skip:
            log.info("mlflow: member %d already exported to %s (%s); skipped", member, uri, name)
        elif found:  # a resumed member continues its run
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(exp_id, run_name=f"m{member:03d}", tags=tags)
            self.run_id = run.info.run_id

    def log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        known = self.client.get_run(self.run_id).data.params
        params = [Param(k, str(v)) for k, v in flat_config(config).items() if k not in known]
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log_epoch(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step, ts = int(record["epoch"]), int(time.time() * 1000)
        metrics = [Metric(k, v, ts, step) for k, v in scalars(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


BACKENDS = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow}
