"""Experiment trackers: the per-epoch records reach TensorBoard unchanged, and tracking never
changes what is trained (snapshots byte-identical to an untracked run)."""

from __future__ import annotations

import pytest
import torch

from modescape.store.run import load_run
from modescape.training.tracker_backends import flat_config, scalars
from modescape.training.tracking import GuardedTracker
from modescape.training.trainer import train
from tests.conftest import cli, snapshot_bytes, tiny_config


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _assert_events_match_metrics(run_path, logdir):
    run = load_run(run_path)
    for m in run.members:
        events = _events(logdir / f"m{m:03d}")
        records = run.metrics(m)
        assert records and set(events) == set().union(*(scalars(r.to_dict()) for r in records))
        for r in records:
            for k, v in scalars(r.to_dict()).items():
                assert events[k][r.epoch] == pytest.approx(v, rel=1e-6, abs=1e-7), (m, k)


@pytest.mark.slow
def test_tracked_run_is_byte_identical_and_events_hold_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = tiny_config(members=2, epochs=2, **{"data.mnist1d_samples": 400})
    plain = train(cfg, tmp_path / "plain").path
    code, _, err = cli("-q", "train", "--config", _write(cfg, tmp_path), "--out",
                       str(tmp_path / "tracked"), "--track", "tensorboard")  # fmt: skip
    assert code == 0, err
    tracked = tmp_path / "tracked"
    assert snapshot_bytes(tracked) == snapshot_bytes(plain) != {}
    _assert_events_match_metrics(tracked, tracked / "tracking" / "tensorboard")
    assert not load_run(tracked).verify()  # the tracker's folder is no problem for the run

    # Afterwards, from an untracked run: the same numbers; a second export is refused.
    code, stdout, err = cli("export", str(plain), "--to", "tensorboard")
    assert "exported" in stdout
    assert code == 0, err
    _assert_events_match_metrics(plain, plain / "tracking" / "tensorboard")
    code, _, err = cli("export", str(plain), "--to", "tensorboard")
    assert code == 2 and "already holds" in err


def _write(cfg, folder) -> str:
    path = folder / "config.json"
    path.write_text(cfg.to_json())
    return str(path)


class _Greedy:
    """A tracker library that draws from the global random streams."""

    def __init__(self):
        self.seen = []

    def log_config(self, config):
        torch.rand(3)

    def log_epoch(self, record):
        import random

        import numpy as np

        self.seen.append((torch.rand(1).item(), random.random(), np.random.rand()))

    def close(self):
        torch.randn(5)


def test_guarded_tracker_leaves_global_random_states_alone():
    import random

    import numpy as np

    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (torch.rand(2), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    inner = _Greedy()
    tracker = GuardedTracker(inner)
    tracker.log_config({"a": 1})
    tracker.log_epoch({"epoch": 1, "test_acc": 0.5})
    tracker.close()
    assert inner.seen  # the library did draw
    got = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_records_and_config_as_tracker_values():
    record = {"epoch": 3, "lr": None, "test_acc": 0.75, "train_loss": 1, "flag": True}
    assert scalars(record) == {"test_acc": 0.75, "train_loss": 1.0}
    flat = flat_config({"seed": 0, "train": {"lr": 0.1, "lr_milestones": [1, 2]}})
    assert flat == {"seed": 0, "train.lr": 0.1, "train.lr_milestones": "[1, 2]"}


def test_unknown_tracker_is_refused_before_training(tmp_path):
    code, _, err = cli("train", "--out", str(tmp_path / "r"), "--track", "neptune")
    assert code == 2 and "neptune" in err
    assert not (tmp_path / "r").exists()


class _FakeWandbRun:
    def __init__(self, calls, **kwargs):
        self.calls = calls
        calls.append(("init", kwargs))
        self.config = self

    def update(self, config, allow_val_change=False):
        self.calls.append(("config", config))

    def log(self, values, step):
        self.calls.append(("log", step, values))

    def finish(self):
        self.calls.append(("finish",))


def test_wandb_gets_one_offline_run_per_member_grouped_by_run(tmp_path, monkeypatch):
    """The real package is not needed: a stand-in module records the calls."""
    import types

    from modescape.training.tracking import open_tracker

    for env in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_GROUP"):
        monkeypatch.delenv(env, raising=False)

    calls: list = []
    fake = types.SimpleNamespace(init=lambda **kw: _FakeWandbRun(calls, **kw))
    monkeypatch.setitem(__import__("sys").modules, "wandb", fake)
    tracker = open_tracker("wandb", tmp_path / "myrun", 2)
    tracker.log_config({"seed": 0})
    tracker.log_epoch({"epoch": 1, "lr": None, "test_acc": 0.5})
    tracker.close()
    init = calls[0][1]
    assert init["group"] == "myrun" and init["name"] == "m002" and init["mode"] == "offline"
    assert init["project"] == "modescape" and init["resume"] == "allow"
    assert calls[1:] == [("config", {"seed": 0}), ("log", 1, {"test_acc": 0.5}), ("finish",)]


def test_missing_tracker_package_names_the_extra(tmp_path, monkeypatch):
    from modescape.errors import ModescapeError
    from modescape.training.tracking import open_tracker

    monkeypatch.setitem(__import__("sys").modules, "mlflow", None)  # import fails
    with pytest.raises(ModescapeError, match=r"pip install modescape\[mlflow\]"):
        open_tracker("mlflow", tmp_path, 0)


def test_track_options_are_named_and_checked_before_training(tmp_path):
    from modescape.errors import ModescapeError
    from modescape.training.tracking import Tracking

    spec = Tracking.parse("wandb", ["project=p", "tags=a,b"])
    assert spec.settings()["project"] == "p" and spec.settings()["tags"] == "a,b"
    with pytest.raises(ModescapeError, match=r"unknown --track-option for mlflow: 'projekt'"):
        Tracking.parse("mlflow", ["projekt=x"])
    with pytest.raises(ModescapeError, match="KEY=VALUE"):
        Tracking.parse("mlflow", ["experiment"])
    code, _, err = cli("train", "--out", str(tmp_path / "r"), "--track", "tensorboard",
                       "--track-option", "project=x")  # fmt: skip
    assert code == 2 and "allowed: logdir" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
