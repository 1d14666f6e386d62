"""A JSON-lines logger for the in-pod processes (agent, launcher), with structlog's calling convention.

Used by virtmigrate/agent/logs.py and virtmigrate/cmd/launcher.py; the controller keeps structlog. A pod's
process is started for every migration and its start is on the migration's critical path: importing
structlog costs 0.1-0.25 s of CPU on a busy node (it loads asyncio and, when installed, rich), during which
the migration's QEMUs or the launcher's first report wait for a core. This module imports nothing beyond
the standard library's json, and writes what structlog's JSONRenderer with `add_log_level` and an ISO UTC
`TimeStamper` wrote: one object per line with `event`, `level`, `timestamp` and the bound and given keys.

    log = JsonLogger(level="info").bind(domain="vm1")
    log.info("migration_started", destination=uri)
    {"domain": "vm1", "destination": "qemu+tcp://...", "event": "migration_started", "level": "info",
     "timestamp": "2026-11-28T17:18:43.718946Z"}

Thread-safe: each line is one write under a lock.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import IO, Any

from virtmigrate.clock import Clock, RealClock

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_LOCK = threading.Lock()


class JsonLogger:
    """Log lines at or above `level` to `stream` (None: whatever sys.stderr is when a line is written),
    each with the keys bound so far."""

    def __init__(self, stream: IO[str] | None = None, *, level: str = "info", clock: Clock | None = None,
                 **bound: Any) -> None:
        self._stream = stream
        self._level = level
        self._min = LEVELS.get(level.lower(), 20)
        self._clock = clock or RealClock()
        self._bound = bound

    def bind(self, **kw: Any) -> JsonLogger:
        return JsonLogger(self._stream, level=self._level, clock=self._clock, **{**self._bound, **kw})

    def _log(self, level: str, event: str, kw: dict[str, Any]) -> None:
        if LEVELS[level] < self._min:
            return
        stamp = self._clock.wall().isoformat(timespec="microseconds").replace("+00:00", "Z")
        line = json.dumps({**self._bound, **kw, "event": event, "level": level, "timestamp": stamp}, default=repr)
        with _LOCK:
            stream = self._stream or sys.stderr
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed or broken log stream must not end the process
                pass

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, kw)

    def critical(self, event: str, **kw: Any) -> None:
        self._log("critical", event, kw)

    warn = warning
    msg = info
