"""Instability analysis on CIFAR-10: when does the seed notebooks' SmallCNN commit to a mode?

    python benchmarks/bench_spawn.py --root /path/to/cifar10-jpg.tar.gz [--out DIR]
        [--train-size 3000] [--test-size 1000] [--epochs 5] [--at 0,0.5,1,2,3]
        [--children 2]

Trains a parent run (2 members: the second is the "different initialisation" reference),
spawns `--children` children of member 0 at every `--at` epoch (0 = the shared initialisation,
fractions by step), trains them to the end of the same schedule with their own data order, and
prints per spawn point the error and loss barrier on the straight line between children (30
evenly spaced α, Frankle et al. 2020), their disagreement, JS diversity, weight cosine and L2
distance, beside the within-trajectory and across-initialisation references, then the onset of
stability (first spawn point with a barrier below 2%). A subset of CIFAR-10 and fewer epochs
than the recipe's 40 keep it to minutes on a free 2-core CPU (the defaults: 3,000 training and
1,000 test images, 5 epochs); the closing lines say which were used.

Frankle, Dziugaite, Roy & Carbin 2020 ("Linear Mode Connectivity and the Lottery Ticket
Hypothesis", arXiv:1912.05671, Figure 3): ResNet-20 on CIFAR-10 (SGD with momentum, lr 0.1
with step drops, batch 128, 63K iterations, standard augmentation) is unstable at
initialisation and becomes stable at about iteration 2,000, roughly 3% into training (≈5 epochs).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

FRANKLE_RESNET20_STABLE_ITERATION = 2000  # Frankle et al. 2020, Fig. 3 (and §3.2's text)
FRANKLE_RESNET20_ITERATIONS = 63_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/work/shared/datasets/cifar10-jpg.tar.gz")
    ap.add_argument("--out", default="runs/bench_spawn")
    ap.add_argument("--train-size", type=int, default=3_000)
    ap.add_argument("--test-size", type=int, default=1_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--at", default="0,0.5,1,2,3")
    ap.add_argument("--children", type=int, default=2)
    ap.add_argument("--examples", type=int, default=1_000, help="test examples per path point")
    args = ap.parse_args()

    import logging

    import modescape as ms
    from modescape.studies.spawn_measures import InstabilityConfig, run_instability
    from modescape.training.spawn import parse_at, spawn

    logging.basicConfig(level=logging.WARNING)
    cfg = ms.preset("cifar10", "smallcnn", "seed", root=args.root, members=2, variant="seed")
    cfg = cfg.with_overrides(
        [f"train.epochs={args.epochs}", f"data.train_size={args.train_size}",
         f"data.test_size={args.test_size}"]
    )  # fmt: skip
    out = Path(args.out)
    tick = time.perf_counter()
    parent = ms.train(cfg, out / "parent")
    t_parent = time.perf_counter() - tick
    tick = time.perf_counter()
    kids = spawn(parent.path, out / "children", member=0, at=parse_at(args.at),
                 children=args.children)  # fmt: skip
    t_spawn = time.perf_counter() - tick
    tick = time.perf_counter()
    s = run_instability(kids.path, InstabilityConfig(examples=args.examples, across=1))
    t_measure = time.perf_counter() - tick
    _print(parent, kids, s, args)
    print(
        f"times: parent {t_parent:.0f} s, spawn (replay + children) {t_spawn:.0f} s, "
        f"measures {t_measure:.0f} s; load average {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} cores (other jobs were running: times are contended)"
    )


def _print(parent, kids, s, args) -> None:
    steps = kids.manifest.spawn.steps_per_epoch
    acc = [parent.metrics(m)[-1].test_acc for m in parent.members]
    print(f"parent: SmallCNN (seed), test accuracy {', '.join(f'{a:.3f}' for a in acc)}")
    print(
        "spawn epoch  step   err.barrier  loss.barrier  disagree    JS      cosine     L2    "
        "child acc"
    )
    rows = [(f"{p.at:g}", p.epoch * steps + p.step, p.level) for p in s.points]
    rows += [("within", "-", s.within), ("across", "-", s.across)]
    for name, step, lv in rows:
        if lv is None:
            continue
        accs = "/".join(f"{a:.3f}" for a in lv.accuracy)
        print(
            f"{name:>11}  {step!s:>5}  {lv.error_barrier:11.2%}  {lv.loss_barrier:12.4f}  "
            f"{lv.disagreement:8.2%}  {lv.js:7.4f}  {lv.cosine:8.5f}  {lv.l2:7.3f}  {accs}"
        )
    print(s.reading)
    onset = "never" if s.onset is None else f"epoch {s.onset:g} (step {round(s.onset * steps)})"
    frac = "" if s.onset is None else f", {s.onset / args.epochs:.1%} of training"
    print(f"onset of stability (barrier < 2%): {onset}{frac}")
    print(
        f"Frankle et al. 2020 (Fig. 3), ResNet-20: stable from iteration "
        f"{FRANKLE_RESNET20_STABLE_ITERATION} of {FRANKLE_RESNET20_ITERATIONS} "
        f"({FRANKLE_RESNET20_STABLE_ITERATION / FRANKLE_RESNET20_ITERATIONS:.1%} of training)."
    )
    print(
        f"setup here: SmallCNN (seed notebooks), Adam 1.6e-3, no augmentation, "
        f"{args.train_size} training / {args.test_size} test images, {args.epochs} epochs "
        f"({steps} steps each) instead of the recipe's 40 on 50,000; {args.children} children "
        "per point, barrier mean over child pairs on the test subset"
    )


if __name__ == "__main__":
    main()
