"""SWA, SWAG, MultiSWAG and MC dropout against a single model and the deep ensemble on CIFAR-10.

    python benchmarks/bench_swag.py --root /path/to/cifar10 [--train-size 10000] [--members 3]
        [--epochs 20] [--collect-epochs 10] [--collect-every 39] [--collect-lr 8e-4] [--out DIR]

Trains the seed notebooks' SmallCNN (it has dropout, so MC dropout applies) with the seed recipe's
optimiser (Adam) on a stratified subset of the training set, its lr milestones scaled to
`--epochs`, then a collection phase (`train.collect`) at a constant lr, and runs `modescape swag`
(`--samples` SWAG samples per member, default 30 as
Maddox et al.; `--passes` MC-dropout passes, default 30). Prints, side by side, test accuracy, NLL,
Brier and ECE of each method with its cost (training epochs, test-set forward passes, wall
time), and whether the orderings Maddox et al. 2019 (SWAG's NLL below SWA's and SGD's) and
Wilson & Izmailov 2020 (MultiSWAG at least as good as the deep ensemble of the same size)
report hold here. The reduced schedule and collection phase are printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from modescape.analysis.swag import SwagConfig
from modescape.config import preset
from modescape.store.run import load_run
from modescape.studies.swag import run_swag
from modescape.training.trainer import train


def config(args: argparse.Namespace):
    cfg = preset("cifar10", "smallcnn", "seed", root=args.root, members=args.members,
                 epochs=args.epochs, variant="seed")  # fmt: skip
    # the seed recipe's milestones (9, 19, 29 of 40 epochs) scaled to --epochs
    milestones = sorted({max(1, round(m * args.epochs / 40)) for m in (9, 19, 29)})
    sets = [
        f"data.train_size={args.train_size}",
        f"data.test_size={args.test_size}",
        f"train.lr_milestones={json.dumps(milestones)}",
        f"train.collect.epochs={args.collect_epochs}",
        f"train.collect.every_steps={args.collect_every}",
        f"train.collect.lr={args.collect_lr}",
    ]
    return cfg.with_overrides(sets)


def phase_times(run) -> tuple[float, float]:
    """Seconds of optimiser work in the main schedule and in the collection phase (all members)."""
    main = collect = 0.0
    for m in run.members:
        main += sum(r.time_train_s or 0.0 for r in run.metrics(m))
        path = run.member_dir(m) / "collect.jsonl"
        collect += sum(json.loads(x)["time_train_s"] for x in path.read_text().splitlines())
    return main, collect


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="CIFAR-10 archive or image folder")
    ap.add_argument("--train-size", type=int, default=10_000)
    ap.add_argument("--test-size", type=int, default=0, help="0: the whole test set")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--collect-epochs", type=int, default=10)
    ap.add_argument("--collect-every", type=int, default=39, help="optimiser steps")
    ap.add_argument("--collect-lr", type=float, default=8e-4)
    ap.add_argument("--samples", type=int, default=30, help="SWAG samples per member")
    ap.add_argument("--passes", type=int, default=30, help="MC-dropout passes per member")
    ap.add_argument("--diag", action="store_true", help="also SWAG-Diagonal")
    ap.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = ap.parse_args()
    tmp = None if args.out else tempfile.TemporaryDirectory()
    out = Path(args.out or tmp.name) / "run"
    cfg = config(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    print(
        f"CIFAR-10, seed SmallCNN, {args.train_size} training images (stratified), "
        f"{args.test_size or 'all 10000'} test images; {args.members} members x {args.epochs} "
        f"epochs (Adam 1.6e-3, x0.5 at "
        f"{list(cfg.train.lr_milestones)}) + a collection phase of {args.collect_epochs} "
        f"epochs at lr {args.collect_lr}, one iterate every {args.collect_every} steps"
    )
    tick = time.perf_counter()
    train(cfg, out)
    t_train = time.perf_counter() - tick
    tick = time.perf_counter()
    methods = ("swa", "swag", "multiswag", "mc_dropout") + (("swag_diag",) if args.diag else ())
    swag_cfg = SwagConfig(methods=methods, n_samples=args.samples, mc_passes=args.passes)
    summary = run_swag(out, swag_cfg)
    t_study = time.perf_counter() - tick
    run = load_run(out)
    main_s, collect_s = phase_times(run)
    M, E, C = args.members, args.epochs, args.collect_epochs
    print(f"\ntraining {t_train:.0f} s wall (optimiser: main schedule {main_s:.0f} s, collection "
          f"{collect_s:.0f} s, all members); swag study {t_study:.0f} s; "
          f"iterates per member {summary.collection['iterates']}; {args.samples} SWAG samples "
          f"and {args.passes} MC-dropout passes per member")  # fmt: skip
    print("\n| method | members | accuracy | NLL | Brier | ECE | training epochs | test forwards |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {r.method: r for r in summary.table}
    for r in summary.table:
        epochs = r.members * E + r.collect_epochs
        print(f"| {r.method} | {r.members} | {r.accuracy:.4f} | {r.nll:.4f} | "
              f"{r.brier:.4f} | {r.ece:.4f} | {epochs} | {r.forwards} |")  # fmt: skip
    nll = {k: v.nll for k, v in rows.items()}
    swag_ok = nll["SWAG"] < nll["SWA"] and nll["SWAG"] < nll["single model"]
    multi_ok = nll["MultiSWAG"] <= nll["deep ensemble"]
    multi_acc = rows["MultiSWAG"].accuracy >= rows["deep ensemble"].accuracy
    print(f"\nMaddox et al. (SWAG NLL < SWA NLL and < single model NLL): "
          f"{'holds' if swag_ok else 'does NOT hold'} "
          f"({nll['SWAG']:.4f} vs {nll['SWA']:.4f} and {nll['single model']:.4f})")  # fmt: skip
    print(
        f"Wilson & Izmailov (MultiSWAG NLL <= deep ensemble NLL, {M} members): "
        f"{'holds' if multi_ok else 'does NOT hold'} ({nll['MultiSWAG']:.4f} vs "
        f"{nll['deep ensemble']:.4f}); accuracy {'>=' if multi_acc else '<'} "
        f"({rows['MultiSWAG'].accuracy:.4f} vs {rows['deep ensemble'].accuracy:.4f})"
    )
    print(
        f"(same-budget note: SWA/SWAG/MultiSWAG members trained {E}+{C} epochs each, the single "
        f"model and the deep ensemble {E}); load {os.getloadavg()[0]:.1f} at the end"
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
