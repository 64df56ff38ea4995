"""The SLURM executor: one array job per attempt through submitit, one task per member.

The submitit logs and `jobs.json` (which task ran which member) live in `<run>/slurm/`. A
cancelled or pre-empted task stops at once (SIGTERM becomes an exception) and, because every job
function is idempotent, its retry resumes from the member's last snapshot.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modescape.config import SLURM_RANGES, check_range
from modescape.errors import ModescapeError
from modescape.store.files import read_json, write_json

log = logging.getLogger(__name__)

JobFn = Callable[..., None]

# SLURM job states in which a task may still produce a result (everything else is final).
ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
     "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "PREEMPTED"}
)  # fmt: skip
# A task that left the queue without a result file may just be slow to show it (shared file
# systems): wait this long before calling it failed.
_RESULT_GRACE_S = 10.0


@dataclass(frozen=True)
class SlurmConfig:
    """Resources of one member's SLURM task (submitit's `AutoExecutor` parameters)."""

    partition: str | None = None  # None: the cluster's default partition
    time: int = 60  # minutes per task; a timed-out member resumes on retry
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem_gb: float | None = None  # None: the partition's default
    array_parallelism: int = 64  # at most this many tasks of one array run at once
    extra: Mapping[str, Any] = field(default_factory=dict)  # more sbatch options, e.g. account
    poll_s: float = 2.0  # how often to ask the scheduler while waiting

    def __post_init__(self) -> None:
        for name, allowed in SLURM_RANGES.items():
            value = getattr(self, name)
            if value is not None:
                check_range(f"slurm {name}", value, allowed)


def check_slurm_available() -> None:
    """Refuse the SLURM executor where it cannot submit: before the run directory exists."""
    _import_submitit()
    if shutil.which("sbatch") is None:
        raise ModescapeError("the slurm executor needs SLURM's sbatch on PATH")


# ---- SLURM ------------------------------------------------------------------------------------


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ModescapeError(
            "the slurm executor needs submitit: pip install 'modescape[slurm]'"
        ) from None
    return submitit


class TaskInterruptedError(Exception):
    """SLURM told a member's task to stop (scancel, preemption, time limit)."""


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise TaskInterruptedError(
        f"SLURM sent {signal.Signals(signum).name} (scancel, preemption or time limit)"
    )


def _slurm_task(fn: JobFn, run_dir: str, member: int, device: str, threads: int) -> None:
    # Runs on the compute node. SLURM already restricts the task to its CPUs and GPUs.
    import torch

    # submitit ignores SIGTERM (it expects to requeue checkpointable jobs on SIGUSR2), so a
    # cancelled member would train on until SLURM's KillWait ends in SIGKILL. Stop at once
    # instead: every file the job writes is atomic, and a retry resumes from the last snapshot.
    signal.signal(signal.SIGTERM, _raise_interrupted)
    torch.set_num_threads(threads)
    fn(run_dir, member, device=device, threads=threads)


def run_slurm(
    fn: JobFn, run_dir: Path, members: list[int], device: str, cfg: SlurmConfig, threads: int | None
) -> tuple[dict[int, str | None], str]:
    submitit = _import_submitit()
    if shutil.which("sbatch") is None:
        raise ModescapeError("the slurm executor needs SLURM's sbatch on PATH")
    # A member trained by two tasks at once would have its files written by both: refuse.
    tasks = {m: t for m, t in slurm_tasks(run_dir).items() if m in members}
    states = scheduler_states(sorted({t.split("_")[0] for t in tasks.values()}))
    active = {m: t for m, t in tasks.items() if states.get(t) in ACTIVE_STATES}
    if active:
        raise ModescapeError(
            f"members {sorted(active)} of {run_dir} still have SLURM tasks queued or running "
            f"({', '.join(active.values())}): wait for them (modescape status) or scancel them"
        )
    folder = run_dir / "slurm"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    params: dict[str, Any] = dict(
        name=f"modescape-{run_dir.name}",
        timeout_min=cfg.time,
        nodes=1,
        tasks_per_node=1,
        cpus_per_task=cfg.cpus_per_task,
        slurm_array_parallelism=cfg.array_parallelism,
        slurm_additional_parameters=dict(cfg.extra),
    )
    if cfg.gpus_per_node:
        params["gpus_per_node"] = cfg.gpus_per_node
    if cfg.partition is not None:
        params["slurm_partition"] = cfg.partition
    if cfg.mem_gb is not None:
        params["mem_gb"] = cfg.mem_gb
    executor.update_parameters(**params)
    n = len(members)
    jobs = executor.map_array(
        _slurm_task,
        [fn] * n,
        [str(run_dir)] * n,
        members,
        [device] * n,
        [threads or cfg.cpus_per_task] * n,
    )
    array_id = jobs[0].job_id.split("_")[0]
    _record_jobs(folder, array_id, {m: j.job_id for m, j in zip(members, jobs)})
    log.info("submitted SLURM array job %s for members %s", array_id, members)
    return _wait_slurm(dict(zip(members, jobs)), array_id, cfg.poll_s), array_id


