"""A SIGKILL at every named write point of `analyze`, `subspace`, `landscape`, `shift` and
`report`, then a rerun: complete, verified output equal to an uninterrupted run's.

Kill points come from MODESCAPE_KILL_AT (`store.files.killpoint`), not timing: "<study>.write@N"
before the N-th file a study writes, "<study>.summary" before its summary, "<study>.manifest"
between the manifest update and the summary's rename; "report.write@N" and "report.index".
The studies run in the order `modescape run` uses, each on a copy of the run as the previous
one left it, so a case kills one study and reruns it. `benchmarks/fault_campaign.py` runs every
write point; here a few per study (one of each unmarked, the rest `slow`).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, tiny_config

from modescape.store.summary import verify_run

# Each study's command line: small enough for a few seconds per call on 2 shared cores.
_COMMAND_LINES = {
    "analysis": "analyze --tsne-iter 250",
    "subspace": "subspace --methods random,diagonal --samples 3 --snapshots 2 --rank 1",
    "landscape": "landscape --grid 3 --path-points 3 --max-examples 60",
    "shift": "shift --severities 1-2 --max-examples 60 --corruptions gaussian_noise,translation",
    "report": "report",
}
COMMANDS = {study: line.split() for study, line in _COMMAND_LINES.items()}
STUDIES = tuple(COMMANDS)
# Values that differ between two equal runs: wall-clock times and the run's own path.
_VOLATILE_KEYS = ("timings_s", "time_s", "elapsed_s", "created")
# Symbolic kill points, resolved against the reference's sequence of write points.
QUICK = {"analysis": "summary", "subspace": "write-middle", "landscape": "after-plane"}
QUICK |= {"shift": "manifest", "report": "index"}


def run_cli_killed(run: Path, study: str, kill_at: str) -> int:
    """The study's command in a fresh interpreter that SIGKILLs itself at `kill_at`."""
    code = (
        "import sys, torch; torch.set_num_threads(1); from modescape.cli import main;"
        "sys.exit(main(sys.argv[1:]))"
    )
    env = os.environ | {"MODESCAPE_KILL_AT": kill_at, "OMP_NUM_THREADS": "1"}
    args = [*COMMANDS[study], str(run)]
    return subprocess.run([sys.executable, "-c", code, *args], env=env).returncode


