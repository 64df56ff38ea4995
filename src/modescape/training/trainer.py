"""Training one member: a plain loop, a snapshot after every epoch, resumable byte for byte.

Member i draws everything random from seeds derived from the run's base seed: initialisation
(global torch RNG, seeded just before the model is built), dropout (global torch RNG afterwards),
data order and augmentation (two private generators). After each epoch the loop writes, in this
order, the snapshot, its predictions, the metrics, and last `resume.safetensors` (optimiser and
every RNG state), after member.json has recorded that file's sha256: a process killed anywhere
restarts from the last committed epoch and, on CPU, rewrites the later files with identical
bytes. `MemberTrainer` holds one member's state through that loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from modescape.config import RunConfig, TrainConfig
from modescape.data.datasets import Dataset
from modescape.errors import ModescapeError
from modescape.progress import Progress
from modescape.seeding import derive_seed
from modescape.store.files import (
    atomic_write_bytes,
    killpoint,
    load_safetensors,
    read_safetensors_metadata,
    remove_stale_tmp,
    safetensors_bytes,
    save_npy,
    save_safetensors,
    sha256_file,
)
from modescape.store.manifest import member_seed, record_files
from modescape.store.members import write_member_info
from modescape.store.records import MemberInfo
from modescape.store.run import Run, load_run, open_dataset
from modescape.training.children import child_info, start_child
from modescape.training.loop import (
    MemberRNG,
    evaluate_split,
    load_optimizer,
    make_optimizer,
    optimizer_tensors,
    pixel_unit,
    resolve_device,
    resolve_precision,
    train_epoch,
)
from modescape.training.prepare import (
    prepare_run,
)

if TYPE_CHECKING:
    from modescape.training.tracking import Tracking


def train_member(
    run_dir: str | Path,
    member: int,
    *,
    device: str = "auto",
    progress: bool = False,
    threads: int | None = None,
    dataset: Dataset | None = None,
    track: str | Tracking | None = None,
) -> None:
    """Train one member of the run in `run_dir` to completion: skip if finished, resume if not.

    Idempotent and safe to rerun after any interruption; on CPU the result is byte-identical to
    an uninterrupted run at the same thread count. `threads=None` picks 1 for 1-D signals (tiny
    convolutions, where intra-op threads cost more than they gain) and torch's default otherwise;
    the thread count is restored afterwards and recorded in member.json. The dataset is checked
    against the fingerprint recorded when the run was created before anything is trained.
    `track` ("tensorboard" | "wandb" | "mlflow") logs each epoch's record (`training.tracking`).
    """
    run = load_run(run_dir)
    run._check_member(member)
    with member_lock(run, member):
        if _complete_finish(run, member):
            return
        dev = resolve_device(device)
        data = run.dataset(training_pixels(run.config)) if dataset is None else dataset
        run.check_dataset(data)
        if threads is None:
            threads = member_threads(data.in_shape)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        tracker = None
        if track:
            from modescape.training.tracking import open_tracker

            tracker = open_tracker(track, run.path, member)
            tracker.log_config(run.config.to_dict())
        try:
            MemberTrainer(run, member, data, dev, progress, tracker).fit()
        finally:
            torch.set_num_threads(before)
            if tracker is not None:
                tracker.close()


@contextlib.contextmanager
def member_lock(run: Run, member: int) -> Iterator[None]:
    """Make this process the member's only writer; then clear the temporary files of writes
    that a killed process left behind."""
    mdir = run.member_dir(member)
    mdir.mkdir(parents=True, exist_ok=True)
    with open(mdir / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModescapeError(
                f"member {member} of {run.path} is being trained by another process"
            ) from None
        try:
            remove_stale_tmp(mdir)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _complete_finish(run: Run, member: int) -> bool:
    """True if the member is finished; completes its manifest record if a kill interrupted it."""
    info = run.member_info(member)
    if info.state != "finished":
        return False
    rel = f"members/m{member:03d}/member.json"
    if rel not in run.manifest.files:
        digest = sha256_file(run.path / rel)
        record_files(run.path, info.files | {rel: digest})
    return True


class MemberTrainer:
    """Trains one member: builds its model, optimiser and random streams from the member's
    seed, resumes from the last committed epoch, and writes and commits each epoch.

    Per epoch it writes the snapshot, its predictions and the metrics, then commits: member.json
    (which names the new resume file's sha256 next to the previous one's) and last the resume
    file itself (optimiser and every RNG state). A process killed anywhere restarts from the last
    resume file whose sha256 member.json vouches for and, on CPU, rewrites later files with
    identical bytes.
    """

    def __init__(
        self,
        run: Run,
        member: int,
        data: Dataset,
        dev: torch.device,
        progress: bool = False,
        tracker: Any = None,
    ):
        self.run, self.member, self.dev, self.progress = run, member, dev, progress
        self.in_shape = tuple(data.in_shape)
        self.tracker = tracker  # training.tracking.GuardedTracker: sees each committed record
        self.tcfg = run.config.train
        self.seed = member_seed(run.config, member)
        self.mdir = run.member_dir(member)
        self.previous = run.member_info(member)
        self.info = self._new_info()
        self.records: list[dict[str, Any]] = []
        self._clock = (time.time(), self.info.time_s or 0.0)
        self._build(data)
        self.collector = None  # the SWA/SWAG collection phase (train.collect), when enabled
        if self.tcfg.collect.enabled:
            from modescape.training.collect import Collector

            self.collector = Collector(self)

    def _new_info(self) -> MemberInfo:
        resumed = self.previous.state != "pending"
        return MemberInfo(
            member=self.member,
            seed=self.seed,
            state="running",
            host=socket.gethostname(),
            pid=os.getpid(),
            device=str(self.dev),
            threads=torch.get_num_threads(),
            # A run created with "auto" records the resolved precision in its config; one written
            # by other code may still say "auto", resolved here for this device and data.
            precision=resolve_precision(self.tcfg.precision, self.dev, self.in_shape),
            files=dict(self.previous.files) if resumed else {},
            time_s=(self.previous.time_s or 0.0) if resumed else 0.0,
        )

    def _build(self, data: Dataset) -> None:
        from modescape.models.registry import build_model

        m, dev = self.run.config.model, self.dev
        # Order matters for reproducibility: init seed, model, then the other random streams.
        torch.manual_seed(derive_seed(self.seed, "init"))
        model = build_model(
            m.arch, m.variant, data.in_shape, data.num_classes, m.dropout, **m.arch_kwargs
        )
        self.rng = MemberRNG.fresh(self.seed, dev)
        spatial2d = len(data.in_shape) == 3
        fmt = (
            torch.channels_last
            if (self.tcfg.channels_last and spatial2d)
            else torch.contiguous_format
        )
        self.model = model.to(dev, memory_format=fmt)
        self.opt = make_optimizer(self.model, self.tcfg)
        splits = {s: getattr(data, f"x_{s}") for s in self.run.splits}
        self.x_eval = {s: x.to(dev).contiguous(memory_format=fmt) for s, x in splits.items()}
        self.y_eval = {s: getattr(data, f"y_{s}").to(dev) for s in splits}
        self.x_train = data.x_train.to(dev).contiguous(memory_format=fmt)
        self.y_train = data.y_train.to(dev)
        pixel = pixel_unit(data.source, data.in_shape)
        self.pixel = pixel.to(dev) if torch.is_tensor(pixel) else pixel

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> None:
        """Resume or start, train the remaining epochs, mark the member finished."""
        start = self.resume()
        if start == 0:
            self.write_epoch(0, None, None)
            self.commit(0)
            self._track()
        autocast = torch.autocast(
            self.dev.type, dtype=torch.bfloat16, enabled=self.info.precision == "bf16"
        )
        bar = tqdm(
            range(min(start, self.tcfg.epochs), self.tcfg.epochs),
            desc=f"member {self.member}",
            initial=start,
            total=self.tcfg.epochs,
            disable=not (self.progress and sys.stderr.isatty()),
            leave=False,
        )
        # where no bar draws (nohup, SLURM): log lines with an ETA
        todo = self.tcfg.epochs - min(start, self.tcfg.epochs)
        lines = (
            Progress(todo, f"member {self.member}", "epochs", bar=False) if bar.disable else None
        )
        try:
            for epoch in bar:
                stats = self._train_one(epoch, autocast)
                self.write_epoch(epoch + 1, stats, self.tcfg.lr_at(epoch))
                self.commit(epoch + 1)
                self._track()
                if lines is not None:
                    lines.update()
                bar.set_postfix(
                    loss=f"{stats['train_loss']:.3f}",
                    test_acc=f"{self.records[-1].get('test_acc', float('nan')):.3f}",
                )
            if lines is not None:
                lines.close()
            if self.collector is not None:
                self.collector.run(max(start, self.tcfg.epochs), autocast)
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):
                self.info.state, self.info.reason = "failed", f"{type(e).__name__}: {e}"
                write_member_info(self.run.path, self.info)
            raise
        self.finish()

    def _track(self) -> None:
        if self.tracker is not None:
            self.tracker.log_epoch(self.records[-1])

    def _train_one(self, epoch: int, autocast: torch.autocast) -> dict[str, float]:
        lr = self.tcfg.lr_at(epoch)
        for group in self.opt.param_groups:
            group["lr"] = lr
        tick = time.perf_counter()
        stats = train_epoch(
            self.model, self.opt, self.x_train, self.y_train, self.tcfg, self.rng, self.pixel,
            autocast,
        )  # fmt: skip
        stats["time_train_s"] = round(time.perf_counter() - tick, 3)
        return stats

    def finish(self) -> None:
        """Mark the member finished, then record its files in the manifest (a rerun completes
        the second step if a kill interrupts between the two)."""
        self.info.state, self.info.reason = "finished", None
        digest = write_member_info(self.run.path, self.info)
        killpoint("finish.member")
        rel = f"members/m{self.member:03d}/member.json"
        record_files(self.run.path, self.info.files | {rel: digest})
        killpoint("finish.manifest")

    # ---- writing -------------------------------------------------------------------------------
    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.run.path))

    def write_epoch(self, epoch: int, train_stats: dict | None, lr: float | None) -> None:
        """Snapshot, predictions and the metrics line for `epoch` (everything but the commit)."""
        run, files = self.run, self.info.files
        tick = time.perf_counter()
        record: dict[str, Any] = {"epoch": epoch, "lr": lr} | (train_stats or {})
        keep = _keeps_snapshot(self.tcfg, epoch)
        for split, x in self.x_eval.items():
            probs, record[f"{split}_loss"], record[f"{split}_acc"] = evaluate_split(
                self.model, x, self.y_eval[split]
            )
            if keep:
                path = run.prediction_path(split, self.member, epoch)
                files[self._rel(path)] = save_npy(path, probs.cpu().numpy().astype(np.float32))
                killpoint("epoch.preds")
        if keep:
            path = run.snapshot_path(self.member, epoch)
            meta = {"epoch": epoch, "member": self.member}
            files[self._rel(path)] = save_safetensors(path, self.model.state_dict(), meta)
            killpoint("epoch.snapshot")
            if epoch not in self.info.snapshots:
                self.info.snapshots.append(epoch)
        record["time_eval_s"] = round(time.perf_counter() - tick, 3)
        self.records[:] = [r for r in self.records if r["epoch"] < epoch] + [record]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        path = self.mdir / "metrics.jsonl"
        files[self._rel(path)] = atomic_write_bytes(path, text.encode())
        killpoint("epoch.metrics")

    def commit(self, epoch: int) -> None:
        """Make `epoch` the one a rerun resumes from: member.json first (naming the new resume
        file's sha256 and keeping the previous one's), then the resume file."""
        tensors, groups = optimizer_tensors(self.opt)
        tensors |= {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors |= self.rng.state()
        meta = {"epoch": epoch, "param_groups": groups, "records": self.records}
        if self.collector is not None and epoch > self.tcfg.epochs:
            more_tensors, more_meta = self.collector.state()
            tensors |= more_tensors
            meta |= more_meta
        data = safetensors_bytes(tensors, meta)
        resume = self.mdir / "resume.safetensors"
        self.info.resume_previous = self.info.files.get(self._rel(resume))
        self.info.files[self._rel(resume)] = hashlib.sha256(data).hexdigest()
        self.info.epoch = epoch
        started, elapsed_before = self._clock
        self.info.time_s = round(elapsed_before + time.time() - started, 3)
        write_member_info(self.run.path, self.info)
        killpoint("commit.member")
        atomic_write_bytes(resume, data)
        killpoint("commit.resume")

    # ---- resuming ------------------------------------------------------------------------------
    def resume(self) -> int:
        """Load the last committed epoch's state (0 when there is none); return that epoch."""
        resume = self.mdir / "resume.safetensors"
        spawn = self.run.manifest.spawn  # a spawned child starts from its parent's state
        if spawn:
            self.info.spawn = child_info(spawn, self.member)
        if not resume.exists():
            return start_child(self) if spawn else 0
        self._check_resume(resume)
        tensors = load_safetensors(resume)
        meta = read_safetensors_metadata(resume)
        self.model.load_state_dict(
            {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        opt_tensors = {
            k: v.to(self.dev) if "step" not in k else v
            for k, v in tensors.items()
            if k.startswith("opt.")
        }
        load_optimizer(self.opt, opt_tensors, meta["param_groups"])
        self.rng.restore(tensors)
        epoch, self.records = int(meta["epoch"]), meta["records"]
        if self.collector is not None:
            self.collector.restore(tensors, meta)
        kept = [e for e in self.previous.snapshots if e <= epoch]
        if self.previous.state == "interrupted":  # member.json was lost: rebuild its record
            kept = self._rebuild_files(epoch)
        self.info.snapshots = kept
        self.info.epoch = epoch
        return epoch

    def _check_resume(self, resume: Path) -> None:
        rel = self._rel(resume)
        allowed = {self.previous.files.get(rel), self.previous.resume_previous}
        allowed.discard(None)
        if allowed and sha256_file(resume) not in allowed:
            raise ModescapeError(
                f"checksum mismatch: {resume} is not the resume state member.json records "
                f"(damaged); delete {self.mdir} to train member {self.member} again from scratch"
            )

    def _rebuild_files(self, epoch: int) -> list[int]:
        """Checksums of the files of epochs <= `epoch` already on disk (member.json was lost);
        a file the manifest records with another checksum is damaged."""
        recorded = self.run.manifest.files
        snaps = [e for e in self.previous.snapshots if e <= epoch]
        for e in snaps:
            paths = [self.run.snapshot_path(self.member, e)]
            paths += [self.run.prediction_path(s, self.member, e) for s in self.run.splits]
            for path in paths:
                rel, digest = self._rel(path), sha256_file(path)
                if recorded.get(rel, digest) != digest:
                    raise ModescapeError(f"checksum mismatch: {path} is damaged")
                self.info.files[rel] = digest
        return snaps


def member_threads(in_shape: tuple[int, ...]) -> int:
    """CPU threads a member trains with by default: 1 for 1-D signals `[C, L]` (tiny
    convolutions, where intra-op threads cost more than they gain), else torch's default."""
    return 1 if len(in_shape) == 2 else torch.get_num_threads()


def _keeps_snapshot(tcfg: TrainConfig, epoch: int) -> bool:
    return epoch == 0 or epoch == tcfg.epochs or epoch % tcfg.snapshot_every == 0


def training_pixels(config: RunConfig) -> str:
    """How the trainer wants images loaded: already in the memory format it trains in, so that
    it holds one copy of the training set, not the loaded one and its channels_last copy."""
    return "channels_last" if config.train.channels_last else "float"


def train(
    config: RunConfig,
    out: str | Path,
    *,
    members: list[int] | None = None,
    device: str = "auto",
    progress: bool = False,
    track: str | Tracking | None = None,
) -> Run:
    """Train (or finish) the given members of a run, one after another, in this process.

    `track`: an experiment tracker for every member ("tensorboard" | "wandb" | "mlflow")."""
    data = open_dataset(config, pixels=training_pixels(config))
    run = prepare_run(out, config, data, device)
    for m in run.members if members is None else members:
        train_member(run.path, m, device=device, progress=progress, dataset=data, track=track)
    return run
