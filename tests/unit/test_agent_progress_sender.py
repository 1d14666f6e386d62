"""The agent's progress sender: it connects to the API on its own thread, so the migration never waits
for the kubernetes client, and only once the migration has run a while; a sender still connecting when
the migration ends is not waited for."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from virtmigrate.agent.jobstats import MIB, JobStats, Mode
from virtmigrate.agent.progress import ProgressReporter

STATS = JobStats(job_type=2, data_total=256 * MIB, data_processed=64 * MIB, data_remaining=192 * MIB, iteration=1)


def _wall() -> dt.datetime:
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class _Client:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any], str]] = []
        self.patched = threading.Event()

    def patch(self, res: Any, name: str, patch: dict[str, Any], namespace: str, **kw: Any) -> dict[str, Any]:
        self.patches.append((name, patch, namespace))
        self.patched.set()
        return {}


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.warned = threading.Event()

    def warning(self, event: str, **kw: Any) -> None:
        self.warnings.append(event)
        self.warned.set()


def test_progress_is_patched_once_connected_and_stop_sends_the_pending_payload() -> None:
    client, log = _Client(), _Log()
    r = ProgressReporter(lambda: client, "m1", "ns", wall=_wall, log=log,  # type: ignore[arg-type,return-value]
                         connect_after_s=0)
    r(STATS, Mode.PRE_COPY, 10.0)
    assert client.patched.wait(5)
    r(STATS, Mode.PRE_COPY, 12.0)  # the next report, 2 s later
    r.stop()
    assert [(n, ns) for n, _, ns in client.patches] == [("m1", "ns"), ("m1", "ns")]
    assert client.patches[0][1]["status"]["progress"]["percent"] == 25
    assert log.warnings == []


def test_a_connect_failure_disables_progress_and_is_logged() -> None:
    log = _Log()

    def connect() -> Any:
        raise OSError("no kubeconfig")

    r = ProgressReporter(connect, "m1", "ns", wall=_wall, log=log, connect_after_s=0)
    r(STATS, Mode.PRE_COPY, 10.0)
    assert log.warned.wait(5)
    r.stop()
    assert log.warnings == ["progress_disabled"]


def test_stop_does_not_wait_for_a_sender_still_connecting_and_nothing_is_sent_late() -> None:
    client, log = _Client(), _Log()
    connecting, stop_returned = threading.Event(), threading.Event()
    saw: list[bool] = []

    def connect() -> Any:  # connects only once stop() has returned (or gives up after 5 s)
        connecting.set()
        saw.append(stop_returned.wait(5))
        return client

    r = ProgressReporter(connect, "m1", "ns", wall=_wall, log=log, connect_after_s=0)
    r(STATS, Mode.PRE_COPY, 10.0)
    assert connecting.wait(5)
    r.stop(timeout_s=30)
    stop_returned.set()
    r.sender.join(10)
    assert saw == [True]  # stop() returned while the sender was still connecting
    assert client.patches == []  # and the payload pending at the end was not sent late


def test_a_short_migration_never_connects_and_a_longer_one_reports_from_connect_after() -> None:
    client, log = _Client(), _Log()
    connects: list[float] = []

    def connect() -> Any:
        connects.append(1)
        return client

    short = ProgressReporter(connect, "m1", "ns", wall=_wall, log=log, connect_after_s=1.0)
    short(STATS, Mode.PRE_COPY, 10.0)
    short(STATS, Mode.PRE_COPY, 10.5)
    short.stop()
    assert connects == [] and client.patches == []

    longer = ProgressReporter(connect, "m2", "ns", wall=_wall, log=log, connect_after_s=1.0)
    longer(STATS, Mode.PRE_COPY, 10.0)
    longer(STATS, Mode.PRE_COPY, 10.5)
    longer(STATS, Mode.PRE_COPY, 11.0)
    assert client.patched.wait(5)
    longer.stop()
    assert connects == [1] and [n for n, _, _ in client.patches] == ["m2"]