def _record_jobs(folder: Path, array_id: str, tasks: dict[int, str]) -> None:
    path = folder / "jobs.json"
    record = read_json(path) if path.exists() else {"jobs": []}
    record["jobs"].append(
        {
            "job_id": array_id,
            "submitted": datetime.now(UTC).isoformat(timespec="seconds"),
            "tasks": {str(m): t for m, t in tasks.items()},
        }
    )
    write_json(path, record)


def _wait_slurm(pending: dict[int, Any], array_id: str, poll_s: float) -> dict[int, str | None]:
    """Block until every task has a result or has left the queue; member -> failure or None.

    Polls the scheduler directly (sacct, else squeue) instead of submitit's watcher, which needs
    accounting to notice a task that was cancelled or killed before writing its result.
    """
    try:
        return _poll_slurm(pending, array_id, poll_s)
    except KeyboardInterrupt:
        log.warning("stopped waiting; SLURM job %s keeps running (scancel %s)", array_id, array_id)
        raise


def _poll_slurm(pending: dict[int, Any], array_id: str, poll_s: float) -> dict[int, str | None]:
    outcome: dict[int, str | None] = {}
    ended_at: dict[int, float] = {}
    while pending:
        states = scheduler_states([array_id])
        for m, job in list(pending.items()):
            if job.paths.result_pickle.exists():
                outcome[m] = _task_error(job)
                if outcome[m]:
                    log.warning("member %d: %s", m, outcome[m])
                del pending[m]
                continue
            state = states.get(job.job_id, "GONE")
            if state in ACTIVE_STATES:
                continue
            ended_at.setdefault(m, time.monotonic())
            # CANCELLED, TIMEOUT, OUT_OF_MEMORY... are final; give COMPLETED a moment to show
            # its result file.
            if (
                state not in ("COMPLETED", "GONE")
                or time.monotonic() - ended_at[m] > _RESULT_GRACE_S
            ):
                outcome[m] = f"slurm task {job.job_id} ended {state} without a result"
                log.warning("member %d: %s", m, outcome[m])
                del pending[m]
        if pending:
            time.sleep(poll_s)
    return outcome


def _task_error(job: Any) -> str | None:
    """None if the finished task succeeded, else the last line of its traceback and its log."""
    err = job.exception()
    if err is None:
        return None
    # submitit's message: a header, the traceback between two dashed rules, the log paths.
    parts = str(err).split("-" * 22)
    trace = parts[1] if len(parts) >= 3 else str(err)
    lines = [line for line in trace.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no traceback"
    return f"slurm task {job.job_id} failed: {last} (log: {job.paths.stderr})"


def _expand_task_ids(job_id: str) -> list[str]:
    """`123_[0-2,5%2]` (a pending array as sacct/squeue compress it) -> 123_0 … 123_2, 123_5."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if m is None:
        return [job_id]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{k}" for k in range(int(lo), int(hi or lo) + 1)]
    return out


def scheduler_states(job_ids: Sequence[str]) -> dict[str, str]:
    """SLURM's state of each task of the given jobs, e.g. {"123_0": "RUNNING", ...}.

    Uses `sacct` (complete history; needs accounting), else `squeue` (recent jobs only: finished
    ones stay listed for the cluster's MinJobAge). Empty if neither answers.
    """
    ids = ",".join(job_ids)
    queries = [
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ids],
        ["squeue", "-h", "-r", "--states=all", "-o", "%i|%T", "-j", ids],
    ]
    for cmd in queries:
        if not ids or shutil.which(cmd[0]) is None:
            continue
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            continue
        if out.returncode != 0:
            continue
        states: dict[str, str] = {}
        for line in out.stdout.splitlines():
            job, _, state = line.strip().partition("|")
            if state:
                for task in _expand_task_ids(job):
                    states[task] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
        return states
    return {}


def slurm_tasks(run_dir: str | Path) -> dict[int, str]:
    """Member -> its latest SLURM task id, from `<run>/slurm/jobs.json` (empty if never used)."""
    path = Path(run_dir) / "slurm" / "jobs.json"
    tasks: dict[int, str] = {}
    if path.exists():
        for job in read_json(path)["jobs"]:
            tasks.update({int(m): t for m, t in job["tasks"].items()})
    return tasks
