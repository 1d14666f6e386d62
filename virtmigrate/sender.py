"""The latest value, sent from a thread of its own: what the launcher's domain report and the agent's progress
have in common (virtmigrate/launcher/report.py, virtmigrate/agent/progress.py).

`connect` builds the send function on that thread, so importing and configuring the API client never delays
the process's start. Values are never queued: a newer value offered before the older one was sent replaces it.
A failed send is logged; with `retry_s` the value is kept (unless a newer one came) and tried again after that
pause, else it is dropped (the next value will say more). A connect failure is logged once and disables the
sender: its owner keeps working without it. Nothing here imports the API client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LatestSender(Generic[T]):
    """Sends the latest offered value with the function `connect` returns. `disabled` and `failed` name the log
    events of a connect failure and of a failed send."""

    def __init__(self, connect: Callable[[], Callable[[T], object]], *, now: Callable[[], float], log: Any,
                 name: str, disabled: str, failed: str, retry_s: float | None = None) -> None:
        self._connect = connect
        self._now = now
        self._log = log
        self._disabled, self._failed, self._retry_s = disabled, failed, retry_s
        self._cond = threading.Condition()
        self._pending: T | None = None     # the latest value not yet sent; guarded by _cond
        self._sent: T | None = None        # the last value sent
        self._sent_at = 0.0
        self._busy = False                 # a send is under way (flush waits for it)
        self._connected = False            # the send function is ready
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        if not self.started:
            self._thread.start()

    def offer(self, value: T, *, wanted: Callable[[T | None, float], bool] | None = None) -> None:
        """Make `value` the next to send. With `wanted(last sent, seconds since)`, a value is skipped when it is
        not wanted and nothing else waits to be sent (a pending value is always replaced)."""
        with self._cond:
            if wanted is not None and self._pending is None and not wanted(self._sent, self._now() - self._sent_at):
                return
            self._pending = value
            self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) until nothing is pending or being sent; True when the latest value was sent."""
        deadline = self._now() + timeout_s
        with self._cond:
            while (self._pending is not None or self._busy) and not self._stopped:
                left = deadline - self._now()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._pending is None

    def stop(self, join_s: float | None = None) -> None:
        """No more sends after what is pending; with `join_s`, wait that long for a connected sender to send it
        (one still connecting is not waited for, and sends nothing late)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            connected = self._connected
        if join_s is not None and connected:
            self._thread.join(join_s)

    def join(self, timeout_s: float) -> None:
        if self.started:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            send = self._connect()
        except Exception as e:  # no API access: the owner carries on without this sender
            self._log.warning(self._disabled, error=str(e))
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            return
        with self._cond:
            if self._stopped and self._pending is not None and self._retry_s is None:
                return  # stopped while connecting: nothing worth sending late
            self._connected = True
        while True:
            with self._cond:
                while self._pending is None and not self._stopped:
                    self._cond.wait()
                if self._pending is None:
                    return
                value, self._pending = self._pending, None
                self._busy = True
            try:
                send(value)
                ok = True
            except Exception as e:  # logged; kept for a retry or dropped for the next value
                self._log.warning(self._failed, error=str(e))
                ok = False
            with self._cond:
                self._busy = False
                if ok:
                    self._sent, self._sent_at = value, self._now()
                elif self._retry_s is not None and self._pending is None:
                    self._pending = value
                    self._cond.wait(self._retry_s)  # do not spin on a failing API
                self._cond.notify_all()
