"""Training one member: a plain loop, a snapshot after every epoch, resumable byte for byte.

Member i draws everything random from seeds derived from the run's base seed: initialisation
(global torch RNG, seeded just before the model is built), dropout (global torch RNG afterwards),
data order and augmentation (two private generators). After each epoch the loop writes, in this
order, the snapshot, its predictions, the metrics, and last `resume.safetensors` (optimiser and
every RNG state). That last atomic rename is the commit point: a process killed anywhere restarts
from the last committed epoch and, on CPU, rewrites the later files with identical bytes.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from modescape.config import AugmentConfig, RunConfig, TrainConfig
from modescape.data.datasets import Dataset
from modescape.errors import ModescapeError, choice_error
from modescape.seeding import derive_seed, torch_generator
from modescape.store.files import (
    atomic_write_bytes,
    load_safetensors,
    read_safetensors_metadata,
    save_npy,
    save_safetensors,
)
from modescape.store.run import (
    Run,
    init_run,
    load_run,
    member_seed,
    open_dataset,
    record_files,
    write_member_info,
)

EVAL_BATCH = 1000  # examples per forward pass when caching predictions


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModescapeError("--device cuda was asked for, but no CUDA GPU is available")
        return torch.device(device)
    raise choice_error("device", device, ("auto", "cpu", "cuda", "cuda:N"))


@dataclass
class MemberRNG:
    """The three random streams of one member, besides initialisation."""

    data: torch.Generator
    augment: torch.Generator

    @classmethod
    def fresh(cls, seed: int, device: torch.device) -> MemberRNG:
        torch.manual_seed(derive_seed(seed, "dropout"))
        return cls(
            torch_generator(derive_seed(seed, "data")),
            torch_generator(derive_seed(seed, "augment"), device),
        )

    def state(self) -> dict[str, torch.Tensor]:
        out = {
            "rng.global": torch.get_rng_state(),
            "rng.data": self.data.get_state(),
            "rng.augment": self.augment.get_state(),
        }
        if torch.cuda.is_available():
            out["rng.cuda"] = torch.cuda.get_rng_state()
        return out

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(tensors["rng.global"])
        self.data.set_state(tensors["rng.data"])
        self.augment.set_state(tensors["rng.augment"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])


def batch_order(n: int, batch_size: int, sampler: str, gen: torch.Generator) -> list[torch.Tensor]:
    """Index batches for one epoch: a fresh permutation, or draws with replacement (authors')."""
    if sampler == "permutation":
        return list(torch.randperm(n, generator=gen).split(batch_size))
    return [
        torch.randint(n, (batch_size,), generator=gen) for _ in range(math.ceil(n / batch_size))
    ]


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, pixel: torch.Tensor | float, gen: torch.Generator
) -> torch.Tensor:
    """Random pad-and-crop, horizontal flip and brightness on a batch x[B, C, *spatial].

    `pixel` is the size of one [0, 1] pixel unit in the data's scaling (255 for raw pixels,
    1/std per channel after standardisation), so brightness deltas mean the same in every scaling.
    """
    B, dev = x.shape[0], x.device
    spatial = x.shape[2:]
    if cfg.pad_crop:
        p = cfg.pad_crop
        padded = F.pad(x, (p, p) * len(spatial))
        idx = [
            torch.arange(B, device=dev).view(B, *([1] * (len(spatial) + 1))),
            torch.arange(x.shape[1], device=dev).view(1, -1, *([1] * len(spatial))),
        ]
        for d, size in enumerate(spatial):
            off = torch.randint(0, 2 * p + 1, (B,), generator=gen, device=dev)
            shape = [B, 1] + [1] * len(spatial)
            shape[2 + d] = size
            idx.append(
                (
                    off.view(B, *([1] * (len(spatial) + 1)))
                    + torch.arange(size, device=dev).view(shape[1:]).unsqueeze(0)
                ).view(shape)
            )
        x = padded[tuple(idx)]
    if cfg.flip and len(spatial) == 2:
        flip = torch.rand(B, generator=gen, device=dev) < 0.5
        x = torch.where(flip.view(B, 1, 1, 1), x.flip(-1), x)
    if cfg.brightness > 0:
        delta = (torch.rand(B, generator=gen, device=dev) * 2 - 1) * cfg.brightness
        x = x + delta.view(B, *([1] * (x.dim() - 1))) * pixel
    return x


