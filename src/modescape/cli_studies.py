"""The study commands of the CLI, one per registered study (`modescape.registry`).

Each study's subcommand, help, settings flags and extra arguments come from its registry entry
(flags and defaults read from its settings dataclass, `cli_flags`); the command runs the study
and prints the lines its `outcome` returns. Importing this module imports no study: a study's
module (and torch) is imported only when its own command is on the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modescape.cli_flags import add_dataclass_flags, config_from_args, nonempty
from modescape.errors import ModescapeError
from modescape.registry import Study, studies, study


def _study_parser(
    subparser: Callable[..., argparse.ArgumentParser], sub: Any, s: Study
) -> argparse.ArgumentParser:
    p = subparser(sub, s.cli, s.help)
    p.add_argument("run", type=nonempty, help="run directory")
    add_dataclass_flags(p, s.get("settings"), s.cli_flags())
    for a in s.arguments:
        p.add_argument(a.flag, dest=a.dest, type=int, default=a.default, help=a.help)
    p.add_argument("--partial", action="store_true", help="use the finished members only")
    p.add_argument(
        "--budget", action="store_true",
        help="print the estimated time on this machine (a probe of a few seconds) and exit",
    )  # fmt: skip
    p.set_defaults(func=cmd_study, study=s.name)
    return p


def cmd_study(args: argparse.Namespace) -> None:
    """Run the study the subcommand names (or, with --budget, print its estimated cost)."""
    s = study(args.study)
    extra = {a.dest: getattr(args, a.dest) for a in s.arguments}
    for a in s.arguments:
        if extra[a.dest] < 0:
            raise ModescapeError(f"{a.flag} must be >= 0, got {extra[a.dest]}")
    cfg = config_from_args(s.get("settings"), args, s.cli_flags())
    if args.budget:
        from modescape.estimate import estimate_study

        stage = estimate_study(args.run, s.name, cfg)
        print(f"estimated {s.cli}: {stage.seconds:.0f} s ({stage.work})")
        return
    summary = s.get("runner")(args.run, cfg, allow_partial=args.partial, **extra)
    for line in s.get("outcome")(summary, Path(args.run)):
        print(line)


def build_study_parsers(
    sub: Any, subparser: Callable[..., argparse.ArgumentParser], command: str | None = None
) -> None:
    """Add a subcommand per registered study to `sub` (`subparser(sub, name, text)` makes each).
    With `command`, only that study's flags are read (its settings dataclass imports torch);
    the others get a bare parser, enough for `modescape --help`."""
    for s in studies():
        if command is None or command == s.cli:
            _study_parser(subparser, sub, s)
        else:
            subparser(sub, s.cli, f"{s.help} (see modescape {s.cli} --help)")
