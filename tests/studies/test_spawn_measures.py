"""Instability of spawned children on MNIST-1D: children spawned at the shared initialisation
end in different modes (a barrier, disagreement), children spawned late stay in one."""

from __future__ import annotations

import numpy as np
import pytest

from modescape.errors import ModescapeError
from modescape.store.run import load_run
from modescape.store.summary import verify_run
from modescape.studies.spawn_measures import InstabilityConfig, read_instability, run_instability
from modescape.training.spawn import spawn


@pytest.fixture(scope="module")
def measured(spawn_parent, tmp_path_factory):
    out = tmp_path_factory.mktemp("instability") / "kids"
    spawn(spawn_parent, out, member=0, at=[0, 4], children=2, device="cpu")
    return out, run_instability(out, InstabilityConfig(across=1))


def test_late_children_stay_in_one_mode(measured):
    _, s = measured
    early, late = (p.level for p in s.points)
    assert [p.at for p in s.points] == [0.0, 4.0]
    assert late.error_barrier < early.error_barrier
    assert late.loss_barrier < early.loss_barrier
    assert late.disagreement < early.disagreement and late.js < early.js
    assert late.cosine > early.cosine and late.l2 < early.l2
    assert early.pairs == late.pairs == 1 and len(early.accuracy) == 2
    # The references: independent members disagree more than the late children.
    assert s.across is not None and s.across.disagreement > late.disagreement
    assert s.across_members == [0, 1] and s.within is not None
    assert s.settings["alphas"] == 30 and s.bn_policy in ("none", "recompute")
    assert s.onset in (None, 0.0, 4.0) and "barrier" in s.reading


def test_summary_and_embedding_are_recorded(measured):
    out, s = measured
    run = load_run(out)
    assert read_instability(run) == s
    coords = run.read_npy("instability/trajectories.npy")
    index = run.read_npy("instability/trajectory_index.npy")
    parent_rows = (index[:, 0] == -1).sum()
    children_rows = sum(len(run.snapshot_epochs(m)) for m in run.members)
    assert coords.shape == (parent_rows + children_rows, 2) and parent_rows == 6
    assert np.isfinite(coords).all()
    assert verify_run(out) == []


def test_refuses_a_run_that_is_not_spawned(spawn_parent):
    with pytest.raises(ModescapeError, match="not a spawn run"):
        run_instability(spawn_parent)
    with pytest.raises(ModescapeError, match="alphas"):
        InstabilityConfig(alphas=1)
