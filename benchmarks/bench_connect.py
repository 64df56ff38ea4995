"""A low-loss curve between two of the seed's CIFAR-10 SmallCNNs, against the straight line.

Trains two members of the seed notebooks' recipe (SmallCNN seed variant, Adam, batch 128, lr
1.6e-3 with the seed's halvings, pixels / 255) — on a per-class subset of the training images and
with fewer epochs when asked, both printed — then a quadratic Bézier curve between them
(`modescape connect`, Garipov et al. 2018's recipe by default), and prints:

- the straight line's test-error barrier, the curve's, and the curve's maximum test error
  against the ends' mean (the target: within 2 points);
- the midpoint's disagreement with each end against the ends' disagreement with each other
  (the paper v1's "not connected in the space of predictions");
- wall time of each stage and peak RSS.

    python benchmarks/bench_connect.py --root ../shared/datasets/cifar10-jpg.tar.gz \\
        --train-per-class 1000 --test-per-class 200 --epochs 20 --recipe run \\
        --max-examples 2000 --train-examples 1000 --out runs/c10-connect

The curve trains for twice the members' epochs unless `--curve-epochs` says otherwise: members
that have not converged (the seed's SmallCNN after 10-40 epochs) are still improving, so the
curve's middle, which starts on the straight line at ~90% error and moves by a share of every
step (its bend's coefficient 2t(1 - t) at the drawn t), needs more steps than the ends had
(measured: 4,000 images, 10-epoch members, the run's Adam recipe: barrier 5.85 points after 10
curve epochs, 1.95 after 20, 1.75 after 30). Garipov et al.'s own commands train curves for
1-3x the endpoints' epochs (VGG16: 600 vs 200; github.com/timgaripov/dnn-mode-connectivity).

`--run RUN` uses an existing run's members 0 and 1 instead (e.g. benchmarks/reproduce_seed.py's).
`--at-epochs 10,20` also scores the bends stored after those curve epochs (the same t values and
examples as the final curve): the test-error barrier against the number of curve epochs, which
tells whether a curve that misses the target is still converging.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

import modescape as ms
from modescape.analysis.connect.evaluate import evaluate_curve
from modescape.analysis.functionspace import disagreement_matrix
from modescape.analysis.landscape import barrier
from modescape.analysis.weightspace import flatten_params, param_names
from modescape.store.files import load_safetensors
from modescape.studies.connect import connect_config, fit_curve
from modescape.studies.context import open_context

# Garipov et al. 2018, Table 1 (CIFAR-10, test error %): ends and along the Bézier curve.
GARIPOV = {"VGG16": ((6.79, 6.94), (6.79, 7.75)), "PreResNet164": ((4.75, 4.76), (4.45, 4.97))}


def subset_folder(archive: Path, out: Path, train_per_class: int, test_per_class: int) -> Path:
    """The first n images of each class (in the archive's order) of an image-folder archive,
    extracted in one streaming pass."""
    root = out / f"cifar10-{train_per_class}-{test_per_class}"
    if (root / ".complete").exists():
        return root
    keep = {"train": train_per_class, "test": test_per_class}
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(archive, "r|gz") as tar:
        for m in tar:
            if not (m.isfile() and m.name.endswith(".jpg")):
                continue
            split, cls = Path(m.name).parts[-3:-1]
            if taken.get((split, cls), 0) >= keep[split]:
                continue
            taken[(split, cls)] = taken.get((split, cls), 0) + 1
            dest = root / split / cls / Path(m.name).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
    (root / ".complete").write_text("")
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="CIFAR-10 image-folder archive (.tar.gz)")
    p.add_argument("--run", help="an existing run: connect its members 0 and 1")
    p.add_argument("--train-per-class", type=int, default=5000)
    p.add_argument("--test-per-class", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=40, help="members' epochs (seed: 40)")
    p.add_argument("--curve-epochs", type=int, help="default: twice the members' epochs")
    p.add_argument("--recipe", default="garipov", choices=["garipov", "run"])
    p.add_argument("--lr", type=float, default=0.015, help="the garipov recipe's SGD rate")
    p.add_argument("--points", type=int, default=61)
    p.add_argument("--max-examples", type=int, default=10000, help="test examples per t")
    p.add_argument("--train-examples", type=int, default=2000, help="training examples per t")
    p.add_argument("--out", default="runs/c10-connect")
    p.add_argument("--at-epochs", default="", help="earlier curve epochs to score, e.g. 10,20")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    if args.run:
        run_dir = Path(args.run)
    else:
        if not args.root:
            p.error("--root or --run is needed")
        out = Path(args.out)
        full = args.train_per_class >= 5000 and args.test_per_class >= 1000
        data = "cifar10" if full else "folder"
        root = (
            args.root
            if full
            else str(
                subset_folder(
                    Path(args.root), out.parent, args.train_per_class, args.test_per_class
                )
            )
        )
        cfg = ms.preset(
            data, "smallcnn", "seed", root=root, members=2, epochs=args.epochs, variant="seed"
        )
        run_dir = ms.train(cfg, out).path
    t1 = time.perf_counter()
    if args.curve_epochs is None:
        args.curve_epochs = 2 * ms.load_run(run_dir).config.train.epochs
    cc = connect_config(
        epochs=args.curve_epochs,
        recipe=args.recipe,
        lr=args.lr,
        points=args.points,
        train_examples=args.train_examples,
        max_examples=args.max_examples,
        plane_resolution=0,
        fge_cycles=0,
    )
    s = fit_curve(run_dir, cc)
    t2 = time.perf_counter()
    report(run_dir, args, s, t1 - t0, t2 - t1)
    for epoch in [int(e) for e in args.at_epochs.split(",") if e]:
        err = curve_error_at(run_dir, s, cc, epoch)
        print(
            f"after {epoch} of {args.curve_epochs} curve epochs: test-error barrier "
            f"{100 * barrier(err):.2f} points (max {100 * err.max():.2f}%)"
        )


def late_disagreement(run_dir: Path, member: int, window: int, n: int) -> float:
    """Mean pairwise disagreement of a member's last `window` snapshots on the first `n` test
    examples (those the curve is scored on): the within-trajectory reference of the paper."""
    run = ms.load_run(run_dir)
    epochs = run.snapshot_epochs(member)[-window:]
    probs = np.stack([run.predictions("test", member, e)[:n] for e in epochs])
    d = disagreement_matrix(probs)
    return float(d[np.triu_indices(len(epochs), 1)].mean())


def curve_error_at(run_dir: Path, s, cc, epoch: int):
    """Test error along the curve whose free bends were stored after curve `epoch`, at the same
    t values and on the same examples as `fit_curve`'s evaluation."""
    ctx = open_context(run_dir)
    model = ctx.build_model()
    names = param_names(model)
    stored = load_safetensors(run_dir / s.curve_folder / "bends" / f"e{epoch:04d}.safetensors")
    free = [
        flatten_params(
            {k.split(".", 1)[1]: v for k, v in stored.items() if k.startswith(f"bend{i}.")}, names
        )
        for i in range(1, cc.bends - 1)
    ]
    ends = [flatten_params(ctx.run.state_dict(m, -1), names) for m in (0, 1)]
    bends = torch.stack([ends[0], *free, ends[1]])
    n = min(cc.max_examples, len(ctx.dataset.y_test))
    x_train, y_train = ctx.train_inputs(torch.arange(len(ctx.dataset.y_train))), ctx.dataset.y_train
    keep = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))[
        : cc.train_examples
    ]
    prof = evaluate_curve(
        model, bends, cc.shape, ctx.inputs("test")[:n], ctx.dataset.y_test[:n],
        x_train[keep], y_train[keep], points=cc.points, bn_batches=cc.bn_batches,
        bn_batch_size=cc.bn_batch_size,
    )  # fmt: skip
    return prof.test_error


