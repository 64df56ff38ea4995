"""`modescape spawn`: price the spawn, train the children, measure their instability.

`spawn_run` is the one library call behind the command; its price (`estimate_spawn`, from the
estimate's timed probe) is logged before anything is trained. The stages: the replay of the
parent to the last spawn point (`training.spawn`), the children's training (each child's remaining
steps, plus its snapshots' predictions) and the instability measures (30-point paths between
every pair of children of each spawn point and the two reference groups, BatchNorm statistics
recomputed at every point where the model has them). Children are independent jobs: with an
executor that runs them in parallel, the children's stage divides by the number running at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modescape.estimate import CostEstimate, Rates, Stage, duration_text, probe_rates

log = logging.getLogger(__name__)


def spawn_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    member: int = 0,
    at: Sequence[float] = (0.0,),
    children: int = 2,
    seed: int | None = None,
    measures: Any = None,
    price: bool = True,
    report: bool = True,
    **launch: Any,
) -> tuple[Any, Any]:
    """Price, spawn and measure: `training.spawn.spawn`, `run_instability` on its run, then
    (`report`) the children's run analysed and its report written (`<out>/report/`).

    `launch`: executor, workers, device, slurm, retries, threads, shard (as `spawn` takes them).
    Returns (the children's Run, the InstabilitySummary, or None when a shard left children
    untrained or a spawn point has a single child). Rerunning resumes."""
    from modescape.store.run import load_run
    from modescape.studies.spawn_measures import InstabilityConfig, run_instability
    from modescape.training.spawn import plan_spawn, spawn

    measures = measures or InstabilityConfig()
    plan = plan_spawn(run_dir, member, at, children, seed)  # bad input fails before any work
    if price:
        for line in spawn_lines(estimate_spawn(plan, measures)):
            log.info(line)
    kids = spawn(run_dir, out, member=member, at=at, children=children, seed=seed, **launch)
    kids = load_run(kids.path)
    if children < 2 or kids.finished_members() != kids.members:
        log.info("instability measures wait for every child (>= 2 per spawn point): %s", kids.path)
        return kids, None
    summary = run_instability(kids.path, measures)
    if report:  # the report needs the run analysed; its instability section reads the summary
        from modescape.report.html import write_report
        from modescape.studies.analysis import analyze_run

        analyze_run(kids.path)
        write_report(kids.path)
    return kids, summary


def spawn_stages(
    plan: Any, config: Any, measures: Any, n_train: int, n_test: int, batchnorm: bool,
    rates: Rates,
) -> list[Stage]:  # fmt: skip
    """The three stages of a spawn (`plan`: `training.spawn.SpawnPlan`; `config`: the parent's
    RunConfig; `measures`: `InstabilityConfig`)."""
    from modescape.analysis.instability import pairs

    t, S, N = config.train, plan.steps_per_epoch, plan.children
    last = plan.points[-1]
    replay_steps = last.epoch * S + last.step
    child_steps = sum(N * ((t.epochs - p.epoch) * S - p.step) for p in plan.points)
    snapshots = sum(N * (t.epochs - p.epoch + 1) for p in plan.points)
    children = child_steps * rates.train_step + snapshots * n_test * rates.forward
    groups = len(pairs(N)) * len(plan.points) + 1 + len(pairs(1 + measures.across))
    n = min(measures.examples, n_test)
    bn = 2 * min(8 * 256, n_train) if batchnorm else 0  # interpolate_path's default batches
    paths = groups * measures.alphas * (n + bn) * rates.forward
    return [
        Stage("replay", replay_steps * rates.train_step, f"parent to step {replay_steps}"),
        Stage("children", children, f"{len(plan.points) * N} children, {child_steps} steps"),
        Stage("instability", paths, f"{groups} paths x {measures.alphas} points on {n}"),
    ]


def estimate_spawn(
    plan: Any, measures: Any = None, *, rates: Rates | None = None, data: Any = None
) -> CostEstimate:
    """The cost of `training.spawn.spawn(plan)` and `run_instability` here, in seconds."""
    import torch

    from modescape.models.registry import build_model, has_batchnorm
    from modescape.store.run import load_run, open_dataset
    from modescape.studies.spawn_measures import InstabilityConfig

    config = load_run(plan.parent).config
    measures = measures or InstabilityConfig()
    if data is None:
        data = open_dataset(config, pixels="uint8")
    if rates is None:
        rates = probe_rates(config, data)
    m = config.model
    model = build_model(m.arch, m.variant, tuple(data.x_train.shape[1:]), len(data.classes),
                        m.dropout, **m.arch_kwargs)  # fmt: skip
    stages = spawn_stages(
        plan, config, measures, len(data.y_train), len(data.y_test), has_batchnorm(model), rates
    )
    return CostEstimate(stages, rates, torch.get_num_threads(), "cpu")


def spawn_lines(estimate: CostEstimate, parallel: int = 1) -> list[str]:
    """A printable table of `estimate_spawn`; with `parallel` children training at once
    (independent jobs) the children's stage shrinks by that factor."""
    out = [f"estimated cost on {estimate.device} ({estimate.threads} threads), from a timed probe:"]
    total = 0.0
    for s in estimate.stages:
        seconds = s.seconds / max(1, parallel) if s.name == "children" else s.seconds
        total += seconds
        out.append(f"  {s.name:12s} {duration_text(seconds):>9s}   {s.work}")
    out.append(f"  {'total':12s} {duration_text(total):>9s}")
    return out
