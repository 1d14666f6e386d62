"""Time, injected: the only module that reads the wall or monotonic clock.

Everything that waits, times out or measures takes a `Clock`. Production code gets
`RealClock`; unit tests get `FakeClock`, which only moves when the test calls `step`,
and wakes sleepers whose deadline has passed (client-go's fake clock, trio's MockClock).
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """A source of time and a way to wait on it."""

    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""

    def wall(self) -> _dt.datetime:
        """Timezone-aware UTC wall time, for timestamps written to the API."""

    def sleep(self, seconds: float) -> None:
        """Block for `seconds` of this clock's time."""

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        """Wait until `event` is set or `seconds` pass; True iff the event was set."""


class RealClock:
    """The machine's clocks."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> _dt.datetime:
        return _dt.datetime.now(_dt.UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        return event.wait(seconds)


class FakeClock:
    """A clock that moves only when `step` or `set` is called.

    Sleepers and waiters block until the fake time passes their deadline (or, for
    `wait`, until their event is set). `has_waiters`/`wait_for_waiters` let a test
    know that the code under test has reached its sleep before it steps time.
    """

    def __init__(self, start: float = 1000.0,
                 wall_start: _dt.datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)
        self._cond = threading.Condition()
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, id) of blocked sleepers
        self._ids = itertools.count()

    def now(self) -> float:
        with self._cond:
            return self._now

    def wall(self) -> _dt.datetime:
        with self._cond:
            return self._wall_start + _dt.timedelta(seconds=self._now - self._start)

    def step(self, seconds: float) -> None:
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def set(self, t: float) -> None:
        with self._cond:
            self._now = t
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        self.wait(threading.Event(), seconds)

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        with self._cond:
            deadline = None if seconds is None else self._now + max(seconds, 0.0)
            if deadline is not None and deadline <= self._now:
                return event.is_set()
            token = (deadline if deadline is not None else float("inf"), next(self._ids))
            heapq.heappush(self._deadlines, token)
            self._cond.notify_all()
            try:
                while not event.is_set() and (deadline is None or self._now < deadline):
                    # Events are set by other threads without our condition: poll briefly.
                    self._cond.wait(0.005)
                return event.is_set()
            finally:
                self._deadlines.remove(token)
                heapq.heapify(self._deadlines)
                self._cond.notify_all()

    def has_waiters(self) -> bool:
        with self._cond:
            return bool(self._deadlines)

    def waiters(self) -> int:
        with self._cond:
            return len(self._deadlines)

    def wait_for_waiters(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block (in real time, bounded) until at least `n` sleepers are blocked."""
        end = time.monotonic() + timeout
        with self._cond:
            while len(self._deadlines) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.01))
            return True

    def next_deadline(self) -> float | None:
        with self._cond:
            return self._deadlines[0][0] if self._deadlines else None
