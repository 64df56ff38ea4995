"""`modescape spawn`'s measures: instability of the children of each spawn point.

Reads a spawn run (`training.spawn`) and its parent, and writes `<spawn run>/instability/`:
summary.json (`store.schema.InstabilitySummary`: per spawn point the children's measures,
the two reference levels, the onset of stability and the reading in words) and
`trajectories.npy` (a joint 2-D embedding of the children's and the parent's function-space
trajectories, `analysis.trajectories`) with `trajectory_index.npy` ([points, 3]: spawn point
(-1: parent), child, epoch of each row).

References (Fort, Hu & Lakshminarayanan 2019, arXiv:1912.02757, place "same trajectory" and
"different initialisation" at the two ends): within a trajectory, the parent member's final
snapshot against its snapshot `late` epochs earlier (the window clamped to the later half of
training); across initialisations, the parent member against up to `across` other members of
the parent run (all pairs of that group).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modescape.analysis.instability import (
    FRANKLE_ALPHAS,
    STABLE_BARRIER,
    pair_level,
    pairs,
    stability_onset,
    stability_reading,
)
from modescape.analysis.landscape import interpolate_path
from modescape.analysis.trajectories import embed_trajectories, function_space_points
from modescape.analysis.weightspace import select_parameter_names, stack_flat
from modescape.config import RunConfig
from modescape.errors import ModescapeError
from modescape.registry import Flag
from modescape.results import PairLevel
from modescape.store import schema as S
from modescape.store.files import save_npy
from modescape.store.manifest import write_study_summary
from modescape.store.run import Run, load_run
from modescape.studies.context import clamp_window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstabilityConfig:
    """Settings of the instability measures (validated here; every one is recorded)."""

    examples: int = 1000  # test examples each path point is scored on (the first ones)
    alphas: int = FRANKLE_ALPHAS  # evenly spaced points per linear path, ends included
    late: int = 10  # within-trajectory reference: final snapshot vs `late` epochs earlier
    across: int = 2  # other members of the parent run in the across-initialisation group
    bn_batches: int = 8  # training batches per BatchNorm recomputation
    threshold: float = STABLE_BARRIER
    embed_examples: int = 256  # test examples per function-space point of the embedding
    embed: str = "pca"  # "pca" | "tsne"
    embed_seed: int = 0  # t-SNE's seed

    def __post_init__(self) -> None:
        for name in ("examples", "alphas", "late", "bn_batches", "embed_examples"):
            least = 2 if name == "alphas" else 1  # a path needs both ends
            if getattr(self, name) < least:
                raise ModescapeError(f"instability.{name} must be >= {least}")
        if self.across < 1:
            raise ModescapeError("instability.across must be >= 1")
        if not 0 < self.threshold < 1:
            raise ModescapeError(f"instability.threshold must be in (0, 1), got {self.threshold}")
        if self.embed not in ("pca", "tsne"):
            raise ModescapeError(f"instability.embed must be 'pca' or 'tsne', got {self.embed!r}")


class _Measure:
    """What every group's measurement shares: template model, data, parameter names."""

    def __init__(self, run: Run, config: InstabilityConfig):
        self.config = config
        self.model = run.build_model()
        data = run.dataset()
        n = min(config.examples, len(data.y_test))
        self.x, self.y, self.train_x = data.x_test[:n], data.y_test[:n], data.x_train
        self.names = select_parameter_names(self.model, "all")
        self.policy = "none"

    def level(
        self, states: list[dict[str, torch.Tensor]], probs: np.ndarray, labels: np.ndarray
    ) -> PairLevel:
        paths = []
        for i, j in pairs(len(states)):
            path = interpolate_path(
                self.model, states[i], states[j], self.x, self.y, self.config.alphas,
                train_x=self.train_x, bn_batches=self.config.bn_batches,
            )  # fmt: skip
            self.policy = path.bn_policy
            paths.append(path)
        return pair_level(probs, labels, stack_flat(states, self.names), paths)


def run_instability(
    run_dir: str | Path, config: InstabilityConfig | None = None, *, allow_partial: bool = False
) -> S.InstabilitySummary:
    """Measure every spawn point of the spawn run at `run_dir` and write `instability/`.
    `allow_partial` is accepted for the registry and ignored: every child is needed."""
    config = config or InstabilityConfig()
    run = run_dir.run if hasattr(run_dir, "run") else load_run(run_dir)  # a path or RunContext
    spawn = run.manifest.spawn
    if spawn is None:
        raise ModescapeError(f"{run.path} is not a spawn run: create one with `modescape spawn`")
    run.require_complete()
    parent, member, n = load_run(spawn.parent), spawn.member, spawn.children
    if n < 2:
        raise ModescapeError(f"{run.path} has 1 child per spawn point; measures need >= 2")
    pick, group, warnings = reference_groups(parent, member, config)  # before any work
    meas, labels = _Measure(run, config), run.labels("test")
    points = []
    for p, point in enumerate(spawn.points):
        kids = [p * n + c for c in range(n)]
        probs = np.stack([run.predictions("test", m) for m in kids])
        level = meas.level([run.state_dict(m) for m in kids], probs, labels)
        points.append(S.InstabilityPoint(point.at, point.epoch, point.step, level))
        log.info("spawn point %g: error barrier %.4f", point.at, level.error_barrier)
    within = _level(parent, member, pick, None, meas)
    across = _level(parent, member, None, group, meas)
    at = [p.at for p in points]
    barriers = [p.level.error_barrier for p in points]
    disagreements = [p.level.disagreement for p in points]
    summary = S.InstabilitySummary(
        parent=spawn.parent, member=member, children=n, points=points,
        within=within, across=across, within_epochs=pick, across_members=group,
        onset=stability_onset(at, barriers, config.threshold),
        reading=stability_reading(at, barriers, disagreements, within, across, config.threshold),
        bn_policy=meas.policy,
        settings=dataclasses.asdict(config) | {"examples_used": len(meas.y)},
        warnings=warnings,
    )  # fmt: skip
    summary.files = _write_embedding(run, parent, member, config)
    write_study_summary(run, S.INSTABILITY, summary.to_dict())
    return summary


