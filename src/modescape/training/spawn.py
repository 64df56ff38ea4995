"""Spawning: children trained on from one member's state part-way through its training.

Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", arXiv:1912.05671) and parent–child spawning (Fort, Dziugaite,
Paul, Kharaghani, Roy & Ganguli 2020, "Deep learning versus kernel learning", arXiv:2010.15110):
the parent is trained to step k; each child copies its weights, BatchNorm buffers and optimiser
state at k and trains to the end of the same schedule, with its own seed for data order,
augmentation and dropout only.

Children are the members of a run of their own (`<out>/manifest.json` records "spawn": the
parent run, member, points and the sha256 of every parent snapshot used): member
`p * children + c` is child c of spawn point p, its seed `derive_seed(run seed, "member", i)`
as for any member. They keep a snapshot per epoch from the spawn point on, resume after a kill
byte for byte, and run on every executor (`training.launch`), because `train_member` trains a
spawn run's members from their spawn states (`training.children`).

Where the state at k comes from: a run keeps the optimiser state of its last epoch only
(`resume.safetensors`), not one per snapshot. So the parent's training is replayed from its
initialisation, which is deterministic (byte-identical at the same device, precision and
thread count: the resume tests), and the replayed weights are checked against the recorded
sha256 of every parent snapshot on the way; a mismatch stops before anything is written. The
replay costs the parent's epochs up to the last spawn point, once per spawn run; the states it
captures are stored in `<out>/spawn/pNN.safetensors` and read, checked, by each child.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modescape.errors import ModescapeError
from modescape.seeding import derive_seed
from modescape.store.files import (
    atomic_write_bytes,
    killpoint,
    safetensors_bytes,
)
from modescape.store.manifest import (
    ManifestExtra,
    create_run,
    member_seed,
    record_files,
    update_manifest,
)
from modescape.store.records import MemberInfo, SpawnRecord, SpawnReplay
from modescape.store.run import Run, load_run
from modescape.training.children import SpawnPoint, state_rel
from modescape.training.loop import (
    batch_order,
    optimizer_tensors,
    resolve_device,
    train_epoch,
)
from modescape.training.trainer import MemberTrainer, member_threads, training_pixels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpawnPlan:
    """A validated spawn request against one parent run."""

    parent: Path
    member: int
    points: tuple[SpawnPoint, ...]
    children: int
    seed: int
    steps_per_epoch: int

    def child(self, index: int) -> tuple[int, int]:
        """(spawn point index, child index) of member `index` of the spawn run."""
        return divmod(index, self.children)

    def record(self) -> dict[str, Any]:
        """The request, as the spawn run's manifest records it (compared on a rerun)."""
        return {
            "parent": str(self.parent),
            "member": self.member,
            "children": self.children,
            "steps_per_epoch": self.steps_per_epoch,
            "points": [dataclasses.asdict(p) for p in self.points],
        }


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one epoch (both batch samplers draw ceil(n / batch) batches)."""
    return math.ceil(n_train / batch_size)


def spawn_points(at: Sequence[float], epochs: int, steps: int) -> tuple[SpawnPoint, ...]:
    """Spawn points from epochs (fractions of an epoch round to the nearest step), sorted.

    Allowed: 0 <= at < epochs (a child needs something left to train); duplicates after
    rounding to steps are an error."""
    if not at:
        raise ModescapeError("spawn needs at least one spawn point (--at EPOCHS, e.g. 0,1,2.5)")
    points = []
    for a in at:
        a = float(a)
        if not math.isfinite(a) or a < 0 or a >= epochs:
            raise ModescapeError(
                f"spawn point {a:g} is outside training: allowed 0 <= epoch < {epochs} "
                f"(the parent's recipe trains {epochs} epochs)"
            )
        total = round(a * steps)
        points.append(SpawnPoint(a, total // steps, total % steps))
    keys = [(p.epoch, p.step) for p in points]
    if len(set(keys)) != len(keys):
        raise ModescapeError(
            f"spawn points {list(at)} repeat a point ({steps} steps per epoch); list each once"
        )
    return tuple(sorted(points, key=lambda p: (p.epoch, p.step)))


def parse_at(text: str) -> list[float]:
    """`--at` text "0,1,2.5" as epochs; one clear line for anything else."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ModescapeError(
            f"--at takes epochs separated by commas (e.g. 0,1,2.5), got {text!r}"
        ) from None


