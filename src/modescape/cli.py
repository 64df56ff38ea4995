"""The `modescape` command. Thin: every subcommand parses its flags and makes one library call.

Each command has its own small parser builder. The study commands' flags and defaults are read
from the study config dataclasses (`dataclasses.fields`), so a default lives in one place. Bad
input raises `ModescapeError` anywhere below; it is printed here as `modescape: error: ...` on one
line and the process exits with status 2, with no traceback. Progress messages go through the
`modescape` logger to stderr; `--quiet` and `--verbose` set its level.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from modescape import __version__
from modescape.cli_flags import nonempty, slurm_config
from modescape.cli_readers import build_reader_parsers
from modescape.cli_studies import build_study_parsers
from modescape.config import (
    LAUNCH_RANGES,
    RANGES,
    SLURM_RANGES,
    RunConfig,
    check_range,
    load_config,
    preset,
)
from modescape.errors import ModescapeError
from modescape.options import (
    Arch,
    Dataset,
    Executor,
    ImportOrigin,
    Profile,
    Recipe,
    Variant,
    values,
)

log = logging.getLogger(__name__)
TRACKERS = ("tensorboard", "wandb", "mlflow")  # training.tracking.TrackerKind, without torch

EPILOG = """examples:
  modescape run                                   # MNIST-1D demo: train, every study, report
  modescape train --data mnist1d --arch smallcnn --members 5 --epochs 20 --out runs/demo
  modescape train --data cifar10 --root ~/data/cifar-10-python.tar.gz --arch mediumcnn
  modescape train --out runs/c10 --executor slurm --partition gpu --gpus-per-node 1
  modescape analyze runs/demo && modescape report runs/demo
  modescape landscape runs/demo --anchors origin,m0,m1 --grid 21 --path m0,m1
  modescape info runs/demo
"""


class Parser(argparse.ArgumentParser):
    """argparse with every usage error as one line on stderr (`modescape: error: ...`, exit 2),
    like every other error: the usage block argparse prints first buried the message."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"modescape: error: {text} (see {self.prog} --help)\n")


# ---- the run config: flags, --config, --set ---------------------------------------------------


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to train (defaults: the MNIST-1D demo)")
    g.add_argument("--data", choices=values(Dataset), help="dataset (default mnist1d)")
    g.add_argument(
        "--root", type=nonempty, help="CIFAR archive/folder or image folder (train/<class>/*)"
    )
    g.add_argument(
        "--arch",
        type=nonempty,
        help=f"architecture: {', '.join(values(Arch))}, a registered name or "
        "package.module:factory (default smallcnn; kwargs: --set model.arch_kwargs='{...}')",
    )
    g.add_argument("--variant", choices=values(Variant), help="architecture variant")
    g.add_argument(
        "--recipe", choices=values(Recipe), help="training recipe (default: by data/arch)"
    )
    g.add_argument(
        "--members", type=int, help=f"independent members (default 5; {RANGES['members']})"
    )
    g.add_argument(
        "--epochs", type=int,
        help=f"epochs per member (default: the recipe's; {RANGES['train.epochs']})",
    )  # fmt: skip
    g.add_argument("--seed", type=int, help=f"base seed (default 0; {RANGES['seed']})")
    g.add_argument(
        "--profile", choices=values(Profile),
        help="sizes of the whole run: paper (default, the paper's settings) or quick (minutes "
        "on a laptop CPU: data subsets, 3 members x 10 epochs, smaller studies); flags and "
        "--set win over it",
    )  # fmt: skip
    g.add_argument("--config", type=nonempty, metavar="FILE.json", help="a full RunConfig as JSON")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config field, e.g. --set train.lr=0.001 (repeatable; every field "
        "and its range: docs/settings.md)",
    )


def resolve_config(args: argparse.Namespace) -> RunConfig | None:
    """The config the flags describe; None when no flag shapes it (reuse the run's own)."""
    shaping = (args.data, args.root, args.arch, args.variant, args.recipe, args.members)
    shaping += (args.epochs, args.seed, args.config, args.profile)
    if all(v is None for v in shaping) and not args.set:
        return None
    if args.config:
        if args.recipe is not None:
            # A recipe is a whole training section; merging it into a file's would be a guess.
            raise ModescapeError(
                "--recipe does not combine with --config: the file's train section is the recipe "
                "(edit the file, or change single fields with --set train.KEY=VALUE)"
            )
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
        return _sized(cfg.with_overrides(sets), args)
    cfg = preset(
        args.data or Dataset.MNIST1D,
        args.arch or Arch.SMALLCNN,
        args.recipe,
        root=args.root,
        members=5 if args.members is None else args.members,
        epochs=args.epochs,
        seed=0 if args.seed is None else args.seed,
        variant=args.variant or Variant.PAPER,
    )
    return _sized(cfg, args)


