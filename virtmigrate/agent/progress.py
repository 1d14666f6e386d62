"""Live progress of a migration, patched into the Migration's status.progress at most every 2 s.

Fed by the monitor loop's stats hook (`ProgressReporter.__call__(stats, mode, now_s)`); the payload
is computed purely (`compute_progress`); a background thread connects to the API and sends the latest
payload, so a slow API server never delays the monitor. Importing the kubernetes client costs 0.3-0.6 s
of CPU, which the migration's QEMUs would feel: the thread starts only once the migration has run
`connect_after_s` (1 s), so a short migration never loads it and a long one reports from then on.
Without API access the agent only logs (see migrate.py).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from virtmigrate.agent.jobstats import JobStats, Mode
from virtmigrate.sender import LatestSender

if TYPE_CHECKING:  # the kubernetes client costs ~0.3 s to import: only when progress is reported
    from virtmigrate.kube import KubeClient

REPORT_INTERVAL_S = 2.0
CONNECT_AFTER_S = 1.0  # the sender starts once the migration has run this long


def compute_progress(stats: JobStats, mode: Mode, wall: _dt.datetime) -> dict[str, Any]:
    """status.progress for one observation (percent of memory sent, 0-99 while running)."""
    pct = 0
    if stats.data_total > 0:
        pct = int(100 * (stats.data_total - stats.data_remaining) / stats.data_total)
    pct = max(0, min(99, pct))
    return {"percent": pct, "percentText": f"{pct}%", "dataTotal": stats.data_total,
            "dataProcessed": stats.data_processed, "dataRemaining": stats.data_remaining,
            "transferRate": stats.memory_bps, "dirtyRate": stats.dirty_rate_pps, "iteration": stats.iteration,
            "mode": mode.value, "updateTime": wall.strftime("%Y-%m-%dT%H:%M:%SZ")}


def should_report_progress(now_s: float, last_s: float | None, interval_s: float = REPORT_INTERVAL_S) -> bool:
    return last_s is None or now_s - last_s >= interval_s


class ProgressReporter:
    """Patches status.progress of `namespace/migration`; failures are logged, never fatal.

    `connect` builds the API client; it runs on the sender thread (virtmigrate.sender.LatestSender). A failure
    to connect disables progress (logged as progress_disabled); the agent migrates all the same."""

    def __init__(self, connect: Callable[[], KubeClient], migration: str, namespace: str, *, wall: Any, log: Any,
                 interval_s: float = REPORT_INTERVAL_S, connect_after_s: float = CONNECT_AFTER_S) -> None:
        self._wall = wall  # () -> datetime, the clock's wall time
        self._interval = interval_s
        self._last: float | None = None
        self._connect_after = connect_after_s
        self._first: float | None = None  # the first observation's time

        def connect_progress() -> Callable[[dict[str, Any]], object]:
            client = connect()
            from virtmigrate.kube.resources import MIGRATIONS

            return lambda payload: client.patch(MIGRATIONS, migration, {"status": {"progress": payload}}, namespace,
                                                subresource="status")

        self.sender: LatestSender[dict[str, Any]] = LatestSender(
            # progress is never flushed nor filtered by age (its own rate limit is above): no clock is read
            connect_progress, now=lambda: 0.0, log=log, name="progress", disabled="progress_disabled",
            failed="progress_patch_failed")

    def __call__(self, stats: JobStats, mode: Mode, now_s: float) -> None:
        if self._first is None:
            self._first = now_s
        if not self.sender.started:
            if now_s - self._first < self._connect_after:
                return  # too early: a migration this short needs no progress
            self.sender.start()
        if not should_report_progress(now_s, self._last, self._interval):
            return
        self._last = now_s
        self.sender.offer(compute_progress(stats, mode, self._wall()))

    def stop(self, timeout_s: float = 2.0) -> None:
        """Send what is pending, then stop the sender (bounded). A sender still connecting is not waited
        for: the Migration's final status comes from the controller, not from a late progress patch."""
        self.sender.stop(join_s=timeout_s)
