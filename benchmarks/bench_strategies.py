"""The engine's strategies side by side on 1-D networks: is "auto" never the slower choice?

    python benchmarks/bench_strategies.py [--threads 1,2] [--points 48] [--signals 1000]
        [--repeats 3] [--models smallcnn:paper,smallcnn:seed,mediumcnn:seed,mediumcnn:paper,bn]

For each model (MNIST-1D shape, 1×40, 10 classes; "bn": a SmallCNN-like `nn.Sequential` with
BatchNorm after every conv) and each thread count, `batched.score_many` scores the same
`--points` weight points (one network plus small seeded perturbations) on the same random
signals with each strategy by name: "loop", "grouped", "signals". Repeats are interleaved and the
best kept, on two clocks: wall and process CPU time per point (on a shared host compare CPU
time; wall time includes the time slices other processes took). Printed per line: both times per
strategy, which one "auto" picks, and the largest relative difference between the strategies'
losses (they must agree to 1e-5).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from modescape.analysis import weightspace
from modescape.analysis.engine import batched
from modescape.models.architectures import build_model

STRATEGIES = ("loop", "grouped", "signals")


def bn_net() -> nn.Module:
    """SmallCNN (paper) with BatchNorm after every conv, statistics away from 0 / 1."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((1, 16), (16, 32), (32, 32)):
        layers += [nn.Conv1d(c_in, c_out, 3, padding=1), nn.BatchNorm1d(c_out)]
        layers += [nn.MaxPool1d(2), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(160, 10))
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return net


def model_named(name: str) -> nn.Module:
    if name == "bn":
        return bn_net().eval()
    arch, variant = name.split(":")
    return build_model(arch, variant, (1, 40), 10).eval()


def measure(name: str, args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = model_named(name)
    g = torch.Generator().manual_seed(1)
    base = weightspace.flatten_params(model.state_dict(), weightspace.param_names(model))
    points = base + 0.02 * torch.randn(args.points, base.numel(), generator=g)
    wall = dict.fromkeys(STRATEGIES, float("inf"))
    cpu = dict(wall)
    loss = {}
    for _ in range(args.repeats):
        for st in STRATEGIES:
            t, c = time.perf_counter(), time.process_time()
            loss[st] = batched.score_many(model, points, x, y, strategy=st).loss.double()
            wall[st] = min(wall[st], time.perf_counter() - t)
            cpu[st] = min(cpu[st], time.process_time() - c)
    rel = max(float(((loss[s] - loss["loop"]).abs() / loss["loop"]).max()) for s in STRATEGIES)
    k = args.points / 1e3
    times = "  ".join(f"{s} {wall[s] / k:7.2f} / {cpu[s] / k:7.2f}" for s in STRATEGIES)
    print(
        f"{name:16s} {torch.get_num_threads()} thr | {times} | auto: "
        f"{batched.auto_strategy(model, x):8s} | losses agree to {rel:.1e} | "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--points", type=int, default=48)
    p.add_argument("--signals", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--models", default="smallcnn:paper,smallcnn:seed,mediumcnn:seed,mediumcnn:paper,bn"
    )
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.signals, 1, 40, generator=g)
    y = torch.randint(0, 10, (args.signals,), generator=g)
    print(
        f"ms per point, wall / CPU, best of {args.repeats}; {args.points} points × {args.signals} "
        f"signals; CPU capability {torch.backends.cpu.get_cpu_capability()}, oneDNN ahead of "
        f"MKL: {batched.onednn_ahead()}"
    )
    for t in (int(v) for v in args.threads.split(",")):
        torch.set_num_threads(t)
        for name in args.models.split(","):
            measure(name, args, x, y)


if __name__ == "__main__":
    main()
