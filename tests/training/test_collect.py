"""The SWA/SWAG collection phase (train.collect): off by default without a trace, resumable byte
for byte after a SIGKILL, and its statistics those of the iterates it collected."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from modescape.config import CollectConfig, RunConfig
from modescape.errors import ModescapeError
from modescape.store.files import load_safetensors, read_safetensors_metadata
from modescape.store.run import load_run
from modescape.store.summary import verify_run
from modescape.training.collect import COLLECT_METRICS, SWAG_FILE
from modescape.training.trainer import train

_TIMING = ("time_train_s", "time_eval_s")
# 320 training signals at batch 64: 5 steps per epoch; every 3 steps over 3 epochs = 5 iterates,
# the last one after the phase's last step.
_SETS = {"data.mnist1d_samples": 400, "train.collect.epochs": 3, "train.collect.every_steps": 3}


def collect_config(**extra) -> RunConfig:
    return tiny_config(members=1, epochs=2, **(_SETS | extra))


def test_off_by_default_leaves_the_config_json_as_it_was():
    cfg = tiny_config()
    d = cfg.to_dict()
    assert "collect" not in d["train"]
    assert RunConfig.from_dict(d) == cfg  # configs written before the phase existed still load
    on = collect_config()
    assert on.train.collect == CollectConfig(epochs=3, every_steps=3)
    assert on.to_dict()["train"]["collect"]["epochs"] == 3
    assert RunConfig.from_dict(json.loads(on.to_json())) == on


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ModescapeError, match="collection schedule"):
        tiny_config(**{"train.collect.schedule": "cosine"})
    with pytest.raises(ModescapeError, match=r"train\.collect\.epochs"):
        tiny_config(**{"train.collect.epochs": -1})
    with pytest.raises(ModescapeError, match=r"lr_min < collect\.lr"):
        CollectConfig(epochs=1, schedule="cyclic", lr=0.01, lr_min=0.02)


def test_cyclic_lr_falls_linearly_and_is_collected_at_its_lowest():
    c = CollectConfig(epochs=2, schedule="cyclic", lr=0.05, lr_min=0.01, every_steps=4)
    lrs = [c.lr_at_step(i, steps_per_epoch=10, base_lr=1.0) for i in range(8)]
    expected = [0.04, 0.03, 0.02, 0.01] * 2  # α = (1 − t)·0.05 + t·0.01, t = (i mod 4 + 1)/4
    assert lrs == pytest.approx(expected)
    assert [c.collects_after(i, 10) for i in range(8)] == [False, False, False, True] * 2
    const = CollectConfig(epochs=1)  # lr 0: the main schedule's last lr, collected per epoch
    assert const.lr_at_step(3, 10, base_lr=2e-4) == 2e-4
    assert [const.collects_after(i, 5) for i in range(10)] == ([False] * 4 + [True]) * 2


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Path, Path]:
    """The same member trained with and without a collection phase."""
    root = tmp_path_factory.mktemp("collect")
    train(collect_config(), root / "on", device="cpu")
    train(tiny_config(members=1, epochs=2, **{"data.mnist1d_samples": 400}), root / "off")
    return root / "on", root / "off"


def test_phase_keeps_the_trajectory_and_writes_checksummed_statistics(collected):
    on, off = collected
    for rel in ("members/m000/metrics.jsonl", "labels/test.npy"):
        assert (on / rel).exists()
    for p in sorted(off.glob("members/m000/snapshots/*")):  # the trajectory is unchanged
        assert (on / p.relative_to(off)).read_bytes() == p.read_bytes()
    assert sorted(p.name for p in (on / "members/m000/snapshots").iterdir()) == sorted(
        p.name for p in (off / "members/m000/snapshots").iterdir()
    )
    assert verify_run(on) == []
    files = load_run(on).manifest.files
    assert f"members/m000/{SWAG_FILE}" in files and f"members/m000/{COLLECT_METRICS}" in files
    meta = read_safetensors_metadata(on / "members/m000" / SWAG_FILE)
    assert meta["n"] == math.floor(3 * 5 / 3) and meta["settings"]["every_steps"] == 3
    rows = [json.loads(x) for x in (on / "members/m000" / COLLECT_METRICS).read_text().split("\n")
            if x]  # fmt: skip
    assert [r["epoch"] for r in rows] == [3, 4, 5] and rows[-1]["collected"] == 5
    assert rows[-1]["lr_last"] == pytest.approx(3e-3)  # the demo recipe's lr at epoch 1


def test_statistics_are_those_of_the_iterates(collected):
    """The last deviation plus the mean is the last collected iterate, which (collected after the
    phase's last step) is the final weights in the resume state."""
    on, _ = collected
    st = load_safetensors(on / "members/m000" / SWAG_FILE)
    meta = read_safetensors_metadata(on / "members/m000" / SWAG_FILE)
    resume = load_safetensors(on / "members/m000/resume.safetensors")
    final = torch.cat([resume[f"model.{n}"].reshape(-1).double() for n in meta["param_names"]])
    last = st["mean"] + st["deviations"][-1].double()
    torch.testing.assert_close(last, final, rtol=0, atol=1e-6)
    assert st["deviations"].shape[0] == 5 and (st["sq_mean"] >= st["mean"].square() - 1e-9).all()
    # E[θ²] − θ̄² over 5 distinct iterates of a training run: positive somewhere, finite
    assert (st["sq_mean"] - st["mean"].square()).max() > 0


def _outputs(run: Path) -> dict[str, bytes]:
    out = {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.glob("members/*/*.safe*"))}
    out.pop("members/m000/resume.safetensors", None)  # holds the wall-clock free state only
    for name in ("metrics.jsonl", COLLECT_METRICS):
        for p in sorted(run.glob(f"members/*/{name}")):
            rows = [json.loads(x) for x in p.read_text().splitlines()]
            out[str(p.relative_to(run))] = json.dumps(
                [{k: v for k, v in r.items() if k not in _TIMING} for r in rows]
            ).encode()
    return out


@pytest.mark.parametrize("kill_at", ["commit.resume@4"])  # inside the phase: moments restored
def test_sigkill_in_the_phase_then_rerun_is_byte_identical(collected, tmp_path, kill_at):
    on, _ = collected
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(collect_config().to_json())
    code = (
        "import json, sys, torch; torch.set_num_threads(1);"
        "from modescape.config import RunConfig; from modescape.training.trainer import train;"
        "train(RunConfig.from_dict(json.load(open(sys.argv[1]))), sys.argv[2], device='cpu')"
    )
    env = os.environ | {"MODESCAPE_KILL_AT": kill_at}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", code, str(cfg_file), str(out)], env=env)
    assert proc.returncode == -signal.SIGKILL
    train(collect_config(), out, device="cpu")
    assert verify_run(out) == []
    assert _outputs(out) == _outputs(on)
    assert f"members/m000/{SWAG_FILE}" in _outputs(out)
