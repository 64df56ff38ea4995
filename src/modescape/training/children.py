"""Starting a spawned child (`training.spawn`) from its spawn point's stored state.

`MemberTrainer.resume` calls `start_child` for a member of a spawn run that has no resume file
yet: the child takes the parent's weights and optimiser state at the spawn point instead of its
own initialisation (its seed still drives data order, augmentation and dropout), finishes a
partial epoch with the remaining steps of its own data order, and commits its first epoch.
This module does not import the trainer (it works on the trainer it is given), so that the
trainer can call it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from modescape.errors import ModescapeError
from modescape.store.files import load_safetensors, read_safetensors_metadata
from modescape.store.records import SpawnChild, SpawnRecord
from modescape.training.loop import batch_order, load_optimizer, train_epoch


@dataclass(frozen=True)
class SpawnPoint:
    """Where children start: after `epoch` whole epochs and `step` more optimiser steps."""

    at: float  # as asked, in epochs (e.g. 2.5)
    epoch: int
    step: int

    @property
    def label(self) -> str:
        return f"{self.epoch}" if self.step == 0 else f"{self.epoch}+{self.step} steps"


def state_rel(point: int) -> str:
    return f"spawn/p{point:02d}.safetensors"


def child_info(spawn: SpawnRecord, member: int) -> SpawnChild:
    """member.json's "spawn" record of child `member` of a spawn run (its manifest "spawn")."""
    p, c = divmod(member, spawn.children)
    point = spawn.points[p]
    return SpawnChild(p, c, spawn.parent, spawn.member, point.at, point.epoch, point.step)


def start_child(t: Any) -> int:
    """Load the child's spawn state into trainer `t` (a `MemberTrainer`), write and commit its
    first epoch (except at epoch 0, which `fit` writes itself) and return the epoch it resumes
    training from."""
    spawn = t.run.manifest.spawn
    if spawn is None:
        raise ModescapeError(f"{t.run.path} is not a spawn run (its manifest has no 'spawn')")
    p = t.member // spawn.children
    point = SpawnPoint(**spawn.points[p].to_dict())
    _load_state(t, p)
    if point.step == 0 and point.epoch == 0:
        return 0
    if point.step == 0:
        t.write_epoch(point.epoch, None, None)
    else:
        _finish_epoch(t, point)
    start = point.epoch + (point.step > 0)
    t.commit(start)
    return start


def _load_state(t: Any, point: int) -> None:
    path = t.run.path / state_rel(point)
    if not path.exists():
        raise ModescapeError(
            f"{path} is missing: rerun `modescape spawn` for {t.run.path} to replay it"
        )
    path = t.run.verified(path)
    tensors, meta = load_safetensors(path), read_safetensors_metadata(path)
    t.model.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    )
    opt = {k: v if "step" in k else v.to(t.dev) for k, v in tensors.items() if "opt." in k}
    load_optimizer(t.opt, opt, meta["param_groups"])


def _finish_epoch(t: Any, point: SpawnPoint) -> None:
    """The rest of the parent's partial epoch, in this child's own data order."""
    tcfg, lr = t.tcfg, t.tcfg.lr_at(point.epoch)
    for group in t.opt.param_groups:
        group["lr"] = lr
    order = batch_order(len(t.x_train), tcfg.batch_size, tcfg.sampler, t.rng.data)
    bf16 = t.info.precision == "bf16"
    autocast = torch.autocast(t.dev.type, dtype=torch.bfloat16, enabled=bf16)
    stats = train_epoch(t.model, t.opt, t.x_train, t.y_train, tcfg, t.rng, t.pixel, autocast,
                        order=order[point.step :])  # fmt: skip
    t.write_epoch(point.epoch + 1, stats, lr)
