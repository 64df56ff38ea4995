"""Loss plane: modescape against loss-landscapes and against the one-point-at-a-time loop.

    python benchmarks/bench_landscape.py [--resolution 21] [--examples 2000] [--mnist-examples 1000]
        [--repeats 1] [--mnist-repeats 3] [--threads 1,2] [--skip-peer] [--no-loss-landscapes]

Two setups: SmallCNN (paper) on 1,000 MNIST-1D signals and on 2,000 CIFAR-10 test images, each
with a 21×21 plane through three independently initialised networks. Everything is timed side by
side in one process, repeats interleaved and the best of each kept (the host is shared):

- loss-landscapes 3.0.6 `planar_interpolation` (PyPI; optional, benchmark-only): at each of its
  R×R points the parameters are moved in place and the *loss only* is computed, one forward pass
  over all examples at once. Its grid is staggered (odd columns shifted by one step) with axes
  (θ1−o)/R and (θ2−o)/R, not orthogonalised.
- modescape's engine (`batched.score_many`, defaults, `strategy="auto"`) on exactly those R×R
  points: loss *and* accuracy. Like for like with the line above; the losses must agree to 1e-4.
  On MNIST-1D also each small-network strategy by name ("grouped": K points as batched MKL
  matmuls; "signals": one point at a time through oneDNN's matmul), whichever "auto" picks.
- modescape `landscape.evaluate_plane` (defaults) on its own grid: loss, accuracy and
  agreement with θ1 and θ2 at every point, plus the two reference passes (θ1, θ2). Its grid puts
  the anchors on nodes, so `resolution=R` gives at least R values per axis (23×23 = 529 points
  for R = 21 on these anchors): the script passes the largest resolution whose grid has at most
  R×R points, so both sides evaluate about as many points, and prints the grid it got.
- the direct loop on evaluate_plane's grid: `vector_to_parameters` into the model, batches of
  128, fp32 NCHW (what most code does); its losses must match evaluate_plane's to 1e-4.

Each case runs at each thread count of `--threads` (default 1 and 2), and a summary at the end
gives every ratio, its target (#28: ≥ 1.5x on MNIST-1D, ≥ 3x on CIFAR-10), the load average and
how closely the losses agree, with the CPU capability and whether oneDNN is taken to be ahead of
MKL ("auto" then picks "signals" on MNIST-1D).
Printed: wall seconds (and process CPU seconds, which an oversubscribed host's wall time hides),
the speed-ups against loss-landscapes and against the direct loop, the largest relative
difference of the losses, the thread count and the load average before each setup, and whether
tensors of 2 MB and more go on transparent huge pages (`THP_MEM_ALLOC_ENABLE`: `import modescape`
turns it on, PyTorch's default is off). Both sides share that setting; it matters to
loss-landscapes, which allocates every activation of a 2,000-image pass afresh at every point
(benchmarks/README.md has both measurements).
Without loss-landscapes its column is skipped with a note on how to install it:
`pip install loss-landscapes==3.0.6` (or `pip install --no-deps --target DIR <wheel>` and DIR on
PYTHONPATH); it is never a dependency of modescape.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modescape.analysis import geometry, landscape, weightspace
from modescape.analysis.engine import batched
from modescape.analysis.geometry import anchored_grid
from modescape.models.architectures import build_model

# The shared datasets folder beside the checkout (or beside a folder of worktrees holding it).
CIFAR_JPG = next(
    (
        p / "shared/datasets/cifar10-jpg.tar.gz"
        for p in Path(__file__).resolve().parents[1:4]
        if (p / "shared/datasets/cifar10-jpg.tar.gz").exists()
    ),
    Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpg.tar.gz",
)


MARGIN = 0.2  # evaluate_plane's default margin around the anchors


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


def _loss_landscapes():
    try:
        import loss_landscapes
        import loss_landscapes.metrics
    except ImportError:
        return None
    return loss_landscapes


def their_plane(model, anchors, x, y, steps, ll) -> np.ndarray:
    """loss-landscapes' planar_interpolation: loss only, all examples in one forward pass."""
    nets = []
    for w in anchors:
        net = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(w, net.parameters())
        nets.append(net.eval())
    metric = ll.metrics.Loss(torch.nn.CrossEntropyLoss(), x, y)
    with torch.no_grad():
        return ll.planar_interpolation(*nets, metric, steps=steps, deepcopy_model=True)


