"""The reflector against a fake API server: pagination, watch from the list RV, bookmarks,
dropped watches, 410 -> consistent relist with tombstones, back-off on the fake clock."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes_listwatch import FakeListerWatcher, Recorder, obj
from tests.waiting import eventually as _eventually
from virtmigrate import errors
from virtmigrate.clock import FakeClock
from virtmigrate.informer import DeletedFinalStateUnknown, InformerConfig, SharedInformer
from virtmigrate.informer.backoff import BackoffPolicy, compute_backoff
from virtmigrate.informer.reflector import compute_watch_timeout, should_relist

POLICY = BackoffPolicy()


@pytest.mark.parametrize(("prev", "since", "rand", "expected"), [
    pytest.param(None, None, 0.0, (0.8, 0.8), id="first-failure"),
    pytest.param(0.8, 1.0, 0.0, (1.6, 1.6), id="doubles"),
    pytest.param(1.6, 1.0, 0.5, (3.2, 4.8), id="jitter-stretches"),
    pytest.param(25.6, 1.0, 0.0, (30.0, 30.0), id="capped-at-30s"),
    pytest.param(30.0, 1.0, 0.9, (30.0, 30.0), id="jitter-never-exceeds-cap"),
    pytest.param(30.0, 121.0, 0.0, (0.8, 0.8), id="reset-after-2min-healthy"),
    pytest.param(30.0, 119.0, 0.0, (30.0, 30.0), id="no-reset-before-2min"),
])
def test_compute_backoff(prev: float | None, since: float | None, rand: float,
                         expected: tuple[float, float]) -> None:
    assert compute_backoff(prev, since, rand, policy=POLICY) == pytest.approx(expected)


@pytest.mark.parametrize(("err", "relist"), [
    pytest.param(errors.Gone("expired", status=410), True, id="gone"),
    pytest.param(errors.WatchError("too old resource version: 5 (9)", status=500), True, id="too-old-message"),
    pytest.param(errors.KubeError("Expired", status=410), True, id="410-status"),
    pytest.param(errors.ServerError("connection refused"), False, id="transport"),
    pytest.param(errors.WatchError("internal error", status=500), False, id="other-watch-error"),
    pytest.param(ValueError("bad json"), False, id="decode-error"),
])
def test_should_relist(err: BaseException, relist: bool) -> None:
    assert should_relist(err) is relist


@pytest.mark.parametrize("rand", [0.0, 0.3, 0.999])
def test_watch_timeout_is_between_5_and_10_minutes(rand: float) -> None:
    assert 300 <= compute_watch_timeout(rand, low=300, high=600) <= 600


class Harness:
    def __init__(self, lw: FakeListerWatcher, clock: FakeClock, inf: SharedInformer, rec: Recorder,
                 reg: CollectorRegistry) -> None:
        self.lw, self.clock, self.inf, self.rec, self.reg = lw, clock, inf, rec, reg

    def metric(self, name: str) -> float:
        return self.reg.get_sample_value(name, {"name": "cms"}) or 0.0


@pytest.fixture
def h() -> Iterator[Harness]:
    lw = FakeListerWatcher()
    for i in range(25):
        lw.create(obj(f"o{i:02d}", data={"v": "0"}))
    clock = FakeClock()
    reg = CollectorRegistry()
    inf = SharedInformer(lw, InformerConfig(name="cms", clock=clock, page_size=10, registry=reg))
    rec = Recorder()
    inf.add_event_handler(rec)
    stop = threading.Event()
    t = inf.start(stop)
    yield Harness(lw, clock, inf, rec, reg)
    stop.set()
    t.join(5)
    assert not t.is_alive(), "informer did not stop"
    assert all(w.stopped or w not in lw.open_watches for w in lw.watches)


def test_initial_list_is_paginated_and_consistent(h: Harness) -> None:
    evs = h.rec.wait_for(25)
    assert h.inf.wait_for_cache_sync(timeout=5)
    assert [c["limit"] for c in h.lw.list_calls] == [10, 10, 10]
    assert [c["continue"] is not None for c in h.lw.list_calls] == [False, True, True]
    assert all(c["resourceVersion"] is None for c in h.lw.list_calls), "lists must be consistent reads"
    assert {(e[0], e[2]) for e in evs} == {("add", True)}
    assert len(h.inf.indexer.list()) == 25
    assert h.metric("reflector_lists_total") == 1


def test_watch_starts_at_the_list_rv_with_bookmarks_and_random_timeout(h: Harness) -> None:
    assert h.lw.wait_for_watches(1)
    w = h.lw.watches[0]
    assert str(w.rv) == h.inf.last_sync_resource_version == "125"
    assert w.allow_bookmarks
    assert 300 <= w.timeout_seconds <= 600


def test_watch_events_reach_handlers_with_old_state(h: Harness) -> None:
    h.rec.wait_for(25)
    assert h.lw.wait_for_watches(1)
    h.lw.create(obj("new"))
    h.lw.update(obj("o01", data={"v": "1"}))
    h.lw.delete("o02")
    evs = h.rec.wait_for(28)[25:]
    assert evs[0][:3] == ("add", "new", False)
    assert evs[1][0] == "update" and evs[1][2]["data"] == {"v": "0"} and evs[1][3]["data"] == {"v": "1"}
    assert evs[2][0] == "delete" and evs[2][1]["metadata"]["name"] == "o02"
    assert h.inf.indexer.get_by_key("default/o02") is None
    assert h.inf.indexer.get_by_key("default/o01")["data"] == {"v": "1"}  # type: ignore[index]


def test_bookmark_only_advances_the_rv_and_a_dropped_watch_resumes_from_it(h: Harness) -> None:
    h.rec.wait_for(25)
    assert h.lw.wait_for_watches(1)
    h.lw.bookmark()
    h.lw.drop_watches()  # the server's timeout: ends normally
    assert h.lw.wait_for_watches(2)
    assert h.lw.watches[1].rv == 126, "the second watch must start at the bookmark's RV"
    assert len(h.lw.list_calls) == 3, "a normal watch end must not relist"
    h.lw.update(obj("o03", data={"v": "2"}))
    evs = h.rec.wait_for(26)
    assert len(evs) == 26 and evs[25][0] == "update", "the bookmark must not reach handlers"


def test_changes_while_the_watch_reconnects_are_not_lost(h: Harness) -> None:
    h.rec.wait_for(25)
    assert h.lw.wait_for_watches(1)
    h.lw.drop_watches(errors.ServerError("connection reset"))
    with h.lw.silently():
        h.lw.update(obj("o04", data={"v": "3"}))
    assert h.clock.wait_for_waiters(1)  # the reflector sleeps its back-off
    assert h.lw.wait_for_watches(1) and len(h.lw.watches) == 1, "must not re-watch before the back-off"
    h.clock.step(1.6)  # past the first back-off (0.8 s .. 1.6 s with jitter)
    assert h.lw.wait_for_watches(2)
    evs = h.rec.wait_for(26)
    assert evs[25][:2] == ("update", "o04") and evs[25][3]["data"] == {"v": "3"}
    assert len(h.lw.list_calls) == 3


def test_410_relists_consistently_and_delivers_tombstones_with_last_known_state(h: Harness) -> None:
    h.rec.wait_for(25)
    assert h.lw.wait_for_watches(1)
    h.lw.update(obj("o05", data={"v": "last-seen"}))
    h.rec.wait_for(26)
    with h.lw.silently():  # the watch is effectively down: these changes are never streamed
        h.lw.update(obj("o05", data={"v": "never-seen"}))
        h.lw.delete("o05")
        h.lw.update(obj("o06", data={"v": "changed"}))
        h.lw.create(obj("brand-new"))
        h.lw.compact()
    h.lw.drop_watches(errors.Gone("too old resource version", status=410))
    evs = h.rec.wait_for(26 + 25)[26:]
    assert h.lw.list_calls[-1]["resourceVersion"] is None
    tombstones = [e[1] for e in evs if e[0] == "delete"]
    assert len(tombstones) == 1 and isinstance(tombstones[0], DeletedFinalStateUnknown)
    assert tombstones[0].key == "default/o05"
    assert tombstones[0].obj["data"] == {"v": "last-seen"}
    assert ("add", "brand-new", False) in [e[:3] for e in evs]
    o06 = [e for e in evs if e[:2] == ("update", "o06")]
    assert o06 and o06[0][3]["data"] == {"v": "changed"}
    assert h.inf.indexer.get_by_key("default/o05") is None
    assert h.metric("reflector_relists_after_gone_total") == 1
    assert h.lw.wait_for_watches(2)
    assert str(h.lw.watches[-1].rv) == str(h.lw.rv)


def test_continue_token_expiry_restarts_the_list() -> None:
    lw = FakeListerWatcher()
    for i in range(25):
        lw.create(obj(f"o{i:02d}"))
    lw.expire_continue = True
    inf = SharedInformer(lw, InformerConfig(name="exp", clock=FakeClock(), page_size=10,
                                            registry=CollectorRegistry()))
    stop = threading.Event()
    t = inf.start(stop)
    try:
        assert inf.wait_for_cache_sync(timeout=5)
        assert len(inf.indexer.list()) == 25
        assert [c["continue"] is None for c in lw.list_calls] == [True, False, True, False, False]
    finally:
        stop.set()
        t.join(5)


def test_list_failures_back_off_on_the_clock() -> None:
    lw = FakeListerWatcher()
    lw.create(obj("a"))
    lw.list_errors = [errors.ServerError("boom"), errors.ServerError("boom again")]
    clock = FakeClock()
    policy = BackoffPolicy(jitter=0.0)
    from virtmigrate.informer import ReflectorConfig
    inf = SharedInformer(lw, InformerConfig(name="bo", clock=clock, registry=CollectorRegistry(),
                                            reflector=ReflectorConfig(name="bo", clock=clock, backoff=policy,
                                                                      registry=CollectorRegistry(),
                                                                      rand=random.Random(1))))
    stop = threading.Event()
    t = inf.start(stop)
    try:
        assert clock.wait_for_waiters(1)
        assert len(lw.list_calls) == 1 and clock.next_deadline() == pytest.approx(clock.now() + 0.8)
        clock.step(0.8)
        assert _eventually(lambda: len(lw.list_calls) == 2)
        assert _eventually(lambda: clock.next_deadline() == pytest.approx(clock.now() + 1.6))
        assert not inf.has_synced()
        clock.step(1.6)
        assert inf.wait_for_cache_sync(timeout=5)
    finally:
        stop.set()
        t.join(5)
