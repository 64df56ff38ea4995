"""Executors: run one job per ensemble member, in this process, in a local pool, or on SLURM.

A *job function* does one member's work and is idempotent: called again after an interruption it
resumes, called for finished work it returns at once. The default is
`modescape.training.trainer.train_member`; any picklable module-level function with the same
signature works (heavy per-member analyses reuse these executors):

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
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modescape.errors import ModescapeError, choice_error
from modescape.options import Executor, values
from modescape.training.slurm import (
    ACTIVE_STATES,
    SlurmConfig,
    run_slurm,
    scheduler_states,
    slurm_tasks,
)

log = logging.getLogger(__name__)

EXECUTORS = values(Executor)
JobFn = Callable[..., None]


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
    check_launch(executor, workers, retries, threads)
    run_dir = Path(run_dir).resolve()
    finished: list[int] = []
    if job_fn is None:
        from modescape.training.trainer import train_member

        job_fn = train_member
        members, finished = _members_to_train(run_dir, members)
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
            outcome, job_id = run_slurm(job_fn, run_dir, todo, device, cfg, threads)
            job_ids.append(job_id)
        for m in todo:
            attempts[m] += 1
        finished += [m for m, reason in outcome.items() if reason is None]
        failed = {m: reason for m, reason in outcome.items() if reason is not None}
        todo = sorted(failed)
    return LaunchResult(sorted(finished), failed, attempts, job_ids)


def check_launch(executor: str, workers: int, retries: int, threads: int | None) -> None:
    if executor not in EXECUTORS:
        raise choice_error("executor", executor, EXECUTORS)
    if retries < 0:
        raise ModescapeError(f"retries must be >= 0, got {retries}")
    if workers < 1:
        raise ModescapeError(f"workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise ModescapeError(f"threads must be >= 1, got {threads}")


def _members_to_train(run_dir: Path, members: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """(requested members, those already finished). A finished member whose manifest record a
    kill interrupted is not finished yet: its job completes the record (without training)."""
    from modescape.store.run import load_run

    run = load_run(run_dir)
    members = run.members if members is None else list(members)
    recorded = run.manifest.files
    finished = [
        m
        for m in members
        if run.member_status(m).state == "finished" and f"members/m{m:03d}/member.json" in recorded
    ]
    return members, finished


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


# ---- status -----------------------------------------------------------------------------------


def run_status(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per member: the run directory's state merged with the scheduler's view.

    Row keys: member, state ("pending" | "queued" | "running" | "interrupted" | "finished" |
    "failed"), epoch, reason, job (SLURM task id or None), scheduler (its SLURM state or None),
    lost (the manifest records the member's member.json but it is gone: the state shown is
    rebuilt from the files on disk).
    """
    from modescape.store.run import load_run

    run = load_run(run_dir, trust=True)  # a display: `modescape verify` checks the files
    tasks = slurm_tasks(run.path)
    states = scheduler_states(sorted({t.split("_")[0] for t in tasks.values()}))
    rows = []
    recorded = run.manifest.files
    for m in run.members:
        s = run.member_status(m)
        rel = f"{run.member_dir(m).relative_to(run.path).as_posix()}/member.json"
        lost = rel in recorded and not (run.path / rel).is_file()
        job = tasks.get(m)
        sched = states.get(job) if job else None
        state, reason = s.state, s.reason
        if state != "finished" and sched in ACTIVE_STATES:
            state = "queued" if sched == "PENDING" else "running"
        elif state == "running" and sched is not None:
            # The run says running but its task is over: it was killed mid-training.
            state, reason = "interrupted", f"slurm task {job} ended {sched}"
        elif state == "running" and job is None and _dead_here(s.host, s.pid):
            state, reason = "interrupted", f"process {s.pid} on {s.host} is gone"
        rows.append(
            dict(member=m, state=state, epoch=s.epoch, reason=reason, job=job, scheduler=sched,
                 lost=lost)
        )  # fmt: skip
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
