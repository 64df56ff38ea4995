"""Evaluating subspace samples: batched `evaluate_many` vs one sample at a time.

For an MNIST-1D SmallCNN and a CIFAR-shaped SmallCNN (freshly initialised weights as the anchor;
timing does not depend on training), draw 30 random-subspace samples and compute their predictions
`[K, N, C]` three ways, side by side in one process:

- naive:           for each sample, copy it into the model's parameters and run the data
                   through in batches (eval mode, inference_mode, NCHW);
- naive + CL:      the same with the model and data in channels_last (2-D only);
- evaluate_many:   `modescape.analysis.engine.batched.evaluate_many(model, samples, x)`.

Prints each time, the ratios, and the largest difference between the predictions.

    .venv/bin/python benchmarks/bench_subspace.py [--samples 30] [--n-mnist 1000] [--n-cifar 500]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from modescape.analysis.engine.batched import evaluate_many
from modescape.analysis.samplers import random_subspace
from modescape.analysis.weightspace import flatten_params, param_names
from modescape.models.architectures import build_model


def naive(model: nn.Module, samples: torch.Tensor, x: torch.Tensor, batch: int) -> torch.Tensor:
    """One sample at a time: copy its weights into the model, forward the data batch by batch."""
    params = list(model.parameters())
    sizes = [p.numel() for p in params]
    out = []
    model.eval()
    for theta in samples:
        with torch.no_grad():  # copy_ keeps each parameter's memory format (channels_last)
            for p, part in zip(params, torch.split(theta, sizes)):
                p.copy_(part.view(p.shape))
        with torch.inference_mode():
            probs = [model(x[i : i + batch]).softmax(-1) for i in range(0, len(x), batch)]
        out.append(torch.cat(probs))
    return torch.stack(out)


def timed(fn) -> tuple[float, float, torch.Tensor]:
    """Wall seconds, process CPU seconds (all threads; less sensitive to a busy shared host)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def bench(
    name: str, in_shape: tuple[int, ...], n: int, samples: int, batch: int, repeats: int
) -> None:
    torch.manual_seed(0)
    model = build_model("smallcnn", "paper", in_shape=in_shape)
    anchor = flatten_params(model.state_dict(), param_names(model))
    thetas = random_subspace(anchor, samples, scale=5.0, seed=0)
    x = torch.randn(n, *in_shape)

    evaluate_many(model, thetas[:2], x[:batch])  # warm-up (oneDNN primitive caches)
    naive(build_model("smallcnn", "paper", in_shape=in_shape), thetas[:2], x[:batch], batch)

    cl_model = build_model("smallcnn", "paper", in_shape=in_shape)
    x_cl = x
    if len(in_shape) == 3:
        cl_model = cl_model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
    methods = {
        "naive (one sample at a time)": lambda: naive(model, thetas, x, batch),
        "naive + channels_last": lambda: naive(cl_model, thetas, x_cl, batch),
        "evaluate_many": lambda: evaluate_many(model, thetas, x, batch_size=batch),
    }
    if len(in_shape) == 2:  # channels_last is a 2-D layout
        del methods["naive + channels_last"]
    # Interleaved repeats, best of each: these hosts are shared, and a neighbour's burst should
    # not land on one method only.
    best = dict.fromkeys(methods, float("inf"))
    best_cpu = dict.fromkeys(methods, float("inf"))
    probs = {}
    for _ in range(repeats):
        for label, fn in methods.items():
            t, c, probs[label] = timed(fn)
            best[label], best_cpu[label] = min(best[label], t), min(best_cpu[label], c)

    print(f"\n{name}: SmallCNN, {samples} samples x {n} examples of shape {in_shape}")
    for label, t in best.items():
        print(
            f"  {label:<30} wall {t:7.3f} s ({1000 * t / samples:6.1f} ms/sample)"
            f"   cpu {best_cpu[label]:7.3f} s"
        )
    naive_label = "naive (one sample at a time)"
    wall = best[naive_label] / best["evaluate_many"]
    cpu = best_cpu[naive_label] / best_cpu["evaluate_many"]
    print(
        f"  speed-up evaluate_many vs naive: wall {wall:.2f}x, cpu {cpu:.2f}x (best of {repeats})"
    )
    ref = probs["naive (one sample at a time)"]
    diff = max((p - ref).abs().max().item() for p in probs.values())
    print(f"  max |probs difference| between methods: {diff:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--n-mnist", type=int, default=1000)
    ap.add_argument("--n-cifar", type=int, default=500)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    bench("MNIST-1D", (1, 40), args.n_mnist, args.samples, args.batch, args.repeats)
    bench("CIFAR-shaped", (3, 32, 32), args.n_cifar, args.samples, args.batch, args.repeats)


if __name__ == "__main__":
    main()
