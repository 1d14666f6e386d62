"""A factory scoped to namespaces lists and watches only those namespaces, and reads as one cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes_listwatch import FakeListerWatcher, Recorder, obj
from tests.waiting import eventually
from virtmigrate.clock import FakeClock
from virtmigrate.informer import FactoryConfig, InformerConfig, SharedInformerFactory
from virtmigrate.kube.resources import CONFIGMAPS, NODES


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def _factory(namespaces: tuple[str, ...], made: dict[tuple[str, str | None], FakeListerWatcher]
             ) -> SharedInformerFactory:
    def lw_for(res: object, ns: str | None, ls: object, fs: object) -> FakeListerWatcher:
        lw = FakeListerWatcher()
        for name in ("x", "y"):  # what the API server would answer for that namespace (or all of them)
            for where in ([ns] if ns else ["a", "b", "busy"]):
                lw.create(obj(name, where))
        made[(getattr(res, "plural", ""), ns)] = lw
        return lw

    return SharedInformerFactory(None, FactoryConfig(clock=FakeClock(), namespaces=namespaces, defaults=InformerConfig(
        registry=CollectorRegistry())), lister_watcher_for=lw_for)


def test_only_the_served_namespaces_are_listed_and_watched(stop: threading.Event) -> None:
    made: dict[tuple[str, str | None], FakeListerWatcher] = {}
    f = _factory(("a", "b"), made)
    cms = f.informer_for(CONFIGMAPS)
    nodes = f.informer_for(NODES)
    assert f.informer_for(CONFIGMAPS) is cms
    assert set(made) == {("configmaps", "a"), ("configmaps", "b"), ("nodes", None)}  # never all namespaces
    rec = Recorder()
    cms.add_event_handler(rec)
    f.start(stop)
    assert all(f.wait_for_cache_sync(stop, timeout=5).values())
    assert cms.has_synced() and nodes.has_synced()
    assert sorted(cms.indexer.list_keys()) == ["a/x", "a/y", "b/x", "b/y"]
    assert cms.indexer.get_by_key("b/y") is not None and cms.indexer.get_by_key("busy/x") is None
    assert len(cms.indexer.by_index("namespace", "a")) == 2 and cms.indexer.index_count("namespace", "b") == 2
    made[("configmaps", "b")].create(obj("z", "b"))
    assert eventually(lambda: cms.indexer.get_by_key("b/z") is not None)
    added = rec.wait_for(5)  # the four initial objects and the new one, from both namespaces' watches
    assert sorted(f"{e[3]['metadata']['namespace']}/{e[1]}" for e in added if e[0] == "add") == [
        "a/x", "a/y", "b/x", "b/y", "b/z"]


def test_one_namespace_is_that_namespace_s_informer(stop: threading.Event) -> None:
    made: dict[tuple[str, str | None], FakeListerWatcher] = {}
    f = _factory(("a",), made)
    cms = f.informer_for(CONFIGMAPS)
    assert cms is f.informer_for(CONFIGMAPS, namespace="a")
    assert set(made) == {("configmaps", "a")}
