"""A time box shared by the stages of one run (``--max-minutes``).

The first piece of work in a run (a training run, a chunk of rows to score or answer) always starts, even with no
time left, so that every run moves the plan forward (a training run saves its state after its first step at the
latest, a chunk once done); later pieces start only while time is left.
"""

from __future__ import annotations

import time


class TimeBox:
    """``minutes`` from now (None: no limit)."""

    def __init__(self, minutes: float | None = None):
        self._end = None if minutes is None else time.perf_counter() + 60 * minutes
        self._worked = False

    def minutes_left(self) -> float | None:
        """Minutes until the end (never negative); None without a limit."""
        return None if self._end is None else max(0.0, (self._end - time.perf_counter()) / 60)

    @property
    def expired(self) -> bool:
        return self._end is not None and time.perf_counter() >= self._end

    def may_start(self) -> bool:
        """Whether another piece of work may start now."""
        return not (self._worked and self.expired)

    def started(self) -> None:
        """Record that a piece of work ran in this box."""
        self._worked = True