def plan_spawn(
    parent_dir: str | Path,
    member: int,
    at: Sequence[float],
    children: int,
    seed: int | None = None,
) -> SpawnPlan:
    """Check a spawn request against the parent run (nothing is written): the member exists,
    has snapshots up to the last spawn point, the points lie inside its schedule, and there is
    at least one child."""
    parent = load_run(parent_dir)
    if parent.manifest.imported is not None:
        raise ModescapeError(
            f"run {parent.path} was imported from checkpoints: it has no optimiser or data-order "
            "state to spawn from; spawn from a run trained by modescape"
        )
    if isinstance(children, bool) or not isinstance(children, int) or children < 1:
        raise ModescapeError(f"--children must be a whole number >= 1, got {children!r}")
    if isinstance(member, bool) or not isinstance(member, int) or member not in parent.members:
        raise ModescapeError(
            f"--member {member!r} is not a member of {parent.path} (members 0 to "
            f"{parent.config.members - 1})"
        )
    tcfg = parent.config.train
    steps = steps_per_epoch(int(parent.data_summary.n_train or 0), tcfg.batch_size)
    points = spawn_points(at, tcfg.epochs, steps)
    have = parent.snapshot_epochs(member)
    last = points[-1].epoch
    if not have or have[-1] < last:
        raise ModescapeError(
            f"member {member} of {parent.path} has snapshots up to epoch "
            f"{have[-1] if have else 'none'}; spawning at {points[-1].at:g} needs epoch {last} "
            f"(finish it with `modescape train --out {parent.path}`)"
        )
    if seed is None:
        seed = derive_seed(parent.config.seed, "spawn", member) % 1_000_000
    if seed < 0:
        raise ModescapeError(f"--seed must be >= 0, got {seed}")
    return SpawnPlan(parent.path.resolve(), member, points, children, int(seed), steps)


# ---- the spawn run ----------------------------------------------------------------------------


def create_spawn_run(plan: SpawnPlan, out: str | Path) -> Run:
    """Create the children's run (or reopen it after checking it holds the same request)."""
    parent = load_run(plan.parent)
    out = Path(out)
    config = dataclasses.replace(
        parent.config, members=len(plan.points) * plan.children, seed=plan.seed
    )
    if (out / "config.json").exists():
        spawn = load_run(out).manifest.spawn
        existing = {} if spawn is None else spawn.to_dict()
        if {k: existing.get(k) for k in plan.record()} != plan.record():
            raise ModescapeError(
                f"--out {out} holds a different run or children spawned with other settings; "
                "choose another --out"
            )
    labels = {s: parent.labels(s) for s in parent.splits}
    snapshots = {
        str(e): parent.expected_digest(parent._rel(parent.snapshot_path(plan.member, e)))
        for e in parent.snapshot_epochs(plan.member)
        if e <= plan.points[-1].epoch
    }
    record = plan.record() | {
        "parent_seed": member_seed(parent.config, plan.member),
        "parent_snapshots": snapshots,
    }
    extra = ManifestExtra(arch=parent.manifest.arch, spawn=SpawnRecord.from_dict(record))
    create_run(out, config, parent.data_summary, labels, extra)
    return load_run(out)


def ensure_states(run: Run, plan: SpawnPlan, device: str = "auto", exact: bool = True) -> None:
    """Write the spawn states the run lacks, by replaying the parent (see the module doc)."""
    recorded = run.manifest.files
    missing = [
        i
        for i in range(len(plan.points))
        if state_rel(i) not in recorded or not (run.path / state_rel(i)).exists()
    ]
    if not missing:
        return
    states, replay = replay_parent(load_run(plan.parent), plan, device, exact)
    files = {}
    for i in missing:
        files[state_rel(i)] = atomic_write_bytes(run.path / state_rel(i), states[i])
        killpoint("spawn.state")
    record_files(run.path, files)
    update_manifest(run.path, spawn_replay=SpawnReplay.from_dict(replay))


def replay_parent(
    parent: Run, plan: SpawnPlan, device: str = "auto", exact: bool = True
) -> tuple[list[bytes], dict]:
    """The parent's state at every spawn point (safetensors bytes: "model.*", "opt.*", metadata
    with the optimiser's param_groups), replayed from its initialisation; every parent snapshot
    passed on the way is checked against its recorded sha256.

    A mismatch (another device, torch build or thread count; GPU training is not bitwise
    deterministic) is an error when `exact`; otherwise the replay continues from the parent's
    stored weights at that epoch (logged, and recorded as `reset_epochs`), so the children start
    from the parent's true weights with an optimiser state replayed approximately."""
    info = parent.member_info(plan.member)
    data = parent.dataset(training_pixels(parent.config))
    parent.check_dataset(data)
    dev = resolve_device(_replay_device(device, info))
    threads = int(info.threads or member_threads(data.in_shape))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tr = MemberTrainer(parent, plan.member, data, dev)
        states, checked = _replay(tr, plan, info, exact)
    finally:
        torch.set_num_threads(before)
    replay = {"device": str(dev), "threads": threads, "precision": tr.info.precision}
    log.info("replayed member %d of %s; snapshots checked %s", plan.member, parent.path, checked)
    return states, replay | checked


def _replay_device(device: str, info: MemberInfo) -> str:
    """ "auto": the device the parent trained on, where this machine has it."""
    if device != "auto":
        return device
    recorded = str(info.device or "cpu")
    return recorded if recorded == "cpu" or torch.cuda.is_available() else "auto"


