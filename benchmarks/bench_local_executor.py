"""Wall time of the `local` executor (2 workers) against `serial` on a 4-member MNIST-1D run.

All run side by side in one process run, on fresh copies of the same run: serial with torch's
default threads (all cores for one member at a time), serial with the per-worker thread count,
and local (the cores split between the workers). Local pays for spawning workers (each imports
torch and loads the dataset), so it wins only once members train for longer than that start-up.

    python benchmarks/bench_local_executor.py [--epochs 10] [--samples 4000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from modescape.config import preset
from modescape.store.run import load_run
from modescape.training.launch import run_members
from modescape.training.prepare import prepare_run


def timed(executor: str, root: Path, config, workers: int, threads: int | None = None) -> float:
    run_dir = root / f"{executor}-{threads}"
    prepare_run(run_dir, config)
    t0 = time.perf_counter()
    result = run_members(run_dir, executor=executor, workers=workers, threads=threads)
    elapsed = time.perf_counter() - t0
    assert result.ok, result.failed
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--samples", type=int, default=4000, help="MNIST-1D samples (80%% train)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    config = preset("mnist1d", "smallcnn", members=args.members, epochs=args.epochs, seed=0)
    config = replace(config, data=replace(config.data, mnist1d_samples=args.samples))
    print(
        f"{args.members} members x {args.epochs} epochs, MNIST-1D {args.samples} samples, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Build (and cache) the dataset first, so neither executor pays for generating it.
        prepare_run(root / "warmup", config)
        load_run(root / "warmup").dataset()
        split = max(1, (os.cpu_count() or 1) // args.workers)
        serial = timed("serial", root, config, args.workers)
        serial_split = timed("serial", root, config, args.workers, threads=split)
        local = timed("local", root, config, args.workers)
    print(f"serial, torch's default threads   {serial:7.1f} s")
    print(f"serial, {split} thread(s) per member    {serial_split:7.1f} s")
    print(f"local, {args.workers} workers x {split} thread(s)   {local:7.1f} s")
    print(f"local / serial (default threads) {local / serial:7.2f}")
    print(f"local / serial ({split} thread(s))      {local / serial_split:7.2f}")


if __name__ == "__main__":
    main()