def their_grid(anchors, steps) -> torch.Tensor:
    """loss-landscapes' points: column i, row j is o + i·d1 + (j + [i even])·d2, d = (θ − o)/R."""
    o, t1, t2 = (w.double() for w in anchors)
    d1, d2 = (t1 - o) / steps, (t2 - o) / steps
    i, j = np.meshgrid(np.arange(steps), np.arange(steps), indexing="ij")
    jj = j + (i % 2 == 0)
    pts = o + torch.tensor(i.ravel())[:, None] * d1 + torch.tensor(jj.ravel())[:, None] * d2
    return pts.float()


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a).double().reshape(-1), torch.as_tensor(b).double().reshape(-1)
    return float(((a - b).abs() / b.abs()).max())


def _thp() -> str:
    """PyTorch's transparent-huge-page setting for large tensors in this process."""
    return "on" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "off"


def plane_resolution(coords: torch.Tensor, R: int, margin: float) -> int:
    """The largest `resolution` ≤ R whose anchored grid has at most R×R points."""
    for r in range(R, 1, -1):
        g = anchored_grid(coords, r, margin)
        if len(g.a_values) * len(g.b_values) <= R * R:
            return r
    return 2


def run_case(name, x, y, source, args, repeats: int) -> dict:
    in_shape = tuple(x.shape[1:])
    anchors = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = build_model("smallcnn", "paper", in_shape, 10)
        anchors.append(weightspace.flatten_params(net.state_dict(), weightspace.param_names(net)))
    model = build_model("smallcnn", "paper", in_shape, 10)
    R = args.resolution
    strategy = batched.plan(model, x, R * R).strategy
    load = os.getloadavg()[0]
    print(
        f"\n{name}: SmallCNN (paper), {len(x):,} {source}, {R}×{R} plane, "
        f"{torch.get_num_threads()} threads, load average {load:.2f}, "
        f'modescape strategy "{strategy}", huge pages {_thp()}'
    )
    ll = _loss_landscapes() if args.loss_landscapes else None
    if args.loss_landscapes and ll is None:
        print(
            "  loss-landscapes not installed: its column is skipped. Install it for the benchmark "
            "only: pip install loss-landscapes==3.0.6 (or pip install --no-deps --target DIR "
            "<wheel> and DIR on PYTHONPATH)"
        )
    u, v, coords = geometry.plane_axes(*anchors)
    pts = their_grid(anchors, R)
    plane_res = plane_resolution(coords, R, MARGIN)
    grid = anchored_grid(coords, plane_res, MARGIN)
    n_plane = len(grid.a_values) * len(grid.b_values)
    # the engine's default ("auto") and, on 1-D signals, both small-network strategies by name
    strategies = ["auto"] + (["grouped", "signals"] if x.dim() == 3 else [])
    best = dict.fromkeys(("plane", "peer", "ll", *strategies), float("inf"))

    cpu = dict(best)  # process CPU seconds: what an oversubscribed host's wall time hides

    def timed(key, f):
        t, c = time.perf_counter(), time.process_time()
        out = f()
        best[key] = min(best[key], time.perf_counter() - t)
        cpu[key] = min(cpu[key], time.process_time() - c)
        return out

    for _ in range(repeats):  # interleaved: a neighbour's burst should not hit one side only
        res = timed(
            "plane",
            lambda: landscape.evaluate_plane(
                model,
                *anchors,
                x,
                y,
                resolution=plane_res,
                margin=MARGIN,
                verbose=False,
                progress=False,
            ),
        )
        if ll is not None:
            theirs = timed("ll", lambda: their_plane(model, anchors, x, y, R, ll))
            ours = {
                st: timed(st, lambda st=st: batched.score_many(model, pts, x, y, strategy=st).loss)
                for st in strategies
            }
        if not args.skip_peer:
            peer = timed(
                "peer",
                lambda res=res: peer_plane(
                    model, anchors[0], u, v, res.a_values, res.b_values, x, y
                ),
            )
    n = R * R
    summary = {"case": name, "threads": torch.get_num_threads(), "load": load}
    if ll is not None:
        print(
            f"  loss-landscapes planar_interpolation, loss only          {best['ll']:7.2f} s  "
            f"({best['ll'] / n * 1e3:.2f} ms/point; CPU {cpu['ll']:.2f} s)"
        )
        for st in strategies:
            rel_ll = _rel(ours[st], theirs)
            label = f'"{strategy}" (auto)' if st == "auto" else f'"{st}"'
            print(
                f"  modescape score_many {label:16s} same {n} points {best[st]:7.2f} s  "
                f"({best[st] / n * 1e3:.2f} ms/point; CPU {cpu[st]:.2f} s) | "
                f"{best['ll'] / best[st]:4.2f}x loss-landscapes (CPU time "
                f"{cpu['ll'] / cpu[st]:4.2f}x) | max rel. diff of losses {rel_ll:.1e}"
            )
            assert rel_ll <= 1e-4, f"modescape ({st}) disagrees with loss-landscapes"
            summary[st] = best["ll"] / best[st]
            summary["agree"] = max(summary.get("agree", 0.0), rel_ll)
    shape = f"{len(grid.b_values)}×{len(grid.a_values)}"
    line = (
        f"  modescape evaluate_plane, {shape} = {n_plane} points + extras "
        f"{best['plane']:7.2f} s  "
        f"({best['plane'] / n_plane * 1e3:.2f} ms/point; CPU {cpu['plane']:.2f} s)"
    )
    if ll is not None:
        line += (
            f" | {best['ll'] / best['plane']:4.2f}x loss-landscapes "
            f"(CPU time {cpu['ll'] / cpu['plane']:4.2f}x)"
        )
    print(line + f" (best of {repeats})")
    if ll is not None:
        summary["plane"] = best["ll"] / best["plane"]
    if not args.skip_peer:
        rel = _rel(res.loss, peer)
        print(
            f"  direct loop (batch 128, NCHW) on evaluate_plane's grid   {best['peer']:7.2f} s  "
            f"({best['peer'] / n_plane * 1e3:.2f} ms/point; CPU {cpu['peer']:.2f} s) | "
            f"evaluate_plane {best['peer'] / best['plane']:4.2f}x faster | "
            f"max rel. diff of losses {rel:.1e}"
        )
        assert rel <= 1e-4, "modescape's plane disagrees with the direct loop"
        summary["agree_loop"] = rel
    return summary


