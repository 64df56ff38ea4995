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
  modescape run                                   # MNIST-1D demo: train, analyse, report
  modescape train --data mnist1d --arch smallcnn --members 5 --epochs 20 --out runs/demo
  modescape train --data cifar10 --root ~/data/cifar-10-python.tar.gz --arch mediumcnn
  modescape info runs/demo
  modescape models --data cifar10 --root ~/data/cifar-10-python.tar.gz
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


def cmd_train(args: argparse.Namespace) -> None:
    from modescape.training import train

    cfg = resolve_config(args)
    out = Path(args.out) if args.out else None
    if cfg is None:
        if out is not None and (out / "config.json").exists():
            cfg = load_config(out / "config.json")
        else:
            cfg = resolve_config(argparse.Namespace(**{**vars(args), "data": "mnist1d"}))
    assert cfg is not None
    out = out or default_out(cfg)
    members = _select_members(args, cfg.members)
    run = train(cfg, out, members=members, device=args.device, progress=True)
    print(f"trained {len(members or run.members)} member(s) in {run.path}")


def _select_members(args: argparse.Namespace, n: int) -> list[int] | None:
    if args.member is not None and getattr(args, "shard", None):
        raise ModescapeError("use either --member or --shard, not both")
    if args.member is not None:
        if not 0 <= args.member < n:
            raise ModescapeError(f"--member {args.member} out of range: members are 0..{n - 1}")
        return [args.member]
    return None


def cmd_info(args: argparse.Namespace) -> None:
    from modescape.store import load_run, run_summary

    summary = run_summary(load_run(args.run))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
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


def cmd_models(args: argparse.Namespace) -> None:
    from modescape.models import describe_models

    if args.data in (None, "mnist1d"):
        in_shape, classes = (1, 40), 10
    elif args.data in ("cifar10", "cifar100") and not args.root:
        in_shape, classes = (3, 32, 32), 10 if args.data == "cifar10" else 100
    else:
        from modescape.store import open_dataset

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
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="members, seeds, snapshots and accuracies of a run")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

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
        func(args)
    except ModescapeError as e:
        print(f"modescape: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modescape: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