def reference_groups(
    parent: Run, member: int, cfg: InstabilityConfig
) -> tuple[list[int], list[int], list[str]]:
    """The two reference groups, fitted to the parent run before any work: the epochs of the
    within-trajectory pair (final snapshot and `late` epochs earlier, the window clamped to the
    later half as every study's), the members of the across-initialisation group, and a warning
    naming the flag for each reference shortened or left out."""
    epochs = parent.snapshot_epochs(member)
    warnings = []
    w, warning = clamp_window("instability late window", cfg.late, len(epochs) - 1, flag="--late")
    if warning:
        warnings.append(warning)
    pick = [epochs[-1 - w], epochs[-1]] if w >= 1 and len(epochs) > w else []
    if not pick:
        warnings.append(
            f"within-trajectory reference left out: member {member} of the parent run has "
            f"{len(epochs)} snapshot(s), a pair needs 2"
        )
    others = [m for m in parent.finished_members() if m != member]
    if not others:
        warnings.append(
            "across-initialisation reference left out: the parent run has no other finished "
            f"member than {member}"
        )
    elif len(others) < cfg.across:
        warnings.append(
            f"across-initialisation group: --across {cfg.across} asked for {cfg.across} other "
            f"members of the parent run, but it has {len(others)}; used {len(others)}"
        )
    group = [member, *others[: cfg.across]] if others else []
    for message in warnings:
        log.warning(message)
    return pick, group, warnings


def _level(
    parent: Run, member: int, epochs: list[int] | None, group: list[int] | None, meas: _Measure
) -> PairLevel | None:
    """The within-trajectory level (the member's snapshots at `epochs`) or the
    across-initialisation level (the final snapshots of `group`); None for an empty one."""
    keys = [(member, e) for e in epochs] if epochs is not None else [(m, -1) for m in group or []]
    if not keys:
        return None
    probs = np.stack([parent.predictions("test", m, e) for m, e in keys])
    states = [parent.state_dict(m, e) for m, e in keys]
    return meas.level(states, probs, parent.labels("test"))


def _write_embedding(run: Run, parent: Run, member: int, cfg: InstabilityConfig) -> dict[str, str]:
    """One joint embedding of the children's trajectories and the parent member's."""
    rows, index = [], []
    spawn = run.manifest.spawn
    if spawn is None:
        raise ModescapeError(f"{run.path} is not a spawn run")
    n = spawn.children
    k = min(cfg.embed_examples, len(run.labels("test")))
    for e in parent.snapshot_epochs(member):
        rows.append(parent.predictions("test", member, e)[:k])
        index.append((-1, 0, e))
    for m in run.members:
        p, c = divmod(m, n)
        for e in run.snapshot_epochs(m):
            rows.append(run.predictions("test", m, e)[:k])
            index.append((p, c, e))
    emb = embed_trajectories(function_space_points(np.stack(rows)), cfg.embed, seed=cfg.embed_seed)
    folder = run.path / S.INSTABILITY
    where = np.asarray(index, dtype=np.int64)
    return {
        S.INSTABILITY_TRAJECTORIES: save_npy(folder / S.INSTABILITY_TRAJECTORIES, emb.coords),
        S.INSTABILITY_TRAJECTORY_INDEX: save_npy(folder / S.INSTABILITY_TRAJECTORY_INDEX, where),
    }


def read_instability(run: Run) -> S.InstabilitySummary:
    """The summary `run_instability` wrote (checked against the manifest)."""
    return run.study(S.INSTABILITY)


CLI_FLAGS = {
    "examples": Flag(help="test examples each point of a path is scored on"),
    "alphas": Flag(help="evenly spaced points per linear path, ends included (Frankle: 30)"),
    "late": Flag(help="within-trajectory reference: the final snapshot vs N epochs earlier"),
    "across": Flag(help="other members of the parent run in the across-initialisation group"),
    "threshold": Flag(help="error barrier below which a spawn point is stable (Frankle: 0.02)"),
}


def applies(config: RunConfig) -> bool:
    """Never part of `modescape run`: the study measures a spawn run (`modescape spawn` creates
    one and measures it; `modescape instability RUN` measures it again)."""
    return False


def outcome(summary: S.InstabilitySummary, run: Path) -> list[str]:
    """What `modescape instability` prints: the reading, then where the results are."""
    return [summary.reading, f"results in {run / S.INSTABILITY}"]