TARGETS = {"MNIST-1D": 1.5, "CIFAR-10": 3.0}  # issue #28 part 5, like for like


def print_summary(rows: list[dict]) -> None:
    """One line per case and thread count: every ratio against loss-landscapes, its target."""
    print(
        f"\nSummary (torch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, oneDNN ahead of MKL: "
        f"{batched.onednn_ahead()}, huge pages {_thp()}); x = loss-landscapes' time / modescape's"
    )
    for r in rows:
        if "auto" not in r:
            print(f"  {r['case']}, {r['threads']} threads: no loss-landscapes, no ratio")
            continue
        target = TARGETS[r["case"]]
        named = "".join(f", {st} {r[st]:.2f}x" for st in ("grouped", "signals") if st in r)
        met = "met" if r["auto"] >= target else "NOT met"
        print(
            f"  {r['case']}, {r['threads']} threads, load {r['load']:.1f}: engine (auto) "
            f"{r['auto']:.2f}x{named}, evaluate_plane {r['plane']:.2f}x | target {target}x: {met}"
            f" | losses agree to {r['agree']:.1e} (loss-landscapes)"
            + (f", {r['agree_loop']:.1e} (direct loop)" if "agree_loop" in r else "")
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=int, default=21)
    p.add_argument("--examples", type=int, default=2000, help="CIFAR-10 images")
    p.add_argument("--mnist-examples", type=int, default=1000, help="MNIST-1D signals")
    p.add_argument("--repeats", type=int, default=1, help="CIFAR-10 case (minutes each)")
    p.add_argument("--mnist-repeats", type=int, default=3)
    p.add_argument(
        "--threads", default="1,2", help="torch thread counts, each case run at each (0: default)"
    )
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--no-loss-landscapes", dest="loss_landscapes", action="store_false")
    p.add_argument("--cases", default="cifar,mnist1d")
    args = p.parse_args()
    threads = [int(t) for t in str(args.threads).split(",")]
    rows = []
    if "mnist1d" in args.cases:
        data = mnist1d_signals(args.mnist_examples)
        for t in threads:
            torch.set_num_threads(t or os.cpu_count() or 1)
            rows.append(run_case("MNIST-1D", *data, args, args.mnist_repeats))
    if "cifar" in args.cases:
        data = cifar_images(args.examples)
        for t in threads:
            torch.set_num_threads(t or os.cpu_count() or 1)
            rows.append(run_case("CIFAR-10", *data, args, args.repeats))
    print_summary(rows)


if __name__ == "__main__":
    main()
