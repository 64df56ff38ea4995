"""The long fault-injection campaign: every file of a small run damaged every way, every kill point.

    python benchmarks/fault_campaign.py            # 454 cases, about 2 minutes on 2 cores
    python benchmarks/fault_campaign.py --no-kill  # files only (no subprocesses)

Categories: bit flips (ten positions per file), truncation, deletion, wrong shapes, foreign
formats (JSON, PNG, pickle, object .npy), a concurrent second writer, and a SIGKILL at every
named write point of `train` followed by a rerun. Each case asserts what tests/test_faults.py
and tests/train/test_killpoints.py assert (the same functions). Prints "N cases / N passed";
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "train")]


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
    from modescape.train.trainer import train_member

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

    from modescape.store.run import load_run, verify_run
    from modescape.train.trainer import train

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


def run_case(name: str, fn: Callable[[], None], failures: list[str]) -> bool:
    try:
        fn()
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        failures.append(f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-kill", action="store_true", help="skip the kill-point cases")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ["MODESCAPE_CACHE"] = str(tmp / "cache")
        from test_faults import check_case
        from test_killpoints import KILL_POINTS, small_config

        from modescape.train.trainer import train

        run = tmp / "reference"
        train(small_config(), run, device="cpu")
        cases: list[tuple[str, Callable[[], None]]] = [
            (c.name, lambda c=c: check_case(run, c, tmp / "work")) for c in file_cases(run)
        ]
        cases.append(("concurrent writer", lambda: concurrent_writer_case(run, tmp / "work")))
        if not args.no_kill:
            cases += [
                (f"kill at {k}", lambda k=k: kill_case(k, run, tmp / "kill")) for k in KILL_POINTS
            ]
        failures: list[str] = []
        tick = time.perf_counter()
        passed = sum(run_case(name, fn, failures) for name, fn in cases)
    for f in failures:
        print(f"FAILED {f}")
    print(f"{len(cases)} cases / {passed} passed ({time.perf_counter() - tick:.0f} s)")
    return 0 if passed == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