def record_write_points(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch every module's `killpoint` to record the names reached, in order."""
    import modescape.report.html as html
    import modescape.store.files as files
    import modescape.store.manifest as manifest

    seen: list[str] = []
    for module in (files, manifest, html):
        monkeypatch.setattr(module, "killpoint", seen.append)
    return seen


def study_folder(study: str) -> str:
    return "report" if study == "report" else study


def outputs(run: Path, study: str) -> dict[str, object]:
    """The study's outputs, comparable across equal runs: arrays, CSV rows and JSON with the
    run path and timings taken out (the report: its tables and the files it wrote)."""
    root = run / study_folder(study)
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if not p.is_file() or p.name.startswith(".") or "/rows/" in f"/{rel}":
            continue
        if study == "report" and p.suffix != ".csv":
            out[rel] = None  # figures embed dates; that they exist is what counts
        elif p.suffix == ".npy":
            out[rel] = np.load(p)
        elif p.suffix == ".csv":
            out[rel] = list(csv.reader(p.read_text().replace(str(run), "<run>").splitlines()))
        elif p.suffix == ".json":
            out[rel] = _strip(json.loads(p.read_text().replace(str(run), "<run>")))
    return out


def _strip(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in _VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def assert_same_outputs(got: dict[str, object], expected: dict[str, object]) -> None:
    assert sorted(got) == sorted(expected)
    for rel, value in expected.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(got[rel], value, rtol=1e-6, atol=1e-7, err_msg=rel)
        else:
            assert got[rel] == value, rel


class Stages:
    """Copies of the run after each study (stage[s] = after study s), and the write points each
    study reached, from one uninterrupted pass."""

    def __init__(self, root: Path):
        self.root = root
        self.points: dict[str, list[str]] = {}

    def before(self, study: str) -> Path:
        i = STUDIES.index(study)
        return self.root / ("trained" if i == 0 else STUDIES[i - 1])

    def after(self, study: str) -> Path:
        return self.root / study

    def kill_point(self, study: str, where: str) -> str:
        """A symbolic kill point (`wheres`) as MODESCAPE_KILL_AT, e.g. "landscape.write@9"."""
        names = self.points[study]
        writes = [i for i, n in enumerate(names) if n.endswith(".write")]
        if where in ("summary", "manifest", "index"):
            return f"{study}.{where}"
        if where == "after-plane":  # the first write after a finished plane (its anchors.json)
            plane = next(self.after(study).glob("landscape/planes/*"))
            done = [p for p in plane.iterdir() if p.is_file() and p.name != "settings.json"]
            n = len(done) + 1
        else:
            n = {"write-first": 1, "write-middle": len(writes) // 2, "write-last": len(writes)}[
                where
            ]
        return f"{names[writes[0]]}@{n}"


def build_stages(root: Path) -> Stages:
    """Train the tiny run under `root` and run every study on it, keeping a copy per stage."""
    from modescape.training.trainer import train

    train(tiny_config(members=2, epochs=3, **{"data.mnist1d_samples": 400}), root / "trained")
    stages = Stages(root)
    previous = root / "trained"
    for study in STUDIES:
        shutil.copytree(previous, stages.after(study))
        with pytest.MonkeyPatch.context() as mp:
            seen = record_write_points(mp)
            code, _, err = cli(*COMMANDS[study], str(stages.after(study)))
        assert code == 0, err
        stages.points[study] = seen
        previous = stages.after(study)
    return stages


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> Stages:
    return build_stages(tmp_path_factory.mktemp("stages"))


def test_every_study_names_its_write_points(stages):
    for study in STUDIES:
        names = set(stages.points[study])
        folder = study_folder(study)
        expected = {f"{folder}.write", f"{folder}.index"} if study == "report" else None
        expected = expected or {f"{folder}.write", f"{folder}.summary", f"{folder}.manifest"}
        assert names == expected, (study, names)


def wheres(study: str) -> tuple[str, ...]:
    if study == "report":
        return ("write-first", "write-last", "index")
    extra = ("after-plane",) if study == "landscape" else ()
    return ("write-first", "write-middle", "write-last", *extra, "summary", "manifest")


CASES = [
    pytest.param(s, w, marks=() if QUICK[s] == w else pytest.mark.slow, id=f"{s}-{w}")
    for s in STUDIES
    for w in wheres(s)
]


@pytest.mark.parametrize("study, where", CASES)
def test_kill_a_study_at_a_write_point_then_rerun(stages, tmp_path, study, where):
    kill_and_rerun(stages, study, stages.kill_point(study, where), tmp_path)


def kill_and_rerun(stages: Stages, study: str, kill_at: str, work: Path) -> None:
    """Kill `study` at `kill_at` on a copy of the run before it, rerun it, compare."""
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(stages.before(study), run)
    assert run_cli_killed(run, study, kill_at) == -signal.SIGKILL, f"not killed at {kill_at}"
    code, _, err = cli(*COMMANDS[study], str(run))
    assert code == 0, err
    assert verify_run(run) == []
    assert_same_outputs(outputs(run, study), outputs(stages.after(study), study))
    assert not [p for p in run.rglob("*.tmp") if re.search(r"\.\d+\.\w+\.tmp$", p.name)]
    if study != "report":
        recorded = {k for k in _manifest_files(run) if k.startswith(f"{study}/")}
        assert recorded == {k for k in _manifest_files(stages.after(study)) if k.startswith(study)}


def _manifest_files(run: Path) -> dict[str, str]:
    return json.loads((run / "manifest.json").read_text())["files"]


# ---- every study output is verified when read ----------------------------------------------------
def flip(path: Path, fraction: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * fraction)] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGED = (
    "analysis/functions/disagreement.npy",
    "analysis/summary.json",
    "subspace/plane.csv",
    "landscape/planes/*/loss.npy",
    "shift/metrics.csv",
    "shift/summary.json",
)


@pytest.mark.parametrize("pattern", DAMAGED)
def test_report_refuses_a_flipped_byte_in_any_study_output(stages, tmp_path, pattern):
    run = tmp_path / "run"
    shutil.copytree(stages.after("shift"), run)  # every study, no report yet
    target = next(run.glob(pattern))
    flip(target)
    code, _, err = cli("report", str(run))
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert last.startswith("modescape: error: checksum mismatch") and str(target) in last
    assert not (run / "report" / "index.html").exists()


@pytest.mark.parametrize(
    "study, pattern",
    [
        ("subspace", "subspace/preds/random/m000.npy"),
        ("landscape", "landscape/planes/*/accuracy.npy"),
        ("shift", "shift/preds/clean/s0/members.npy"),
    ],
)
def test_a_rerun_refuses_a_flipped_byte_in_the_cache_it_reuses(stages, tmp_path, study, pattern):
    run = tmp_path / "run"
    shutil.copytree(stages.after(study), run)
    target = next(run.glob(pattern))
    flip(target)
    summary = (run / study / "summary.json").read_bytes()
    code, _, err = cli(*COMMANDS[study], str(run))
    assert code == 2 and "checksum mismatch" in err and str(target) in err
    # Nothing new published: the earlier summary, or none (a study unpublishes its results
    # before its first write), never one describing changed files.
    f = run / study / "summary.json"
    assert not f.exists() or f.read_bytes() == summary
    assert [p for p in verify_run(run) if "checksum mismatch" in p] == [
        f"checksum mismatch {target.relative_to(run)}"
    ]
    code, _, err = cli(*COMMANDS[study], "--trust", str(run))  # the user vouches for it
    assert code == 0, err


def test_a_landscape_path_naming_a_missing_snapshot_is_refused_before_any_plane(stages, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stages.after("analysis"), run)
    for bad, message in (("m0,m7", "member 7 is not a finished member"), ("m0@e9,m1", "epoch 9")):
        code, _, err = cli(*COMMANDS["landscape"], "--path", bad, str(run))
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (run / "landscape").exists()


def test_shift_refuses_more_examples_than_the_run_has(stages, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stages.after("analysis"), run)
    code, _, err = cli("shift", "--max-examples", "1000000", str(run))
    assert code == 2 and "--max-examples" in err and "test examples" in err, err
    assert not (run / "shift").exists()


def test_report_of_an_incomplete_run_says_so(tmp_path):
    from modescape.report.base import ReportContext
    from modescape.report.html import render_html
    from modescape.store.run import load_run

    run = tmp_path / "run"
    cfg = tiny_config(members=2, epochs=2, **{"data.mnist1d_samples": 400})
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(cfg.to_json())
    assert cli("train", "--config", str(cfg_file), "--out", str(run), "--member", "0")[0] == 0
    assert cli("analyze", "--partial", "--tsne-iter", "250", str(run))[0] == 0
    ctx = ReportContext(load_run(run))
    assert (
        len(ctx.notices) == 1 and "incomplete" in ctx.notices[0] and "m1 pending" in ctx.notices[0]
    )
    assert f'<p class="notice">{ctx.notices[0]}</p>' in render_html(ctx, [], {})
