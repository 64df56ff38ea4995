"""Per-stage wall time and peak RSS of `modescape run` on the seed's CIFAR-10 SmallCNN experiment.

    python benchmarks/bench_pipeline.py --root CIFAR10 [--members 5] [--epochs 40] [--out DIR]
    python benchmarks/bench_pipeline.py --reuse RUN [--members 5] [--out DIR]

The first form trains the experiment (`--data cifar10 --arch smallcnn --variant seed --recipe
seed`, 5 members x 40 epochs by default) through the library, member by member, then runs the
studies `modescape run` runs (`pipeline.study_stages`) and the report, timing each. `--reuse RUN`
times the studies only, on a copy of a trained run (its first `--members` members; the copy is
made in `--out`, default a temporary folder, so RUN itself is never written): training time is
then read from the members' own records (`member.json` wall time).

Printed: the estimate from the timed probe (`modescape.estimate`), then per stage the wall time,
the process's peak RSS so far (ru_maxrss: it only grows, so each stage's line shows where the
peak came from) and the load average (a shared host: compare with it), and the ratio of the
studies to training against the 30% target. The studies of a 5 x 40 run take ~minutes to an
hour: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 0.30  # issue #15: the studies within 30% of training
TARGET_RSS_MB = 1536


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def experiment(root: str, members: int, epochs: int):
    """`modescape run --data cifar10 --arch smallcnn --variant seed --recipe seed`."""
    from modescape.config import preset

    return preset(
        "cifar10", "smallcnn", "seed", root=root, members=members, epochs=epochs, variant="seed"
    )


def subset_copy(run: Path, members: int, dst: Path) -> Path:
    """A valid run of the first `members` members of `run`, without study results, in `dst`."""
    from modescape.store.files import write_json
    from modescape.store.manifest import seal

    dst.mkdir(parents=True)
    for name in ("config.json", "manifest.json"):
        shutil.copy(run / name, dst / name)
    shutil.copytree(run / "labels", dst / "labels")
    for m in range(members):
        shutil.copytree(run / "members" / f"m{m:03d}", dst / "members" / f"m{m:03d}")
    config = json.loads((dst / "config.json").read_text())
    if members > config["members"]:
        raise SystemExit(f"{run} has {config['members']} members, asked for {members}")
    config["members"] = members
    write_json(dst / "config.json", config)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["config"]["members"] = members
    kept = {f"members/m{m:03d}/" for m in range(members)}
    manifest["files"] = {
        k: v
        for k, v in manifest["files"].items()
        if k.startswith("labels/") or any(k.startswith(p) for p in kept)
    }
    manifest["seeds"] = {
        k: v for k, v in manifest["seeds"].items() if k == "base" or int(k.split("_")[1]) < members
    }
    write_json(dst / "manifest.json", seal(manifest))
    return dst


def recorded_training(run: Path, members: int) -> list[float]:
    """Each member's training wall time as its member.json records it (NaN if not recorded)."""
    out = []
    for m in range(members):
        info = json.loads((run / "members" / f"m{m:03d}" / "member.json").read_text())
        out.append(float(info.get("time_s", "nan")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="CIFAR-10 archive or folder (training mode)")
    ap.add_argument("--reuse", help="time the studies on a copy of this trained run")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", help="run directory (default: a temporary folder)")
    ap.add_argument("--no-report", action="store_true", help="skip the report stage")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    if not (args.root or args.reuse):
        ap.error("give --root (train and time everything) or --reuse RUN (time the studies)")
    logging.basicConfig(level=logging.INFO, format="  %(asctime)s %(name)s: %(message)s")
    import torch

    from modescape.estimate import estimate_run
    from modescape.pipeline import study_stages
    from modescape.store.run import load_run

    out = Path(args.out or tempfile.mkdtemp(prefix="bench_pipeline_")) / "run"
    print(f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, {load()}, out {out}")
    rows: list[tuple[str, float]] = []
    training: list[float] = []
    if args.reuse:
        subset_copy(Path(args.reuse), args.members, out)
        cfg = load_run(out).config
        training = recorded_training(out, args.members)
    else:
        cfg = experiment(args.root, args.members, args.epochs)
    est = estimate_run(cfg)
    print("\n".join(est.lines()))
    print(f"after the probe: peak RSS {peak_rss_mb():.0f} MB, {load()}")
    if not args.reuse:
        from modescape.store.run import open_dataset
        from modescape.training.prepare import prepare_run
        from modescape.training.trainer import train_member, training_pixels

        data = open_dataset(cfg, pixels=training_pixels(cfg))  # as `modescape run` loads it
        run = prepare_run(out, cfg, data)
        for m in run.members:
            t = time.perf_counter()
            train_member(run.path, m, dataset=data, progress=False)
            training.append(time.perf_counter() - t)
            line = f"member {m}: {training[-1]:.0f} s, peak RSS {peak_rss_mb():.0f} MB, {load()}"
            print(line, flush=True)
        del data, run
    stages = study_stages(cfg)
    if not args.no_report:
        from modescape.report.html import write_report

        stages.append(("report", write_report))
    for name, fn in stages:
        t = time.perf_counter()
        fn(out)
        rows.append((name, time.perf_counter() - t))
        print(f"{name}: {rows[-1][1]:.0f} s, peak RSS {peak_rss_mb():.0f} MB, {load()}", flush=True)
    train_s = sum(training)
    studies_s = sum(s for n, s in rows if n not in ("analysis", "report"))
    ratio = studies_s / train_s if train_s else float("nan")
    print("\nstage          wall (s)   estimate (s)")
    print(f"training       {train_s:8.0f}   {est.training:8.0f}   per member {training}")
    for name, s in rows:
        guess = est.seconds(name) if name in {x.name for x in est.stages} else float("nan")
        print(f"{name:14s} {s:8.0f}   {guess:8.0f}")
    rss = peak_rss_mb()
    print(
        f"studies (subspace + landscape + shift) / training = {ratio:.0%} "
        f"(target <= {TARGET_RATIO:.0%}: {'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
        f"with the analysis: {(studies_s + dict(rows).get('analysis', 0)) / train_s:.0%}"
    )
    print(
        f"peak RSS {rss:.0f} MB (target <= {TARGET_RSS_MB}: "
        f"{'met' if rss <= TARGET_RSS_MB else 'NOT met'}); {load()}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "training_s": training,
                    "stages_s": dict(rows),
                    "ratio": ratio,
                    "peak_rss_mb": rss,
                    "estimate": {s.name: s.seconds for s in est.stages},
                    "load": os.getloadavg(),
                    "threads": torch.get_num_threads(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
