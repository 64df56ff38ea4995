"""The `modescape` command. Thin: every subcommand parses its flags and makes one library call.

Bad input raises `ModescapeError` anywhere below; it is printed here on one line and the process
exits with status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modescape import __version__
from modescape.config import ARCHS, DATASETS, RECIPES, RunConfig, load_config, preset
from modescape.errors import ModescapeError

EPILOG = """examples:
  modescape run                                   # MNIST-1D demo: train, every study, report
  modescape train --data mnist1d --arch smallcnn --members 5 --epochs 20 --out runs/demo
  modescape train --data cifar10 --root ~/data/cifar-10-python.tar.gz --arch mediumcnn
  modescape train --out runs/c10 --executor slurm --partition gpu --gpus-per-node 1
  modescape analyze runs/demo && modescape report runs/demo
  modescape landscape runs/demo --anchors origin,m0,m1 --grid 21 --path m0,m1
  modescape info runs/demo
"""


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to train (defaults: the MNIST-1D demo)")
    g.add_argument("--data", choices=DATASETS, help="dataset (default mnist1d)")
    g.add_argument("--root", help="CIFAR archive/folder or image folder (train/<class>/*)")
    g.add_argument("--arch", choices=ARCHS, help="architecture (default smallcnn)")
    g.add_argument("--variant", choices=("paper", "seed"), help="architecture variant")
    g.add_argument("--recipe", choices=RECIPES, help="training recipe (default: by data/arch)")
    g.add_argument("--members", type=int, help="independent members (default 5)")
    g.add_argument("--epochs", type=int, help="epochs per member (default: the recipe's)")
    g.add_argument("--seed", type=int, help="base seed (default 0)")
    g.add_argument("--config", metavar="FILE.json", help="a full RunConfig as JSON")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config field, e.g. --set train.lr=0.001 (repeatable)",
    )


def resolve_config(args: argparse.Namespace) -> RunConfig | None:
    """The config the flags describe; None when no flag shapes it (reuse the run's own)."""
    shaping = [
        args.data,
        args.root,
        args.arch,
        args.variant,
        args.recipe,
        args.members,
        args.epochs,
        args.seed,
        args.config,
    ]
    if all(v is None for v in shaping) and not args.set:
        return None
    if args.config:
        cfg = load_config(args.config)
        flags = {
            "data.name": args.data,
            "data.root": args.root,
            "model.arch": args.arch,
            "model.variant": args.variant,
            "members": args.members,
            "train.epochs": args.epochs,
            "seed": args.seed,
        }
        sets = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
        return cfg.with_overrides(sets + args.set)
    cfg = preset(
        args.data or "mnist1d",
        args.arch or "smallcnn",
        args.recipe,
        root=args.root,
        members=5 if args.members is None else args.members,
        epochs=args.epochs,
        seed=0 if args.seed is None else args.seed,
        variant=args.variant or "paper",
    )
    return cfg.with_overrides(args.set)


def default_out(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.data.name}-{cfg.model.arch}-{cfg.model.variant}-s{cfg.seed}"


def _config_for_run(args: argparse.Namespace, fallback_out: Path | None = None) -> RunConfig:
    """Flags → config; with no shaping flag, the config stored in --out, else the demo."""
    cfg = resolve_config(args)
    out = Path(args.out) if args.out else fallback_out
    if cfg is None and out is not None and (out / "config.json").exists():
        return load_config(out / "config.json")
    return cfg if cfg is not None else preset()


def _slurm_config(args: argparse.Namespace):
    from modescape.train.launch import SlurmConfig

    extra = {}
    for item in args.slurm_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ModescapeError(f"--slurm-option expects KEY=VALUE, got {item!r}")
        extra[key] = value
    return SlurmConfig(
        partition=args.partition,
        time=args.time,
        cpus_per_task=args.cpus_per_task,
        gpus_per_node=args.gpus_per_node,
        mem_gb=args.mem_gb,
        array_parallelism=args.max_running,
        extra=extra,
    )


def cmd_train(args: argparse.Namespace) -> None:
    from modescape.pipeline import train_run

    cfg = _config_for_run(args)
    out = Path(args.out) if args.out else default_out(cfg)
    members = _select_members(args, cfg.members)
    path = train_run(
        cfg,
        out,
        members=members,
        executor=args.executor,
        workers=args.workers,
        device=args.device,
        retries=args.retries,
        slurm=_slurm_config(args) if args.executor == "slurm" else None,
    )
    print(f"trained {len(members or range(cfg.members))} member(s) in {path}")


def cmd_run(args: argparse.Namespace) -> None:
    from modescape.pipeline import run_pipeline

    out = Path(args.out) if args.out else Path("runs/demo")
    cfg = _config_for_run(args, out)
    run_pipeline(cfg, out, executor=args.executor, workers=args.workers, device=args.device)


def cmd_analyze(args: argparse.Namespace) -> None:
    from modescape.studies.weights_functions import AnalysisConfig, analyze_run

    cfg = AnalysisConfig(split=args.split, params=args.params, late=args.late, seed=args.seed)
    summary = analyze_run(args.run, cfg, allow_partial=args.partial)
    d, c = summary["disagreement"], summary["cosine"]
    print(
        f"independent members disagree on {d['across_members_mean']:.1%} of {args.split} "
        f"examples; the last {d['late_window']} snapshots of one trajectory on "
        f"{d['late_within_mean']:.1%}; final weights cosine {c['across_members_mean']:.3f}"
    )
    print(f"results in {Path(args.run) / 'analysis'}")


def cmd_report(args: argparse.Namespace) -> None:
    from modescape.report.html import write_report

    write_report(args.run)  # logs where it wrote the report


def cmd_subspace(args: argparse.Namespace) -> None:
    from modescape.analysis.subspace import SAMPLERS, SubspaceConfig
    from modescape.studies.subspace import run_subspace

    scales = {}
    for item in args.scale:
        method, sep, value = item.partition("=")
        if not sep or method not in SAMPLERS:
            raise ModescapeError(f"--scale expects METHOD=VALUE with METHOD in {SAMPLERS}")
        try:
            scales[f"{method}_scale"] = float(value)
        except ValueError:
            raise ModescapeError(f"--scale {item!r}: {value!r} is not a number") from None
    cfg = SubspaceConfig(
        methods=tuple(args.methods.split(",")) if args.methods else SAMPLERS,
        n_samples=args.samples,
        n_snapshots=args.snapshots,
        rank=args.rank,
        seed=args.seed,
        **scales,
    )
    summary = run_subspace(args.run, cfg, reference=args.reference, allow_partial=args.partial)
    for method in summary["plane"]:
        print(f"{method:>15}: JS diversity {summary['js_diversity'][method]:.4f}")
    print(f"independent members: JS diversity {summary['js_diversity']['independent_members']:.4f}")
    print(f"results in {Path(args.run) / 'subspace'}")


def cmd_landscape(args: argparse.Namespace) -> None:
    from modescape.studies.landscape import LandscapeConfig, parse_anchors, run_landscape

    paths = tuple(tuple(p.split(",")) for p in args.path) or None
    if paths and any(len(p) != 2 for p in paths):
        raise ModescapeError("--path needs two anchors, e.g. --path m0,m1")
    cfg = LandscapeConfig(
        planes=(parse_anchors(args.anchors),) if args.anchors else None,
        paths=paths,
        resolution=args.grid,
        margin=args.margin,
        max_examples=args.max_examples,
        bn_policy=args.bn_policy,
        align=not args.no_align,
    )
    summary = run_landscape(args.run, cfg, allow_partial=args.partial)
    for p in summary["paths"]:
        print(f"{p['name']:>24} ({p['kind']}): error barrier {p['error_barrier']:.3f}")
    print(f"results in {Path(args.run) / 'landscape'}")


def cmd_shift(args: argparse.Namespace) -> None:
    from modescape.studies.shift import ShiftConfig, parse_severities, run_shift

    cfg = ShiftConfig(
        corruptions=tuple(args.corruptions.split(",")) if args.corruptions else None,
        severities=parse_severities(args.severities),
        max_examples=args.max_examples,
        seed=args.seed,
        cifar10c=args.cifar10c,
    )
    summary = run_shift(args.run, cfg, allow_partial=args.partial)
    acc = summary["by_severity"]["metrics"]["single"]["accuracy"]
    print(
        "mean single-member accuracy by severity: "
        + ", ".join(f"{s}: {a:.3f}" for s, a in zip(summary["by_severity"]["severities"], acc))
    )
    print(f"results in {Path(args.run) / 'shift'}")


def cmd_status(args: argparse.Namespace) -> None:
    from modescape.train.launch import format_status, run_status

    print(format_status(run_status(args.run)))


def _select_members(args: argparse.Namespace, n: int) -> list[int] | None:
    if args.member is not None and args.shard:
        raise ModescapeError("use either --member or --shard, not both")
    if args.shard:
        from modescape.train.launch import shard_members

        return shard_members(n, args.shard)
    if args.member is not None:
        if not 0 <= args.member < n:
            raise ModescapeError(f"--member {args.member} out of range: members are 0..{n - 1}")
        return [args.member]
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    from modescape.store.run import verify_run

    problems = verify_run(args.run)
    for p in problems:
        print(p)
    print(
        f"{len(problems)} problem(s) in {args.run}"
        if problems
        else f"{args.run}: all files verified"
    )
    return 1 if problems else 0


def cmd_info(args: argparse.Namespace) -> int:
    from modescape.store.run import load_run, run_summary

    summary = run_summary(load_run(args.run, trust=True))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 1 if summary["problems"] else 0
    cfg = summary["config"]
    print(f"run       {summary['path']}")
    print(
        f"data      {cfg['data']['name']} {summary['data'].get('in_shape')} "
        f"train/val/test {summary['data'].get('n_train')}/{summary['data'].get('n_val')}/"
        f"{summary['data'].get('n_test')}"
    )
    print(
        f"model     {cfg['model']['arch']} ({cfg['model']['variant']}), "
        f"recipe {cfg['train']['recipe']}, {cfg['train']['epochs']} epochs, base seed {cfg['seed']}"
    )
    print(f"{'member':>6} {'state':>9} {'epoch':>5} {'snaps':>5} {'test acc':>8}  seed")
    for m in summary["members"]:
        acc = "-" if m["test_acc"] is None else f"{m['test_acc']:.4f}"
        print(
            f"{m['member']:>6} {m['state']:>9} {m['epoch']:>5} {m['snapshots']:>5} {acc:>8}"
            f"  {m['seed']}"
        )
    if summary["problems"]:
        print("integrity problems:\n  " + "\n  ".join(summary["problems"]))
        return 1
    return 0


def cmd_models(args: argparse.Namespace) -> None:
    from modescape.models.architectures import describe_models

    if args.data in (None, "mnist1d"):
        in_shape, classes = (1, 40), 10
    elif args.data in ("cifar10", "cifar100") and not args.root:
        in_shape, classes = (3, 32, 32), 10 if args.data == "cifar10" else 100
    else:
        from modescape.store.run import open_dataset

        cfg = preset(args.data, root=args.root)
        d = open_dataset(cfg)
        in_shape, classes = d.in_shape, d.num_classes
    rows = describe_models(in_shape, classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"input {tuple(in_shape)}, {classes} classes")
    print(f"{'arch':<10} {'variant':<8} {'params':>10}  description")
    for r in rows:
        params = "too small" if r["params"] is None else f"{r['params']:,}"
        print(f"{r['arch']:<10} {r['variant']:<8} {params:>10}  {r['description']}")


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--executor",
        default="serial",
        choices=("serial", "local", "slurm"),
        help="where members train: this process, a local pool, or SLURM array tasks",
    )
    p.add_argument("--workers", type=int, default=2, help="processes for --executor local")
    p.add_argument("--retries", type=int, default=0, help="resubmissions of a failed member")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modescape",
        description="Why deep ensembles work: train independent members, keep every snapshot, "
        "and compare them in weight space and function space.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modescape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train members and keep a snapshot after every epoch")
    _add_config_flags(p)
    p.add_argument("--out", help="run directory (default runs/<data>-<arch>-<variant>-s<seed>)")
    p.add_argument("--member", type=int, help="train only this member (0-based)")
    p.add_argument("--shard", metavar="I/N", help="train members with index = I mod N")
    _add_launch_flags(p)
    g = p.add_argument_group("SLURM (--executor slurm; needs pip install modescape[slurm])")
    g.add_argument("--partition", help="partition (default: the cluster's default)")
    g.add_argument("--time", type=int, default=60, help="minutes per member task (default 60)")
    g.add_argument("--cpus-per-task", type=int, default=1)
    g.add_argument("--gpus-per-node", type=int, default=0)
    g.add_argument("--mem-gb", type=float)
    g.add_argument("--max-running", type=int, default=64, help="cap on tasks running at once")
    g.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra sbatch option",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="train, analyse and write the report (default: MNIST-1D demo)")
    _add_config_flags(p)
    p.add_argument("--out", help="run directory (default runs/demo)")
    _add_launch_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("analyze", help="weight- and function-space analyses of a run")
    p.add_argument("run", help="run directory")
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument(
        "--params",
        default="all",
        choices=("all", "kernels_bn", "no_bn_bias"),
        help="weights compared: all (paper), kernels + BN scale (seed notebooks), kernels only",
    )
    p.add_argument("--late", type=int, default=5, help="how many last snapshots count as late")
    p.add_argument("--seed", type=int, default=0, help="seed for t-SNE and subset sampling")
    p.add_argument("--partial", action="store_true", help="analyse the finished members only")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="write <run>/report/index.html with every figure")
    p.add_argument("run", help="run directory (analysed)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("subspace", help="subspace samples, diversity-accuracy plane, ensembles")
    p.add_argument("run", help="run directory")
    p.add_argument(
        "--methods", help="comma-separated: random,dropout,diagonal,lowrank,lowrank_scaled (all)"
    )
    p.add_argument("--samples", type=int, default=30, help="samples per member and method")
    p.add_argument("--snapshots", type=int, default=10, help="last snapshots for the Gaussians")
    p.add_argument("--rank", type=int, default=5, help="PCA components of the low-rank Gaussian")
    p.add_argument(
        "--scale", action="append", default=[], metavar="METHOD=VALUE", help="sampler scale"
    )
    p.add_argument("--reference", type=int, default=0, help="member of the diversity plane")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--partial", action="store_true", help="use the finished members only")
    p.set_defaults(func=cmd_subspace)

    p = sub.add_parser("landscape", help="loss/accuracy/agreement planes, paths and barriers")
    p.add_argument("run", help="run directory")
    p.add_argument(
        "--anchors",
        help="three of: origin, m<i>, m<i>@e<epoch>, init<i>, wa<i> (default origin,m0,m1)",
    )
    p.add_argument("--grid", type=int, default=21, help="grid points per axis (default 21)")
    p.add_argument("--margin", type=float, default=0.2, help="extra extent around the anchors")
    p.add_argument(
        "--path", action="append", default=[], metavar="A,B", help="a linear path (repeatable)"
    )
    p.add_argument("--max-examples", type=int, default=2000, help="test examples per point")
    p.add_argument("--bn-policy", default="recompute", choices=("recompute", "interpolate", "keep"))
    p.add_argument("--no-align", action="store_true", help="skip permutation alignment")
    p.add_argument("--partial", action="store_true", help="use the finished members only")
    p.set_defaults(func=cmd_landscape)

    p = sub.add_parser("shift", help="robustness under corruptions at five severities")
    p.add_argument("run", help="run directory")
    p.add_argument("--corruptions", help="comma-separated names (default: a small set)")
    p.add_argument("--severities", default="1-5", help="e.g. 1-5 or 1,3,5")
    p.add_argument("--cifar10c", metavar="DIR", help="use the official CIFAR-10-C .npy files")
    p.add_argument("--max-examples", type=int, help="evaluate on the first n test examples")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated corruptions")
    p.add_argument("--partial", action="store_true", help="use the finished members only")
    p.set_defaults(func=cmd_shift)

    p = sub.add_parser("status", help="state of each member (and its SLURM task)")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("info", help="members, seeds, snapshots and accuracies of a run")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="check every file of a run against its recorded sha256")
    p.add_argument("run", help="run directory")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("models", help="every architecture with its parameter count for a dataset")
    p.add_argument("--data", choices=DATASETS, help="dataset (default mnist1d)")
    p.add_argument("--root", help="dataset location, for image folders of other sizes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], Any] = args.func
    try:
        code = func(args)
    except ModescapeError as e:
        print(f"modescape: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # permissions, read-only, disk full, name too long, not a directory
        what = e.strerror or type(e).__name__
        where = "".join(f": {f}" for f in (e.filename, e.filename2) if f is not None)
        print(f"modescape: error: {what.lower()}{where}", file=sys.stderr)
        return 2
    except (UnicodeDecodeError, json.JSONDecodeError) as e:  # a file that escaped the readers
        print(f"modescape: error: cannot decode a file: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modescape: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0