def pixel_unit(source: dict[str, Any], in_shape: tuple[int, ...]) -> torch.Tensor | float:
    """One [0, 1] pixel unit in the data's own scaling (`Dataset.source["scaling"]`)."""
    scaling = source.get("scaling")
    if scaling == "raw":
        return 255.0
    if scaling == "standardize":
        std = torch.as_tensor(source["std"], dtype=torch.float32)
        return (1.0 / std).view(1, in_shape[0], *([1] * (len(in_shape) - 1)))
    return 1.0  # "unit" pixels, or signals (MNIST-1D) that are not pixels at all


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
    )


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Softmax probabilities float32 [examples, classes], computed in eval mode."""
    was_training = model.training
    model.eval()
    out = torch.cat(
        [F.softmax(model(x[i : i + batch]).float(), dim=1) for i in range(0, len(x), batch)]
    )
    model.train(was_training)
    return out


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {
        f"opt.{i}.{k}": v
        for i, st in sd["state"].items()
        for k, v in st.items()
        if torch.is_tensor(v)
    }
    return tensors, sd["param_groups"]


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    tcfg: TrainConfig,
    rng: MemberRNG,
    pixel: torch.Tensor | float = 1.0,
    autocast: torch.autocast | None = None,
) -> dict[str, float]:
    """One pass over the training data; returns mean train loss and accuracy."""
    model.train()
    dev = x_train.device
    autocast = autocast or torch.autocast(dev.type, enabled=False)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    for idx in batch_order(len(x_train), tcfg.batch_size, tcfg.sampler, rng.data):
        idx = idx.to(dev)
        xb, yb = x_train[idx], y_train[idx]
        if tcfg.augment.enabled:
            xb = augment_batch(xb, tcfg.augment, pixel, rng.augment)
        with autocast:
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Accumulate on the device: one host sync per epoch, not per step.
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(yb)
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}


def train_member(
    run_dir: str | Path,
    member: int,
    *,
    device: str = "auto",
    progress: bool = False,
    threads: int | None = None,
    dataset: Dataset | None = None,
) -> None:
    """Train one member of the run in `run_dir` to completion: skip if finished, resume if not.

    Idempotent and safe to rerun after any interruption; on CPU the result is byte-identical to
    an uninterrupted run at the same thread count. `threads=None` picks 1 for 1-D signals (tiny
    convolutions, where intra-op threads cost more than they gain) and torch's default otherwise;
    the thread count is restored afterwards and recorded in member.json.
    """
    run = load_run(run_dir)
    run._check_member(member)
    if run.member_info(member)["state"] == "finished":
        return
    data = run.dataset() if dataset is None else dataset
    if threads is None:
        threads = 1 if len(data.in_shape) == 2 else torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _train(run, member, data, resolve_device(device), progress)
    finally:
        torch.set_num_threads(before)


def _train(run: Run, member: int, data: Dataset, dev: torch.device, progress: bool) -> None:
    from modescape.models.registry import build_model

    cfg, tcfg = run.config, run.config.train
    seed = member_seed(cfg, member)
    mdir = run.member_dir(member)
    started = time.time()
    info: dict[str, Any] = {
        "member": member,
        "seed": seed,
        "state": "running",
        "epoch": 0,
        "snapshots": [],
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "files": {},
        "time_s": 0.0,
    }
    previous = run.member_info(member)
    if previous["state"] != "pending":
        info["files"] = previous.get("files", {})
        info["time_s"] = previous.get("time_s", 0.0)
    elapsed_before = info["time_s"]

    torch.manual_seed(derive_seed(seed, "init"))
    m = cfg.model
    model = build_model(
        m.arch, m.variant, data.in_shape, data.num_classes, m.dropout, **m.arch_kwargs
    )
    rng = MemberRNG.fresh(seed, dev)
    spatial2d = len(data.in_shape) == 3
    fmt = torch.channels_last if (tcfg.channels_last and spatial2d) else torch.contiguous_format
    model = model.to(dev, memory_format=fmt)
    opt = make_optimizer(model, tcfg)

    splits = {s: getattr(data, f"x_{s}") for s in run.splits}
    splits = {s: x.to(dev).contiguous(memory_format=fmt) for s, x in splits.items()}
    ys = {s: getattr(data, f"y_{s}").to(dev) for s in splits}
    x_train = data.x_train.to(dev).contiguous(memory_format=fmt)
    y_train = data.y_train.to(dev)
    pixel = pixel_unit(data.source, data.in_shape)
    if torch.is_tensor(pixel):
        pixel = pixel.to(dev)

    start_epoch, records = 0, []
    resume_file = mdir / "resume.safetensors"
    if resume_file.exists():
        start_epoch, records = _resume(resume_file, model, opt, rng, dev)
    info["snapshots"] = [e for e in previous.get("snapshots", []) if e <= start_epoch]
    clock = (started, elapsed_before)
    if start_epoch == 0:
        _write_epoch(run, member, 0, model, splits, ys, info, records, train_stats=None, lr=None)
        _commit(run, member, 0, model, opt, rng, info, records, clock)

    bar = tqdm(
        range(start_epoch, tcfg.epochs),
        desc=f"member {member}",
        initial=start_epoch,
        total=tcfg.epochs,
        disable=not (progress and sys.stderr.isatty()),
        leave=False,
    )
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=tcfg.precision == "bf16")
    try:
        for epoch in bar:
            lr = tcfg.lr_at(epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            tick = time.perf_counter()
            stats = train_epoch(model, opt, x_train, y_train, tcfg, rng, pixel, autocast)
            stats["time_train_s"] = round(time.perf_counter() - tick, 3)
            done = epoch + 1
            _write_epoch(run, member, done, model, splits, ys, info, records, stats, lr)
            _commit(run, member, done, model, opt, rng, info, records, clock)
            bar.set_postfix(
                loss=f"{stats['train_loss']:.3f}",
                test_acc=f"{records[-1].get('test_acc', float('nan')):.3f}",
            )
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt):
            info.update(state="failed", reason=f"{type(e).__name__}: {e}")
            write_member_info(run.path, member, info)
        raise
    info.update(state="finished", reason=None)
    write_member_info(run.path, member, info)
    record_files(run.path, info["files"])


def _keeps_snapshot(tcfg: TrainConfig, epoch: int) -> bool:
    return epoch == 0 or epoch == tcfg.epochs or epoch % tcfg.snapshot_every == 0


def _write_epoch(
    run: Run,
    member: int,
    epoch: int,
    model: nn.Module,
    splits: dict,
    ys: dict,
    info: dict,
    records: list,
    train_stats: dict | None,
    lr: float | None,
) -> None:
    """Snapshot, predictions and the metrics line for `epoch` (everything but the commit)."""
    mdir = run.member_dir(member)
    tick = time.perf_counter()
    record: dict[str, Any] = {"epoch": epoch, "lr": lr} | (train_stats or {})
    keep = _keeps_snapshot(run.config.train, epoch)
    for split, x in splits.items():
        probs = predict(model, x)
        y = ys[split]
        record[f"{split}_loss"] = F.nll_loss(probs.clamp_min(1e-12).log(), y).item()
        record[f"{split}_acc"] = (probs.argmax(1) == y).float().mean().item()
        if keep:
            rel = run.prediction_path(split, member, epoch).relative_to(run.path)
            info["files"][str(rel)] = save_npy(
                run.path / rel, probs.cpu().numpy().astype(np.float32)
            )
    if keep:
        state = {k: v for k, v in model.state_dict().items()}
        rel = run.snapshot_path(member, epoch).relative_to(run.path)
        info["files"][str(rel)] = save_safetensors(
            run.path / rel, state, {"epoch": epoch, "member": member}
        )
        if epoch not in info["snapshots"]:
            info["snapshots"].append(epoch)
    record["time_eval_s"] = round(time.perf_counter() - tick, 3)
    records[:] = [r for r in records if r["epoch"] < epoch] + [record]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    info["files"][str((mdir / "metrics.jsonl").relative_to(run.path))] = atomic_write_bytes(
        mdir / "metrics.jsonl", text.encode()
    )


def _commit(
    run: Run,
    member: int,
    epoch: int,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    rng: MemberRNG,
    info: dict,
    records: list,
    clock: tuple[float, float],
) -> None:
    tensors, groups = _optimizer_tensors(opt)
    tensors |= {f"model.{k}": v for k, v in model.state_dict().items()} | rng.state()
    meta = {"epoch": epoch, "param_groups": groups, "records": records}
    save_safetensors(run.member_dir(member) / "resume.safetensors", tensors, meta)
    info["epoch"] = epoch
    started, elapsed_before = clock
    info["time_s"] = round(elapsed_before + time.time() - started, 3)
    write_member_info(run.path, member, info)


def _resume(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, rng: MemberRNG, dev: torch.device
) -> tuple[int, list]:
    tensors = load_safetensors(path)
    meta = read_safetensors_metadata(path)
    model.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    )
    _load_optimizer(
        opt,
        {
            k: v.to(dev) if "step" not in k else v
            for k, v in tensors.items()
            if k.startswith("opt.")
        },
        meta["param_groups"],
    )
    rng.restore(tensors)
    return int(meta["epoch"]), meta["records"]


def prepare_run(out: str | Path, config: RunConfig, dataset: Dataset | None = None) -> Run:
    """Create (or reopen) the run directory and write the labels of its evaluation splits."""
    out = Path(out)
    if (out / "config.json").exists():
        return init_run(out, config)  # checks the config matches; labels are already there
    data = open_dataset(config) if dataset is None else dataset
    from modescape.models.registry import build_model

    m = config.model  # an unbuildable model (import path, kwargs, shape) fails before any file
    with torch.random.fork_rng(devices=[]):
        build_model(m.arch, m.variant, data.in_shape, data.num_classes, m.dropout, **m.arch_kwargs)
    summary = {
        "name": data.name,
        "in_shape": list(data.in_shape),
        "num_classes": data.num_classes,
        "classes": list(data.classes),
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "source": data.source,
    }
    run = init_run(out, config, summary)
    files = {}
    for split in ("val", "test"):
        y = getattr(data, f"y_{split}")
        if len(y):
            rel = f"labels/{split}.npy"
            files[rel] = save_npy(out / rel, y.numpy().astype(np.int64))
    record_files(out, files)
    return run


def train(
    config: RunConfig,
    out: str | Path,
    *,
    members: list[int] | None = None,
    device: str = "auto",
    progress: bool = False,
) -> Run:
    """Train (or finish) the given members of a run, one after another, in this process."""
    data = open_dataset(config)
    run = prepare_run(out, config, data)
    for m in run.members if members is None else members:
        train_member(run.path, m, device=device, progress=progress, dataset=data)
    return run
