"""A SIGKILL at every named write point of `train`, then a rerun: complete, verified output,
byte-identical to an uninterrupted run (kill points come from MODESCAPE_KILL_AT, not timing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config

from modescape.store.run import load_run
from modescape.store.summary import verify_run
from modescape.training.trainer import train

# name@N: the N-th time the write point is reached (2 members x 3 epoch ends, 0..2).
KILL_POINTS = (
    "create.labels",
    "create.manifest",
    "create.config",
    "create.rename",
    "epoch.preds@3",
    "epoch.snapshot@2",
    "epoch.metrics@2",
    "commit.member@2",
    "commit.resume@1",
    "finish.member@1",
    "finish.manifest@1",
    "finish.member@2",
)
_TIMING = ("time_train_s", "time_eval_s")
# Each case starts a fresh interpreter (~5 s on 2 shared cores): these three run by default,
# the rest with the slow tests (and in benchmarks/fault_campaign.py).
_QUICK = ("create.config", "commit.member@2", "finish.member@1")


def small_config():
    return tiny_config(members=2, epochs=2, **{"data.mnist1d_samples": 400})


def run_killed(out: Path, kill_at: str, config_file: Path) -> int:
    """Train in a subprocess that SIGKILLs itself at `kill_at`; return its exit status."""
    code = (
        "import json, sys, torch; torch.set_num_threads(1);"
        "from modescape.config import RunConfig; from modescape.training.trainer import train;"
        "train(RunConfig.from_dict(json.load(open(sys.argv[1]))), sys.argv[2], device='cpu')"
    )
    env = os.environ | {"MODESCAPE_KILL_AT": kill_at}
    proc = subprocess.run([sys.executable, "-c", code, str(config_file), str(out)], env=env)
    return proc.returncode


def outputs(run: Path) -> dict[str, bytes]:
    """Every deterministic output: snapshots, predictions, labels byte for byte; metrics
    without their timings."""
    out = {
        str(p.relative_to(run)): p.read_bytes()
        for pattern in ("members/*/snapshots/*", "members/*/preds/*/*", "labels/*")
        for p in sorted(run.glob(pattern))
    }
    for p in sorted(run.glob("members/*/metrics.jsonl")):
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        out[str(p.relative_to(run))] = json.dumps(
            [{k: v for k, v in r.items() if k not in _TIMING} for r in rows]
        ).encode()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    train(small_config(), out, device="cpu")
    return out


@pytest.mark.parametrize(
    "kill_at",
    [k if k in _QUICK else pytest.param(k, marks=pytest.mark.slow) for k in KILL_POINTS],
)
def test_kill_at_every_write_point_then_rerun(kill_at, reference, tmp_path):
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps(small_config().to_dict()))
    out = tmp_path / "run"
    assert run_killed(out, kill_at, cfg_file) == -signal.SIGKILL, f"not killed at {kill_at}"
    if kill_at.startswith("create."):
        assert not out.exists()  # creation is atomic: no half-made run directory
    train(small_config(), out, device="cpu")
    assert verify_run(out) == []
    assert load_run(out).finished_members() == [0, 1]
    assert outputs(out) == outputs(reference)
    assert not list(out.rglob("*.tmp")) and not list(tmp_path.glob(".run.creating-*"))
    recorded = set(load_run(out).manifest.files)
    assert recorded == set(load_run(reference).manifest.files)
