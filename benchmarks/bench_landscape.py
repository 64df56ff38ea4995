"""Loss plane: modescape's `evaluate_plane` against the one-point-at-a-time loop peers use.

    python benchmarks/bench_landscape.py [--resolution 21] [--examples 2000] [--mnist-examples 1000]
        [--repeats 1] [--mnist-repeats 3] [--skip-peer]

For each case (SmallCNN paper on 2,000 CIFAR-10 test images, SmallCNN paper on 1,000 MNIST-1D
signals) the same 21×21 plane through three independently initialised networks is computed twice,
side by side in one process, repeats interleaved and the best of each kept (the host is shared):
(i) the direct loop: for each grid point, `vector_to_parameters` into the model, one pass over
the data in batches of 128, fp32 NCHW; (ii) `modescape.analysis.landscape.evaluate_plane` with its
defaults (which also evaluates the three anchors and the agreement references). Printed: seconds
for each, the speed-up, the largest relative difference of the losses (must be ≤ 1e-4), the
thread count and the load average before the case.

If the optional package `loss-landscapes` (PyPI, 3.0.6) is importable, its
`planar_interpolation` is timed as well, against modescape's engine on *its* grid (staggered:
odd columns are shifted by one step; axes (θ1−o)/steps and (θ2−o)/steps, not orthogonalised).
It is a benchmark-only dependency: `pip install loss-landscapes` (or `--target` a folder on
PYTHONPATH).
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modescape.analysis import landscape
from modescape.analysis.engine import batched
from modescape.models.architectures import build_model

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpg.tar.gz"


def cifar_images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """`n` real CIFAR-10 test images (n/10 per class, streamed from the JPEG tarball) in [0, 1]."""
    if not CIFAR_JPG.exists():
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,)), "random"
    per_class, images, labels, classes = n // 10, [], [], {}
    with tarfile.open(CIFAR_JPG, "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 4 or parts[1] != "test" or not member.isfile():
                continue
            label = classes.setdefault(parts[2], len(classes))
            if labels.count(label) >= per_class:
                if len(labels) >= per_class * 10:
                    break
                continue
            img = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
            images.append(np.asarray(img))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(labels), "CIFAR-10 test images"


def mnist1d_signals(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = max(n + n // 4, 5000)
    data = make_dataset(args)
    x = torch.tensor(data["x"][:n], dtype=torch.float32)[:, None, :]
    return x, torch.tensor(data["y"][:n]).long(), "MNIST-1D signals"


def peer_plane(model, o, u, v, a_values, b_values, x, y, batch=128) -> torch.Tensor:
    """The usual way: every grid point loaded into the model, a full pass in default batches."""
    loss = torch.empty(len(b_values), len(a_values))
    model.eval()
    with torch.no_grad():
        for i, b in enumerate(b_values):
            for j, a in enumerate(a_values):
                w = (o.double() + a * u + b * v).float()
                torch.nn.utils.vector_to_parameters(w, model.parameters())
                total = sum(
                    F.cross_entropy(model(x[n : n + batch]), y[n : n + batch], reduction="sum")
                    for n in range(0, len(x), batch)
                )
                loss[i, j] = total / len(x)
    return loss


def loss_landscapes_vs_engine(model, anchors, x, y, steps) -> None:
    try:
        import loss_landscapes
        import loss_landscapes.metrics
    except ImportError:
        print("  loss-landscapes not installed: skipped (pip install loss-landscapes)")
        return
    nets = []
    for w in anchors:
        net = build_model("smallcnn", "paper", tuple(x.shape[1:]), 10)
        torch.nn.utils.vector_to_parameters(w, net.parameters())
        nets.append(net.eval())
    metric = loss_landscapes.metrics.Loss(torch.nn.CrossEntropyLoss(), x, y)
    t = time.perf_counter()
    with torch.no_grad():
        theirs = loss_landscapes.planar_interpolation(
            *nets, metric, steps=steps, deepcopy_model=True
        )
    t_theirs = time.perf_counter() - t
    # Their grid: column i, row j is start + i·d1 + (j + [i even])·d2, d_k = (θk − start) / steps.
    o, t1, t2 = (w.double() for w in anchors)
    d1, d2 = (t1 - o) / steps, (t2 - o) / steps
    i, j = np.meshgrid(np.arange(steps), np.arange(steps), indexing="ij")
    jj = j + (i % 2 == 0)
    pts = o + torch.tensor(i.ravel())[:, None] * d1 + torch.tensor(jj.ravel())[:, None] * d2
    t = time.perf_counter()
    ours = batched.score_many(model, pts.float(), x, y).loss.view(steps, steps)
    t_ours = time.perf_counter() - t
    rel = ((ours.double() - torch.tensor(theirs)).abs() / torch.tensor(theirs).abs()).max()
    print(
        f"  loss-landscapes planar_interpolation {t_theirs:7.1f} s | modescape engine, same grid "
        f"{t_ours:6.1f} s | speed-up {t_theirs / t_ours:4.1f}x | max rel. diff {rel:.1e}"
    )


def run_case(name, x, y, source, args, repeats: int) -> None:
    in_shape = tuple(x.shape[1:])
    anchors = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = build_model("smallcnn", "paper", in_shape, 10)
        anchors.append(batched.flatten_params(net.state_dict(), batched.param_names(net)))
    model = build_model("smallcnn", "paper", in_shape, 10)
    R = args.resolution
    print(
        f"\n{name}: SmallCNN (paper), {len(x):,} {source}, {R}×{R} plane, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}"
    )
    u, v, _ = landscape.plane_axes(*anchors)
    t_ours = t_peer = float("inf")
    for _ in range(repeats):  # interleaved: a neighbour's burst should not hit one side only
        t = time.perf_counter()
        res = landscape.evaluate_plane(
            model, *anchors, x, y, resolution=R, margin=0.2, verbose=False, progress=False
        )
        t_ours = min(t_ours, time.perf_counter() - t)
        if not args.skip_peer:
            t = time.perf_counter()
            peer = peer_plane(model, anchors[0], u, v, res.a_values, res.b_values, x, y)
            t_peer = min(t_peer, time.perf_counter() - t)
    print(
        f"  modescape evaluate_plane            {t_ours:7.2f} s  "
        f"({t_ours / R**2 * 1e3:.2f} ms/point, best of {repeats})"
    )
    if not args.skip_peer:
        rel = ((res.loss.double() - peer.double()).abs() / peer.double().abs()).max()
        print(
            f"  direct loop (batch 128, NCHW)       {t_peer:7.2f} s  ({t_peer / R**2 * 1e3:.2f} "
            f"ms/point) | speed-up {t_peer / t_ours:4.1f}x | max rel. diff of losses {rel:.1e}"
        )
        assert rel <= 1e-4, "modescape's plane disagrees with the direct loop"
    if args.loss_landscapes:
        loss_landscapes_vs_engine(model, anchors, x, y, R)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=int, default=21)
    p.add_argument("--examples", type=int, default=2000, help="CIFAR-10 images")
    p.add_argument("--mnist-examples", type=int, default=1000, help="MNIST-1D signals")
    p.add_argument("--repeats", type=int, default=1, help="CIFAR-10 case (minutes each)")
    p.add_argument("--mnist-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--no-loss-landscapes", dest="loss_landscapes", action="store_false")
    p.add_argument("--cases", default="cifar,mnist1d")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "mnist1d" in args.cases:
        run_case("MNIST-1D", *mnist1d_signals(args.mnist_examples), args, args.mnist_repeats)
    if "cifar" in args.cases:
        run_case("CIFAR-10", *cifar_images(args.examples), args, args.repeats)


if __name__ == "__main__":
    main()
