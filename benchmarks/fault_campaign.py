"""The long fault-injection campaign: every file of a small run damaged every way, every kill point.

    python benchmarks/fault_campaign.py            # 454 cases, about 2 minutes on 2 cores
    python benchmarks/fault_campaign.py --no-kill  # files only (no subprocesses)

Categories: bit flips (ten positions per file), truncation, deletion, wrong shapes, foreign
formats (JSON, PNG, pickle, object .npy), a concurrent second writer, and a SIGKILL at every
named write point of `train` followed by a rerun. Each case asserts what tests/test_faults.py
and tests/training/test_killpoints.py assert (the same functions). Prints "N cases / N passed";
exits non-zero if any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / d) for d in ("", "training", "studies")]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_cases  # noqa: E402  (the bad-input cases of issue #24)

MAX_KILLS_PER_STUDY = 10  # write points killed per study, evenly spaced (first and last included)


def file_cases(run: Path) -> list:
    from test_faults import FAULTS, Case, flip_at

    for i in range(10):  # ten bit positions per file in the long version
        FAULTS[f"flip-{i / 10:.1f}"] = flip_at(i / 10 + 0.05)
    files = sorted(
        str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.name[0] != "."
    )
    return [Case(rel, fault) for rel in files for fault in FAULTS]


def concurrent_writer_case(run: Path, work: Path) -> None:
    """A second trainer of a member another process is training is refused, nothing changes."""
    import fcntl

    from modescape.errors import ModescapeError
    from modescape.training.trainer import train_member

    copy = work / "run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    info = json.loads((copy / "members/m000/member.json").read_text())
    with open(copy / "members/m000/.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            (copy / "members/m000/member.json").unlink()  # so the trainer would train
            train_member(copy, 0)
        except ModescapeError as e:
            assert "being trained by another process" in str(e)
        else:
            raise AssertionError("a second writer was not refused")
    assert info["state"] == "finished"


def kill_case(kill_at: str, reference: Path, work: Path) -> None:
    from test_killpoints import outputs, run_killed, small_config

    from modescape.store.run import load_run
    from modescape.store.summary import verify_run
    from modescape.training.trainer import train

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg_file = work / "config.json"
    cfg_file.write_text(json.dumps(small_config().to_dict()))
    out = work / "run"
    assert run_killed(out, kill_at, cfg_file) == -signal.SIGKILL, f"not killed at {kill_at}"
    train(small_config(), out, device="cpu")
    assert verify_run(out) == [], verify_run(out)
    assert load_run(out).finished_members() == [0, 1]
    assert outputs(out) == outputs(reference)


def study_file_cases(run: Path) -> list:
    """The quick faults of every output file of the four studies (their resumption rows aside)."""
    from test_faults import QUICK, STUDY_FOLDERS, Case

    files = sorted(
        str(p.relative_to(run))
        for folder in STUDY_FOLDERS
        for p in (run / folder).rglob("*")
        if p.is_file() and p.name[0] != "." and "rows" not in p.parts
    )
    return [Case(rel, fault) for rel in files for fault in QUICK]


def report_refuses_case(run: Path, pattern: str, work: Path) -> None:
    """A flipped byte in one study output: `report` exits 2 with one line naming the file."""
    from conftest import cli
    from test_killpoints_studies import flip

    copy = work / "run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    target = next(copy.glob(pattern))
    flip(target)
    code, _, err = cli("report", str(copy))
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and str(target) in last, err


def study_kill_points(stages) -> list[tuple[str, str]]:
    """(study, MODESCAPE_KILL_AT) for up to MAX_KILLS_PER_STUDY writes of each study, then its
    summary and manifest points (the report: its index)."""
    from test_killpoints_studies import STUDIES

    out = []
    for study in STUDIES:
        names = stages.points[study]
        n = sum(name.endswith(".write") for name in names)
        k = 3 if study == "report" else MAX_KILLS_PER_STUDY  # a report case takes ~1 min
        picks = sorted({round(1 + i * (n - 1) / (k - 1)) for i in range(k)})
        out += [(study, f"{study}.write@{k}") for k in picks if k <= n]
        ends = ("index",) if study == "report" else ("summary", "manifest")
        out += [(study, f"{study}.{end}") for end in ends]
    return out


def full_disk_cases(run: Path, tmp: Path) -> list[tuple[str, Callable[[], None]]]:
    import test_faults as tf

    return [
        ("full disk: train", lambda: tf.full_disk_train(tmp / "d1")),
        ("full disk: analyze", lambda: tf.full_disk_study(run, tmp / "d2", "analyze")),
        ("full disk: report", lambda: tf.full_disk_study(run, tmp / "d3", "report")),
        ("full disk: rerun of analyze", lambda: tf.full_disk_rerun(run, tmp / "d4")),
    ]  # fmt: skip


def run_case(name: str, fn: Callable[[], None], failures: list[str], skipped: list[str]) -> bool:
    import pytest

    try:
        fn()
    except pytest.skip.Exception as e:
        skipped.append(f"{name}: {e}")
        return True
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        failures.append(f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-kill", action="store_true", help="skip the kill-point cases")
    parser.add_argument(
        "--only-robust", action="store_true",
        help="only the bad-input cases of issue #24 (benchmarks/robust_cases.py)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ["MODESCAPE_CACHE"] = str(tmp / "cache")
        import torch

        torch.set_num_threads(1)
        from test_faults import BAD_VALUES, check_bad_value, check_case
        from test_killpoints import KILL_POINTS, small_config
        from test_killpoints_studies import DAMAGED, build_stages, kill_and_rerun

        from modescape.training.trainer import train

        run = tmp / "reference"
        train(small_config(), run, device="cpu")
        stages = build_stages(tmp / "stages")
        studied = stages.after("shift")  # every study's results, no report yet
        robust = robust_cases.cases(tmp / "robust", run, stages.after("report"))
        if args.only_robust:
            return _run_all(robust)
        cases: list[tuple[str, Callable[[], None]]] = [
            (c.name, lambda c=c: check_case(run, c, tmp / "work")) for c in file_cases(run)
        ]
        cases += [
            (c.name, lambda c=c: check_case(studied, c, tmp / "work"))
            for c in study_file_cases(studied)
        ]
        cases += [
            (f"report refuses {p}", lambda p=p: report_refuses_case(studied, p, tmp / "work"))
            for p in DAMAGED
        ]
        cases += [
            (f"bad value: {' '.join(a)}", lambda a=a, w=w: check_bad_value(run, a, w, tmp / "work"))
            for a, w in BAD_VALUES
        ]
        cases += full_disk_cases(run, tmp)
        cases.append(("concurrent writer", lambda: concurrent_writer_case(run, tmp / "work")))
        cases += robust
        if not args.no_kill:
            cases += [
                (f"kill at {k}", lambda k=k: kill_case(k, run, tmp / "kill")) for k in KILL_POINTS
            ]
            cases += [
                (f"kill {s} at {k}", lambda s=s, k=k: kill_and_rerun(stages, s, k, tmp / "kill"))
                for s, k in study_kill_points(stages)
            ]
        return _run_all(cases)


def _run_all(cases: list[tuple[str, Callable[[], None]]]) -> int:
    failures: list[str] = []
    skipped: list[str] = []
    tick = time.perf_counter()
    passed = sum(run_case(name, fn, failures, skipped) for name, fn in cases)
    for f in failures:
        print(f"FAILED {f}")
    for s in skipped:
        print(f"skipped (counted as passed: nothing to check here) {s}")
    print(f"{len(cases)} cases / {passed} passed ({time.perf_counter() - tick:.0f} s)")
    return 0 if passed == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
