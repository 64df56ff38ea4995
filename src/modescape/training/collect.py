"""The collection phase (`train.collect`): a member continues past its schedule and its iterates
feed SWA and SWAG (Izmailov et al. 2018; Maddox et al. 2019).

After epoch `train.epochs` the member trains `collect.epochs` more epochs at a constant or
cyclical learning rate and collects its weights every `collect.every_steps` optimiser steps (or
once per epoch) into running SWAG statistics (`analysis.swag.SwagMoments`). These epochs write no
snapshots or predictions, so the trajectory the paper's studies read is unchanged; each one's
record goes to `collect.jsonl`, and the statistics travel in the resume state, so a process
killed anywhere resumes from the last committed epoch with byte-identical results. At the end
the statistics are written to `swag.safetensors` (mean and E[θ²] in float64, the last K
deviations in float32), checksummed in member.json and the manifest like every other file.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from modescape.analysis.swag import SwagMoments, collect, empty_moments
from modescape.analysis.weightspace import param_names
from modescape.store.files import atomic_write_bytes, killpoint, save_safetensors
from modescape.training.loop import evaluate_split, train_epoch

if TYPE_CHECKING:
    from modescape.training.trainer import MemberTrainer

SWAG_FILE = "swag.safetensors"
COLLECT_METRICS = "collect.jsonl"
_STATE = ("swag.mean", "swag.sq_mean", "swag.deviations")


class Collector:
    """One member's collection phase, driven by its `MemberTrainer` (which commits and resumes
    the state this object hands it)."""

    def __init__(self, trainer: MemberTrainer) -> None:
        self.t = trainer
        self.cfg = trainer.tcfg.collect
        self.names = param_names(trainer.model)
        n_params = sum(p.numel() for p in trainer.model.parameters())
        self.moments = empty_moments(n_params, self.cfg.max_rank)
        self.steps = 0  # optimiser steps taken in the collection phase
        self.records: list[dict[str, Any]] = []
        self.steps_per_epoch = math.ceil(len(trainer.x_train) / trainer.tcfg.batch_size)
        # lr = 0 means "carry on at the main schedule's last lr".
        self.base_lr = trainer.tcfg.lr_at(trainer.tcfg.epochs - 1)

    # ---- state carried by the resume file ------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        m = self.moments
        tensors = dict(zip(_STATE, (m.mean, m.sq_mean, m.deviations)))
        meta = {"collect": {"n": m.n, "steps": self.steps, "records": self.records}}
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue from a committed state (a resume file from before the phase holds none)."""
        if "collect" not in meta:
            return
        c = meta["collect"]
        mean, sq_mean, devs = (tensors[k] for k in _STATE)
        self.moments = SwagMoments(mean, sq_mean, devs, int(c["n"]), self.cfg.max_rank)
        self.steps, self.records = int(c["steps"]), list(c["records"])

    # ---- the phase -----------------------------------------------------------------------------
    def run(self, start: int, autocast: torch.autocast) -> None:
        """Train and collect from the 0-based epoch `start` (>= train.epochs) to the end."""
        t = self.t
        end = t.tcfg.epochs + self.cfg.epochs
        spe = self.steps_per_epoch
        for epoch in range(start, end):
            base = self.steps
            tick = time.perf_counter()
            stats = train_epoch(
                t.model, t.opt, t.x_train, t.y_train, t.tcfg, t.rng, t.pixel, autocast,
                step_lr=lambda i, b=base: self.cfg.lr_at_step(b + i, spe, self.base_lr),
                after_step=lambda i, b=base: self._maybe_collect(b + i),
            )  # fmt: skip
            self.steps = base + spe
            stats["time_train_s"] = round(time.perf_counter() - tick, 3)
            self._write_epoch(epoch + 1, stats)
            if epoch + 1 == end:
                self._write_swag()
            t.commit(epoch + 1)

    def _maybe_collect(self, step: int) -> None:
        if self.cfg.collects_after(step, self.steps_per_epoch):
            flat = torch.cat([p.detach().reshape(-1).cpu() for p in self.t.model.parameters()])
            self.moments = collect(self.moments, flat)

    def _write_epoch(self, epoch: int, stats: dict[str, float]) -> None:
        t = self.t
        record: dict[str, Any] = {"epoch": epoch, "collected": self.moments.n} | stats
        record["lr_last"] = t.opt.param_groups[0]["lr"]
        for split, x in t.x_eval.items():
            _, record[f"{split}_loss"], record[f"{split}_acc"] = evaluate_split(
                t.model, x, t.y_eval[split]
            )
        self.records = [r for r in self.records if r["epoch"] < epoch] + [record]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        path = t.mdir / COLLECT_METRICS
        t.info.files[t._rel(path)] = atomic_write_bytes(path, text.encode())
        killpoint("collect.metrics")

    def _write_swag(self) -> None:
        t, m = self.t, self.moments
        meta = {
            "member": t.member,
            "n": m.n,
            "max_rank": m.max_rank,
            "steps": self.steps,
            "lr": self.cfg.lr or self.base_lr,
            "settings": {
                k: getattr(self.cfg, k)
                for k in ("epochs", "lr", "schedule", "lr_min", "every_steps", "max_rank")
            },
            "param_names": self.names,
        }
        path = t.mdir / SWAG_FILE
        tensors = {"mean": m.mean, "sq_mean": m.sq_mean, "deviations": m.deviations}
        t.info.files[t._rel(path)] = save_safetensors(path, tensors, meta)
        killpoint("collect.swag")
