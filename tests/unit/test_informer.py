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
from virtmigrate.informer.handlers import object_of
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


@pytest.mark.parametrize("inline", [False, True], ids=["own-thread", "inline"])
def test_handler_added_after_start_first_receives_the_current_state(lw: FakeListerWatcher,
                                                                      stop: threading.Event, inline: bool) -> None:
    inf = start(lw, stop, clock=FakeClock())
    assert inf.wait_for_cache_sync(timeout=5)
    assert lw.wait_for_watches(1)
    rec = Recorder()
    reg = inf.add_event_handler(rec, inline=inline)
    evs = rec.wait_for(3)
    assert sorted(e[1] for e in evs) == ["o0", "o1", "o2"] and all(e[0] == "add" and e[2] for e in evs)
    lw.create(obj("o3"))
    assert rec.wait_for(4)[3][:3] == ("add", "o3", False)
    assert reg.has_synced()


@pytest.mark.parametrize("inline", [False, True], ids=["own-thread", "inline"])
def test_every_handler_sees_every_event_and_a_failing_one_does_not_stop_the_others(
        lw: FakeListerWatcher, stop: threading.Event, inline: bool) -> None:
    inf = SharedInformer(lw, InformerConfig(name="t", clock=FakeClock(), registry=CollectorRegistry()))
    good = Recorder()
    bad_calls: list[str] = []

    def explode(o: dict, initial: bool) -> None:  # type: ignore[type-arg]
        bad_calls.append(o["metadata"]["name"])
        raise RuntimeError("handler bug")

    inf.add_event_handler(FuncHandler(add=explode), inline=inline)
    inf.add_event_handler(good, inline=inline)
    inf.start(stop)
    good.wait_for(3)
    assert lw.wait_for_watches(1)
    lw.create(obj("o3"))
    good.wait_for(4)
    assert _eventually(lambda: len(bad_calls) == 4), "the failing handler must keep receiving events"


def test_an_inline_handler_is_called_by_the_reflector_as_each_change_is_cached(lw: FakeListerWatcher) -> None:
    """In the reflector's thread, in order, with the cache already showing the change; one registered late
    gets the current state before add_event_handler returns; none is called once the informer stopped."""
    stop = threading.Event()
    inf = SharedInformer(lw, InformerConfig(name="t", clock=FakeClock(), registry=CollectorRegistry()))
    seen: list[tuple[str, str, str, bool]] = []  # (kind, name, thread, cached as the handler saw it)

    def note(kind: str, o: dict) -> None:  # type: ignore[type-arg]
        name = o["metadata"]["name"]
        cached = inf.indexer.get_by_key(f"default/{name}")
        seen.append((kind, name, threading.current_thread().name, (cached is not None) == (kind != "delete")))

    reg = inf.add_event_handler(FuncHandler(add=lambda o, _i: note("add", o), update=lambda _o, n: note("update", n),
                                            delete=lambda o: note("delete", object_of(o))), inline=True)
    t = inf.start(stop)
    assert inf.wait_for_cache_sync(timeout=5) and reg.has_synced()
    assert lw.wait_for_watches(1)
    lw.create(obj("o3"))
    lw.update(obj("o3", data={"k": "2"}))
    lw.delete("o3")
    assert _eventually(lambda: len(seen) == 6)
    assert [(k, n) for k, n, _, _ in seen] == [("add", "o0"), ("add", "o1"), ("add", "o2"), ("add", "o3"),
                                              ("update", "o3"), ("delete", "o3")]
    assert {th for _, _, th, _ in seen} == {"reflector-t"} and all(ok for *_, ok in seen)
    late = Recorder()
    inf.add_event_handler(late, inline=True)
    assert sorted(e[1] for e in late.events) == ["o0", "o1", "o2"]  # already delivered, in this thread
    stop.set()
    t.join(5)
    lw.create(obj("after-stop"))
    assert not _eventually(lambda: len(seen) > 6, 0.3)


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
