"""Where the studies' many-model forwards stand against this CPU's fp32 peak (issue #28 part 1).

    python benchmarks/bench_forwards.py [--archs smallcnn:seed ...] [--models 4] [--images 2000]
                                        [--repeats 5] [--no-profile]

For each architecture (CIFAR-10-shaped inputs, 3×32×32, 10 classes) it runs, on the same
random images and `--models` independently initialised weight points, the two paths the studies
take, at the sizes they use:

- ``stack``: `studies.inference.ModelStack.probs` (the shift study: every model, frozen with
  TorchScript for inference, over one 2,000-image chunk of a corrupted test set, in
  calls of `ModelStack.batch_size` images);
- ``engine``: `analysis.engine.batched.evaluate_many` with the studies' defaults (subspace,
  landscape, connect, swag, the analysis' weight averages and the spawn measures: the "loop"
  strategy for images, one point at a time in cache-sized batches).

Every repeat times each path and the peak (`peaks.py`: a 4096² matmul and a 256-channel 3×3
convolution) side by side, interleaved, on two clocks: wall time and this process's CPU time.
On a shared host the CPU-time rates are the ones to compare (time-slicing inflates wall time,
not CPU time; contention for caches and memory still shows); both are printed, as the median
and the spread over the repeats, with the host's load. A path's GFLOP/s counts one forward's
FLOPs (`FlopCounterMode`) per (model, image) pair, against the peak on the same clock.

Then, unless `--no-profile`, a per-layer breakdown of one call of each path (torch.profiler,
self CPU time by operator, folded into: convolutions and GEMMs, im2col / unfold, pooling, ReLU,
softmax, copies and layout conversions, other). Inside a frozen TorchScript graph oneDNN's
convolutions are not recorded as operators of their own: their time is the graph's `forward`
self time, reported as convolutions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

DEFAULT_ARCHS = ("smallcnn:seed", "smallcnn:paper", "mediumcnn:seed", "mediumcnn:paper")
SHIFT_CHUNK = 2000  # studies/shift.py: corrupted examples evaluated per ModelStack call

# torch.profiler operator names -> the breakdown's categories (first match wins).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conv / GEMM", ("convolution", "conv2d", "forward", "addmm", "baddbmm", "bmm", "mm",
                     "matmul", "linear", "_linear_pointwise", "_convolution_pointwise")),
    ("im2col / unfold", ("im2col", "unfold", "col2im")),
    ("pooling", ("max_pool", "maximum", "avg_pool", "adaptive_avg", "mean", "sum", "amax")),
    ("ReLU", ("relu", "clamp_min", "clamp")),
    ("softmax", ("softmax", "logsumexp", "log_softmax")),
    ("copies / layout", ("copy_", "to_mkldnn", "to_dense", "_to_dense", "contiguous", "cat",
                         "stack", "clone", "empty", "resize_", "to", "_to_copy", "index_put_")),
)  # fmt: skip


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def build(arch: str, variant: str, seed: int) -> torch.nn.Module:
    from modescape.models.registry import build_model

    torch.manual_seed(seed)
    return build_model(arch, variant, (3, 32, 32), 10).eval()


def forward_flops(model: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    return float(counter.get_total_flops())


def peak_calls() -> dict[str, tuple[Callable[[], object], float]]:
    """The two peak measurements of `peaks.peak` (fp32), as calls and their FLOPs."""
    n = 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    x = torch.randn(128, 256, 16, 16).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False)
    conv = conv.to(memory_format=torch.channels_last).requires_grad_(False)
    return {
        "peak matmul 4096^2": (lambda: a @ b, 2 * n**3),
        "peak conv 3x3 256ch": (lambda: conv(x), 2 * 128 * 256 * 256 * 9 * 16 * 16),
    }


def paths(arch: str, variant: str, models: int, images: int):
    """{name: (call, forwards per call)} for one architecture, and one forward's FLOPs."""
    from modescape.analysis.engine.batched import evaluate_many
    from modescape.studies.inference import ModelStack

    nets = [build(arch, variant, seed) for seed in range(models)]
    states = [n.state_dict() for n in nets]
    x = torch.rand(images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    stack = ModelStack(nets[0], {"members": states})
    rows = stack.rows["members"]
    shift_x = x[:SHIFT_CHUNK]
    stack.probs(rows, shift_x[:8])  # freezes every model (a one-off cost, not timed)
    out = {
        "stack (shift)": (lambda: stack.probs(rows, shift_x), len(rows) * len(shift_x)),
        "engine (subspace, landscape, connect, ...)": (
            lambda: evaluate_many(nets[0], states, x, output="logits"),
            models * images,
        ),
    }
    return out, forward_flops(nets[0])


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def measure(calls: dict[str, tuple[Callable[[], object], float]], repeats: int):
    """{name: (wall times, CPU times)} over `repeats` interleaved rounds, after a warm-up."""
    for fn, _ in calls.values():
        for _ in range(2):  # oneDNN and TorchScript reach speed after a call or two
            fn()
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in calls}
    for _ in range(repeats):
        for name, (fn, _) in calls.items():
            w, c = timed(fn)
            out[name][0].append(w)
            out[name][1].append(c)
    return out


