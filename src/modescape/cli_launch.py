"""What `modescape train`, `run` and `spawn` share: their launch flags checked by name, and the
SLURM settings their flags describe (kept apart from `cli.py` so that `cli_spawn` needs nothing
from it)."""

from __future__ import annotations

import argparse
from typing import Any

from modescape.config import LAUNCH_RANGES, check_range
from modescape.errors import ModescapeError


def slurm_config(args: argparse.Namespace) -> Any:
    from modescape.training.slurm import SlurmConfig

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


def check_launch_flags(args: argparse.Namespace) -> None:
    """Named by their flags here; `train_run` checks them again for library callers."""
    for name, allowed in LAUNCH_RANGES.items():
        check_range(f"--{name}", getattr(args, name), allowed)
