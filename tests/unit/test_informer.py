"""The shared informer and its factory: handlers, late registration, resync, transform, sharing."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes_listwatch import FakeListerWatcher, Recorder, obj
from tests.waiting import eventually as _eventually
from virtmigrate.clock import FakeClock
from virtmigrate.informer import (
    NODE_INDEX,
    FactoryConfig,
    FuncHandler,
    InformerConfig,
    SharedInformer,
    SharedInformerFactory,
    index_by_node,
    wait_for_cache_sync,
)
from virtmigrate.kube.resources import CONFIGMAPS, PODS


def managed(name: str) -> dict:  # type: ignore[type-arg]
    o = obj(name, data={"k": "v"})
    o["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:data": {}}}]
    return o


@pytest.fixture
def lw() -> FakeListerWatcher:
    f = FakeListerWatcher()
    for i in range(3):
        f.create(managed(f"o{i}"))
    return f


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def start(lw: FakeListerWatcher, stop: threading.Event, **kw: object) -> SharedInformer:
    cfg = InformerConfig(name="t", registry=CollectorRegistry(), **kw)  # type: ignore[arg-type]
    inf = SharedInformer(lw, cfg)
    inf.start(stop)
    return inf


def test_handler_added_after_start_first_receives_the_current_state(lw: FakeListerWatcher,
                                                                      stop: threading.Event) -> None:
    inf = start(lw, stop, clock=FakeClock())
    assert inf.wait_for_cache_sync(timeout=5)
    assert lw.wait_for_watches(1)
    rec = Recorder()
    reg = inf.add_event_handler(rec)
    evs = rec.wait_for(3)
    assert sorted(e[1] for e in evs) == ["o0", "o1", "o2"] and all(e[0] == "add" and e[2] for e in evs)
    lw.create(obj("o3"))
    assert rec.wait_for(4)[3][:3] == ("add", "o3", False)
    assert reg.has_synced()


def test_every_handler_sees_every_event_and_a_failing_one_does_not_stop_the_others(
        lw: FakeListerWatcher, stop: threading.Event) -> None:
    inf = SharedInformer(lw, InformerConfig(name="t", clock=FakeClock(), registry=CollectorRegistry()))
    good = Recorder()
    bad_calls: list[str] = []

    def explode(o: dict, initial: bool) -> None:  # type: ignore[type-arg]
        bad_calls.append(o["metadata"]["name"])
        raise RuntimeError("handler bug")

    inf.add_event_handler(FuncHandler(add=explode))
    inf.add_event_handler(good)
    inf.start(stop)
    good.wait_for(3)
    assert lw.wait_for_watches(1)
    lw.create(obj("o3"))
    good.wait_for(4)
    assert _eventually(lambda: len(bad_calls) == 4), "the failing handler must keep receiving events"


def test_managed_fields_are_stripped_by_default_and_transform_is_optional(
        lw: FakeListerWatcher, stop: threading.Event) -> None:
    inf = start(lw, stop, clock=FakeClock())
    raw = start(lw, stop, clock=FakeClock(), transform=None)
    assert wait_for_cache_sync(stop, inf, raw, timeout=5)
    assert "managedFields" not in inf.indexer.get_by_key("default/o0")["metadata"]  # type: ignore[index]
    assert "managedFields" in raw.indexer.get_by_key("default/o0")["metadata"]  # type: ignore[index]
    assert lw.wait_for_watches(2)
    lw.create(managed("from-watch"))
    assert _eventually(lambda: inf.indexer.get_by_key("default/from-watch") is not None)
    assert "managedFields" not in inf.indexer.get_by_key("default/from-watch")["metadata"]  # type: ignore[index]


def test_resync_redelivers_the_cache_as_updates(lw: FakeListerWatcher, stop: threading.Event) -> None:
    clock = FakeClock()
    inf = SharedInformer(lw, InformerConfig(name="t", clock=clock, resync_period=30.0,
                                            registry=CollectorRegistry()))
    rec = Recorder()
    inf.add_event_handler(rec)
    inf.start(stop)
    rec.wait_for(3)
    assert clock.wait_for_waiters(1)  # the resync timer
    clock.step(30.0)
    evs = rec.wait_for(6)[3:]
    assert all(e[0] == "update" and e[2] is e[3] for e in evs)


def test_stop_ends_the_watch_and_the_informer(lw: FakeListerWatcher) -> None:
    stop = threading.Event()
    inf = SharedInformer(lw, InformerConfig(name="t", clock=FakeClock(), registry=CollectorRegistry()))
    t = inf.start(stop)
    assert lw.wait_for_watches(1)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert lw.watches[0].stopped


def test_factory_shares_one_informer_per_collection(lw: FakeListerWatcher, stop: threading.Event) -> None:
    made: list[tuple[object, ...]] = []

    def lw_for(res: object, ns: object, ls: object, fs: object) -> FakeListerWatcher:
        made.append((res, ns, ls, fs))
        return lw

    f = SharedInformerFactory(None, FactoryConfig(clock=FakeClock(), defaults=InformerConfig(
        registry=CollectorRegistry())), lister_watcher_for=lw_for)
    a = f.informer_for(CONFIGMAPS)
    b = f.informer_for(CONFIGMAPS, indexers={NODE_INDEX: index_by_node})
    c = f.informer_for(CONFIGMAPS, namespace="other")
    d = f.informer_for(PODS, label_selector="app=x")
    assert a is b and a is not c and a is not d
    assert len(made) == 3
    assert NODE_INDEX in a.indexer.indexer_names() and "namespace" in a.indexer.indexer_names()
    f.start(stop)
    f.start(stop)  # idempotent
    assert f.wait_for_cache_sync(stop, timeout=5) == {"configmaps": True, "configmaps@other": True,
                                                      "pods[app=x;]": True}
    assert len(a.indexer.by_index("namespace", "default")) == 3
    stop.set()
    f.shutdown()