def _sized(cfg: RunConfig, args: argparse.Namespace) -> RunConfig:
    """`cfg` with --profile applied, then --members / --epochs and --set (they win over it)."""
    if not args.profile:
        return cfg.with_overrides(args.set)
    from modescape.profiles import apply_profile

    given = (("members", args.members), ("train.epochs", args.epochs))
    explicit = [f"{k}={json.dumps(v)}" for k, v in given if v is not None]
    return apply_profile(cfg, args.profile, explicit + args.set)


def default_out(cfg: RunConfig) -> Path:
    arch = cfg.model.arch.replace(":", ".")  # an import path: no ':' in folder names
    return Path("runs") / f"{cfg.data.name}-{arch}-{cfg.model.variant}-s{cfg.seed}"


def _config_for_run(args: argparse.Namespace, fallback_out: Path | None = None) -> RunConfig:
    """Flags → config; with no shaping flag, the config stored in --out, else the demo."""
    cfg = resolve_config(args)
    out = Path(args.out) if args.out else fallback_out
    if cfg is None and out is not None and (out / "config.json").exists():
        return load_config(out / "config.json")
    return cfg if cfg is not None else preset()


# ---- train and run ----------------------------------------------------------------------------


def _select_members(args: argparse.Namespace, n: int) -> list[int] | None:
    if args.member is not None and args.shard:
        raise ModescapeError("use either --member or --shard, not both")
    if args.shard:
        from modescape.training.launch import shard_members

        return shard_members(n, args.shard)
    if args.member is not None:
        if not 0 <= args.member < n:
            raise ModescapeError(f"--member {args.member} out of range: members are 0..{n - 1}")
        return [args.member]
    return None


def _check_launch_flags(args: argparse.Namespace) -> None:
    """Named by their flags here; `train_run` checks them again for library callers."""
    for name, allowed in LAUNCH_RANGES.items():
        check_range(f"--{name}", getattr(args, name), allowed)


def cmd_train(args: argparse.Namespace) -> None:
    from modescape.pipeline import train_run

    _check_launch_flags(args)
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
        slurm=slurm_config(args) if args.executor == Executor.SLURM else None,
        progress=args.verbosity >= 0,
        track=_tracking(args),
    )
    if members == []:
        print(
            f"trained no members: shard {args.shard} selects none of the {cfg.members} "
            f"member(s) of {path}"
        )
        return
    n = cfg.members if members is None else len(members)
    print(f"trained {n} member(s) in {path}")


def cmd_run(args: argparse.Namespace) -> None:
    from modescape.pipeline import run_pipeline

    _check_launch_flags(args)
    out = Path(args.out) if args.out else Path("runs/demo")
    cfg = _config_for_run(args, out)
    if args.budget:
        from modescape.pipeline import estimate_run

        print("\n".join(estimate_run(cfg, args.skip).lines()))
        return
    run_pipeline(
        cfg, out, executor=args.executor, workers=args.workers, device=args.device,
        track=_tracking(args), skip=args.skip,
    )  # fmt: skip


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--executor",
        default=Executor.SERIAL.value,
        choices=values(Executor),
        help="where members train: this process, a local pool, or SLURM array tasks",
    )
    p.add_argument(
        "--workers", type=int, default=2,
        help=f"processes for --executor local (default 2; {LAUNCH_RANGES['workers']})",
    )  # fmt: skip
    p.add_argument(
        "--retries", type=int, default=0,
        help=f"resubmissions of a failed member (default 0; {LAUNCH_RANGES['retries']})",
    )  # fmt: skip
    p.add_argument(
        "--track", choices=TRACKERS,
        help="also log each member's epochs to an experiment tracker (pip install "
        "modescape[<tracker>]); not part of the run's config",
    )  # fmt: skip
    _add_track_option(p)


def _add_track_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--track-option", action="append", default=[], metavar="KEY=VALUE",
        help="a tracker setting, over its environment variable: tensorboard logdir; wandb "
        "project, entity, mode, dir, group, tags, job_type (WANDB_*); mlflow tracking_uri, "
        "experiment (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME)",
    )  # fmt: skip


