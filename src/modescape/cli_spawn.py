"""`modescape spawn`: children of one member from its state at chosen spawn points, trained to
the end of the parent's schedule, then measured (`modescape.spawning.spawn_run`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

HELP = "spawn children from a member part-way through training and measure their instability"


def cmd_spawn(args: argparse.Namespace) -> None:
    from modescape.cli_flags import config_from_args, slurm_config
    from modescape.config import LAUNCH_RANGES, MAX_SEED, Range, check_range
    from modescape.options import Executor
    from modescape.spawning import estimate_spawn, spawn_lines, spawn_run
    from modescape.studies.spawn_measures import CLI_FLAGS, InstabilityConfig
    from modescape.training.spawn import parse_at, plan_spawn

    for name, allowed in LAUNCH_RANGES.items():
        check_range(f"--{name}", getattr(args, name), allowed)
    # Before the plan: 10**9 children would be planned (and their seeds derived) for minutes.
    check_range("--children", args.children, Range(1, 1000))
    if args.seed is not None:
        check_range("--seed", args.seed, Range(0, MAX_SEED))
    measures = config_from_args(InstabilityConfig, args, CLI_FLAGS)
    at = parse_at(args.at)
    if args.budget:
        plan = plan_spawn(args.run, args.member, at, args.children, args.seed)
        print("\n".join(spawn_lines(estimate_spawn(plan, measures))))
        return
    kids, summary = spawn_run(
        args.run, args.out, member=args.member, at=at, children=args.children, seed=args.seed,
        measures=measures, executor=args.executor, workers=args.workers, device=args.device,
        retries=args.retries, shard=args.shard, exact=not args.approximate_replay,
        slurm=slurm_config(args) if args.executor == Executor.SLURM else None,
    )  # fmt: skip
    print(f"spawned {len(kids.members)} children in {kids.path}")
    if summary is not None:
        print(summary.reading)
        print(f"report: {kids.path / 'report' / 'index.html'}")


def build_spawn_parser(sub: Any, subparser: Callable[..., argparse.ArgumentParser]) -> None:
    from modescape.cli_flags import add_dataclass_flags, nonempty
    from modescape.options import Executor, values

    p = subparser(sub, "spawn", HELP)
    p.add_argument("run", type=nonempty, help="the parent run directory")
    p.add_argument("--member", type=int, default=0, help="the parent member (default 0)")
    p.add_argument(
        "--at", default="0", metavar="EPOCHS",
        help="spawn points in epochs, comma-separated; 0 = the shared initialisation, fractions "
        "by optimiser step (e.g. 0,0.25,0.5,1,2; default 0)",
    )  # fmt: skip
    p.add_argument(
        "--children",
        type=int,
        default=2,
        help="children per spawn point (default 2; range [1, 1,000])",
    )
    p.add_argument("--seed", type=int, help="base seed of the children (default: from the run's)")
    p.add_argument(
        "--out", type=nonempty, help="the children's run directory (default <run>-spawn-m<member>)"
    )
    p.add_argument("--shard", metavar="I/N", help="train the children with index = I mod N")
    p.add_argument(
        "--approximate-replay", action="store_true",
        help="accept a replay of the parent that is not bit-exact (a parent trained on a GPU or "
        "another machine): restart it from the parent's stored weights at each snapshot",
    )  # fmt: skip
    p.add_argument(
        "--budget", action="store_true",
        help="print the estimated time of the replay, the children and the measures, and exit",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--executor", default=Executor.SERIAL.value, choices=values(Executor),
        help="where children train: this process, a local pool, or SLURM array tasks",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="processes for --executor local")
    p.add_argument("--retries", type=int, default=0, help="resubmissions of a failed child")
    g = p.add_argument_group("SLURM (--executor slurm)")
    g.add_argument("--partition")
    g.add_argument("--time", type=int, default=60, help="minutes per child task (default 60)")
    g.add_argument("--cpus-per-task", type=int, default=1)
    g.add_argument("--gpus-per-node", type=int, default=0)
    g.add_argument("--mem-gb", type=float)
    g.add_argument("--max-running", type=int, default=64)
    g.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE")
    from modescape.studies.spawn_measures import CLI_FLAGS, InstabilityConfig

    add_dataclass_flags(p, InstabilityConfig, CLI_FLAGS)
    p.set_defaults(func=cmd_spawn)
