"""`modescape run --profile quick` on real CIFAR-10, end to end, against `--budget`'s estimate.

    python benchmarks/bench_quick.py --root PATH/cifar10-jpg.tar.gz [--threads 2]

Prices the run (`estimate_run`, the probe `--budget` times), then runs it from scratch in a
temporary directory with a fresh decoding cache (training, every study, the report), and prints
each stage's estimated and measured seconds side by side (training: the members' own times;
studies: their recorded elapsed_s), the fixed costs the estimate leaves out (data decoding,
t-SNE, the report) and the wall time. Measure on a quiet machine: another CPU-heavy job on the
same cores slows PyTorch several-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="CIFAR-10 archive or folder")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-quick-"))
    os.environ["MODESCAPE_CACHE"] = str(tmp / "cache")

    import torch

    from modescape.config import preset
    from modescape.pipeline import estimate_run, run_pipeline
    from modescape.profiles import apply_profile

    if args.threads:
        torch.set_num_threads(args.threads)
    config = apply_profile(preset("cifar10", "smallcnn", root=args.root), "quick")
    tick = time.perf_counter()
    estimate = estimate_run(config)
    probe_s = time.perf_counter() - tick
    tick = time.perf_counter()
    run_pipeline(config, tmp / "run", estimate=False)
    wall = time.perf_counter() - tick
    measured = {"training": sum(_member_seconds(tmp / "run"))}
    for stage in estimate.stages[1:]:
        summary = tmp / "run" / stage.name / "summary.json"
        elapsed = json.loads(summary.read_text()).get("elapsed_s") if summary.is_file() else None
        if elapsed is not None:  # the analysis records none: its time counts as not counted
            measured[stage.name] = float(elapsed)
    print(f"{'stage':10s} {'estimated':>10s} {'measured':>10s} {'ratio':>6s}")
    for stage in estimate.stages:
        got = measured.get(stage.name, float("nan"))
        ratio = got / stage.seconds if stage.seconds > 0 else float("nan")
        print(f"{stage.name:10s} {stage.seconds:9.1f}s {got:9.1f}s {ratio:6.2f}")
    counted = sum(measured.values())
    priced = sum(s.seconds for s in estimate.stages if s.name in measured)
    ratio = counted / priced
    print(f"{'total':10s} {priced:9.1f}s {counted:9.1f}s {ratio:6.2f}  (the stages measured)")
    print(f"not measured per stage (decoding, analysis, report): {wall - counted:.1f} s")
    print(f"wall {wall:.1f} s ({wall / 60:.1f} min) + the probe {probe_s:.1f} s; "
          f"{torch.get_num_threads()} threads; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"run kept in {tmp / 'run'}")


def _member_seconds(run: Path) -> list[float]:
    infos = sorted((run / "members").glob("m*/member.json"))
    return [float(json.loads(p.read_text()).get("time_s") or 0) for p in infos]


if __name__ == "__main__":
    main()
