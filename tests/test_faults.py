"""Fault injection: every file type of a run damaged in every way we know, then read.

For each case: `modescape verify` and `modescape info` exit non-zero with no traceback; a
verified read of the file is one ModescapeError naming it; a trusted read (`trust=True`) either
succeeds or is one ModescapeError, never another exception. `benchmarks/fault_campaign.py` runs
the long version of the same cases (every file, many bit positions, every kill point).
"""

from __future__ import annotations

import contextlib
import io
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import cli, tiny_config

from modescape.errors import ModescapeError
from modescape.store.files import save_npy, save_safetensors
from modescape.store.run import Run, load_run
from modescape.store.summary import verify_run

Reader = Callable[[Run], Any]


def _member_reader(rel: str) -> Reader | None:
    """How a command reads the file at `rel` (None: only the trainer or verify reads it)."""
    parts = rel.split("/")
    if parts[0] in STUDY_FOLDERS:
        return lambda r: read_study_file(r, rel)
    if rel.startswith("labels/"):
        return lambda r: r.labels(Path(rel).stem)
    if rel in ("manifest.json", "config.json"):
        return lambda r: r.verify()
    m = int(parts[1][1:])
    name = parts[-1]
    if name == "member.json":
        return lambda r: r.member_info(m)
    if name == "metrics.jsonl":
        return lambda r: r.metrics(m)
    epoch = int(Path(name).stem[1:]) if name.startswith("e") else None
    if parts[2] == "snapshots":
        return lambda r: r.state_dict(m, epoch)
    if parts[2] == "preds":
        return lambda r: r.predictions(parts[3], m, epoch)
    return None


STUDY_FOLDERS = ("analysis", "subspace", "landscape", "shift")


def read_study_file(run: Run, rel: str) -> Any:
    """A study output read as the report and the studies read it (verified, then decoded)."""
    from modescape.store.files import read_csv, read_json

    if rel.endswith(".npy"):
        return run.read_npy(rel)
    if rel.endswith("/summary.json"):
        return run.study(rel.split("/")[0])
    if rel.endswith(".json"):
        return read_json(run.verified(run.path / rel))
    return read_csv(run.verified(run.path / rel))


# Bad values on the command line: refused with one line naming the flag, before anything is
# allocated or written. (argv, what the message must contain)
BAD_VALUES = (
    (["landscape", "--grid", "100000"], "--grid"),
    (["landscape", "--margin", "nan"], "--margin"),
    (["landscape", "--margin", "inf"], "--margin"),
    (["landscape", "--path", "m0,foo"], "unknown anchor 'foo'"),
    (["landscape", "--path", "m0,m9"], "member 9 is not a finished member"),
    (["landscape", "--path", "m0@e99,m1"], "no snapshot at epoch 99"),
    (["landscape", "--path-points", "100000"], "--path-points"),
    (["shift", "--severities", "1-1000000000"], "--severities"),
    (["shift", "--severities", "0,6"], "severities"),
    (["shift", "--max-examples", "-5"], "--max-examples"),
    (["shift", "--max-examples", "0"], "--max-examples"),
    (["shift", "--max-examples", "1000000"], "--max-examples"),
    (["shift", "--subspace-samples", "100000000"], "--subspace-samples"),
    (["analyze", "--seed", "-1"], "--seed"),
    (["analyze", "--tsne-perplexity", "nan"], "perplexity"),
    (["analyze", "--max-subsets", "0"], "--max-subsets"),
    (["subspace", "--samples", "100000000"], "n_samples"),
    (["subspace", "--random-scale", "inf"], "random"),
)


def check_bad_value(source: Path, argv: list[str], what: str, work: Path) -> None:
    """The command on a copy of the run: exit 2, one line naming `what`, nothing written."""
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(source, run_dir)
    before = sorted(p.name for p in run_dir.iterdir())
    code, _, err = cli(*argv, str(run_dir))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert what in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == before  # no results folder started
    assert verify_run(run_dir) == []


# ---- faults: each takes the file's path and damages it ------------------------------------------


def flip_at(fraction: float) -> Callable[[Path], None]:
    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[min(len(data) - 1, int(len(data) * fraction))] ^= 0x10
        path.write_bytes(bytes(data))

    return flip


def truncate_to(fraction: float) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])


def delete(path: Path) -> None:
    path.unlink()


def foreign(kind: str) -> Callable[[Path], None]:
    """Replace the file with a well-formed file of another format."""

    def write(path: Path) -> None:
        if kind == "json":
            path.write_text('[{"not": "this file"}]\n')
        elif kind == "png":
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
        elif kind == "pickle":
            path.write_bytes(pickle.dumps({"a": np.zeros(3)}))
        else:  # an .npy holding pickled objects
            buf = io.BytesIO()
            np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            path.write_bytes(buf.getvalue())

    return write


