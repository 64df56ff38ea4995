"""A short GPU check for when a GPU machine is available (nothing else depends on one).

    python benchmarks/bench_gpu.py [--root PATH/cifar10-jpg.tar.gz] [--epochs 2] [--members 2]

For SmallCNN (paper) and ResNet20v1 on CIFAR-10 data: trains `members` x `epochs` through
modescape in fp32 and bf16 autocast, printing training images per second (from the per-epoch
timings modescape records) and the final test accuracy; then the wall-time speed-up of the
`local` executor with one worker per GPU over `serial`. Falls back to the CPU with `--device cpu`
(slow).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from modescape.config import preset
from modescape.pipeline import train_run
from modescape.store.run import load_run

ROOT = Path(__file__).resolve().parents[1]


def images_per_second(run_dir: Path) -> tuple[float, float]:
    run = load_run(run_dir)
    n = run.data_summary.n_train or 0
    rates, accs = [], []
    for m in run.members:
        recs = [r for r in run.metrics(m) if r.time_train_s]
        rates += [n / (r.time_train_s or 1.0) for r in recs[1:] or recs]  # skip warm-up if we can
        accs.append(recs[-1].test_acc or 0.0)
    return max(rates), sum(accs) / len(accs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(ROOT.parent / "shared/datasets/cifar10-jpg.tar.gz"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    gpus = torch.cuda.device_count()
    print(f"torch {torch.__version__}, {gpus} CUDA device(s)", flush=True)
    if args.device.startswith("cuda") and not gpus:
        raise SystemExit("no CUDA device: run with --device cpu to exercise the script")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("smallcnn", "resnet20"):
            for precision in ("fp32", "bf16"):
                cfg = preset("cifar10", arch, "paper", root=args.root, members=args.members)
                cfg = cfg.with_overrides(
                    [f"train.epochs={args.epochs}", f'train.precision="{precision}"']
                )
                out = Path(tmp) / f"{arch}-{precision}"
                tick = time.perf_counter()
                train_run(cfg, out, device=args.device, progress=False)
                wall = time.perf_counter() - tick
                rate, acc = images_per_second(out)
                print(
                    f"{arch:>9} {precision}: {rate:9.0f} train images/s, "
                    f"test acc {acc:.3f}, {wall:.1f} s for {args.members}x{args.epochs} epochs",
                    flush=True,
                )
        if gpus > 1 or args.device == "cpu":
            cfg = preset("cifar10", "smallcnn", "paper", root=args.root, members=max(2, gpus))
            cfg = cfg.with_overrides([f"train.epochs={args.epochs}"])
            times = {}
            for executor in ("serial", "local"):
                tick = time.perf_counter()
                train_run(cfg, Path(tmp) / executor, executor=executor, workers=max(2, gpus),
                          device=args.device, progress=False)  # fmt: skip
                times[executor] = time.perf_counter() - tick
            print(
                f"local executor ({max(2, gpus)} workers) vs serial: {times['local']:.1f} s vs "
                f"{times['serial']:.1f} s, speed-up {times['serial'] / times['local']:.2f}x"
            )


if __name__ == "__main__":
    main()