def rate_text(flops: float, times: list[float], peak: float) -> str:
    med = statistics.median(times)
    rate = flops / med / 1e9
    return (
        f"{med * 1e3:8.1f} ms [{min(times) * 1e3:.1f}-{max(times) * 1e3:.1f}] "
        f"{rate:6.1f} GFLOP/s {100 * rate / peak:5.1f}%"
    )


def breakdown(fn: Callable[[], object]) -> dict[str, float]:
    """Self CPU seconds of one call by category (see CATEGORIES)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    out: dict[str, float] = {}
    for event in prof.key_averages():
        name = event.key.split("::")[-1]
        cat = next((c for c, keys in CATEGORIES if name in keys or _matches(name, keys)), "other")
        out[cat] = out.get(cat, 0.0) + event.self_cpu_time_total / 1e6
    return out


def _matches(name: str, keys: tuple[str, ...]) -> bool:
    return any(len(k) > 4 and k in name for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=list(DEFAULT_ARCHS), help="arch:variant")
    ap.add_argument("--models", type=int, default=4, help="weight points per path")
    ap.add_argument("--images", type=int, default=SHIFT_CHUNK, help="images per engine call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-profile", action="store_true", help="skip the per-layer breakdown")
    args = ap.parse_args()
    import modescape  # noqa: F401  (sets what importing it sets: huge pages)

    torch.set_grad_enabled(False)
    print(f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, {load()}")
    peaks = peak_calls()
    for spec in args.archs:
        arch, _, variant = spec.partition(":")
        calls, flops = paths(arch, variant or "paper", args.models, args.images)
        with torch.inference_mode():
            times = measure({**peaks, **calls}, args.repeats)
        # The peak on each clock: the better of the two peak calls' median rates.
        peak = [
            max(f / statistics.median(times[k][i]) / 1e9 for k, (_, f) in peaks.items())
            for i in (0, 1)
        ]
        print(
            f"\n{arch} {variant}: {flops / 1e6:.2f} MFLOP per image; fp32 peak {peak[0]:.1f} "
            f"GFLOP/s wall, {peak[1]:.1f} CPU; {args.repeats} interleaved repeats; {load()}"
        )
        for name, (_, n) in calls.items():
            wall, cpu = times[name]
            print(f"  {name}: {n} forwards")
            print(f"    wall {rate_text(n * flops, wall, peak[0])}")
            print(f"    CPU  {rate_text(n * flops, cpu, peak[1])}")
        if args.no_profile:
            continue
        for name, (fn, _) in calls.items():
            with torch.inference_mode():
                parts = breakdown(fn)
            total = sum(parts.values()) or 1.0
            shares = ", ".join(
                f"{c} {100 * s / total:.0f}%" for c, s in sorted(parts.items(), key=lambda t: -t[1])
            )
            print(f"  breakdown of {name} (self CPU {total:.2f} s): {shares}")


if __name__ == "__main__":
    main()