def _replay(
    tr: MemberTrainer, plan: SpawnPlan, info: MemberInfo, exact: bool
) -> tuple[list[bytes], dict[str, list[int]]]:
    parent, tcfg = tr.run, tr.tcfg
    autocast = torch.autocast(
        tr.dev.type, dtype=torch.bfloat16, enabled=tr.info.precision == "bf16"
    )
    states: dict[int, bytes] = {}
    checked: dict[str, list[int]] = {"verified_epochs": [], "reset_epochs": []}
    last = plan.points[-1]
    for epoch in range(last.epoch + 1):
        if epoch in parent.snapshot_epochs(plan.member):
            same = _check_replayed(tr, epoch, info, exact)
            checked["verified_epochs" if same else "reset_epochs"].append(epoch)
        here = [i for i, p in enumerate(plan.points) if p.epoch == epoch]
        if epoch == last.epoch and last.step == 0 and len(here) == 1:
            states[here[0]] = _state_bytes(tr, plan.points[here[0]])
            break
        for group in tr.opt.param_groups:
            group["lr"] = tcfg.lr_at(epoch)
        order = batch_order(len(tr.x_train), tcfg.batch_size, tcfg.sampler, tr.rng.data)
        done = 0
        for i in here:
            step = plan.points[i].step
            _train_steps(tr, order[done:step], autocast)
            done = step
            states[i] = _state_bytes(tr, plan.points[i])
        if epoch < last.epoch:
            _train_steps(tr, order[done:], autocast)
    return [states[i] for i in range(len(plan.points))], checked


def _train_steps(tr: MemberTrainer, order: list[torch.Tensor], autocast: torch.autocast) -> None:
    if order:
        train_epoch(tr.model, tr.opt, tr.x_train, tr.y_train, tr.tcfg, tr.rng, tr.pixel,
                    autocast, order=order)  # fmt: skip


def snapshot_digest(model: torch.nn.Module, epoch: int, member: int) -> str:
    """The sha256 of the snapshot the trainer would write of `model` (same bytes, same
    metadata)."""
    meta = {"epoch": epoch, "member": member}
    return hashlib.sha256(safetensors_bytes(model.state_dict(), meta)).hexdigest()


def _check_replayed(tr: MemberTrainer, epoch: int, info: MemberInfo, exact: bool) -> bool:
    """Whether the replayed weights are the parent's snapshot, byte for byte. If not: an error
    when `exact`, else the model takes the snapshot's weights (and False is returned)."""
    parent = tr.run
    expected = parent.expected_digest(parent._rel(parent.snapshot_path(tr.member, epoch)))
    if expected is None or snapshot_digest(tr.model, epoch, tr.member) == expected:
        return True
    if exact:
        raise ModescapeError(
            f"replaying member {tr.member} of {parent.path} did not reproduce its snapshot at "
            f"epoch {epoch}: an exact replay needs the parent's device, precision and thread "
            f"count (it trained on {info.device}, {info.precision}, "
            f"{info.threads} threads; the replay ran on {tr.dev}) and the same torch "
            "build; pass --approximate-replay (exact=False) to restart the replay from the "
            "parent's stored weights at each snapshot instead"
        )
    log.warning(
        "replay of member %d differs from its snapshot at epoch %d: continuing from the stored "
        "weights (the optimiser state is the replay's, approximately the parent's)",
        tr.member, epoch,
    )  # fmt: skip
    tr.model.load_state_dict(parent.state_dict(tr.member, epoch))
    return False


def _state_bytes(tr: MemberTrainer, point: SpawnPoint) -> bytes:
    tensors, groups = optimizer_tensors(tr.opt)
    tensors |= {f"model.{k}": v for k, v in tr.model.state_dict().items()}
    meta = {"epoch": point.epoch, "step": point.step, "param_groups": groups}
    return safetensors_bytes(tensors, meta)


def spawn(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    member: int = 0,
    at: Sequence[float] = (0.0,),
    children: int = 2,
    seed: int | None = None,
    executor: str = "serial",
    workers: int = 2,
    device: str = "auto",
    slurm: Any = None,
    retries: int = 0,
    threads: int | None = None,
    shard: str | None = None,
    exact: bool = True,
) -> Run:
    """Spawn `children` children from `member` of the run at each of `at` (epochs; 0 = the
    shared initialisation, fractions by step) and train them; rerunning resumes. Returns the
    children's run (default folder: `<run>-spawn-m<member>`). Failures of children raise.
    `exact=False` accepts a replay that does not reproduce the parent bit for bit
    (`replay_parent`)."""
    from modescape.training.launch import check_launch, run_members, shard_members

    check_launch(executor, workers, retries, threads)
    plan = plan_spawn(run_dir, member, at, children, seed)
    out = (
        Path(out)
        if out is not None
        else plan.parent.with_name(f"{plan.parent.name}-spawn-m{member}")
    )
    run = create_spawn_run(plan, out)
    members = run.members if shard is None else shard_members(len(run.members), shard)
    ensure_states(run, plan, device, exact)
    result = run_members(
        run.path, members, executor, workers=workers, device=device, slurm=slurm,
        retries=retries, threads=threads,
    )  # fmt: skip
    if not result.ok:
        failed = "; ".join(f"child {m}: {r}" for m, r in sorted(result.failed.items()))
        raise ModescapeError(f"spawned children failed ({failed}); rerun to resume them")
    return load_run(run.path)
