"""The study commands of the CLI: `analyze`, `subspace`, `landscape`, `shift`.

Their flags are read from the study config dataclasses (`cli_flags`); this module only names the
flags and words their help. Importing it imports the studies (and torch), so `cli.py` does so
only when one of these commands is on the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modescape.analysis.subspace import SubspaceConfig
from modescape.cli_flags import Flag, add_dataclass_flags, config_from_args, nonempty, split_list
from modescape.errors import ModescapeError
from modescape.studies.landscape import LandscapeConfig, parse_anchors, run_landscape
from modescape.studies.shift import ShiftConfig, parse_severities, run_shift
from modescape.studies.subspace import run_subspace
from modescape.studies.weights_functions import AnalysisConfig, analyze_run

# Flag names and help for the study config fields; defaults and types come from the dataclasses.
ANALYSIS_FLAGS = {
    "split": Flag(help="predictions to analyse"),
    "params": Flag(help="weights compared: all (paper), kernels + BN scale (seed), kernels only"),
    "late": Flag(help="how many last snapshots count as late"),
    "tsne_examples": Flag(help="examples per t-SNE point"),
    "tsne_subset": Flag(help="which examples: the first n (seed notebooks) or a seeded subset"),
    "tsne_perplexity": Flag(help="t-SNE perplexity (clamped for small runs)"),
    "tsne_iter": Flag(help="t-SNE iterations"),
    "max_subsets": Flag(help="ensemble subsets per size before sampling"),
    "weight_average": Flag(help="last snapshots averaged per member"),
    "seed": Flag(help="seed for t-SNE and subset sampling"),
}
SUBSPACE_FLAGS = {
    "methods": Flag(help="comma-separated samplers", parse=split_list, metavar="M1,M2"),
    "n_samples": Flag("--samples", "samples per member and method"),
    "n_snapshots": Flag("--snapshots", "last snapshots for the Gaussians"),
    "rank": Flag(help="PCA components of the low-rank Gaussian"),
    "random_scale": Flag(help="radius scale of the random sampler"),
    "dropout_scale": Flag(help="drop-probability scale of the dropout sampler (< 1)"),
    "diagonal_scale": Flag(help="std scale of the diagonal Gaussian"),
    "lowrank_scale": Flag(help="scale of the low-rank Gaussian"),
    "lowrank_scaled_scale": Flag(help="scale of the SWAG-style low-rank Gaussian"),
    "seed": Flag(help="base seed of the samples"),
}
LANDSCAPE_FLAGS = {
    "planes": Flag(
        "--anchors",
        "three of: origin, m<i>, m<i>@e<epoch>, init<i>, wa<i>",
        parse=lambda text: (parse_anchors(text),),
        metavar="A,B,C",
        default="origin and two members' ends",
    ),
    "paths": Flag(
        "--path",
        "a linear path between two anchors (repeatable)",
        parse=lambda items: _parse_paths(items),
        metavar="A,B",
        append=True,
        default="across members and within member 0",
    ),
    "resolution": Flag("--grid", "grid points per axis"),
    "margin": Flag(help="extra extent around the anchors (fraction)"),
    "max_examples": Flag(help="test examples per point"),
    "n_path_points": Flag("--path-points", "points along each path"),
    "bn_policy": Flag(help="BatchNorm statistics of each point"),
    "align": Flag(help="skip the permutation alignment of member 1 onto member 0"),
}
SHIFT_FLAGS = {
    "corruptions": Flag(
        help="comma-separated names", parse=split_list, metavar="C1,C2", default="a small set"
    ),
    "severities": Flag(help="e.g. 1-5 or 1,3,5", parse=parse_severities, metavar="S"),
    "late": Flag(help="member 0's last snapshots, for diversity along one trajectory"),
    "weight_average": Flag(help="last snapshots averaged per member"),
    "max_examples": Flag(help="evaluate on the first n test examples", default="all"),
    "seed": Flag(help="seed of the generated corruptions"),
    "cifar10c": Flag(help="use the official CIFAR-10-C .npy files", metavar="DIR"),
    "subspace_samples": Flag(help="samples per subspace model under shift"),
}


def _parse_paths(items: list[str]) -> tuple[tuple[str, str], ...] | None:
    paths = tuple(tuple(a.strip() for a in p.split(",")) for p in items)
    if any(len(p) != 2 for p in paths):
        raise ModescapeError("--path needs two anchors, e.g. --path m0,m1")
    return paths or None  # type: ignore[return-value]


def _study_parser(
    subparser: Callable[..., argparse.ArgumentParser],
    sub: Any,
    name: str,
    text: str,
    cls: type,
    flags: dict[str, Flag],
) -> argparse.ArgumentParser:
    p = subparser(sub, name, text)
    p.add_argument("run", type=nonempty, help="run directory")
    add_dataclass_flags(p, cls, flags)
    p.add_argument("--partial", action="store_true", help="use the finished members only")
    p.add_argument(
        "--budget", action="store_true",
        help="print the estimated time on this machine (a probe of a few seconds) and exit",
    )  # fmt: skip
    return p


def _budget(args: argparse.Namespace, study: str, cfg: Any) -> bool:
    """With --budget: print the study's estimated cost and say so (the command then stops)."""
    if args.budget:
        from modescape.estimate import estimate_study

        s = estimate_study(args.run, study, cfg)
        print(f"estimated {study}: {s.seconds:.0f} s ({s.work})")
    return bool(args.budget)


