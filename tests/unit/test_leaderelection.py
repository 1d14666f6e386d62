"""Leader election on a fake clock against a fake lease store: acquire, renew, take-over only
after the lease duration, loss after the renew deadline, release on graceful shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from virtmigrate import errors
from virtmigrate.clock import FakeClock
from virtmigrate.controller.leaderelection import (
    LeaderElectionConfig,
    LeaderElectionRecord,
    LeaderElector,
    compute_next_record,
    decide_can_acquire,
)

R = LeaderElectionRecord


@pytest.mark.parametrize(("record", "observed_at", "now", "expected"), [
    pytest.param(R("", 15), 0.0, 0.0, True, id="no-holder"),
    pytest.param(R("me", 15), 0.0, 0.0, True, id="we-hold-it"),
    pytest.param(R("other", 15), 100.0, 114.9, False, id="other-holds-valid-lease"),
    pytest.param(R("other", 15), 100.0, 115.0, True, id="other-lease-expired-on-our-clock"),
    pytest.param(R("other", 1), 100.0, 101.0, True, id="released-lease-1s"),
])
def test_decide_can_acquire(record: LeaderElectionRecord, observed_at: float, now: float,
                            expected: bool) -> None:
    assert decide_can_acquire(record, observed_at, now, identity="me") is expected


@pytest.mark.parametrize(("observed", "expected"), [
    pytest.param(None, R("me", 15, "T", "T", 0), id="create"),
    pytest.param(R("me", 15, "A", "B", 3), R("me", 15, "A", "T", 3), id="renew-keeps-acquire-time"),
    pytest.param(R("other", 15, "A", "B", 3), R("me", 15, "T", "T", 4), id="take-over-counts-transition"),
    pytest.param(R("", 1, "A", "B", 3), R("me", 15, "T", "T", 4), id="after-release"),
])
def test_compute_next_record(observed: LeaderElectionRecord | None, expected: LeaderElectionRecord) -> None:
    assert compute_next_record(observed, identity="me", lease_duration=15, now_wall="T") == expected


class FakeLeaseStore:
    """One Lease with optimistic concurrency; `down` makes a candidate's requests fail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.record: LeaderElectionRecord | None = None
        self.version = 0
        self.down: set[str] = set()
        self.writes: list[LeaderElectionRecord] = []


class FakeLeaseLock:
    def __init__(self, store: FakeLeaseStore, identity: str) -> None:
        self.store = store
        self.identity = identity

    def _check(self) -> None:
        if self.identity in self.store.down:
            raise errors.ServerError("connection refused")

    def get(self) -> tuple[LeaderElectionRecord, str]:
        with self.store.lock:
            self._check()
            if self.store.record is None:
                raise errors.NotFound("lease not found", status=404)
            return self.store.record, str(self.store.version)

    def create(self, record: LeaderElectionRecord) -> str:
        with self.store.lock:
            self._check()
            if self.store.record is not None:
                raise errors.AlreadyExists("exists", status=409)
            return self._write(record)

    def update(self, record: LeaderElectionRecord, version: str) -> str:
        with self.store.lock:
            self._check()
            if version != str(self.store.version):
                raise errors.Conflict("stale", status=409)
            return self._write(record)

    def _write(self, record: LeaderElectionRecord) -> str:
        self.store.record = record
        self.store.version += 1
        self.store.writes.append(record)
        return str(self.store.version)


class Candidate:
    def __init__(self, store: FakeLeaseStore, clock: FakeClock, identity: str, **kw: object) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.stop_leading_seen = threading.Event()
        self.stop = threading.Event()

        def lead(stop_leading: threading.Event) -> None:
            self.started.set()
            stop_leading.wait()
            self.stop_leading_seen.set()

        self.elector = LeaderElector(LeaderElectionConfig(
            lock=FakeLeaseLock(store, identity), on_started_leading=lead,
            on_stopped_leading=self.stopped.set, clock=clock, name="test", **kw))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)
        self.thread.start()