def _tracking(args: argparse.Namespace, kind: str | None = None) -> Any:
    """The `Tracking` of --track (or export's --to) and --track-option; None when untracked."""
    kind = kind or args.track
    if kind is None:
        if args.track_option:
            raise ModescapeError("--track-option needs --track")
        return None
    from modescape.training.tracking import Tracking

    return Tracking.parse(kind, args.track_option)


def _build_train(sub: Any) -> None:
    p = _subparser(sub, "train", "train members and keep a snapshot after every epoch")
    _add_config_flags(p)
    p.add_argument(
        "--out", type=nonempty, help="run directory (default runs/<data>-<arch>-<variant>-s<seed>)"
    )
    p.add_argument("--member", type=int, help="train only this member (0-based)")
    p.add_argument("--shard", metavar="I/N", help="train members with index = I mod N")
    _add_launch_flags(p)
    g = p.add_argument_group("SLURM (--executor slurm; needs pip install modescape[slurm])")
    g.add_argument("--partition", help="partition (default: the cluster's default)")
    r = SLURM_RANGES
    g.add_argument(
        "--time", type=int, default=60, help=f"minutes per member task (default 60; {r['time']})"
    )
    g.add_argument("--cpus-per-task", type=int, default=1, help=f"{r['cpus_per_task']}")
    g.add_argument("--gpus-per-node", type=int, default=0, help=f"{r['gpus_per_node']}")
    g.add_argument("--mem-gb", type=float, help=f"{r['mem_gb']} (default: the partition's)")
    g.add_argument(
        "--max-running", type=int, default=64,
        help=f"cap on tasks running at once (default 64; {r['array_parallelism']})",
    )  # fmt: skip
    g.add_argument(
        "--slurm-option", action="append", default=[], metavar="KEY=VALUE", help="sbatch option"
    )
    p.set_defaults(func=cmd_train)


def _build_run(sub: Any) -> None:
    p = _subparser(sub, "run", "train, analyse and write the report (default: MNIST-1D demo)")
    _add_config_flags(p)
    p.add_argument("--out", type=nonempty, help="run directory (default runs/demo)")
    p.add_argument(
        "--budget", action="store_true",
        help="print the estimated time of training and of each study on this machine (from a "
        "probe of a few seconds) and exit without running",
    )  # fmt: skip
    p.add_argument(
        "--skip", type=_study_list, default=(), metavar="STUDY[,STUDY]",
        help="studies to leave out of the run, e.g. --skip connect,shift (any but analysis)",
    )  # fmt: skip
    _add_launch_flags(p)
    p.set_defaults(func=cmd_run)


