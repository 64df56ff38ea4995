"""The SLURM executor on a real single-node cluster (`.ci/slurm.sh`): members as array tasks,
one task cancelled mid-training and resumed, the result byte-identical to a serial run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.store.run import init_run, load_run
from modescape.training.launch import run_members, run_status
from modescape.training.slurm import SlurmConfig, scheduler_states, slurm_tasks

pytestmark = pytest.mark.slurm

SLURM_SH = Path(__file__).resolve().parents[2] / ".ci" / "slurm.sh"
EPOCHS = 15  # long enough (a few seconds per member) to cancel a member between two epochs


def member_files(run_dir: Path) -> dict[str, tuple[dict, bytes]]:
    """Every snapshot of a run: (parsed header, tensor bytes) by relative path. The header is
    parsed because safetensors writes its metadata keys in a per-process random order."""
    out = {}
    for p in sorted(run_dir.glob("members/*/snapshots/*.safetensors")):
        raw = p.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        out[str(p.relative_to(run_dir))] = (json.loads(raw[8 : 8 + n]), raw[8 + n :])
    return out


def cluster_up() -> bool:
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(
        s in out.stdout for s in ("idle", "mixed", "allocated", "completing")
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running cluster: the one already up, or one this fixture starts (and then stops)."""
    if shutil.which("sinfo") is None:
        pytest.skip("SLURM is not installed (no sinfo on PATH): bash .ci/slurm.sh install")
    started = False
    if not cluster_up():
        if os.geteuid() != 0:
            pytest.skip("the SLURM cluster is down and starting it needs root: .ci/slurm.sh start")
        out = subprocess.run(["bash", str(SLURM_SH), "start"], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.fail(f".ci/slurm.sh start failed:\n{out.stderr[-2000:]}")
        started = True
    try:
        yield
    finally:
        if started:
            subprocess.run(["bash", str(SLURM_SH), "stop"], capture_output=True)


def config():
    cfg = preset("mnist1d", "smallcnn", members=3, epochs=EPOCHS, seed=0)
    return replace(cfg, data=replace(cfg.data, mnist1d_samples=2000))


def wait_mid_training(run_dir: Path, member: int, timeout_s: float = 90.0) -> str:
    """The SLURM task id of `member` once it has a snapshot after epoch 0 but is not finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = slurm_tasks(run_dir).get(member)
        status = load_run(run_dir).member_status(member)
        if task and status.state == "running" and status.epoch >= 1:
            return task
        assert status.state != "finished", "member finished before it could be cancelled"
        time.sleep(0.05)
    raise AssertionError(f"member {member} never reached epoch 1 within {timeout_s} s")


def test_cancelled_member_resumes_and_matches_serial(slurm_cluster, tmp_path):
    run_dir = tmp_path / "slurm_run"
    init_run(run_dir, config())
    cluster = SlurmConfig(partition="debug", time=10, cpus_per_task=1, poll_s=0.5)

    # Launch all members; cancel member 1's array task between two epochs.
    with ThreadPoolExecutor(1) as pool:
        launch = pool.submit(run_members, run_dir, executor="slurm", slurm=cluster)
        task = wait_mid_training(run_dir, 1)
        with pytest.raises(ModescapeError, match=f"still have SLURM tasks.*{task}"):
            run_members(run_dir, [1], executor="slurm", slurm=cluster)  # never train twice at once
        subprocess.run(["scancel", task], check=True)
        first = launch.result(timeout=180)
    assert first.finished == [0, 2] and list(first.failed) == [1]
    assert "TaskInterruptedError: SLURM sent SIGTERM" in first.failed[1]
    assert scheduler_states([task.split("_")[0]])[task] == "CANCELLED"
    rows = {r["member"]: r for r in run_status(run_dir)}
    assert rows[0]["state"] == rows[2]["state"] == "finished"
    assert (rows[1]["state"], rows[1]["scheduler"], rows[1]["job"]) == ("failed", "CANCELLED", task)
    assert "SIGTERM" in rows[1]["reason"] and 1 <= rows[1]["epoch"] < EPOCHS

    # The same call again submits only member 1, which resumes rather than restarts: its
    # epoch-0 snapshot is not written a second time.
    epoch0 = run_dir / "members" / "m001" / "snapshots" / "e0000.safetensors"
    written = epoch0.stat().st_mtime_ns
    second = run_members(run_dir, executor="slurm", slurm=cluster)
    assert second.ok and second.finished == [0, 1, 2]
    assert second.attempts == {0: 0, 1: 1, 2: 0} and len(second.job_ids) == 1
    assert epoch0.stat().st_mtime_ns == written
    assert [r["state"] for r in run_status(run_dir)] == ["finished"] * 3

    # Members finishing at the same time all landed in the manifest (the store's file lock).
    run = load_run(run_dir)
    assert run.verify() == []
    recorded = run.manifest.files
    for m in range(3):
        assert f"members/m{m:03d}/snapshots/e{EPOCHS:04d}.safetensors" in recorded

    # Byte for byte what a serial run with the same thread count (1) produces.
    serial_dir = tmp_path / "serial_run"
    init_run(serial_dir, config())
    assert run_members(serial_dir, executor="serial", threads=1).ok
    reference, launched = member_files(serial_dir), member_files(run_dir)
    assert launched.keys() == reference.keys()
    assert len(reference) == 3 * (EPOCHS + 1)  # a snapshot after every epoch and at the start
    for name in reference:
        assert launched[name] == reference[name], name
