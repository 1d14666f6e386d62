"""The informer under real failures, on a control plane of its own (watch cache disabled, so a
watch reads etcd directly and etcd compaction produces a real 410 Gone):

- the watch is down while objects change and etcd compacts past its resourceVersion:
  the reflector gets 410, relists with a consistent read, and the handlers get the changes,
  with a tombstone carrying the last known state of the object deleted meanwhile;
- the API server is killed and restarted mid-watch: the informer converges to the true state.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes_listwatch import Recorder
from tests.waiting import eventually as _eventually
from virtmigrate.informer import DeletedFinalStateUnknown, InformerConfig, SharedInformer
from virtmigrate.kube import CONFIGMAPS, KubeClient
from virtmigrate.kube.client import WatchEvent
from virtmigrate.kube.listwatch import KubeListerWatcher, WatchStream
from virtmigrate.kube.resources import NAMESPACES
from virtmigrate.local import procs
from virtmigrate.local.controlplane import ControlPlane

pytestmark = pytest.mark.integration
NS = "informer-failures"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    d = Path(tempfile.mkdtemp(prefix="virtmigrate-informer-"))
    plane = ControlPlane(d, extra_apiserver_args=("--watch-cache=false",))
    plane.up()
    client = KubeClient.from_kubeconfig(str(plane.kubeconfig))
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    yield plane
    plane.down()
    shutil.rmtree(d, ignore_errors=True)


def etcd_compact(plane: ControlPlane) -> int:
    """Compact etcd at its current revision through the v3 HTTP gateway; returns the revision."""
    port = json.loads((plane.state / "ports.json").read_text())["etcd"]
    base = f"http://127.0.0.1:{port}/v3/kv"

    def post(path: str, body: dict) -> dict:  # type: ignore[type-arg]
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            out: dict = json.loads(r.read())  # type: ignore[type-arg]
            return out

    rev = int(post("/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
    post("/compaction", {"revision": rev, "physical": True})
    return rev


class GatedListerWatcher:
    """The real list/watch, except that while the gate is closed new watches wait at it:
    the test decides how long the informer's watch stays down."""

    def __init__(self, inner: KubeListerWatcher) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.current: _GatedWatch | None = None
        self.opened = threading.Event()

    def list(self, *, limit: int | None = None, continue_: str | None = None,
             resource_version: str | None = None) -> dict:  # type: ignore[type-arg]
        return self.inner.list(limit=limit, continue_=continue_, resource_version=resource_version)

    def watch(self, *, resource_version: str, timeout_seconds: int, allow_bookmarks: bool = True) -> WatchStream:
        self.current = _GatedWatch(self, self.inner.watch(resource_version=resource_version,
                                                          timeout_seconds=timeout_seconds,
                                                          allow_bookmarks=allow_bookmarks))
        return self.current


class _GatedWatch:
    def __init__(self, lw: GatedListerWatcher, inner: WatchStream) -> None:
        self.lw, self.inner, self.stopped = lw, inner, threading.Event()

    def __iter__(self) -> Iterator[WatchEvent]:
        while not self.lw.gate.wait(0.05):
            if self.stopped.is_set():
                return
        self.lw.opened.set()
        yield from self.inner

    def stop(self) -> None:
        self.stopped.set()
        self.inner.stop()


def cm(name: str, value: str) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
            "data": {"v": value}}


def truth(client: KubeClient) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in client.list_all(CONFIGMAPS, NS)
            if o["metadata"]["name"].startswith("t-")}


def cached(inf: SharedInformer) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in inf.indexer.list()
            if o["metadata"]["name"].startswith("t-")}


def eventually(pred: Callable[[], object], timeout: float = 60.0) -> bool:
    return _eventually(pred, timeout, interval=0.1)

@pytest.fixture
def client(cp: ControlPlane) -> Iterator[KubeClient]:
    c = KubeClient.from_kubeconfig(str(cp.kubeconfig))
    for o in c.list_all(CONFIGMAPS, NS):
        if o["metadata"]["name"].startswith("t-"):
            c.delete(CONFIGMAPS, o["metadata"]["name"], NS)
    yield c


