"""The active-Migration index: counts per cluster, source node and VM that stay right through restarts
(a fresh informer over the same objects), cancels and failures, and admission that ignores history."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.fakes_listwatch import FakeListerWatcher
from tests.waiting import eventually
from virtmigrate.clock import FakeClock
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.indexes import MIGRATION_VM_INDEX, index_migration_by_vm
from virtmigrate.controller.migration.active import (
    ACTIVE_ALL,
    ACTIVE_INDEX,
    ACTIVE_INDEXERS,
    node_value,
    vm_value,
)
from virtmigrate.controller.migration.capacity import Limits
from virtmigrate.controller.migration.observe import Listers, Observer
from virtmigrate.informer import InformerConfig, SharedInformer, Store

JSON = dict[str, Any]
FIN = "virtmigrate.kubevirt.io/cancel"


def mig(name: str, vm: str, phase: str | None = None, *, node: str = "", finalizer: bool = True,
        deleting: bool = False, ns: str = "default") -> JSON:
    meta: JSON = {"name": name, "namespace": ns, "uid": f"{name}-uid",
                  "creationTimestamp": f"2026-01-01T00:00:{len(name):02d}Z"}
    if finalizer:
        meta["finalizers"] = [FIN]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    status: JSON = {}
    if phase:
        status["phase"] = phase
    if node:
        status["sourceNode"] = node
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": meta,
            "spec": {"selector": {"name": vm}}, "status": status}


def history(n: int, ns: str = "default") -> list[JSON]:
    """`n` finished Migrations (terminal, finalizer released) of VMs vm0..vm9."""
    return [mig(f"old{i}", f"vm{i % 10}", "Succeeded" if i % 3 else "Failed", node=f"node{i % 4}", finalizer=False,
                ns=ns) for i in range(n)]


def counts(store: Store) -> tuple[int, int, int]:
    """(active in the cluster, leaving node0, of VM vm0)."""
    return (store.index_count(ACTIVE_INDEX, ACTIVE_ALL), store.index_count(ACTIVE_INDEX, node_value("node0")),
            store.index_count(ACTIVE_INDEX, vm_value("default", "vm0")))


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()


def informer(lw: FakeListerWatcher, stop: threading.Event) -> SharedInformer:
    inf = SharedInformer(lw, InformerConfig(name="migrations", clock=FakeClock(), registry=CollectorRegistry(),
                                            indexers={**ACTIVE_INDEXERS}))
    inf.start(stop)
    assert inf.wait_for_cache_sync(stop, timeout=5)
    return inf


def test_finished_migrations_are_in_no_active_value() -> None:
    store = Store(ACTIVE_INDEXERS)
    store.replace([*history(1000), mig("new", "vm0"), mig("running", "vm0", "Running", node="node0"),
                   mig("elsewhere", "vm5", "Scheduling", node="node1")])
    assert counts(store) == (3, 1, 2)
    assert sorted(m["metadata"]["name"] for m in store.by_index(ACTIVE_INDEX, ACTIVE_ALL)) == [
        "elsewhere", "new", "running"]


@pytest.mark.parametrize(("final", "expected"), [
    pytest.param(mig("m", "vm0", "Failed", node="node0"), (1, 1, 1), id="failed-still-cleaning-up"),
    pytest.param(mig("m", "vm0", "Failed", node="node0", finalizer=False), (0, 0, 0), id="failed-released"),
    pytest.param(mig("m", "vm0", "Running", node="node0", deleting=True), (1, 1, 1), id="cancel-requested"),
    pytest.param(mig("m", "vm0", "Succeeded", node="node0", finalizer=False), (0, 0, 0), id="succeeded-released"),
])
def test_counts_follow_a_migration_to_its_end(final: JSON, expected: tuple[int, int, int]) -> None:
    store = Store(ACTIVE_INDEXERS)
    store.add(mig("m", "vm0"))
    assert counts(store) == (1, 0, 1)  # Pending: no source node yet
    store.update(mig("m", "vm0", "Running", node="node0"))
    assert counts(store) == (1, 1, 1)
    store.update(final)
    assert counts(store) == expected


def test_a_cancelled_migration_that_goes_away_leaves_no_count() -> None:
    store = Store(ACTIVE_INDEXERS)
    store.add(mig("m", "vm0", "Running", node="node0", deleting=True))
    store.delete(mig("m", "vm0"))
    assert counts(store) == (0, 0, 0)


def test_a_fresh_informer_over_the_same_objects_counts_the_same(stop: threading.Event) -> None:
    lw = FakeListerWatcher()
    for o in [*history(200), mig("a", "vm0", "Running", node="node0"), mig("b", "vm1", "Failed", node="node0"),
              mig("c", "vm0")]:
        lw.create(o)
    first = informer(lw, stop)
    assert counts(first.indexer) == (3, 2, 2)
    lw.update(mig("a", "vm0", "Succeeded", node="node0", finalizer=False))   # finished while we ran
    assert eventually(lambda: counts(first.indexer) == (2, 1, 1))
    stop.set()                                                               # the controller restarts
    lw.update(mig("b", "vm1", "Failed", node="node0", finalizer=False))      # released while it was down
    again = threading.Event()
    second = informer(lw, again)
    try:
        assert counts(second.indexer) == (1, 0, 1)
        assert [m["metadata"]["name"] for m in second.indexer.by_index(ACTIVE_INDEX, ACTIVE_ALL)] == ["c"]
    finally:
        again.set()


def _observer(migrations: Store, vms: Store, limits: Limits) -> Observer:
    return Observer(Listers(migrations, vms, Store(), Store()), config=ControllerConfig(limits=limits),
                    clock=FakeClock())


def test_admission_looks_at_active_migrations_only() -> None:
    migrations = Store({MIGRATION_VM_INDEX: index_migration_by_vm, **ACTIVE_INDEXERS})
    vms = Store()
    vms.add({"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": "vm7", "namespace": "default"},
             "status": {"phase": "Running", "node": "node3"}})
    migrations.replace([*history(10_000), mig("running", "vm1", "Running", node="node0"), mig("waits", "vm7")])
    obs = _observer(migrations, vms, Limits(max_running=5, max_per_node=2))
    # 10,000 finished Migrations are history: limits of 2 cannot bind on 2 active ones.
    assert not obs.limits_can_bind()
    got = {c.key: (c.active, c.source_node) for c in obs.candidates(admitted=())}
    assert got == {"default/running": (True, "node0"), "default/waits": (False, "node3")}
