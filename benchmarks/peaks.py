"""This CPU's measured peak GFLOP/s (shared by bench_keras.py and bench_pipeline.py).

The best of a large square matmul and a wide 3x3 convolution (oneDNN's convolutions beat the
fp32 matmul on some hosts), each warmed up, best of a few seconds at torch's current threads.
"""

from __future__ import annotations

import time

import torch


def _best_rate(fn, flops: float, seconds: float) -> float:
    for _ in range(3):
        fn()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        tick = time.perf_counter()
        fn()
        best = max(best, flops / (time.perf_counter() - tick) / 1e9)
    return best


def peak(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """GFLOP/s: the best of a 4096² matmul and a 256-channel 3×3 convolution (channels_last,
    batch 128, 16×16), each the best of `seconds` after a warm-up."""
    n = 4096
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    matmul = _best_rate(lambda: a @ b, 2 * n**3, seconds)
    x = torch.randn(128, 256, 16, 16).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dtype)
    conv = conv.to(memory_format=torch.channels_last)
    with torch.no_grad():
        rate = _best_rate(lambda: conv(x), 2 * 128 * 256 * 256 * 9 * 16 * 16, seconds)
    return max(matmul, rate)