def report(run_dir: Path, args: argparse.Namespace, s, train_s: float, curve_s: float) -> None:
    run = ms.load_run(run_dir)
    d = run.data_summary
    data = f"{d.name} {d.n_train} train / {d.n_test} test images"
    print(
        f"\nrun {run_dir}: {run.config.model.arch} ({run.config.model.variant}), "
        f"{run.config.train.recipe} recipe, {run.config.train.epochs} epochs, {data}"
    )
    print(
        f"curve: {args.recipe} recipe, {args.curve_epochs} epochs, {args.points} t values, "
        f"{s.num_examples} test examples, BatchNorm policy {s.bn_policy}"
    )
    ends = (s.stats["test_error"]["max"], s.line_stats["test_error"]["max"])
    mid = s.midpoint
    err0 = s.line_stats["test_error"]
    end_mean = s.stats["test_error"]["max"] - s.error_barrier
    print(f"ends' test error: mean {100 * end_mean:.2f}%")
    print(
        f"straight line: test-error barrier {100 * s.line_error_barrier:.2f} points "
        f"(max {100 * ends[1]:.2f}%), train-loss barrier {s.line_loss_barrier:.3f}"
    )
    print(
        f"curve:         test-error barrier {100 * s.error_barrier:.2f} points "
        f"(max {100 * ends[0]:.2f}%), train-loss barrier {s.loss_barrier:.3f}; target "
        f"within 2 points: {'met' if s.error_barrier <= 0.02 else 'NOT met'}"
    )
    print(
        f"midpoint (t = {mid['t']}): disagreement with end 0 {mid['disagreement_end0']:.3f}, "
        f"with end 1 {mid['disagreement_end1']:.3f}; ends with each other "
        f"{mid['ends_disagreement']:.3f}; test error {100 * mid['test_error']:.2f}% "
        f"(line midpoint {100 * mid['line_test_error']:.2f}%)"
    )
    late = [late_disagreement(run_dir, m, 6, s.num_examples) for m in (0, 1)]
    print(
        f"late snapshots of one trajectory (last 6 of each end, pairwise): disagreement "
        f"{late[0]:.3f} / {late[1]:.3f}"
    )
    print(f"length in weight space: curve {s.length:.2f}, line {s.line_length:.2f}")
    del err0
    for name, ((e0, e1), (c0, c1)) in GARIPOV.items():
        print(f"Garipov et al. 2018, {name}: ends {e0}-{e1}%, Bézier curve {c0}-{c1}%")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    members = "reused (--run)" if args.run else f"{train_s:.0f} s"
    print(
        f"wall time: members {members}, curve (train + evaluate) {curve_s:.0f} s; "
        f"peak RSS {rss:.2f} GB"
    )


if __name__ == "__main__":
    main()
