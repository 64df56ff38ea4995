"""The `modescape` commands that read a run: report, compare, status, verify, info, models,
align-spec.

Each is one library call; `build_reader_parsers` adds their parsers (see `modescape.cli`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modescape.cli_flags import nonempty
from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.options import Dataset, Variant, values


def cmd_report(args: argparse.Namespace) -> None:
    from modescape.report.html import write_report

    write_report(args.run)  # logs where it wrote the report


def cmd_compare(args: argparse.Namespace) -> None:
    from modescape.report.compare import compare_runs

    compare_runs(args.runs, args.out)  # logs where it wrote the page


def cmd_status(args: argparse.Namespace) -> int:
    """Exit status 1 when a member's record (member.json) is lost: the state shown is rebuilt."""
    from modescape.training.launch import format_status, run_status

    rows = run_status(args.run)
    print(format_status(rows))
    lost = [r["member"] for r in rows if r.get("lost")]
    if lost:
        print(
            f"member.json of member(s) {', '.join(map(str, lost))} is missing; "
            f"`modescape train --out {args.run}` restores it; `modescape verify` lists all problems"
        )
    return 1 if lost else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit status 1 when the run has problems (listed on stdout); 2 when there is no run."""
    from modescape.store.summary import verify_run

    if not Path(args.run).is_dir():
        raise ModescapeError(f"run directory not found: {args.run}")
    problems = verify_run(args.run)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s) in {args.run}" if problems else f"{args.run}: all verified")
    return 1 if problems else 0


def cmd_info(args: argparse.Namespace) -> int:
    """Exit status 1 when the run has integrity problems (they are listed, not raised)."""
    from modescape.store.run import load_run
    from modescape.store.summary import run_summary

    summary = run_summary(load_run(args.run, trust=True))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
        return 1 if summary.problems else 0
    cfg, data = summary.config, summary.data
    print(f"run       {summary.path}")
    print(f"origin    {summary.origin}")
    print(
        f"data      {cfg.data.name} {data.in_shape} train/val/test "
        f"{data.n_train}/{data.n_val}/{data.n_test}"
    )
    print(
        f"model     {cfg.model.arch} ({cfg.model.variant}), "
        f"recipe {cfg.train.recipe}, {cfg.train.epochs} epochs"
        + (" (as imported)" if summary.origin.startswith("imported") else "")
        + f", base seed {cfg.seed}"
    )
    print(f"{'member':>6} {'state':>9} {'epoch':>5} {'snaps':>5} {'test acc':>8}  seed")
    for m in summary.members:
        acc = "-" if m.test_acc is None else f"{m.test_acc:.4f}"
        print(f"{m.member:>6} {m.state:>9} {m.epoch:>5} {m.snapshots:>5} {acc:>8}  {m.seed}")
    ran = [name for name, done in summary.studies.items() if done]
    missing = [name for name, done in summary.studies.items() if not done]
    print(
        f"studies   {', '.join(ran) or 'none run'}"
        + (f" (not run: {', '.join(missing)})" if missing else "")
    )
    if summary.problems:
        print("integrity problems:\n  " + "\n  ".join(summary.problems))
    return 1 if summary.problems else 0


def _data_shape(args: argparse.Namespace) -> tuple[tuple[int, ...], int]:
    """(input shape, classes) of `--data` / `--root` (default MNIST-1D)."""
    if args.data in (None, Dataset.MNIST1D):
        return (1, 40), 10
    if args.data in (Dataset.CIFAR10, Dataset.CIFAR100) and not args.root:
        return (3, 32, 32), 10 if args.data == Dataset.CIFAR10 else 100
    from modescape.store.run import open_dataset

    d = open_dataset(preset(args.data, root=args.root))
    return tuple(d.in_shape), d.num_classes


def cmd_align_spec(args: argparse.Namespace) -> None:
    if (args.run is None) == (args.arch is None):
        raise ModescapeError("align-spec needs a run directory or --arch (one of the two)")
    if args.run is not None:
        from modescape.studies.landscape import alignment_spec_text

        text = alignment_spec_text(args.run)
    else:
        from modescape.models.alignment import arch_spec
        from modescape.models.specs import spec_json_text

        in_shape, classes = _data_shape(args)
        text = spec_json_text(arch_spec(args.arch, args.variant, in_shape, classes))
    if args.out is None:
        print(text, end="")
        return
    from modescape.store.files import atomic_write_bytes

    atomic_write_bytes(args.out, text.encode())
    print(f"permutation spec written to {args.out}; use it: modescape landscape RUN "
          f"--align-spec {args.out}")  # fmt: skip


def cmd_models(args: argparse.Namespace) -> None:
    from modescape.models.architectures import describe_models

    in_shape, classes = _data_shape(args)
    rows = describe_models(in_shape, classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"input {tuple(in_shape)}, {classes} classes")
    print(f"{'arch':<10} {'variant':<8} {'params':>10}  description")
    for r in rows:
        params = "too small" if r["params"] is None else f"{r['params']:,}"
        print(f"{r['arch']:<10} {r['variant']:<8} {params:>10}  {r['description']}")


def build_reader_parsers(sub: Any, _subparser: Callable[..., argparse.ArgumentParser]) -> None:
    p = _subparser(sub, "report", "write <run>/report/index.html with every figure")
    p.add_argument("run", type=nonempty, help="run directory (analysed)")
    p.set_defaults(func=cmd_report)
    p = _subparser(sub, "compare", "one page putting two or more analysed runs side by side")
    p.add_argument(
        "runs",
        nargs="+",
        type=nonempty,
        metavar="RUN",
        help="run directories (analysed), 2 or more",
    )
    p.add_argument(
        "--out",
        type=nonempty,
        default="comparison",
        help="folder for index.html (default ./comparison)",
    )
    p.set_defaults(func=cmd_compare)
    p = _subparser(sub, "status", "state of each member (and its SLURM task)")
    p.add_argument("run", type=nonempty, help="run directory")
    p.set_defaults(func=cmd_status)
    p = _subparser(sub, "info", "members, seeds, snapshots and accuracies of a run")
    p.add_argument("run", type=nonempty, help="run directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)
    p = _subparser(sub, "verify", "check every file of a run against its recorded sha256")
    p.add_argument("run", type=nonempty, help="run directory")
    p.set_defaults(func=cmd_verify)
    p = _subparser(sub, "models", "every architecture with its parameter count for a dataset")
    p.add_argument("--data", choices=values(Dataset), help="dataset (default mnist1d)")
    p.add_argument(
        "--root", type=nonempty, help="dataset location, for image folders of other sizes"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)
    p = _subparser(
        sub, "align-spec", "write the permutation spec of a run's (or an architecture's) "
        "alignment as JSON, to edit and pass to landscape --align-spec",
    )  # fmt: skip
    p.add_argument("run", nargs="?", type=nonempty, help="run directory")
    p.add_argument("--arch", type=nonempty, help="an architecture instead of a run: a built-in, "
                   "a registered name or package.module:factory")  # fmt: skip
    p.add_argument("--variant", choices=values(Variant), default=Variant.PAPER.value,
                   help="variant of a built-in --arch (default paper)")  # fmt: skip
    p.add_argument("--data", choices=values(Dataset), help="--arch's inputs (default mnist1d)")
    p.add_argument("--root", type=nonempty, help="dataset location, for image folders")
    p.add_argument("--out", type=nonempty, metavar="FILE", help="write here (default stdout)")
    p.set_defaults(func=cmd_align_spec)