def _study_list(text: str) -> tuple[str, ...]:
    """`--skip a,b`: names checked against the registry when the run starts (check_skip)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def cmd_import(args: argparse.Namespace) -> None:
    from modescape.training.importer import import_checkpoints

    cfg = resolve_config(args) or preset()
    # `--set data.scaling=...` states the preprocessing, as `--origin stated` does
    stated = any(s.split("=", 1)[0].strip() == "data.scaling" for s in args.set)
    origin = args.origin or ("stated" if stated else None)
    run = import_checkpoints(
        args.source, args.out, cfg, pattern=args.pattern, fmt=args.format, origin=origin,
        epoch_offset=args.epoch_offset, keras_config=args.keras_config,
    )  # fmt: skip
    print(f"imported {run.config.members} member(s) into {run.path}")


def cmd_export(args: argparse.Namespace) -> None:
    from modescape.training.tracking import export_run

    where = export_run(args.run, _tracking(args, args.to), args.logdir)
    print(f"exported {args.run} to {args.to} ({where})")


def _build_export(sub: Any) -> None:
    p = _subparser(sub, "export", "write an existing run's metrics and config to a tracker")
    p.add_argument("run", type=nonempty, help="run directory")
    p.add_argument("--to", required=True, choices=TRACKERS)
    p.add_argument(
        "--logdir", type=nonempty, help="TensorBoard folder (default <run>/tracking/tensorboard)"
    )
    _add_track_option(p)
    p.set_defaults(func=cmd_export)


def _build_import(sub: Any) -> None:
    # Literal here, not imported: building the parser must not import torch (training.importer).
    p = _subparser(sub, "import", "turn existing checkpoints (PyTorch, safetensors, Keras) "
                   "into a run directory")  # fmt: skip
    p.add_argument("source", type=nonempty, help="folder holding the checkpoints")
    p.add_argument("--out", type=nonempty, required=True, help="new run directory")
    p.add_argument(
        "--pattern", default="seed{member}/ep{epoch}.pt",
        help="path of a checkpoint below SOURCE with {epoch} and optionally {member} "
        "(default seed{member}/ep{epoch}.pt)",
    )  # fmt: skip
    p.add_argument("--format", default="auto", choices=("auto", "torch", "safetensors", "keras"))
    p.add_argument(
        "--origin", choices=values(ImportOrigin),
        help="where the files came from (required for Keras files): seed-notebooks = the "
        "authors' notebooks (pixels / 255, seed recipe, file {k} saved after epoch k+1); "
        "stated = epochs as named plus --epoch-offset (0 = initialisation), pixels as "
        "data.scaling (implied by --set data.scaling=...; images need one of the two unless "
        "a Lightning checkpoint's hyper-parameters name its mean / std)",
    )  # fmt: skip
    p.add_argument(
        "--epoch-offset", type=int,
        help="added to {epoch} to give the epochs trained (with --origin stated; default 0)",
    )  # fmt: skip
    p.add_argument(
        "--keras-config", metavar="FILE",
        help="the graph of weights-only Keras files: a .keras, a model.save .h5 or "
        "model.to_json() output",
    )  # fmt: skip
    _add_config_flags(p)
    p.set_defaults(func=cmd_import)


# ---- the parser, logging and main -------------------------------------------------------------


def _add_verbosity(p: argparse.ArgumentParser, default: Any) -> None:
    """-q/-v before or after the command: the subcommand's copy must not reset the global one."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
        help="only warnings and errors",
    )  # fmt: skip
    g.add_argument(
        "-v", "--verbose", dest="verbosity", action="store_const", const=1, default=default,
        help="also debugging messages",
    )  # fmt: skip


def _subparser(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text)
    _add_verbosity(p, argparse.SUPPRESS)
    p.add_argument(
        "--trust", action="store_true", default=argparse.SUPPRESS,
        help="read files whose checksum does not match the run's manifest (not recommended)",
    )  # fmt: skip
    return p


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI. With `command`, the other study commands get no flags: reading the study
    configs imports torch, which `modescape info` or `--help` should not pay for."""
    parser = Parser(
        prog="modescape",
        description="Why deep ensembles work: train independent members, keep every snapshot, "
        "and compare them in weight space and function space.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modescape {__version__}")
    _add_verbosity(parser, 0)
    parser.add_argument("--trust", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _build_train(sub)
    _build_run(sub)
    _build_import(sub)
    _build_export(sub)
    build_study_parsers(sub, _subparser, command)
    build_reader_parsers(sub, _subparser)
    if command in (None, "spawn"):  # its settings import torch: only when asked for
        from modescape.cli_spawn import build_spawn_parser

        build_spawn_parser(sub, _subparser)
    else:
        _subparser(sub, "spawn", "spawn children from a member (see modescape spawn --help)")
    return parser


def setup_logging(verbosity: int = 0, stream: Any = None) -> logging.Handler:
    """One handler on the "modescape" logger, to stderr: WARNING (-1), INFO (0) or DEBUG (1).

    Replaces the handler of an earlier call, so repeated in-process `main()` calls (tests, a
    notebook) do not print every message twice."""
    logger = logging.getLogger("modescape")
    for h in list(logger.handlers):
        if getattr(h, "_modescape_cli", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._modescape_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel({-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[verbosity])
    return handler


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in argv: global flags take no values, so it is the first word."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv) or "")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # Bare `modescape`: the help (stdout) shows what to type, but no command ran: exit 2
        # with the one-line error every other usage mistake gets.
        parser.print_help()
        print("modescape: error: no command given (see modescape --help)", file=sys.stderr)
        return 2
    setup_logging(args.verbosity)
    func: Callable[[argparse.Namespace], Any] = args.func
    try:
        if args.trust:
            from modescape.store.run import set_default_trust

            set_default_trust(True)
        code = func(args)
    except ModescapeError as e:
        message = " ".join(str(e).split())  # one line, whatever the message holds
        print(f"modescape: error: {message}", file=sys.stderr)
        return 2
    except OSError as e:  # permissions, read-only or full disk, a name too long: not a bug
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
    finally:
        if args.trust:
            from modescape.store.run import set_default_trust

            set_default_trust(False)
    return code if isinstance(code, int) else 0
