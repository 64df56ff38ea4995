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
studies to training (the earlier 30% target is withdrawn: issue #28). The studies of a 5 x 40
run take ~minutes to an hour: run it on a quiet machine.

The table at the end gives, per stage, the wall time and the process's CPU time (all threads;
on a shared host, where time-slicing stretches wall time, CPU time over threads is what a quiet
host's wall time would be, roughly) beside the estimate's prediction (target: within ±30%), and
the achieved GFLOP/s against the fp32 peak measured at the start of the same run (`peaks.peak`:
the best of a 4096² matmul and a 256-channel 3×3 convolution). A stage's FLOPs
are its forward passes × one example's forward FLOPs (`FlopCounterMode` on the run's model):
every (weight point, example) pair through the evaluation engine (`iter_logits`) or a
`ModelStack`, plus every top-level eager call of the model elsewhere (curve fitting counts its
forward only, so connect's figure is a lower bound). Training's figure assumes a step costs 3×
a forward, plus each epoch's test-set prediction. Then the total against the 25-minute target
(issue #28) and the peak RSS against 1.5 GB.

Small settings to check the script end to end: `--profile quick --members 2 --epochs 2` (the
quick profile's stratified subsets and smaller studies; size flags win over the profile's).
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

TARGET_RSS_MB = 1536
TARGET_TOTAL_S = 25 * 60  # issue #28: the whole experiment on two cores
TARGET_ESTIMATE = 0.30  # the estimate within ±30% per stage
TARGET_PEAK = 0.70  # study forwards at >= 70% of the fp32 peak


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def experiment(args: argparse.Namespace):
    """`modescape run --data cifar10 --arch smallcnn --variant seed --recipe seed`, sized by
    `--profile` (none: the paper's settings) and then by the size flags given."""
    from modescape.config import preset
    from modescape.profiles import apply_profile

    cfg = preset(
        "cifar10", "smallcnn", "seed", root=args.root, members=5, epochs=40, variant="seed"
    )
    sets = [
        f"{key}={value}"
        for key, value in (
            ("members", args.members),
            ("train.epochs", args.epochs),
            ("data.train_size", args.train_size),
            ("data.test_size", args.test_size),
        )
        if value is not None
    ]
    return apply_profile(cfg, args.profile or "paper", sets)


class ForwardCounter:
    """Counts (weight point, example) forward passes, wherever the studies run them.

    Wraps the evaluation engine's `iter_logits` (every strategy and `evaluate_many` /
    `score_many` go through it), `ModelStack.probs` (the shift study's frozen models) and hooks
    every top-level call of a module of the run's model class (eager forwards elsewhere), not
    counting a call made inside the first two."""

    def __init__(self, model_class: type) -> None:
        import torch

        from modescape.analysis.engine import batched
        from modescape.studies import inference

        self.forwards = 0
        self.depth = 0
        orig_iter, orig_probs = batched.iter_logits, inference.ModelStack.probs
        counter = self

        def iter_logits(*args, **kwargs):
            gen = orig_iter(*args, **kwargs)
            while True:
                counter.depth += 1
                try:
                    ks, ns, logits = next(gen)
                except StopIteration:
                    return
                finally:
                    counter.depth -= 1
                counter.forwards += (ks.stop - ks.start) * (ns.stop - ns.start)
                yield ks, ns, logits

        def probs(stack, rows, x):
            counter.depth += 1
            try:
                out = orig_probs(stack, rows, x)
            finally:
                counter.depth -= 1
            counter.forwards += len(rows) * len(x)
            return out

        def hook(module, args, output):
            if counter.depth == 0 and type(module) is model_class and args:
                counter.forwards += len(args[0])

        batched.iter_logits = iter_logits
        inference.ModelStack.probs = probs
        torch.nn.modules.module.register_module_forward_hook(hook)

    def take(self) -> int:
        n, self.forwards = self.forwards, 0
        return n


def forward_flops(cfg) -> tuple[float, type]:
    """FLOPs of one example's forward pass through the run's model, and the model's class."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from modescape.models.registry import build_model

    m = cfg.model
    model = build_model(m.arch, m.variant, (3, 32, 32), 10, m.dropout, **m.arch_kwargs).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    return float(counter.get_total_flops()), type(model)


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
    ap.add_argument("--members", type=int, help="default 5 (or the profile's)")
    ap.add_argument("--epochs", type=int, help="default 40 (or the profile's)")
    ap.add_argument("--train-size", type=int, help="train on a subset (0: all)")
    ap.add_argument("--test-size", type=int, help="test on a subset (0: all)")
    ap.add_argument("--profile", help="a named size of the run and its studies (e.g. quick)")
    ap.add_argument("--peak-seconds", type=float, default=2.0, help="per peak measurement")
    ap.add_argument("--out", help="run directory (default: a temporary folder)")
    ap.add_argument("--no-report", action="store_true", help="skip the report stage")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    if not (args.root or args.reuse):
        ap.error("give --root (train and time everything) or --reuse RUN (time the studies)")
    logging.basicConfig(level=logging.INFO, format="  %(asctime)s %(name)s: %(message)s")
    import torch
    from peaks import peak

    from modescape.estimate import estimate_run
    from modescape.pipeline import study_stages
    from modescape.store.run import load_run

    out = Path(args.out or tempfile.mkdtemp(prefix="bench_pipeline_")) / "run"
    print(f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, {load()}, out {out}")
    fp32_peak = peak(torch.float32, args.peak_seconds)
    print(f"fp32 peak {fp32_peak:.0f} GFLOP/s (best of a 4096^2 matmul and a 3x3 conv), {load()}")
    rows: list[tuple[str, float]] = []
    training: list[float] = []
    cpu: dict[str, float] = {}  # process CPU seconds per stage (all threads)
    if args.reuse:
        args.members = args.members or 5
        subset_copy(Path(args.reuse), args.members, out)
        cfg = load_run(out).config
        training = recorded_training(out, args.members)
    else:
        cfg = experiment(args)
    flops, model_class = forward_flops(cfg)
    est = estimate_run(cfg)
    print("\n".join(est.lines()))
    print(f"after the probe: peak RSS {peak_rss_mb():.0f} MB, {load()}")
    if not args.reuse:
        from modescape.store.run import open_dataset
        from modescape.training.prepare import prepare_run
        from modescape.training.trainer import train_member, training_pixels

        data = open_dataset(cfg, pixels=training_pixels(cfg))  # as `modescape run` loads it
        run = prepare_run(out, cfg, data)
        n_train, n_test = len(data.y_train), len(data.y_test)
        for m in run.members:
            t, c = time.perf_counter(), time.process_time()
            train_member(run.path, m, dataset=data, progress=False)
            training.append(time.perf_counter() - t)
            cpu["training"] = cpu.get("training", 0.0) + time.process_time() - c
            line = f"member {m}: {training[-1]:.0f} s, peak RSS {peak_rss_mb():.0f} MB, {load()}"
            print(line, flush=True)
        del data, run
    else:
        sizes = load_run(out).data_summary  # the manifest's record of the data
        n_train, n_test = sizes.n_train or 0, sizes.n_test or 0
    # Training: a step ≈ 3 forwards, plus each epoch's test-set prediction.
    train_flops = cfg.members * cfg.train.epochs * (3 * n_train + n_test) * flops
    counter = ForwardCounter(model_class)  # after training: its hook would slow every step
    stage_flops: dict[str, float] = {}
    stages = study_stages(cfg)
    if not args.no_report:
        from modescape.report.html import write_report

        stages.append(("report", write_report))
    for name, fn in stages:
        t, c = time.perf_counter(), time.process_time()
        fn(out)
        rows.append((name, time.perf_counter() - t))
        cpu[name] = time.process_time() - c
        stage_flops[name] = counter.take() * flops
        print(f"{name}: {rows[-1][1]:.0f} s, peak RSS {peak_rss_mb():.0f} MB, {load()}", flush=True)
    train_s = sum(training)
    studies_s = sum(s for n, s in rows if n not in ("analysis", "report"))
    ratio = studies_s / train_s if train_s else float("nan")
    print(f"\none forward: {flops / 1e6:.2f} MFLOP; fp32 peak {fp32_peak:.0f} GFLOP/s")
    cols = ("wall (s)", "CPU (s)", "estimate (s)", "est/wall", "GFLOP/s", "% peak")
    print(
        f"{'stage':14s} {cols[0]:>9} {cols[1]:>8} {cols[2]:>12} {cols[3]:>8} {cols[4]:>8} "
        f"{cols[5]:>7}"
    )
    guesses = {x.name: x.seconds for x in est.stages}
    table = [("training", train_s, est.training, train_flops)]
    table += [(n, s_, guesses.get(n, float("nan")), stage_flops.get(n, 0.0)) for n, s_ in rows]
    for name, wall, guess, fl in table:
        rate = fl / wall / 1e9 if wall > 0 else float("nan")
        within = abs(guess / wall - 1) <= TARGET_ESTIMATE if wall > 0 else False
        mark = "" if guess != guess else ("  within ±30%" if within else "  OUTSIDE ±30%")
        if fl and name not in ("training", "analysis", "report"):
            mark += "; >= 70% of peak" if rate >= TARGET_PEAK * fp32_peak else "; < 70% of peak"
        print(
            f"{name:14s} {wall:9.1f} {cpu.get(name, float('nan')):8.1f} {guess:12.1f} "
            f"{guess / wall if wall else float('nan'):8.2f} "
            f"{rate:8.1f} {100 * rate / fp32_peak:6.1f}%{mark}"
        )
    total = train_s + sum(s_ for _, s_ in rows)
    rss = peak_rss_mb()
    print(
        f"total {total:.0f} s = {total / 60:.1f} min (target <= {TARGET_TOTAL_S / 60:.0f} min: "
        f"{'met' if total <= TARGET_TOTAL_S else 'NOT met'})"
    )
    print(
        f"studies (all but analysis and report) / training = {ratio:.0%}; "
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
                    "cpu_s": cpu,
                    "ratio": ratio,
                    "peak_rss_mb": rss,
                    "total_s": total,
                    "fp32_peak_gflops": fp32_peak,
                    "forward_flops": flops,
                    "stage_gflops": {n: f / 1e9 for n, f in stage_flops.items()},
                    "estimate": {s.name: s.seconds for s in est.stages},
                    "load": os.getloadavg(),
                    "threads": torch.get_num_threads(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
