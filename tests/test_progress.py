"""Progress of long stages: log lines with an ETA where stderr is not a terminal."""

from __future__ import annotations

import logging
import types

from modescape.progress import Progress, duration
from tests.conftest import cli


class Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_lines_every_tenth_or_thirty_seconds_with_an_eta(caplog):
    caplog.set_level(logging.INFO, logger="modescape.progress")
    # 100 units of 1 s each: a line per 10 units (10 s < 30 s), none in the first 5 s
    with Progress(100, "stage", "units", bar=False, clock=Clock(1.0)) as p:
        for _ in range(100):
            p.update()
    lines = [r.getMessage() for r in caplog.records]
    # ETA: 10 units took 10 s, 90 are left
    assert lines[0] == "stage: 10/100 units (10%), 10s elapsed, ETA 1m30s"
    assert lines[8] == "stage: 90/100 units (90%), 1m30s elapsed, ETA 10s"
    assert len(lines) == 10 and lines[-1] == "stage: done, 100 units in 1m41s"
    # slow units of 70 s: every update is past 30 s, every one is logged (999 x 70 s left)
    caplog.clear()
    with Progress(1000, "slow", bar=False, clock=Clock(70.0)) as p:
        for _ in range(3):
            p.update()
    assert [r.getMessage() for r in caplog.records][:3] == [
        "slow: 1/1000 steps (0%), 1m10s elapsed, ETA 19h25m",
        "slow: 2/1000 steps (0%), 2m20s elapsed, ETA 19h24m",
        "slow: 3/1000 steps (0%), 3m30s elapsed, ETA 19h23m",
    ]


def test_short_stages_stay_quiet(caplog):
    caplog.set_level(logging.INFO, logger="modescape.progress")
    with Progress(10, "quick", bar=False, clock=Clock(0.1)) as p:
        for _ in range(10):
            p.update()
    assert caplog.records == []
    assert duration(59.6) == "1m00s" and duration(3725) == "1h02m" and duration(-1) == "0s"


def test_a_long_shift_stage_logs_its_progress_to_a_redirected_stderr(tiny_run_copy,
                                                                     monkeypatch):  # fmt: skip
    """`modescape shift` under nohup: stderr is a file, no bar draws; a clock that advances
    40 s per reading makes the sweep last minutes."""
    import modescape.progress as progress

    clock = Clock(40.0)
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=clock))
    code, _, err = cli("shift", str(tiny_run_copy), "--corruptions",
                       "gaussian_noise,impulse_noise", "--severities", "1-3",
                       "--max-examples", "50")  # fmt: skip
    assert code == 0, err
    lines = [x for x in err.splitlines() if "dataset shift: " in x and "ETA" in x]
    assert lines, err
    assert "settings (corruption x severity)" in lines[0] and "/7 " in lines[0]
    assert any("dataset shift: done, 7 settings" in x for x in err.splitlines())