def wrong_shape(path: Path) -> None:
    """The same format with the wrong content shape."""
    if path.suffix == ".npy":
        save_npy(path, np.zeros((7,), np.float32))
    elif path.suffix == ".safetensors":
        save_safetensors(path, {"head.weight": torch.zeros(3, 3)})
    elif path.suffix == ".jsonl":
        path.write_text('{"epoch": 0}\n[1, 2]\n')
    else:
        path.write_text("[]\n")


FAULTS: dict[str, Callable[[Path], None]] = {
    "flip-start": flip_at(0.02),
    "flip-middle": flip_at(0.5),
    "flip-end": flip_at(1.0),
    "truncate-half": truncate_to(0.5),
    "truncate-empty": truncate_to(0.0),
    "delete": delete,
    "foreign-json": foreign("json"),
    "foreign-png": foreign("png"),
    "foreign-pickle": foreign("pickle"),
    "foreign-npy-object": foreign("npy-object"),
    "wrong-shape": wrong_shape,
}
FILES = (
    "members/m001/snapshots/e0002.safetensors",
    "members/m001/preds/test/e0001.npy",
    "labels/test.npy",
    "members/m000/metrics.jsonl",
    "members/m000/member.json",
    "members/m001/resume.safetensors",
    "manifest.json",
    "config.json",
)
QUICK = ("flip-middle", "truncate-half", "delete", "foreign-json", "wrong-shape")


@dataclass(frozen=True)
class Case:
    rel: str
    fault: str

    @property
    def name(self) -> str:
        return f"{self.rel}:{self.fault}"


def check_case(source: Path, case: Case, work: Path) -> None:
    """Damage a copy of the run at `source` and assert every reader reports it clearly."""
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(source, run_dir)
    FAULTS[case.fault](run_dir / case.rel)
    problems = verify_run(run_dir)
    assert problems, f"{case.name}: verify found nothing"
    for command in ("verify", "info"):
        code, _, err = cli(command, str(run_dir))
        assert code != 0, f"{case.name}: `modescape {command}` exited 0"
        assert "Traceback" not in err and err.count("\n") <= 1, err
    reader = _member_reader(case.rel)
    if reader is None:
        return
    name = Path(case.rel).name
    if case.fault == "delete" and name == "member.json":  # rebuilt from the files on disk
        info = reader(load_run(run_dir))
        assert info.state == "interrupted" and "member.json was lost" in (info.reason or "")
        return
    with pytest.raises(ModescapeError) as e:
        reader(load_run(run_dir))
    assert name in str(e.value) or case.rel in str(e.value), f"{case.name}: {e.value}"
    with contextlib.suppress(ModescapeError):  # trusted reads: a value or one clear error
        reader(load_run(run_dir, trust=True))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    from modescape.training.trainer import train

    out = tmp_path_factory.mktemp("faults") / "run"
    train(tiny_config(members=2, epochs=2, **{"data.mnist1d_samples": 400}), out, device="cpu")
    assert verify_run(out) == []
    return out


@pytest.mark.parametrize("rel", FILES)
@pytest.mark.parametrize("fault", QUICK)
def test_damaged_file_is_reported_clearly(small_run, tmp_path, rel, fault):
    check_case(small_run, Case(rel, fault), tmp_path)


@pytest.mark.parametrize("argv, what", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_study_values_are_one_line_before_anything_is_written(small_run, tmp_path, argv, what):
    check_bad_value(small_run, argv, what, tmp_path)


def test_failed_start_leaves_no_run_directory(tmp_path):
    from PIL import Image

    root = tmp_path / "one-class"
    for split in ("train", "test"):
        (root / split / "cat").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / split / "cat" / "0.png")
    out = tmp_path / "run"
    code, _, err = cli("train", "--data", "folder", "--root", str(root), "--out", str(out))
    assert code == 2 and "at least 2" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".run.creating-*"))


@pytest.mark.parametrize(
    "out, what",
    [
        ("{file}/run", "{file} is a file, not a directory"),
        ("{tmp}/" + "n" * 300, "file name too long"),
    ],
)
def test_os_errors_are_one_line(tmp_path, out, what):
    f = tmp_path / "a-file"
    f.write_text("x")
    out, what = (s.format(file=f, tmp=tmp_path) for s in (out, what))
    code, _, err = cli("train", "--members", "1", "--epochs", "1", "--out", out)
    assert code == 2 and err.startswith("modescape: error: ") and err.count("\n") == 1
    assert what in err and "Traceback" not in err
    assert f.read_text() == "x"


def test_analyze_refuses_a_flipped_snapshot_byte(small_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir)
    flip_at(0.7)(run_dir / "members/m001/snapshots/e0002.safetensors")
    code, _, err = cli("analyze", str(run_dir))
    assert code == 2 and "checksum mismatch" in err and "m001/snapshots/e0002" in err
    assert not (run_dir / "analysis/summary.json").exists()


