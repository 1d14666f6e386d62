"""The controller's wiring: which events queue which Migration keys, and the worker contract
(success -> forget; error -> rate-limited retry; requeue_after -> add_after; always done)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from virtmigrate import errors
from virtmigrate.api.names import label_value
from virtmigrate.clock import FakeClock
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.events import RecordingEventRecorder
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.controller import MigrationController
from virtmigrate.controller.migration.decide import Action, Decision
from virtmigrate.informer import DeletedFinalStateUnknown, FactoryConfig, SharedInformerFactory

JSON = dict[str, Any]


def make(namespaces: tuple[str, ...] = ()) -> MigrationController:
    factory = SharedInformerFactory(None, FactoryConfig(), lister_watcher_for=lambda *a: None)  # type: ignore[arg-type,return-value]
    reg = CollectorRegistry()
    return MigrationController(object(), factory, config=ControllerConfig(namespaces=namespaces),  # type: ignore[arg-type]
                               recorder=RecordingEventRecorder(), metrics=MigrationMetrics(reg), clock=FakeClock(),
                               registry=reg)


def drain(c: MigrationController) -> list[str]:
    keys = []
    while c.queue.len():
        k, _ = c.queue.get()
        assert k is not None
        keys.append(k)
        c.queue.done(k)
    return sorted(keys)


def pod(name: str, labels: dict[str, str], **status: Any) -> JSON:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels}, "spec": {}, "status": status}


def test_pod_events_queue_their_migration() -> None:
    c = make()
    c._on_pod(pod("t", {"virtmigrate.kubevirt.io/vm": "vm", "virtmigrate.kubevirt.io/migration": "m"}))
    assert drain(c) == ["ns/m"]


def test_pods_of_long_named_objects_queue_the_full_migration_name() -> None:
    """Labels carry shortened names past 63 characters; the queue key comes from the full-name annotation."""
    long_vm, long_mig = "v" * 70, "m" * 80
    p = pod("t", {"virtmigrate.kubevirt.io/vm": label_value(long_vm),
                  "virtmigrate.kubevirt.io/migration": label_value(long_mig)})
    p["metadata"]["annotations"] = {"virtmigrate.kubevirt.io/vm-name": long_vm,
                                    "virtmigrate.kubevirt.io/migration-name": long_mig}
    c = make()
    c._on_pod(p)
    assert drain(c) == [f"ns/{long_mig}"]


def test_source_launcher_events_queue_unfinished_migrations_of_its_vm() -> None:
    c = make()
    store = c.migrations.indexer
    for name, phase, fin in (("active", "Running", True), ("done", "Succeeded", False),
                             ("cleanup", "Succeeded", True)):
        meta: JSON = {"name": name, "namespace": "ns"}
        if fin:
            meta["finalizers"] = ["virtmigrate.kubevirt.io/cancel"]
        store.add({"metadata": meta, "spec": {"selector": {"name": "vm"}}, "status": {"phase": phase}})
    c._on_pod(pod("src", {"virtmigrate.kubevirt.io/vm": "vm", "virtmigrate.kubevirt.io/role": "launcher"}))
    assert drain(c) == ["ns/active", "ns/cleanup"]


def test_a_former_target_is_also_the_source_of_the_next_migration() -> None:
    c = make()
    c.migrations.indexer.add({"metadata": {"name": "hop1", "namespace": "ns", "finalizers": ["x"]},
                              "spec": {"selector": {"name": "vm"}}, "status": {"phase": "Succeeded"}})
    c._on_pod(pod("was-hop0-target", {"virtmigrate.kubevirt.io/vm": "vm", "virtmigrate.kubevirt.io/role": "launcher",
                                      "virtmigrate.kubevirt.io/migration": "hop0"}))
    assert drain(c) == ["ns/hop0", "ns/hop1"]


def _agent(owner_kind: str = "Migration", **status: Any) -> JSON:
    a = pod("a", {"virtmigrate.kubevirt.io/vm": "vm", "virtmigrate.kubevirt.io/migration": "m",
                  "virtmigrate.kubevirt.io/role": "agent"}, phase="Failed",
            containerStatuses=[{"state": {"terminated": {"exitCode": 23, "message": "{}"}}}])
    a["metadata"]["ownerReferences"] = [{"apiVersion": "kubevirt.io/v1alpha1", "kind": owner_kind, "name": "m",
                                         "uid": "uid-of-m", "controller": True}]
    return a


def test_a_vanished_agent_pod_leaves_its_exit_code_behind() -> None:
    """Remembered under the owning Migration's uid, not its name: a new Migration of the same name (another
    uid) must never inherit the outcome of the old one's agent."""
    c = make()
    c._on_pod_delete(DeletedFinalStateUnknown("ns/a", _agent()))
    assert c.syncer._agent_exits == {"uid-of-m": ("ns/m", 23, "{}")}
    assert drain(c) == ["ns/m"]


def test_an_agent_pod_not_owned_by_a_migration_leaves_nothing() -> None:
    c = make()
    c._on_pod_delete(_agent(owner_kind="ReplicaSet"))
    assert c.syncer._agent_exits == {}


def test_the_remembered_exit_is_dropped_when_its_migration_is_gone() -> None:
    c = make()
    c._on_pod_delete(DeletedFinalStateUnknown("ns/a", _agent()))
    assert c.syncer.sync("ns/m") is None  # the Migration is no longer in the cache: released and gone
    assert c.syncer._agent_exits == {}


def test_other_namespaces_are_ignored() -> None:
    c = make(("mine",))
    c.enqueue("other/m")
    c.enqueue("mine/m")
    assert drain(c) == ["mine/m"]


@pytest.mark.parametrize(("outcome", "requeues", "later"), [
    pytest.param(Decision(Action.NOTHING, requeue_after=30.0), 0, True, id="requeue-after"),
    pytest.param(Decision(Action.ADMIT), 0, False, id="success-forgets"),
    pytest.param(errors.Conflict("stale"), 1, True, id="conflict-retries"),
    pytest.param(errors.ServerError("503"), 1, True, id="transient-retries"),
    pytest.param(RuntimeError("bug"), 1, True, id="crash-retries"),
])
def test_worker_contract(outcome: Any, requeues: int, later: bool) -> None:
    c = make()

    def sync(key: str) -> Decision:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    c.syncer.sync = sync  # type: ignore[method-assign]
    c.enqueue("ns/m")
    assert c.process_next_work_item()
    assert c.queue.num_requeues("ns/m") == requeues
    assert c.queue.processing_len() == 0  # done() was called
    assert c.queue.len() == 0  # nothing immediately: the retry or requeue waits its delay
    assert bool(c.queue._ready_at) == later
    c.queue.shut_down()
    assert not c.process_next_work_item()
