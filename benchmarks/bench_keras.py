"""Seconds per CIFAR-10 training epoch, Keras (the seed notebooks' stack) vs modescape.

For every architecture: Keras `model.fit` and modescape's own trainer (`modescape.train`, one
member) train on the same CIFAR-10 images held in memory, batch 128, Adam, same threads; the
second epoch is timed (the first pays for graph building / allocation). modescape's time is its
training pass (`time_train_s` of the run's metrics) in each precision asked for, and the whole
epoch with its per-epoch extras (test-set predictions + snapshot). Achieved GFLOP/s of the
training pass are printed against this CPU's measured matmul peak.

    pip install tensorflow-cpu   # benchmark-only; without it the script says so and exits 0
    python benchmarks/bench_keras.py --root ../shared/datasets/cifar10-jpg.tar.gz

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
from torch.utils.flop_counter import FlopCounterMode

import modescape as ms
from modescape.data.datasets import load_dataset
from modescape.models.architectures import build_model
from modescape.store.run import load_run

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ["smallcnn:seed", "smallcnn:paper", "mediumcnn:seed", "mediumcnn:paper", "resnet20:paper"]
BATCH = 128


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a square matmul, best of a short loop."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        tick = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - tick) / 1e9)
    return best


def step_flops(arch: str, variant: str) -> float:
    """FLOPs of one training step (forward + backward) on a batch of 128 images."""
    model = build_model(arch, variant, (3, 32, 32), 10)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return float(counter.get_total_flops())


def keras_epoch(tf, arch: str, variant: str, x: np.ndarray, y: np.ndarray) -> float:
    """Seconds of Keras' second training epoch."""
    tf.keras.utils.set_random_seed(0)
    model = compile_seed(tf, keras_model(tf, arch, variant))
    times: list[float] = []

    class Clock(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.tick = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.tick)

    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=True, verbose=0, callbacks=[Clock()])
    return times[1]


def modescape_epoch(
    root: str, arch: str, variant: str, precision: str, workdir: Path, images: int
) -> tuple[float, float]:
    """(training pass, whole epoch with extras) of modescape's second epoch, seconds."""
    recipe = "resnet" if arch == "resnet20" else "seed"
    cfg = ms.preset("cifar10", arch, recipe, root=root, members=1, epochs=2, variant=variant)
    cfg = replace(cfg, train=replace(cfg.train, precision=precision))
    if images < 50_000:  # the rest held out (and evaluated each epoch, in the extras column)
        cfg = replace(cfg, data=replace(cfg.data, val_size=50_000 - images))
    out = workdir / f"{arch}-{variant}-{precision}"
    ms.train(cfg, out)
    rec = load_run(out).metrics(0)[-1]
    return rec["time_train_s"], rec["time_train_s"] + rec["time_eval_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared/datasets/cifar10-jpg.tar.gz"))
    ap.add_argument("--archs", nargs="+", default=ARCHS, help="arch:variant, e.g. smallcnn:seed")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--images", type=int, default=50_000, help="training images per epoch (both stacks)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tf = import_tensorflow(args.threads)

    data = load_dataset("cifar10", args.root, scaling="unit")
    x = data.x_train[: args.images].permute(0, 2, 3, 1).numpy()  # Keras takes NHWC
    y = data.y_train[: args.images].numpy()
    peaks = {
        p: matmul_peak(torch.bfloat16 if p == "bf16" else torch.float32) for p in ("fp32", "bf16")
    }
    print(
        f"CIFAR-10, {args.images:,} training images per epoch, batch {BATCH}, {args.threads} "
        f"threads; matmul peak fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s"
    )
    header = f"{'architecture':<18} {'Keras s':>8} " + " ".join(
        f"{'ms ' + p + ' s':>10} {'ratio':>6} {'GFLOP/s':>8} {'%peak':>6}" for p in args.precisions
    )
    print(header + f" {'epoch+extras':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.archs:
            arch, _, variant = spec.partition(":")
            variant = variant or "paper"
            k = keras_epoch(tf, arch, variant, x, y)
            flops = step_flops(arch, variant) * (args.images / BATCH)
            cells, extras = [], ""
            for p in args.precisions:
                t, full = modescape_epoch(args.root, arch, variant, p, Path(tmp), args.images)
                gflops = flops / t / 1e9
                cells.append(
                    f"{t:>10.2f} {k / t:>5.2f}x {gflops:>8.0f} {100 * gflops / peaks[p]:>5.0f}%"
                )
                if p == args.precisions[0]:
                    extras = f"{full:>8.2f} (+{100 * (full / t - 1):.0f}%)"
            print(f"{spec:<18} {k:>8.2f} " + " ".join(cells) + f" {extras:>13}", flush=True)


if __name__ == "__main__":
    main()