def test_a_folder_that_gained_images_between_members_is_refused(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"

    def add_images(n: int, start: int = 0) -> None:
        for split in ("train", "test"):
            for k in range(start, start + n):
                p = root / split / ("cat", "dog")[k % 2] / f"{k}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), (k * 20 % 256, 0, 0)).save(p)

    add_images(8)
    out = str(tmp_path / "run")
    flags = ("--data", "folder", "--root", str(root), "--members", "2", "--epochs", "1")
    assert cli("train", *flags, "--out", out, "--member", "0")[0] == 0
    add_images(2, start=8)
    code, _, err = cli("train", *flags, "--out", out, "--member", "1")
    assert code == 2 and "dataset changed" in err and "source_sha256" in err
    assert not (tmp_path / "run/members/m001/snapshots").exists()


# ---- a full disk: one clear line, nothing already written damaged -------------------------------
@contextlib.contextmanager
def small_tmpfs(where: Path, size_bytes: int):
    """A tmpfs of `size_bytes` mounted at `where` (skips where mounting is not allowed)."""
    import subprocess

    where.mkdir(parents=True)
    size = f"size={-(-size_bytes // 4096) * 4}k"
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(where)], capture_output=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not allowed here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path, leave: int) -> Path:
    """Fill the file system of `where` up to `leave` free bytes; return the filler file."""
    import os

    st = os.statvfs(where)
    filler = where / "filler"
    filler.write_bytes(bytes(max(0, st.f_bavail * st.f_frsize - leave)))
    return filler


def _size(folder: Path) -> int:
    return sum(p.stat().st_size + 4096 for p in folder.rglob("*") if p.is_file())


def _full_disk_error(code: int, err: str) -> None:
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err
    assert last.startswith("modescape: error: no space left on device: "), last


def _consistent(run: Path) -> None:
    """Nothing the manifest records was damaged; summary.json files match it."""
    from modescape.store.files import sha256_file

    problems = verify_run(run)
    assert not [p for p in problems if "checksum mismatch" in p], problems
    recorded = load_run(run).manifest.files
    for summary in run.glob("*/summary.json"):
        rel = str(summary.relative_to(run))
        assert recorded.get(rel) == sha256_file(summary), rel


def test_train_on_a_full_disk_is_one_line_and_resumes_once_space_is_freed(tmp_path):
    full_disk_train(tmp_path)


def full_disk_train(tmp_path: Path) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "config.json"
    cfg.write_text(tiny_config(members=2, epochs=2, **{"data.mnist1d_samples": 400}).to_json())
    with small_tmpfs(tmp_path / "disk", 4 << 20) as disk:
        filler = fill(disk, 48 << 10)  # room for the run's creation, not for its snapshots
        code, _, err = cli("train", "--config", str(cfg), "--out", str(disk / "run"))
        _full_disk_error(code, err)
        if (disk / "run").exists():
            _consistent(disk / "run")
        filler.unlink()
        assert cli("train", "--config", str(cfg), "--out", str(disk / "run"))[0] == 0
        assert verify_run(disk / "run") == []


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_a_study_or_report_on_a_full_disk_damages_nothing(small_run, tmp_path, command):
    full_disk_study(small_run, tmp_path, command)


def full_disk_study(small_run: Path, tmp_path: Path, command: str) -> None:
    analyze = ("analyze", "--tsne-iter", "250")
    with small_tmpfs(tmp_path / "disk", _size(small_run) + (8 << 20)) as disk:
        run = disk / "run"
        shutil.copytree(small_run, run)
        if command == "report":
            assert cli(*analyze, str(run))[0] == 0
        fill(disk, 24 << 10)
        code, _, err = cli(*analyze, str(run)) if command == "analyze" else cli("report", str(run))
        _full_disk_error(code, err)
        _consistent(run)
        assert verify_run(run) == []
        assert command == "report" or not (run / "analysis/summary.json").exists()


def test_a_rerun_of_a_study_on_a_full_disk_keeps_summary_and_manifest_consistent(
    small_run, tmp_path
):
    full_disk_rerun(small_run, tmp_path)


def full_disk_rerun(small_run: Path, tmp_path: Path) -> None:
    analyze = ("analyze", "--tsne-iter", "250")
    with small_tmpfs(tmp_path / "disk", _size(small_run) + (8 << 20)) as disk:
        run = disk / "run"
        shutil.copytree(small_run, run)
        assert cli(*analyze, str(run))[0] == 0
        filler = fill(disk, 0)
        code, _, err = cli(*analyze, "--seed", "1", str(run))
        _full_disk_error(code, err)
        _consistent(run)  # the earlier results, or none: never a summary of changed files
        assert verify_run(run) == []
        filler.unlink()
        assert cli(*analyze, "--seed", "1", str(run))[0] == 0
        assert verify_run(run) == []
