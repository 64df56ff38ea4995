"""Progress of a long stage: a tqdm bar on a terminal, log lines with an ETA everywhere else.

Under `nohup`, SLURM or any redirected stderr a progress bar draws nothing useful, and a stage
of half an hour would otherwise be silent. `Progress` counts the units done toward a total; when
stderr is not a terminal it logs one INFO line (through `logging`, the one message path) each
time another tenth of the work is done or `every_s` seconds have passed since the last line,
whichever comes first, and nothing at all during a stage's first `quiet_s` seconds (so the
seconds-long stages of the MNIST-1D demo stay quiet). The line says what, how far, for how long
and the ETA: `dataset shift: 120/425 evaluations (28%), 4m10s elapsed, ETA 10m42s`.

Imports nothing from the package: every layer may use it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

_log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """`42s`, `4m10s`, `1h02m`: a short, readable duration."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """`total` units of work named `desc` (see the module docstring).

    bar: True / False forces the tqdm bar on or off; None (default) shows it only when stderr is
    a terminal, and logs lines otherwise. `clock` is injectable for tests.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "steps",
        *,
        logger: logging.Logger | None = None,
        bar: bool | None = None,
        every_s: float = 30.0,
        step: float = 0.1,
        quiet_s: float = 5.0,
        clock: Callable[[], float] | None = None,
    ):
        clock = clock or (lambda: time.monotonic())  # looked up per call: tests replace it
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.logger = logger or _log
        self.every_s, self.step, self.quiet_s, self.clock = every_s, step, quiet_s, clock
        self.done = 0
        self.start = self.last_line = clock()
        self.tenths = max(1, round(1 / step))  # boundaries in whole units: no float drift
        self.next_mark = 1
        show_bar = sys.stderr.isatty() if bar is None else bar
        self._bar: Any = None
        if show_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, leave=False)

    def update(self, n: int = 1) -> None:
        """`n` more units done."""
        self.done = min(self.total, self.done + int(n)) if self.total else self.done + int(n)
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        mark = self.done * self.tenths // self.total if self.total else 0
        crossed = mark >= self.next_mark
        self.next_mark = max(self.next_mark, mark + 1)
        if now - self.start < self.quiet_s or self.done >= self.total:
            return
        if crossed or now - self.last_line >= self.every_s:
            self.last_line = now
            self.logger.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """The progress line as it is logged."""
        elapsed = (self.clock() if now is None else now) - self.start
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {duration(elapsed)} elapsed"
        if self.done and self.total:
            text += f", ETA {duration(elapsed * (self.total - self.done) / self.done)}"
        return text

    def close(self) -> None:
        """End the stage: the bar closes; a stage that logged lines logs its total time."""
        if self._bar is not None:
            self._bar.close()
            return
        elapsed = self.clock() - self.start
        if elapsed >= self.quiet_s and self.last_line != self.start:
            self.logger.info("%s: done, %s %s in %s", self.desc, self.done, self.unit,
                             duration(elapsed))  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
