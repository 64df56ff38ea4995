"""Seconds per CIFAR-10 training epoch, Keras (the seed notebooks' stack) vs modescape.

For every architecture: Keras `model.fit` and modescape's own trainer (`train_member`, one
member) train on the same first `--images` CIFAR-10 training images held in memory, batch 128,
Adam, same threads; the second epoch is timed (the first pays for graph building /
allocation). modescape's time is its training pass (`time_train_s` of the run's metrics) in
each precision asked for ("auto", the default, prints what it resolved to). Achieved GFLOP/s
of the training pass are printed against this CPU's measured peak: the best of a large square
matmul and a wide 3x3 convolution (oneDNN's convolutions beat the fp32 matmul here), each warmed
up, best of a few seconds.

The last column is the per-epoch extras of the first precision listed after fp32 (the default
"auto"): predicting the 10,000 test images, writing snapshot, predictions, metrics and resume
state (`time_eval_s`), against a 50,000-image training pass (the measured pass scaled up
when `--images` is smaller).

    pip install tensorflow-cpu   # benchmark-only; without it the script says so and exits 0
    python benchmarks/bench_keras.py --root ../shared/datasets/cifar10-jpg.tar.gz --images 10000

`--rounds R` alternates the stacks R times per architecture (Keras, then each precision, again),
so that both see the same stretches of a shared host; each stack's fastest epoch over all rounds
counts, and the ratio of each round is printed below the row.

Keras trains ResNet20 without augmentation; modescape with the recipe's pad-crop (+ brightness)
augmentation, which only makes modescape's side slower. Time this alone: a second CPU-heavy job
on 2 cores collapses both stacks' throughput.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from keras_models import compile_seed, import_tensorflow, keras_model
from peaks import peak
from torch.utils.flop_counter import FlopCounterMode

import modescape as ms
from modescape.data.datasets import Dataset
from modescape.models.architectures import build_model
from modescape.store.run import load_run, open_dataset
from modescape.training.prepare import prepare_run
from modescape.training.trainer import train_member, training_pixels

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["smallcnn:seed", "smallcnn:paper", "mediumcnn:seed", "mediumcnn:paper", "resnet20:paper"]
BATCH = 128


def step_flops(arch: str, variant: str) -> float:
    """FLOPs of one training step (forward + backward) on a batch of 128 images."""
    model = build_model(arch, variant, (3, 32, 32), 10)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return float(counter.get_total_flops())


def keras_epoch(tf, arch: str, variant: str, x: np.ndarray, y: np.ndarray, timed: int) -> float:
    """Seconds of Keras' fastest training epoch after the first."""
    tf.keras.utils.set_random_seed(0)
    model = compile_seed(tf, keras_model(tf, arch, variant))
    times: list[float] = []

    class Clock(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.tick = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.tick)

    model.fit(
        x, y, batch_size=BATCH, epochs=1 + timed, shuffle=True, verbose=0, callbacks=[Clock()]
    )
    return min(times[1:])


def modescape_epoch(
    data: Dataset, root: str, arch: str, variant: str, precision: str, workdir: Path, timed: int
) -> tuple[float, float, str]:
    """(training pass, extras, resolved precision) of modescape's fastest epoch after the
    first, seconds (the extras: the fastest after the first epoch's)."""
    recipe = "resnet" if arch == "resnet20" else "seed"
    epochs = 1 + timed
    cfg = ms.preset("cifar10", arch, recipe, root=root, members=1, epochs=epochs, variant=variant)
    cfg = replace(cfg, train=replace(cfg.train, precision=precision))
    out = workdir / f"{arch}-{variant}-{precision}"  # workdir: one per round
    run = prepare_run(out, cfg, data, device="cpu")  # the subset's fingerprint is recorded
    train_member(out, 0, device="cpu", threads=torch.get_num_threads(), dataset=data)
    records = load_run(out).metrics(0)[2:]  # [0] is the untrained epoch 0, [1] the first
    train_s = min(r.time_train_s or 0.0 for r in records)
    extras_s = min(r.time_eval_s or 0.0 for r in records)
    return train_s, extras_s, run.config.train.precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared/datasets/cifar10-jpg.tar.gz"))
    ap.add_argument("--archs", nargs="+", default=ARCHS, help="arch:variant, e.g. smallcnn:seed")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--images", type=int, default=50_000, help="training images per epoch (both stacks)"
    )
    ap.add_argument("--timed", type=int, default=3, help="timed epochs per stack (fastest kept)")
    ap.add_argument(
        "--rounds", type=int, default=1, help="alternate the stacks this many times (fastest kept)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tf = import_tensorflow(args.threads)

    cfg = ms.preset("cifar10", "smallcnn", "seed", root=args.root)  # every recipe here: unit
    full = open_dataset(cfg, pixels=training_pixels(cfg))
    data = replace(full, x_train=full.x_train[: args.images], y_train=full.y_train[: args.images])
    x = data.x_train.permute(0, 2, 3, 1).numpy()  # Keras takes NHWC
    y = data.y_train.numpy()
    peaks = {p: peak(torch.bfloat16 if p == "bf16" else torch.float32) for p in ("fp32", "bf16")}
    print(
        f"CIFAR-10, {args.images:,} training images per epoch, batch {BATCH}, {args.threads} "
        f"threads, fastest of {args.timed} epochs x {args.rounds} round(s); "
        f"peak fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s"
    )
    header = f"{'architecture':<18} {'Keras s':>8} " + " ".join(
        f"{'ms ' + p + ' s':>10} {'ratio':>6} {'GFLOP/s':>8} {'%peak':>6} {'':<9}"
        for p in args.precisions
    )
    print(header + f" {'extras':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.archs:
            arch, _, variant = spec.partition(":")
            variant = variant or "paper"
            keras: list[float] = []
            ours: dict[str, list[tuple[float, float, str]]] = {p: [] for p in args.precisions}
            for r in range(args.rounds):  # alternated: both stacks see the same host
                keras.append(keras_epoch(tf, arch, variant, x, y, args.timed))
                for p in args.precisions:
                    workdir = Path(tmp) / f"round{r}"
                    ours[p].append(
                        modescape_epoch(data, args.root, arch, variant, p, workdir, args.timed)
                    )
            k = min(keras)
            flops = step_flops(arch, variant) * (args.images / BATCH)
            cells, extras = [], ""
            for p in args.precisions:
                t = min(m[0] for m in ours[p])
                ex, resolved = min(m[1] for m in ours[p]), ours[p][0][2]
                gflops = flops / t / 1e9
                name = f"{p}={resolved}" if p != resolved else p
                cells.append(
                    f"{t:>10.2f} {k / t:>5.2f}x {gflops:>8.0f} "
                    f"{100 * gflops / peaks[resolved]:>5.0f}% {name:<9}"
                )
                if p == next((q for q in args.precisions if q != "fp32"), p):
                    extras = f"{ex:>6.2f} s {100 * ex / (t * 50_000 / args.images):>4.1f}%"
            print(f"{spec:<18} {k:>8.2f} " + " ".join(cells) + f" {extras:>13}", flush=True)
            if args.rounds > 1:
                per_round = "  ".join(
                    f"{p}: " + " ".join(f"{kr / m[0]:.2f}x" for kr, m in zip(keras, ours[p]))
                    for p in args.precisions
                )
                print(f"{'':<18} each round: {per_round}", flush=True)


if __name__ == "__main__":
    main()
