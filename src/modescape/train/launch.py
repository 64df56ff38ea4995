"""Executors: run one job per ensemble member, in this process, in a local pool, or on SLURM.

A *job function* does one member's work and is idempotent: called again after an interruption it
resumes, called for finished work it returns at once. The default is
`modescape.train.trainer.train_member`; any picklable module-level function with the same signature
works (heavy per-member analyses reuse these executors):

    job_fn(run_dir: str, member: int, *, device: str, threads: int | None) -> None

Executors (`EXECUTORS`):
- `serial`: members one after another in this process.
- `local`:  a pool of `workers` spawned processes; one CUDA GPU per worker (round robin) when GPUs
  are visible, else the CPU cores divided among the workers.
- `slurm`:  one SLURM array job per attempt through submitit, one array task per member; the
  submitit logs and `jobs.json` (which task ran which member) live in `<run>/slurm/`.

A member whose job fails (an exception, a killed worker, a cancelled or timed-out task) is run
again, up to `retries` times; because the job function is idempotent the retry resumes from the
member's last snapshot. Splitting members across independent launches is `shard_members`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modescape.errors import ModescapeError, choice_error
from modescape.options import Executor, values
from modescape.store.files import read_json, write_json

log = logging.getLogger(__name__)

EXECUTORS = values(Executor)
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
        for name in ("time", "cpus_per_task", "array_parallelism"):
            if getattr(self, name) < 1:
                raise ModescapeError(f"slurm {name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise ModescapeError(f"slurm gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise ModescapeError(f"slurm mem_gb must be > 0, got {self.mem_gb}")
        if self.poll_s <= 0:
            raise ModescapeError(f"slurm poll_s must be > 0, got {self.poll_s}")


@dataclass
class LaunchResult:
    """What happened to each requested member."""

    finished: list[int]  # members whose job succeeded (or that were already finished)
    failed: dict[int, str]  # member -> reason of its last failure
    attempts: dict[int, int]  # member -> how many times its job ran (0: was already finished)
    job_ids: list[str] = field(default_factory=list)  # SLURM array job ids, one per attempt

    @property
    def ok(self) -> bool:
        return not self.failed


def shard_members(n_members: int, shard: str) -> list[int]:
    """Members of shard `"i/n"`: those with index ≡ i (mod n), for splitting one run's members
    across n independent launches (e.g. `0/2` on one machine, `1/2` on another)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
    if m is None:
        raise ModescapeError(f"shard must look like 'i/n' (e.g. '0/4'), got {shard!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ModescapeError(f"shard {shard!r} needs 0 <= i < n, got i={i}, n={n}")
    return [k for k in range(n_members) if k % n == i]


def run_members(
    run_dir: str | Path,
    members: Sequence[int] | None = None,
    executor: str = "serial",
    *,
    workers: int = 2,
    device: str = "auto",
    slurm: SlurmConfig | None = None,
    retries: int = 0,
    threads: int | None = None,
    job_fn: JobFn | None = None,
) -> LaunchResult:
    """Run `job_fn` (default: `train_member`) for each of `members` (default: all of the run's).

    `threads` is each job's CPU thread count (default: torch's for `serial`, the cores divided by
    `workers` for `local`, `slurm.cpus_per_task` for `slurm`). On CPU, training is byte-for-byte
    reproducible across executors at equal thread counts; a different count changes the last
    bits of float reductions. With the default job function, members the run already marks
    finished are skipped. Failures are returned, not raised: check `result.ok` / `result.failed`.
    """
    if executor not in EXECUTORS:
        raise choice_error("executor", executor, EXECUTORS)
    if retries < 0:
        raise ModescapeError(f"retries must be >= 0, got {retries}")
    if workers < 1:
        raise ModescapeError(f"workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise ModescapeError(f"threads must be >= 1, got {threads}")
    run_dir = Path(run_dir).resolve()
    finished: list[int] = []
    if job_fn is None:
        from modescape.store.run import load_run
        from modescape.train.trainer import train_member

        job_fn, run = train_member, load_run(run_dir)
        members = run.members if members is None else list(members)
        # A finished member whose manifest record a kill interrupted still runs: its job
        # completes the record (in a moment, without training).
        recorded = run.manifest.get("files", {})
        finished = [
            m
            for m in members
            if run.member_status(m)["state"] == "finished"
            and f"members/m{m:03d}/member.json" in recorded
        ]
    elif members is None:
        raise ModescapeError("run_members needs explicit members with a custom job_fn")
    todo = sorted(set(members) - set(finished))
    attempts = dict.fromkeys(members, 0)
    failed: dict[int, str] = {}
    job_ids: list[str] = []
    for attempt in range(retries + 1):
        if not todo:
            break
        if attempt:
            log.warning("retry %d/%d for members %s", attempt, retries, todo)
        if executor == "serial":
            outcome = _run_serial(job_fn, run_dir, todo, device, threads)
        elif executor == "local":
            outcome = _run_local(job_fn, run_dir, todo, device, workers, threads)
        else:
            cfg = slurm or SlurmConfig()
            outcome, job_id = _run_slurm(job_fn, run_dir, todo, device, cfg, threads)
            job_ids.append(job_id)
        for m in todo:
            attempts[m] += 1
        finished += [m for m, reason in outcome.items() if reason is None]
        failed = {m: reason for m, reason in outcome.items() if reason is not None}
        todo = sorted(failed)
    return LaunchResult(sorted(finished), failed, attempts, job_ids)


# ---- serial and local --------------------------------------------------------------------------


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _run_serial(
    fn: JobFn, run_dir: Path, members: list[int], device: str, threads: int | None
) -> dict[int, str | None]:
    import torch

    outcome: dict[int, str | None] = {}
    before = torch.get_num_threads()
    try:
        for m in members:
            try:
                fn(str(run_dir), m, device=device, threads=threads)
                outcome[m] = None
            except Exception as e:  # one member's failure must not stop the others
                log.warning("member %d failed", m, exc_info=True)
                outcome[m] = _reason(e)
    finally:
        torch.set_num_threads(before)  # the job may set it; leave the caller's process as it was
    return outcome


def worker_devices(
    workers: int, device: str = "auto", threads: int | None = None
) -> tuple[list[str], int | None]:
    """Device of each local worker and the CPU threads each may use (None: torch's default).

    `auto` gives worker k the GPU `cuda:{k mod n_gpus}` when CUDA GPUs are visible; on CPU the
    cores are split evenly so that `workers` processes do not oversubscribe them.
    """
    import torch

    if device == "auto" and torch.cuda.is_available():
        n = torch.cuda.device_count()
        return [f"cuda:{k % n}" for k in range(workers)], threads
    if device == "auto":
        device = "cpu"
    if threads is None and device == "cpu":
        threads = max(1, (os.cpu_count() or 1) // workers)
    return [device] * workers, threads


_worker: dict[str, Any] = {}  # this worker process's device and thread count, set once


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), so a killed
    `--executor local` parent leaves no orphaned workers training on; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(devices: Any, threads: int | None, parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    # Each spawned worker takes one device off the queue, so GPUs are shared out one per worker.
    _worker["device"], _worker["threads"] = devices.get(), threads
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _worker_job(fn: JobFn, run_dir: str, member: int) -> None:
    fn(run_dir, member, device=_worker["device"], threads=_worker["threads"])


def _run_local(
    fn: JobFn, run_dir: Path, members: list[int], device: str, workers: int, threads: int | None
) -> dict[int, str | None]:
    # Threads follow the requested pool size, not the members left: a retry of one member must
    # train with the thread count it started with (thread counts change the last float bits).
    devices, threads = worker_devices(workers, device, threads)
    workers = min(workers, len(members))
    # spawn, not fork: a forked child inherits torch's thread pools and CUDA state half-initialised.
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    for d in devices:
        queue.put(d)
    outcome: dict[int, str | None] = {}
    with ProcessPoolExecutor(
        workers, ctx, initializer=_init_worker, initargs=(queue, threads, os.getpid())
    ) as pool:
        futures = {m: pool.submit(_worker_job, fn, str(run_dir), m) for m in members}
        for m, fut in futures.items():
            err = fut.exception()  # a dead worker gives BrokenProcessPool for its unfinished jobs
            outcome[m] = None if err is None else _reason(err)
            if err is not None:
                log.warning("member %d failed: %s", m, outcome[m])
    return outcome


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


def _run_slurm(
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


# ---- status -----------------------------------------------------------------------------------


def slurm_tasks(run_dir: str | Path) -> dict[int, str]:
    """Member -> its latest SLURM task id, from `<run>/slurm/jobs.json` (empty if never used)."""
    path = Path(run_dir) / "slurm" / "jobs.json"
    tasks: dict[int, str] = {}
    if path.exists():
        for job in read_json(path)["jobs"]:
            tasks.update({int(m): t for m, t in job["tasks"].items()})
    return tasks


def run_status(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per member: the run directory's state merged with the scheduler's view.

    Row keys: member, state ("pending" | "queued" | "running" | "interrupted" | "finished" |
    "failed"), epoch, reason, job (SLURM task id or None), scheduler (its SLURM state or None).
    """
    from modescape.store.run import load_run

    run = load_run(run_dir, trust=True)  # a display: `modescape verify` checks the files
    tasks = slurm_tasks(run.path)
    states = scheduler_states(sorted({t.split("_")[0] for t in tasks.values()}))
    rows = []
    for m in run.members:
        s = run.member_status(m)
        job = tasks.get(m)
        sched = states.get(job) if job else None
        state, reason = s["state"], s["reason"]
        if state != "finished" and sched in ACTIVE_STATES:
            state = "queued" if sched == "PENDING" else "running"
        elif state == "running" and sched is not None:
            # The run says running but its task is over: it was killed mid-training.
            state, reason = "interrupted", f"slurm task {job} ended {sched}"
        elif state == "running" and job is None and _dead_here(s.get("host"), s.get("pid")):
            state, reason = "interrupted", f"process {s['pid']} on {s['host']} is gone"
        rows.append(
            dict(member=m, state=state, epoch=s["epoch"], reason=reason, job=job, scheduler=sched)
        )
    return rows


def _dead_here(host: str | None, pid: int | None) -> bool:
    """Whether `pid` was a process of this host that no longer exists (other hosts: unknown)."""
    from modescape.store.manifest import pid_alive

    return host == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)


def format_status(rows: list[dict[str, Any]]) -> str:
    """`run_status` rows as a fixed-width table for the terminal."""
    lines = [f"{'member':>6}  {'state':<11}  {'epoch':>5}  {'slurm task':<14}  reason"]
    for r in rows:
        job = f"{r['job']} {r['scheduler'] or ''}".strip() if r["job"] else "-"
        lines.append(
            f"{r['member']:>6}  {r['state']:<11}  {r['epoch']:>5}  {job:<14}  {r['reason'] or ''}"
        )
    return "\n".join(lines)
