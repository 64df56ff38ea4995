"""Spawned children: the parent's state and optimiser at the spawn point, their own data order,
byte-identical for the same seed, resumable after a kill, sharded, verified, bad input refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli

from modescape.errors import ModescapeError
from modescape.store.files import json_bytes, load_safetensors
from modescape.store.run import load_run
from modescape.store.summary import verify_run
from modescape.training.children import SpawnPoint
from modescape.training.launch import run_status
from modescape.training.spawn import SpawnPlan, plan_spawn, replay_parent, spawn, spawn_points


def _outputs(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for pattern in ("members/*/snapshots/*", "members/*/preds/*/*", "spawn/*")
        for p in sorted(run.glob(pattern))
    }


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


AT = [2.5, 4]  # a step part-way through epoch 2, and epoch 4 of 5


@pytest.fixture
def parent(spawn_parent) -> Path:
    return spawn_parent


@pytest.fixture(scope="module")
def children(spawn_parent, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spawn") / "kids"
    spawn(spawn_parent, out, member=1, at=AT, children=2, seed=7, device="cpu")
    return out


def test_children_start_from_the_parent_and_differ_by_seed(parent, children):
    run, par = load_run(children), load_run(parent)
    assert run.config.members == 4 and run.finished_members() == [0, 1, 2, 3]
    assert run.snapshot_epochs(0) == [3, 4, 5] and run.snapshot_epochs(2) == [4, 5]
    start = par.state_dict(1, 4)
    for m in (2, 3):  # spawned at 4: the parent's weights there, not the child's own init
        assert all(torch.equal(run.state_dict(m, 4)[k], v) for k, v in start.items())
    seeds = {run.member_info(m).seed for m in run.members}
    assert len(seeds) == 4 and par.member_info(1).seed not in seeds
    final = [run.state_dict(m) for m in run.members]
    assert _differs(final[0], final[1])  # another data order
    info, spawned, replay = run.member_info(1).spawn, run.manifest.spawn, run.manifest.spawn_replay
    assert info is not None and spawned is not None and replay is not None
    steps = spawned.steps_per_epoch
    assert (info.point, info.child, info.epoch, info.parent_member) == (0, 1, 2, 1)
    assert info.step == round(2.5 * steps) - 2 * steps and 0 < info.step < steps
    assert spawned.member == 1 and spawned.parent_seed == par.manifest.seeds["member_1"]
    assert replay.verified_epochs == [0, 1, 2, 3, 4]
    # the typed records (manifest, member.json) hold every key written, byte for byte
    assert json_bytes(run.manifest.to_dict()) == (children / "manifest.json").read_bytes()
    f = children / "members/m001/member.json"
    assert json_bytes(run.member_info(1).to_dict()) == f.read_bytes()
    assert verify_run(children) == []
    assert [r["state"] for r in run_status(children)] == ["finished"] * 4
    code, out, _ = cli("verify", str(children))  # the readers treat it like any run
    assert code == 0
    code, out, _ = cli("status", str(children))
    assert code == 0 and out.count("finished") == 4


def test_same_seed_same_bytes_other_seed_other_bytes(parent, children, tmp_path):
    again = tmp_path / "again"
    spawn(parent, again, member=1, at=AT, children=2, seed=7, device="cpu")
    assert _outputs(again) == _outputs(children)
    other = tmp_path / "other"
    spawn(parent, other, member=1, at=[4], children=1, seed=8, device="cpu")
    assert _differs(load_run(other).state_dict(0), load_run(children).state_dict(2))


def test_replayed_state_is_the_parents_optimiser_state(parent):
    """The replay reproduces the resume file (weights and Adam moments) at the last epoch."""
    par = load_run(parent)
    plan = SpawnPlan(par.path, 0, (SpawnPoint(5.0, 5, 0),), 1, 0, 7)
    (state,), replay = replay_parent(par, plan, "cpu")
    resume = load_safetensors(par.member_dir(0) / "resume.safetensors")
    from safetensors.torch import load as st_load

    got = st_load(state)
    for k, v in got.items():
        assert torch.equal(v, resume[k]), k
    assert any(k.startswith("opt.") and k.endswith("exp_avg_sq") for k in got)
    assert replay["verified_epochs"] == [0, 1, 2, 3, 4, 5]


def test_a_replay_that_differs_is_refused_or_reset(parent, monkeypatch):
    """Pretend the replay missed the parent's snapshot at epoch 2 (as on a GPU)."""
    import modescape.training.spawn as sp

    par = load_run(parent)
    plan = plan_spawn(parent, 0, [2], 1, 0)
    exact, _ = replay_parent(par, plan, "cpu")
    real = sp.snapshot_digest
    monkeypatch.setattr(
        sp, "snapshot_digest", lambda model, e, m: "0" * 64 if e == 2 else real(model, e, m)
    )
    with pytest.raises(ModescapeError, match="did not reproduce its snapshot at epoch 2"):
        replay_parent(par, plan, "cpu")
    approx, replay = replay_parent(par, plan, "cpu", exact=False)
    assert replay["verified_epochs"] == [0, 1] and replay["reset_epochs"] == [2]
    assert approx == exact  # the stored weights are the replayed ones here


def test_resume_after_kill_and_shards(parent, children, tmp_path):
    out = tmp_path / "killed"
    code = (
        "import sys, torch; torch.set_num_threads(1); from modescape.training.spawn import spawn;"
        "spawn(sys.argv[1], sys.argv[2], member=1, at=[2.5, 4], children=2, seed=7,"
        " device='cpu')"
    )
    env = os.environ | {"MODESCAPE_KILL_AT": "commit.resume@4"}  # child 1's first commit
    proc = subprocess.run([sys.executable, "-c", code, str(parent), str(out)], env=env)
    assert proc.returncode == -signal.SIGKILL
    assert load_run(out).finished_members() == [0]
    for shard in ("1/2", "0/2"):
        spawn(parent, out, member=1, at=AT, children=2, seed=7, device="cpu", shard=shard)
    assert _outputs(out) == _outputs(children)
    assert verify_run(out) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"member": 5}, "--member 5 is not a member"),
        ({"at": [5]}, "spawn point 5 is outside training"),
        ({"at": [-1]}, "spawn point -1 is outside training"),
        ({"children": 0}, "--children must be a whole number >= 1"),
        ({"at": [1, 1.01]}, "repeat a point"),
        ({"at": []}, "at least one spawn point"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(parent, tmp_path, kwargs, message):
    out = tmp_path / "kids"
    args = {"member": 0, "at": [1], "children": 2} | kwargs
    with pytest.raises(ModescapeError, match=message) as e:
        spawn(parent, out, device="cpu", **args)
    assert "\n" not in str(e.value) and not out.exists()


def test_spawn_points_round_to_steps():
    points = spawn_points([2, 0.5, 0], 4, 10)
    assert [(p.epoch, p.step) for p in points] == [(0, 0), (0, 5), (2, 0)]
    assert [p.label for p in points] == ["0", "0+5 steps", "2"]


def test_other_settings_in_the_same_folder_are_refused(parent, children):
    with pytest.raises(ModescapeError, match="other settings"):
        spawn(parent, children, member=1, at=[0, 2], children=2, seed=7, device="cpu")
    plan = plan_spawn(parent, 1, AT, 2, 7)
    assert plan.child(3) == (1, 1)
