"""Shared informers on the real API server: creates, updates and deletes of custom objects and
pods reach the handlers, the caches and their indexes follow, and selectors filter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.fakes_listwatch import Recorder
from tests.waiting import eventually as _eventually
from virtmigrate.api.constants import LABEL_VM
from virtmigrate.informer import VM_INDEX, SharedInformerFactory, index_by_vm
from virtmigrate.kube import MIGRATIONS, PODS, KubeClient

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crds")]


@pytest.fixture
def factory(kube: KubeClient) -> Iterator[tuple[SharedInformerFactory, threading.Event]]:
    stop = threading.Event()
    f = SharedInformerFactory(kube)
    yield f, stop
    stop.set()
    f.shutdown()


def migration(name: str, vm: str) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": {"name": name},
            "spec": {"selector": {"name": vm}}}


def pod(name: str, labels: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "virtmigrate/none:0"}]}}


def eventually(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    return _eventually(pred, timeout, interval=0.05)

def test_custom_objects_reach_handlers_and_cache(kube: KubeClient, namespace: str,
                                                 factory: tuple[SharedInformerFactory, threading.Event]) -> None:
    f, stop = factory
    kube.create(MIGRATIONS, migration("before", "vm-0"), namespace)
    inf = f.informer_for(MIGRATIONS, namespace=namespace, indexers={VM_INDEX: index_by_vm})
    rec = Recorder()
    inf.add_event_handler(rec)
    f.start(stop)
    assert f.wait_for_cache_sync(stop, timeout=30) == {inf.name: True}
    assert rec.wait_for(1)[0][:3] == ("add", "before", True)

    kube.create(MIGRATIONS, migration("m1", "vm-1"), namespace)
    kube.patch(MIGRATIONS, "m1", {"metadata": {"labels": {"touched": "yes"}}}, namespace)
    kube.delete(MIGRATIONS, "m1", namespace)
    evs = rec.wait_for(4, timeout=30)[1:]
    assert evs[0][:3] == ("add", "m1", False)
    assert evs[1][0] == "update" and "labels" not in evs[1][2]["metadata"]
    assert evs[1][3]["metadata"]["labels"] == {"touched": "yes"}
    assert evs[2][0] == "delete" and evs[2][1]["metadata"]["name"] == "m1"
    assert [o["metadata"]["name"] for o in inf.indexer.by_index(VM_INDEX, f"{namespace}/vm-0")] == ["before"]
    assert inf.indexer.get_by_key(f"{namespace}/m1") is None
    assert "managedFields" not in inf.indexer.get_by_key(f"{namespace}/before")["metadata"]  # type: ignore[index]


def test_pods_reach_handlers_and_label_selectors_filter(
        kube: KubeClient, namespace: str, factory: tuple[SharedInformerFactory, threading.Event]) -> None:
    f, stop = factory
    mine = f.informer_for(PODS, namespace=namespace, label_selector=f"{LABEL_VM}")
    every = f.informer_for(PODS, namespace=namespace, indexers={VM_INDEX: index_by_vm})
    rec_mine, rec_every = Recorder(), Recorder()
    mine.add_event_handler(rec_mine)
    every.add_event_handler(rec_every)
    f.start(stop)
    assert all(f.wait_for_cache_sync(stop, timeout=30).values())

    kube.create(PODS, pod("launcher", {LABEL_VM: "vm-1"}), namespace)
    kube.create(PODS, pod("unrelated", {"app": "x"}), namespace)
    kube.patch(PODS, "launcher", {"metadata": {"annotations": {"seen": "1"}}}, namespace)
    kube.delete(PODS, "launcher", namespace, grace_period_seconds=0)
    assert eventually(lambda: rec_mine.events and rec_mine.events[-1][0] == "delete")
    evs = rec_mine.events  # the scheduler may add status updates in between
    assert evs[0][:3] == ("add", "launcher", False) and evs[-1][1]["metadata"]["name"] == "launcher"
    assert any(e[0] == "update" and e[3]["metadata"].get("annotations") == {"seen": "1"} for e in evs)
    assert {e[1] if e[0] != "delete" else e[1]["metadata"]["name"] for e in evs} == {"launcher"}
    assert eventually(lambda: [p["metadata"]["name"] for p in every.indexer.list()] == ["unrelated"])
    assert every.indexer.by_index(VM_INDEX, f"{namespace}/vm-1") == []


def test_watched_objects_come_without_managed_fields_cut_from_the_api_servers_bytes(
        kube: KubeClient, namespace: str) -> None:
    """A built-in object (a Pod: ObjectMeta's field order) and a custom one (a Migration: sorted keys), each
    written by managers whose names hold the byte patterns the cut looks for: a watch that drops
    managedFields yields exactly what a plain watch yields, minus that field; and the API server's bytes
    are cut (not decoded whole and then stripped)."""
    import orjson

    from virtmigrate.kube.client import MERGE_PATCH, _without_managed_fields

    tricky = ['x]},"spec":{', 'y],"name":"z', 'w"managedFields":[']
    for res, obj in ((PODS, pod("mf", {"a": "b"})), (MIGRATIONS, migration("mf", "vm-mf"))):
        rv = kube.list(res, namespace, limit=1)["metadata"]["resourceVersion"]
        kube.create(res, obj, namespace)
        for i, manager in enumerate(tricky):
            kube.request("PATCH", res.path(namespace, "mf"), query={"fieldManager": manager}, content_type=MERGE_PATCH,
                         body={"metadata": {"annotations": {f"k{i}": manager + ']},"spec":{'}}})
        _, raw, _, _ = kube._conns.round_trip("GET", kube._conns.prefix + res.path(namespace, "mf"), None,
                                              kube._headers(None), time.monotonic() + 30, replay_safe=True)
        assert raw.count(b'"managedFields":[') == 1 and all(orjson.dumps(m)[1:-1] in raw for m in tricky)
        cut = _without_managed_fields(b'{"type":"ADDED","object":' + raw + b"}")
        whole = orjson.loads(raw)
        del whole["metadata"]["managedFields"]
        assert cut is not None and orjson.loads(cut)["object"] == whole

        def events(drop: bool) -> list[dict]:  # type: ignore[type-arg]
            out = []
            for e in kube.open_watch(res, namespace, resource_version=rv, timeout_seconds=5,  # noqa: B023
                                     allow_bookmarks=False, drop_managed_fields=drop):
                out.append(e.object)
                if len(out) == 1 + len(tricky):
                    break
            return out

        plain, dropped = events(False), events(True)
        assert all("managedFields" in o["metadata"] for o in plain)
        for o in plain:
            del o["metadata"]["managedFields"]
        assert dropped == plain and len(plain) == 1 + len(tricky)