def cmd_analyze(args: argparse.Namespace) -> None:
    cfg = config_from_args(AnalysisConfig, args, ANALYSIS_FLAGS)
    if _budget(args, "analyze", cfg):
        return
    summary = analyze_run(args.run, cfg, allow_partial=args.partial)
    d, c = summary["disagreement"], summary["cosine"]
    print(
        f"independent members disagree on {d['across_members_mean']:.1%} of {cfg.split} "
        f"examples; the last {d['late_window']} snapshots of one trajectory on "
        f"{d['late_within_mean']:.1%}; final weights cosine {c['across_members_mean']:.3f}"
    )
    print(f"results in {Path(args.run) / 'analysis'}")


def cmd_subspace(args: argparse.Namespace) -> None:
    if args.reference < 0:
        raise ModescapeError(f"--reference must be >= 0, got {args.reference}")
    cfg = config_from_args(SubspaceConfig, args, SUBSPACE_FLAGS)
    if _budget(args, "subspace", cfg):
        return
    summary = run_subspace(args.run, cfg, reference=args.reference, allow_partial=args.partial)
    for method in summary["plane"]:
        print(f"{method:>15}: JS diversity {summary['js_diversity'][method]:.4f}")
    print(f"independent members: JS diversity {summary['js_diversity']['independent_members']:.4f}")
    print(f"results in {Path(args.run) / 'subspace'}")


def cmd_landscape(args: argparse.Namespace) -> None:
    cfg = config_from_args(LandscapeConfig, args, LANDSCAPE_FLAGS)
    if _budget(args, "landscape", cfg):
        return
    summary = run_landscape(args.run, cfg, allow_partial=args.partial)
    for p in summary["paths"]:
        print(f"{p['name']:>24} ({p['kind']}): error barrier {p['error_barrier']:.3f}")
    print(f"results in {Path(args.run) / 'landscape'}")


def cmd_shift(args: argparse.Namespace) -> None:
    cfg = config_from_args(ShiftConfig, args, SHIFT_FLAGS)
    if _budget(args, "shift", cfg):
        return
    summary = run_shift(args.run, cfg, allow_partial=args.partial)
    acc = summary["by_severity"]["metrics"]["single"]["accuracy"]
    print(
        "mean single-member accuracy by severity: "
        + ", ".join(f"{s}: {a:.3f}" for s, a in zip(summary["by_severity"]["severities"], acc))
    )
    print(f"results in {Path(args.run) / 'shift'}")


def build_study_parsers(sub: Any, subparser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the four study subcommands to `sub`; `subparser(sub, name, text)` makes each one."""
    text = "weight- and function-space analyses of a run"
    p = _study_parser(subparser, sub, "analyze", text, AnalysisConfig, ANALYSIS_FLAGS)
    p.set_defaults(func=cmd_analyze)
    text = "subspace samples, diversity-accuracy plane, ensembles"
    p = _study_parser(subparser, sub, "subspace", text, SubspaceConfig, SUBSPACE_FLAGS)
    p.add_argument("--reference", type=int, default=0, help="member of the diversity plane")
    p.set_defaults(func=cmd_subspace)
    text = "loss/accuracy/agreement planes, paths and barriers"
    p = _study_parser(subparser, sub, "landscape", text, LandscapeConfig, LANDSCAPE_FLAGS)
    p.set_defaults(func=cmd_landscape)
    text = "robustness under corruptions at five severities"
    p = _study_parser(subparser, sub, "shift", text, ShiftConfig, SHIFT_FLAGS)
    p.set_defaults(func=cmd_shift)
