"""Kill training with SIGKILL at random moments, resume, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py [--trials 20] [--seed 0]
    python benchmarks/kill_resume.py --cifar ../shared/datasets/cifar10-jpg.tar.gz --trials 8

The default trains the MNIST-1D demo; `--cifar ROOT` trains the seed's CIFAR-10 SmallCNN with
the default (fastest) settings: precision "auto" (bf16 on CPUs with bf16 instructions),
channels_last, fused Adam, on 5,000 training images (the rest held out) for 3 epochs. Each
trial starts `modescape train` on a fresh directory, kills it after a random delay (possibly
several times), then lets it finish, and checks every snapshot byte for byte against a reference
run of the same command. Prints one line per trial and a final count.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = ["--members", "2", "--epochs", "5", "--set", "data.mnist1d_samples=1000"]


def cifar_args(root: str) -> list[str]:
    return [
        "--data", "cifar10", "--root", root, "--arch", "smallcnn", "--variant", "seed",
        "--recipe", "seed", "--members", "2", "--epochs", "3", "--set", "data.val_size=45000",
    ]  # fmt: skip


def train(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "modescape", "train", *ARGS, "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def snapshots(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes() for p in sorted(run.glob("members/*/snapshots/*"))
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cifar", metavar="ROOT", help="the CIFAR-10 SmallCNN instead of MNIST-1D")
    args = ap.parse_args()
    if args.cifar:
        ARGS[:] = cifar_args(args.cifar)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference"
        tick = time.perf_counter()
        train(ref).wait()
        duration = time.perf_counter() - tick
        expected = snapshots(ref)
        config = json.loads((ref / "config.json").read_text())
        print(f"reference: {duration:.1f} s, precision {config['train']['precision']}")
        ok = 0
        for trial in range(args.trials):
            out = Path(tmp) / f"trial{trial}"
            kills = []
            for _ in range(rng.randint(1, 3)):
                proc = train(out)
                delay = rng.uniform(0.5, duration)
                time.sleep(delay)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills.append(round(delay, 2))
                proc.wait()
            if train(out).wait() != 0:
                print(f"trial {trial}: final run failed")
                continue
            same = snapshots(out) == expected
            ok += same
            print(
                f"trial {trial}: killed after {kills} s -> {'identical' if same else 'DIFFERENT'}"
            )
        print(f"{ok}/{args.trials} trials byte-identical to the uninterrupted run")
        sys.exit(0 if ok == args.trials else 1)


if __name__ == "__main__":
    main()
