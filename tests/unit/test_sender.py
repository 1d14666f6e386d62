"""LatestSender (virtmigrate/sender.py), the one sender behind the launcher's domain report and the agent's
progress: real threads, a send function that records, fails or holds; every wait bounded."""

from __future__ import annotations

import threading

import pytest

from tests.unit.test_launcher_report import Log
from virtmigrate.clock import FakeClock
from virtmigrate.sender import LatestSender


class Sink:
    """Records what it was sent; its first `fail` calls raise; while `release` is clear, a send waits."""

    def __init__(self, *, fail: int = 0) -> None:
        self.sent: list[int] = []
        self.calls = 0
        self.fail = fail
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, value: int) -> None:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("apiserver unavailable")
        self.sent.append(value)


def sender(sink: Sink, *, retry_s: float | None, log: Log | None = None) -> LatestSender[int]:
    s: LatestSender[int] = LatestSender(lambda: sink, now=FakeClock().now, log=log or Log(), name="t",
                                        disabled="t_disabled", failed="t_failed", retry_s=retry_s)
    s.start()
    return s


@pytest.mark.timeout(20)
def test_values_offered_while_one_is_sent_are_coalesced_into_the_latest() -> None:
    sink = Sink()
    sink.release.clear()
    s = sender(sink, retry_s=None)
    s.offer(1)
    assert sink.entered.wait(5)
    for v in (2, 3, 4):
        s.offer(v)
    sink.release.set()
    assert s.flush(10.0)
    assert sink.sent == [1, 4]
    s.stop()


@pytest.mark.timeout(20)
def test_with_retry_a_failed_value_is_sent_again_and_without_it_is_dropped() -> None:
    log = Log()
    kept = Sink(fail=1)
    s = sender(kept, retry_s=0.01, log=log)
    s.offer(7)
    assert s.flush(10.0)
    assert kept.sent == [7] and log.warnings == ["t_failed"]
    s.stop()

    dropped = Sink(fail=1)
    d = sender(dropped, retry_s=None)
    d.offer(7)
    assert d.flush(10.0)
    assert dropped.sent == [] and dropped.calls == 1
    d.stop()


@pytest.mark.timeout(20)
def test_a_value_that_is_not_wanted_is_skipped_unless_one_is_pending() -> None:
    sink = Sink()
    s = sender(sink, retry_s=None)
    s.offer(1)
    assert s.flush(10.0)
    s.offer(1, wanted=lambda last, since_s: last != 1)  # the same as the last one sent: skipped
    assert s.flush(10.0)
    assert sink.sent == [1]
    s.stop()


@pytest.mark.timeout(20)
def test_a_connect_failure_disables_the_sender_and_flush_says_so_at_once() -> None:
    log = Log()

    def connect() -> object:
        raise OSError("no kubeconfig")

    s: LatestSender[int] = LatestSender(connect, now=FakeClock().now, log=log, name="t",  # type: ignore[arg-type]
                                        disabled="t_disabled", failed="t_failed")
    s.start()
    s.offer(1)
    s.join(5)
    assert s.flush(1.0) is False  # its value was never sent, and nobody waits for it
    assert log.warnings == ["t_disabled"]
