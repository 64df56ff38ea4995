"""One CIFAR-10 epoch of SmallCNN (paper): modescape's training vs a bare PyTorch loop.

Both use the same pre-loaded tensors, model, optimiser (fused Adam), batch size, memory format
and precision (the default "auto": bf16 autocast on CPUs with bf16 instructions), measured side
by side in one process, alternating, best of `--repeats`. modescape's epoch is reported two
ways: the training pass alone (what the target compares) and with the per-epoch extras it adds
(test-set predictions cached, snapshot + resume state written atomically); the extras are also
printed as a share of the training pass (issue #15's target: under 10%).

    python benchmarks/bench_training.py [--root ../shared/datasets/cifar10-jpg.tar.gz] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from modescape.config import preset
from modescape.data.datasets import load_dataset
from modescape.models.architectures import build_model
from modescape.store.run import load_run
from modescape.training.loop import resolve_precision
from modescape.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def bare_epoch(x: torch.Tensor, y: torch.Tensor, seed: int, precision: str) -> float:
    """The loop a researcher writes by hand: no logging, no snapshots."""
    torch.manual_seed(seed)
    model = build_model("smallcnn", "paper", (3, 32, 32), 10).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1.6e-3, fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    model.train()
    tick = time.perf_counter()
    for idx in torch.randperm(len(x)).split(128):
        with autocast:
            logits = model(x[idx])
        loss = F.cross_entropy(logits.float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - tick


def modescape_epoch(cfg, workdir: Path, i: int) -> tuple[float, float, float]:
    out = workdir / f"run{i}"
    tick = time.perf_counter()
    train(cfg, out)
    total = time.perf_counter() - tick
    rec = load_run(out).metrics(0)[1]
    train_s, eval_s = rec.time_train_s or 0.0, rec.time_eval_s or 0.0
    return train_s, train_s + eval_s, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(ROOT.parent / "shared/datasets/cifar10-jpg.tar.gz"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("cifar10", args.root, scaling="raw")
    x = data.x_train.contiguous(memory_format=torch.channels_last)
    cfg = preset("cifar10", "smallcnn", "paper", root=args.root, members=1, epochs=1)
    precision = resolve_precision(cfg.train.precision, torch.device("cpu"), (3, 32, 32))
    print(
        f"SmallCNN (paper), CIFAR-10 {tuple(x.shape)}, batch 128, {args.threads} threads, "
        f"precision {cfg.train.precision} = {precision}"
    )
    bare, ms_train, ms_full = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            bare.append(bare_epoch(x, data.y_train, i, precision))
            t_train, t_epoch, _ = modescape_epoch(cfg, Path(tmp), i)
            ms_train.append(t_train)
            ms_full.append(t_epoch)
            print(
                f"  repeat {i}: bare {bare[-1]:.2f} s, modescape train pass {t_train:.2f} s, "
                f"with predictions + snapshot {t_epoch:.2f} s"
            )
    b, t, f = min(bare), min(ms_train), min(ms_full)
    print(f"bare PyTorch epoch            {b:7.2f} s")
    print(f"modescape training pass       {t:7.2f} s   ratio {t / b:.3f}  (target <= 1.10)")
    print(f"modescape epoch incl. extras  {f:7.2f} s   ratio {f / b:.3f}")
    extras = min(e - t for e, t in zip(ms_full, ms_train, strict=True))
    print(f"per-epoch extras              {extras:7.2f} s   {100 * extras / t:.1f}% of the pass")


if __name__ == "__main__":
    main()
