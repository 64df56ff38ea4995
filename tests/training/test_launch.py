"""Executors and shards: the serial and local executors against each other on a real run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from modescape.config import preset
from modescape.errors import ModescapeError
from modescape.store.run import init_run, load_run
from modescape.training.launch import (
    EXECUTORS,
    format_status,
    run_members,
    run_status,
    shard_members,
    worker_devices,
)
from modescape.training.slurm import SlurmConfig, _expand_task_ids


def tiny_config(members: int = 3, epochs: int = 2):
    """A 3-member MNIST-1D run that trains in about a second per member on one core."""
    cfg = preset("mnist1d", "smallcnn", members=members, epochs=epochs, seed=0)
    return replace(cfg, data=replace(cfg.data, mnist1d_samples=600))


def safetensors_content(path: Path) -> tuple[dict, bytes]:
    """(header as a dict, tensor bytes) of a safetensors file.

    The header is compared parsed because safetensors writes `__metadata__` from a Rust HashMap
    whose key order changes from process to process; every tensor byte is compared as is.
    """
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def member_files(run_dir: Path) -> dict[str, tuple[dict, bytes]]:
    """Every snapshot of a run, by relative path. (Resume files also hold wall-clock timings.)"""
    return {
        str(p.relative_to(run_dir)): safetensors_content(p)
        for p in sorted(run_dir.glob("members/*/snapshots/*.safetensors"))
    }


# ---- shards -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "shard", "expected"),
    [
        (7, "0/1", [0, 1, 2, 3, 4, 5, 6]),
        (7, "1/3", [1, 4]),
        (7, "0/3", [0, 3, 6]),
        (5, " 1 / 2 ", [1, 3]),
        (2, "2/3", []),
    ],
)
def test_shard_members(n, shard, expected):
    assert shard_members(n, shard) == expected


def test_shards_partition_the_members():
    shards = [shard_members(10, f"{i}/4") for i in range(4)]
    assert sorted(m for s in shards for m in s) == list(range(10))


@pytest.mark.parametrize("shard", ["3/3", "1/0", "-1/2", "a/b", "1", "1/2/3", ""])
def test_shard_members_rejects(shard):
    with pytest.raises(ModescapeError, match="shard"):
        shard_members(5, shard)


def test_expand_task_ids():
    assert _expand_task_ids("12_[0-2,5%2]") == ["12_0", "12_1", "12_2", "12_5"]
    assert _expand_task_ids("12_3") == ["12_3"]
    assert _expand_task_ids("12") == ["12"]


# ---- executors with a stand-in job --------------------------------------------------------------


def record_job(run_dir: str, member: int, *, device: str, threads: int | None) -> None:
    """A stand-in job that records where it ran. On its first try member 1 raises, or, with
    MODESCAPE_TEST_CRASH=1, member 2 kills its process instead."""
    d = Path(run_dir)
    first = not (d / f"tried{member}").exists()
    (d / f"tried{member}").touch()
    if os.environ.get("MODESCAPE_TEST_CRASH") == "1":
        if member == 2 and first:
            os._exit(3)  # a worker process dying, as when the OOM killer strikes
    elif member == 1 and first:
        raise RuntimeError("member 1 fails on its first try")
    info = dict(pid=os.getpid(), device=device, threads=threads, torch=torch.get_num_threads())
    (d / f"done{member}.json").write_text(json.dumps(info))


def test_unknown_executor(tmp_path):
    with pytest.raises(ModescapeError, match="serial, local, slurm"):
        run_members(tmp_path, [0], "mpi", job_fn=record_job)
    assert EXECUTORS == ("serial", "local", "slurm")


def test_slurm_without_submitit(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # what an uninstalled package looks like
    with pytest.raises(ModescapeError, match=r"pip install 'modescape\[slurm\]'"):
        run_members(tmp_path, [0], "slurm", job_fn=record_job)


@pytest.mark.parametrize(
    "bad", [dict(time=0), dict(cpus_per_task=0), dict(gpus_per_node=-1), dict(mem_gb=0)]
)
def test_slurm_config_rejects(bad):
    with pytest.raises(ModescapeError, match=next(iter(bad))):
        SlurmConfig(**bad)


def test_serial_failure_is_reported_then_retried(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    res = run_members(a, [0, 1, 2], "serial", job_fn=record_job)
    assert not res.ok and res.finished == [0, 2]
    assert res.failed == {1: "RuntimeError: member 1 fails on its first try"}
    res = run_members(b, [0, 1, 2], "serial", retries=1, job_fn=record_job)
    assert res.ok and res.finished == [0, 1, 2]
    assert res.attempts == {0: 1, 1: 2, 2: 1}


def test_local_pool_survives_a_dead_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("MODESCAPE_TEST_CRASH", "1")  # inherited by the spawned workers
    res = run_members(tmp_path, [0, 1, 2, 3], "local", workers=2, retries=1, job_fn=record_job)
    assert res.ok, res.failed
    # The crash breaks the pool: member 2 and whatever was queued or running with it run again.
    assert res.attempts[2] == 2 and set(res.attempts.values()) <= {1, 2}
    infos = [json.loads((tmp_path / f"done{m}.json").read_text()) for m in range(4)]
    threads = max(1, (os.cpu_count() or 1) // 2)
    for info in infos:
        assert info["pid"] != os.getpid()
        if not torch.cuda.is_available():
            assert (info["device"], info["threads"], info["torch"]) == ("cpu", threads, threads)


def test_worker_devices():
    if torch.cuda.is_available():
        devices, _ = worker_devices(3)
        n = torch.cuda.device_count()
        assert devices == [f"cuda:{k % n}" for k in range(3)]
    else:
        assert worker_devices(2) == (["cpu", "cpu"], max(1, (os.cpu_count() or 1) // 2))
    assert worker_devices(2, "cpu", threads=3) == (["cpu", "cpu"], 3)


# ---- executors on a real run --------------------------------------------------------------------


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory) -> Path:
    """The reference: the tiny run trained serially with one thread per member."""
    d = tmp_path_factory.mktemp("serial") / "run"
    init_run(d, tiny_config())
    res = run_members(d, executor="serial", threads=1)
    assert res.ok and res.finished == [0, 1, 2]
    return d


def test_local_matches_serial_byte_for_byte(serial_run, tmp_path):
    d = tmp_path / "run"
    init_run(d, tiny_config())
    res = run_members(d, executor="local", workers=2, threads=1)  # same threads as serial
    assert res.ok and res.finished == [0, 1, 2]
    reference, local = member_files(serial_run), member_files(d)
    assert len(reference) == 3 * 3  # epochs 0, 1, 2 of each member
    assert local.keys() == reference.keys()
    for name in reference:
        assert local[name] == reference[name], name
    # A second launch finds everything finished and runs nothing.
    again = run_members(d, executor="local", workers=2)
    assert again.finished == [0, 1, 2] and again.attempts == {0: 0, 1: 0, 2: 0}


def test_status_without_a_scheduler(tmp_path):
    d = tmp_path / "run"
    init_run(d, tiny_config(members=2, epochs=1))
    run_members(d, [0], "serial", threads=1)
    rows = run_status(d)
    assert [(r["member"], r["state"], r["epoch"], r["job"]) for r in rows] == [
        (0, "finished", 1, None),
        (1, "pending", 0, None),
    ]
    table = format_status(rows).splitlines()
    assert len(table) == 3 and "finished" in table[1] and "pending" in table[2]
    assert load_run(d).member_status(0).state == "finished"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_local_workers_die_with_their_parent(tmp_path):
    """A worker set up like the local executor's is SIGKILLed when its parent dies."""
    child = (
        "import os, sys, time; from modescape.training.launch import die_with_parent;"
        "die_with_parent(int(sys.argv[1])); print(os.getpid(), flush=True); time.sleep(60)"
    )
    parent = (
        "import os, subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid())]);"
        "time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        # A killed child stays a zombie until init reaps it; a zombie counts as gone.
        stat = Path(f"/proc/{worker}/stat")
        if not stat.exists() or stat.read_text().split()[2] in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its parent")


def test_launch_completes_a_finish_that_a_kill_interrupted(tiny_run_copy):
    from modescape.store.manifest import seal
    from modescape.store.summary import verify_run

    f = tiny_run_copy / "manifest.json"
    manifest = json.loads(f.read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if "/m002/" not in k}
    f.write_text(json.dumps(seal(manifest)))
    result = run_members(tiny_run_copy, executor="serial")
    assert result.ok and result.attempts == {0: 0, 1: 0, 2: 1}
    assert verify_run(tiny_run_copy) == []
