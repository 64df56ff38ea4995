"""The price of a spawn: replay, children and measures counted from the plan."""

from __future__ import annotations

import pytest

from modescape.config import preset
from modescape.estimate import Rates
from modescape.spawning import spawn_lines, spawn_stages
from modescape.studies.spawn_measures import InstabilityConfig
from modescape.training.spawn import SpawnPlan, spawn_points


def test_stages_count_the_work_of_the_plan():
    config = preset("mnist1d", "smallcnn", members=2, epochs=10)
    points = spawn_points([0, 2.5], 10, 4)  # 4 steps per epoch: 2.5 epochs = 10 steps
    plan = SpawnPlan(None, 0, points, 3, 0, 4)  # type: ignore[arg-type]
    rates = Rates(train_step=1.0, forward=0.0)
    replay, children, measures = spawn_stages(
        plan, config, InstabilityConfig(across=1), 100, 50, False, rates
    )
    assert replay.seconds == pytest.approx(10)  # the parent up to step 10
    assert children.seconds == pytest.approx(3 * 40 + 3 * 30)  # 3 children each, remaining steps
    rates = Rates(train_step=0.0, forward=1.0)
    *_, measures = spawn_stages(plan, config, InstabilityConfig(across=1), 100, 50, False, rates)
    # 3 pairs per point x 2 points + within (1 pair) + across (1 pair): 8 paths x 30 points x 50
    assert measures.seconds == pytest.approx(8 * 30 * 50)
    from modescape.estimate import CostEstimate

    lines = spawn_lines(CostEstimate([replay, children, measures], rates, 1, "cpu"), parallel=2)
    assert lines[2].split()[:2] == ["children", "105"]  # 210 s over 2 at once
