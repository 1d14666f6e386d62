"""Deleting a Migration cancels it in whatever phase it is: the VM keeps running on its source node,
and no pod or libvirt domain of the migration is left behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    create_migration,
    domains_on,
    events_for,
    mig,
    running_vm,
    wait_events,
    wait_gone,
    wait_phase,
)


@pytest.fixture
def pin_label(local_cluster: Any) -> Iterator[None]:
    """node1 alone carries `pin=here`, so a VM pinned there has no other node to go to."""
    from tests.conftest import Kubectl

    k = Kubectl(local_cluster.kubeconfig)
    k.run("label", "node", "node1", "pin=here", "--overwrite", namespaced=False)
    yield
    k.run("label", "node", "node1", "pin-", namespaced=False, check=False)


def _cancel_and_check(kube: Any, kubectl: Any, ns: str, lc: Any, source: str, name: str = "testvm-migration",
                      vm: str = "testvm") -> dict[str, Any]:
    # --ignore-not-found: a caller may have deleted it already, and a cancel before the agent runs can
    # release the finalizer before this second delete arrives.
    kubectl("delete", "migration", name, "--wait=false", "--ignore-not-found")
    wait_gone(kube, ns, name, timeout=120)
    assert_runs_only_on(lc, kube, ns, source, vm)
    assert domains_on(lc, ns, vm) == {source: "running"}
    st = kube.get(__import__("virtmigrate.kube.resources", fromlist=["VMS"]).VMS, vm, ns)["status"]
    return dict(st.get("migrationState") or {})


def test_cancel_while_pending_for_capacity(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                           local_cluster: Any, pin_label: None) -> None:
    # Two Migrations stuck in Scheduling (no other node has pin=here) hold node1's two outbound slots.
    for i in range(3):
        running_vm(kube, kubectl, namespace, guest_kernel, local_cluster, f"vm{i}", node_selector={"pin": "here"})
    create_migration(kubectl, "hold0", "vm0")
    create_migration(kubectl, "hold1", "vm1")
    wait_phase(kube, namespace, ("Scheduling",), "hold0", timeout=30)
    wait_phase(kube, namespace, ("Scheduling",), "hold1", timeout=30)
    create_migration(kubectl, "waiting", "vm2")
    m = wait_for("WaitingForCapacity", lambda: (lambda x: x if x and any(
        c["type"] == "WaitingForCapacity" and c["status"] == "True"
        for c in (x.get("status") or {}).get("conditions", [])) else None)(mig(kube, namespace, "waiting")), timeout=30)
    assert m["status"]["phase"] == "Pending"
    assert "leaving node node1 (limit 2 per node)" in m["status"]["conditions"][0]["message"]
    state = _cancel_and_check(kube, kubectl, namespace, local_cluster, "node1", "waiting", "vm2")
    assert state == {}  # a Pending Migration never touched the VM
    for hold, vm in (("hold0", "vm0"), ("hold1", "vm1")):
        cond = next(c for c in mig(kube, namespace, hold)["status"]["conditions"] if c["type"] == "Unschedulable")
        assert "pin" in cond["message"]  # the per-node explanation names the key
        state = _cancel_and_check(kube, kubectl, namespace, local_cluster, "node1", hold, vm)
        assert state["result"] == "Cancelled" and state["completed"] is True


def test_cancel_while_scheduling(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                 local_cluster: Any) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, nodeSelector={"kubernetes.io/arch": "s390x"})
    m = wait_for("Unschedulable condition", lambda: (lambda x: x if x and any(
        c["type"] == "Unschedulable" and c["status"] == "True"
        for c in (x.get("status") or {}).get("conditions", [])) else None)(mig(kube, namespace)), timeout=60)
    assert m["status"]["phase"] == "Scheduling"
    cond = next(c for c in m["status"]["conditions"] if c["type"] == "Unschedulable")
    assert "kubernetes.io/arch" in cond["message"] and "is the source" in cond["message"]
    state = _cancel_and_check(kube, kubectl, namespace, local_cluster, st["node"])
    assert state["result"] == "Cancelled"


@pytest.mark.parametrize("phase", ["Scheduled", "TargetReady"])
def test_cancel_once_the_target_exists(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                       local_cluster: Any, phase: str) -> None:
    """Deleted the moment the phase is seen (these phases last well under a second): whichever step the
    controller is at when it sees the deletion, the outcome is the same."""
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=1)
    wait_phase(kube, namespace, (phase, "TargetReady", "Running"), timeout=60)
    kube.delete(__import__("virtmigrate.kube.resources", fromlist=["MIGRATIONS"]).MIGRATIONS,
                "testvm-migration", namespace)
    seen = [r for r, _ in events_for(kube, namespace, "testvm-migration")]
    state = _cancel_and_check(kube, kubectl, namespace, local_cluster, st["node"])
    assert state["result"] == "Cancelled", (state, seen)


def test_cancel_while_running_aborts_the_libvirt_job(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                    local_cluster: Any) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=1)  # 64 MiB at 1 MiB/s: about a minute
    m = wait_phase(kube, namespace, ("Running",), timeout=60)
    target = m["status"]["targetNode"]
    wait_for("the migration job on the destination", lambda: domains_on(local_cluster, namespace).get(target),
             timeout=30)
    time.sleep(2)  # well into the copy
    state = _cancel_and_check(kube, kubectl, namespace, local_cluster, st["node"])
    assert state["result"] == "Cancelled"
    assert target not in domains_on(local_cluster, namespace)  # libvirt's job was aborted, not just left
    wait_events(kube, namespace, "testvm-migration", "Cancelling", "Cancelled")