def test_410_after_compaction_relists_without_losing_final_state(cp: ControlPlane, client: KubeClient) -> None:
    for name in ("t-a", "t-b", "t-c"):
        client.create(CONFIGMAPS, cm(name, "1"), NS)
    lw = GatedListerWatcher(KubeListerWatcher(client, CONFIGMAPS, namespace=NS))
    reg = CollectorRegistry()
    inf = SharedInformer(lw, InformerConfig(name="gone", registry=reg))
    rec = Recorder()
    inf.add_event_handler(rec)
    stop = threading.Event()
    t = inf.start(stop)
    try:
        assert inf.wait_for_cache_sync(stop, timeout=30)
        assert lw.opened.wait(30)
        client.replace(CONFIGMAPS, {**client.get(CONFIGMAPS, "t-b", NS), "data": {"v": "last-seen"}})
        assert eventually(lambda: cached(inf).get("t-b") == {"v": "last-seen"}, 30)
        watch_rv = inf.last_sync_resource_version
        n_before = len(rec.events)

        lw.gate.clear()  # the watch goes down and stays down
        assert lw.current is not None
        lw.current.stop()
        client.replace(CONFIGMAPS, {**client.get(CONFIGMAPS, "t-b", NS), "data": {"v": "never-seen"}})
        client.delete(CONFIGMAPS, "t-b", NS)
        client.replace(CONFIGMAPS, {**client.get(CONFIGMAPS, "t-a", NS), "data": {"v": "2"}})
        client.create(CONFIGMAPS, cm("t-d", "1"), NS)
        rev = etcd_compact(cp)
        assert rev > int(watch_rv)
        lw.gate.set()

        assert eventually(lambda: cached(inf) == truth(client), 60), (cached(inf), truth(client))
        assert reg.get_sample_value("reflector_relists_after_gone_total", {"name": "gone"}) == 1
        after = rec.events[n_before:]
        tombstones = [e[1] for e in after if e[0] == "delete"]
        assert len(tombstones) == 1 and isinstance(tombstones[0], DeletedFinalStateUnknown)
        assert tombstones[0].key == f"{NS}/t-b" and tombstones[0].obj["data"] == {"v": "last-seen"}
        assert any(e[0] == "update" and e[1] == "t-a" and e[3]["data"] == {"v": "2"} for e in after)
        assert any(e[:3] == ("add", "t-d", False) for e in after)
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive(), "stopping the informer must end its open watch promptly"


def test_apiserver_killed_and_restarted_mid_watch_converges(cp: ControlPlane, client: KubeClient) -> None:
    for name in ("t-a", "t-b"):
        client.create(CONFIGMAPS, cm(name, "1"), NS)
    inf = SharedInformer(KubeListerWatcher(client, CONFIGMAPS, namespace=NS),
                         InformerConfig(name="restart", registry=CollectorRegistry()))
    rec = Recorder()
    inf.add_event_handler(rec)
    stop = threading.Event()
    t = inf.start(stop)
    try:
        assert inf.wait_for_cache_sync(stop, timeout=30)
        assert procs.stop("kube-apiserver", cp.state)
        cp.up()
        client.replace(CONFIGMAPS, {**client.get(CONFIGMAPS, "t-a", NS), "data": {"v": "after-restart"}})
        client.delete(CONFIGMAPS, "t-b", NS)
        client.create(CONFIGMAPS, cm("t-e", "1"), NS)
        assert eventually(lambda: cached(inf) == truth(client), 90), (cached(inf), truth(client))
        assert cached(inf) == {"t-a": {"v": "after-restart"}, "t-e": {"v": "1"}}
        deleted = [e[1] for e in rec.events if e[0] == "delete"]
        names = [d.key if isinstance(d, DeletedFinalStateUnknown) else d["metadata"]["name"] for d in deleted]
        assert any(n.endswith("t-b") for n in names), "the handler must hear of the delete"
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive(), "stopping the informer must end its open watch promptly"


def test_stop_ends_a_watch_blocked_on_the_api_servers_tls_stream(client: KubeClient) -> None:
    """What a reflector's shutdown relies on: `stop()` from another thread ends a watch that waits for the
    next event on a real TLS connection, at once and without an error; a watch stopped before it starts sends
    nothing."""
    client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stop-probe"}}, NS)
    w = client.open_watch(CONFIGMAPS, NS, resource_version="0", timeout_seconds=300)
    seen: list[str] = []
    ended: list[BaseException | None] = []

    def consume() -> None:
        try:
            seen.extend(str(e.object["metadata"].get("name")) for e in w)
            ended.append(None)
        except BaseException as e:  # the assertion below shows whatever ended it
            ended.append(e)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert _eventually(lambda: "stop-probe" in seen, 10)  # the stream is open and now waits
    w.stop()
    t.join(2)
    assert not t.is_alive() and ended == [None]
    early = client.open_watch(CONFIGMAPS, NS, resource_version="0")
    early.stop()
    assert list(early) == []
