"""The evacuation controller's sync over preloaded caches: the exact writes, in order (the Node says which VMs
cannot move before any Migration is created), the drain taint, and the VM controller's budget."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from tests.unit.test_evacuation import _node, _vm
from virtmigrate.api.constants import LABEL_EVACUATION
from virtmigrate.controller.evacuation.controller import EvacuationController, is_draining
from virtmigrate.controller.events import RecordingEventRecorder
from virtmigrate.controller.vm.controller import VMController
from virtmigrate.informer import FactoryConfig, SharedInformerFactory


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.calls.append(("create", res.plural, obj))
        return obj

    def patch(self, res: Any, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, patch_type: str = "") -> dict[str, Any]:
        self.calls.append(("patch", res.plural + (f"/{subresource}" if subresource else ""), patch))
        return {}

    def delete(self, res: Any, name: str, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        self.calls.append(("delete", res.plural, name))
        return {}

    def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        raise AssertionError("the controllers read their caches")


def _factory() -> SharedInformerFactory:
    return SharedInformerFactory(None, FactoryConfig(), lister_watcher_for=lambda *a: None)  # type: ignore[arg-type,return-value]


def test_a_cordoned_node_first_says_which_vm_cannot_move_then_evacuates_the_others() -> None:
    client = RecordingClient()
    rec = RecordingEventRecorder()
    c = EvacuationController(client, _factory(), recorder=rec, registry=CollectorRegistry())
    for n in (_node("node0"), _node("node1", unschedulable=True)):
        c.nodes.indexer.add(n)
    c.vms.indexer.add(dict(_vm("ok").raw))
    c.vms.indexer.add(dict(_vm("pinned", nodeSelector={"kubernetes.io/hostname": "node1"}).raw))
    c.sync("node1")
    kinds = [(verb, res) for verb, res, _ in client.calls]
    assert kinds[0] == ("patch", "nodes/status")  # before anything moves
    assert kinds.index(("create", "migrations")) > 0
    created = [obj for verb, res, obj in client.calls if (verb, res) == ("create", "migrations")]
    assert [m["spec"]["selector"]["name"] for m in created] == ["ok"]
    assert created[0]["metadata"]["labels"][LABEL_EVACUATION] == "node1"
    cond = client.calls[0][2]["status"]["conditions"][0]
    assert cond["status"] == "False" and "ns/pinned" in cond["message"]
    assert rec.events[0][:3] == ("Node/node1", "Warning", "EvacuationBlocked")
    marks = {p["status"]["evacuation"]["reason"] for verb, res, p in client.calls if res == "vms/status"}
    assert marks == {"Evacuating", "NoTarget"}


def test_a_node_with_the_drain_taint_is_draining_and_a_schedulable_one_is_not() -> None:
    tainted = _node("n", taints=[{"key": "virtmigrate.kubevirt.io/drain", "effect": "NoSchedule"}])
    assert is_draining(tainted, "virtmigrate.kubevirt.io/drain")
    assert not is_draining(tainted, "")
    assert not is_draining(_node("n"), "virtmigrate.kubevirt.io/drain")
    assert is_draining(_node("n", unschedulable=True), "")


def test_the_vm_controller_creates_the_budget_of_a_live_migrate_vm() -> None:
    client = RecordingClient()
    c = VMController(client, _factory(), recorder=RecordingEventRecorder(), registry=CollectorRegistry(),
                     reader=client)
    c.vms.indexer.add(dict(_vm().raw))
    c.sync("ns/vm")
    pdbs = [obj for verb, res, obj in client.calls if (verb, res) == ("create", "poddisruptionbudgets")]
    assert [p["metadata"]["name"] for p in pdbs] == ["vm-launcher"]
    c.pdbs.indexer.add({**pdbs[0], "metadata": {**pdbs[0]["metadata"], "uid": "p1"}})
    client.calls.clear()
    c.vms.indexer.update(dict(_vm(strategy="None").raw))
    c.sync("ns/vm")
    assert ("delete", "poddisruptionbudgets", "vm-launcher") in client.calls