def settle(clock: FakeClock, cands: list[Candidate]) -> None:
    """Wait (real time, bounded) until every live candidate sleeps on the clock with a future deadline."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        n = sum(c.thread.is_alive() for c in cands)
        d = clock.next_deadline()
        if n == 0 or (clock.waiters() >= n and d is not None and d > clock.now()):
            return
        time.sleep(0.001)
    raise AssertionError(f"clock did not settle: {clock.waiters()} waiters")


def advance(clock: FakeClock, seconds: float, cands: list[Candidate], *,
            until: Callable[[], bool] = lambda: False, step: float = 0.25) -> float:
    """Step the fake clock in small increments, letting the candidates run between steps;
    returns the fake seconds that passed."""
    start = clock.now()
    while clock.now() - start < seconds and not until():
        settle(clock, cands)
        clock.step(step)
    settle(clock, cands)
    return clock.now() - start


@pytest.fixture
def world() -> Iterator[tuple[FakeLeaseStore, FakeClock, list[Candidate]]]:
    store, clock, cands = FakeLeaseStore(), FakeClock(), []
    yield store, clock, cands
    for c in cands:
        c.stop.set()
    for c in cands:
        c.thread.join(5)


def test_single_candidate_leads_and_renews(world: tuple[FakeLeaseStore, FakeClock, list[Candidate]]) -> None:
    store, clock, cands = world
    a = Candidate(store, clock, "a")
    cands.append(a)
    assert a.started.wait(5)
    assert store.record is not None and store.record.holder_identity == "a"
    first_renew = store.record.renew_time
    advance(clock, 4.0, cands)
    assert store.record.holder_identity == "a" and store.record.renew_time != first_renew
    assert store.record.acquire_time == store.writes[0].acquire_time
    assert store.record.lease_duration_seconds == 15


def test_follower_takes_over_only_after_the_lease_duration(
        world: tuple[FakeLeaseStore, FakeClock, list[Candidate]]) -> None:
    store, clock, cands = world
    a = Candidate(store, clock, "a")
    cands.append(a)
    assert a.started.wait(5)
    b = Candidate(store, clock, "b")
    cands.append(b)
    advance(clock, 30.0, cands)
    assert not b.started.is_set(), "the follower must not lead while the leader renews"
    store.down.add("a")  # the leader's process froze: it stops renewing
    assert store.record is not None
    waited = advance(clock, 60.0, cands, until=b.started.is_set)
    assert b.started.wait(5)
    assert 15.0 <= waited <= 15.0 + 2 * 2.0 * 1.2 + 0.5, waited
    assert store.record.holder_identity == "b" and store.record.leader_transitions == 1
    assert a.stopped.is_set() and a.stop_leading_seen.is_set(), "the old leader stepped down (renew deadline)"


def test_leader_steps_down_after_the_renew_deadline(
        world: tuple[FakeLeaseStore, FakeClock, list[Candidate]]) -> None:
    store, clock, cands = world
    a = Candidate(store, clock, "a")
    cands.append(a)
    assert a.started.wait(5)
    store.down.add("a")
    advance(clock, 9.5, cands)
    assert not a.stopped.is_set(), "must keep leading until the renew deadline"
    advance(clock, 2.0, cands, until=a.stopped.is_set)
    assert a.stopped.wait(5) and a.stop_leading_seen.wait(5)
    assert not a.elector.is_leader()


def test_graceful_shutdown_releases_so_the_follower_leads_at_once(
        world: tuple[FakeLeaseStore, FakeClock, list[Candidate]]) -> None:
    store, clock, cands = world
    a = Candidate(store, clock, "a")
    cands.append(a)
    assert a.started.wait(5)
    b = Candidate(store, clock, "b")
    cands.append(b)
    advance(clock, 4.0, cands)
    a.stop.set()
    assert a.stopped.wait(5)
    a.thread.join(5)
    assert store.record is not None and store.record.holder_identity == ""
    waited = advance(clock, 10.0, cands, until=b.started.is_set)
    assert b.started.wait(5)
    assert waited <= 2.0 * 1.2 + 0.25 + 1.0, "a released lease is taken at the next retry"


def test_config_rejects_renew_deadline_not_below_lease_duration() -> None:
    with pytest.raises(errors.ConfigError, match="renew_deadline"):
        LeaderElectionConfig(lock=FakeLeaseLock(FakeLeaseStore(), "a"), on_started_leading=lambda e: None,
                             on_stopped_leading=lambda: None, lease_duration=10, renew_deadline=10)


class HangingLeaseLock(FakeLeaseLock):
    """A lock whose requests hang (a connection that never answers) while `hang` is set."""

    def __init__(self, store: FakeLeaseStore, identity: str, hang: threading.Event) -> None:
        super().__init__(store, identity)
        self.hang = hang

    def get(self) -> tuple[LeaderElectionRecord, str]:
        while self.hang.is_set():
            time.sleep(0.005)
        return super().get()


def _leader(lock: FakeLeaseLock, clock: FakeClock, lead: Callable[[threading.Event], None],
            stopped: threading.Event, stop: threading.Event) -> tuple[LeaderElector, threading.Thread]:
    el = LeaderElector(LeaderElectionConfig(lock=lock, on_started_leading=lead, on_stopped_leading=stopped.set,
                                            clock=clock, name="test"))
    t = threading.Thread(target=el.run, args=(stop,), daemon=True)
    t.start()
    end = time.monotonic() + 5
    while not el.is_leader() and time.monotonic() < end:
        time.sleep(0.005)
    assert el.is_leader()
    return el, t


def test_a_hung_renewal_cannot_keep_the_leader_past_the_renew_deadline() -> None:
    store, clock, hang, stopped, stop = FakeLeaseStore(), FakeClock(), threading.Event(), threading.Event(), \
        threading.Event()
    el, t = _leader(HangingLeaseLock(store, "a", hang), clock, lambda e: None, stopped, stop)
    hang.set()  # from now on every request hangs: without a bound the renewal would wait forever
    try:
        waited = 0.0
        while not stopped.is_set() and waited < 12.0:
            clock.wait_for_waiters(1)
            clock.step(0.25)
            waited += 0.25
            time.sleep(0.002)
        assert stopped.wait(5), "the leader must step down at the renew deadline even if a request hangs"
        assert waited <= 10.0 + 2.0 + 0.5, waited
        assert not el.is_leader()
    finally:
        hang.clear()
        stop.set()
        t.join(5)


def test_graceful_stop_releases_the_lease_only_after_the_workers_drained() -> None:
    store, clock, stopped, stop = FakeLeaseStore(), FakeClock(), threading.Event(), threading.Event()
    drained, stop_seen = threading.Event(), threading.Event()

    def lead(stop_leading: threading.Event) -> None:
        stop_leading.wait()
        stop_seen.set()
        drained.wait(5)  # workers finishing their current syncs

    _, t = _leader(FakeLeaseLock(store, "a"), clock, lead, stopped, stop)
    stop.set()
    assert stop_seen.wait(5)
    time.sleep(0.1)
    assert store.record is not None and store.record.holder_identity == "a", "released while workers still act"
    drained.set()
    t.join(5)
    assert store.record is not None and store.record.holder_identity == ""
