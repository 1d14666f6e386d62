"""Requests that cannot proceed fail fast with a reason naming the cause; the VM never moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    create_migration,
    events_for,
    migration_yaml,
    running_vm,
    wait_phase,
)


@pytest.fixture
def zone_labels(local_cluster: Any) -> Iterator[None]:
    """Nodes labelled `zone`: node0 a, node1 and node2 b (removed afterwards)."""
    from tests.conftest import Kubectl

    k = Kubectl(local_cluster.kubeconfig)
    for node, zone in (("node0", "a"), ("node1", "b"), ("node2", "b")):
        k.run("label", "node", node, f"zone={zone}", "--overwrite", namespaced=False)
    yield
    for node in ("node0", "node1", "node2"):
        k.run("label", "node", node, "zone-", namespaced=False, check=False)


def test_contradiction_fails_at_once_naming_zone(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                local_cluster: Any, zone_labels: None) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster, node_selector={"zone": "a"})
    assert st["node"] == "node0"
    create_migration(kubectl, nodeSelector={"zone": "b"})
    m = wait_phase(kube, namespace, ("Failed", "Succeeded"), timeout=30)
    status = m["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ConstraintContradiction")
    assert "zone" in status["message"] and "testvm" in status["message"]
    assert "a" in status["message"] and "b" in status["message"]
    assert "targetPod" not in status  # nothing was created
    wait_for("the ConstraintContradiction Event (Events are written asynchronously)", lambda: (
        "ConstraintContradiction", status["message"]) in events_for(kube, namespace, "testvm-migration"), timeout=30)
    assert_runs_only_on(local_cluster, kube, namespace, "node0")


def test_pinned_vm_cannot_move_until_the_pin_is_removed(kube: Any, kubectl: Any, namespace: str,
                                                       guest_kernel: Path, local_cluster: Any) -> None:
    running_vm(kube, kubectl, namespace, guest_kernel, local_cluster,
               node_selector={"kubernetes.io/hostname": "node0"})
    create_migration(kubectl, "first")
    status = wait_phase(kube, namespace, ("Failed", "Succeeded"), "first", timeout=30)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "ConstraintContradiction")
    assert "kubernetes.io/hostname" in status["message"]
    assert_runs_only_on(local_cluster, kube, namespace, "node0")

    kubectl("patch", "vm", "testvm", "--type=json", "-p",
            '[{"op": "remove", "path": "/spec/nodeSelector/kubernetes.io~1hostname"}]')
    create_migration(kubectl, "second")
    status = wait_phase(kube, namespace, ("Failed", "Succeeded"), "second", timeout=120)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["targetNode"] != "node0"
    assert_runs_only_on(local_cluster, kube, namespace, status["targetNode"])


def test_second_migration_of_a_busy_vm_fails(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                             local_cluster: Any) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    both = migration_yaml("first", bandwidthMiBps=8) + "\n---\n" + migration_yaml("second")
    kubectl("create", "-f", "-", input=both)
    second = wait_phase(kube, namespace, ("Failed", "Succeeded"), "second", timeout=30)["status"]
    assert (second["phase"], second["reason"]) == ("Failed", "VMBusy")
    assert "'testvm'" in second["message"] and "'first'" in second["message"]
    first = wait_phase(kube, namespace, ("Failed", "Succeeded"), "first", timeout=180)["status"]
    assert first["phase"] == "Succeeded", first
    assert first["sourceNode"] == st["node"]
    assert_runs_only_on(local_cluster, kube, namespace, first["targetNode"])


def test_missing_and_stopped_vms_fail_naming_them(kube: Any, kubectl: Any, namespace: str,
                                                 guest_kernel: Path) -> None:
    create_migration(kubectl, "nothing", vm="no-such-vm")
    status = wait_phase(kube, namespace, ("Failed",), "nothing", timeout=30)["status"]
    assert status["reason"] == "VMNotFound" and "'no-such-vm'" in status["message"]
    vm = ('{"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": "idle"}, '
          f'"spec": {{"running": false, "memory": "64Mi", "kernel": "{guest_kernel}"}}}}')
    kubectl("apply", "-f", "-", input=vm)
    create_migration(kubectl, "stopped", vm="idle")
    status = wait_phase(kube, namespace, ("Failed",), "stopped", timeout=30)["status"]
    assert status["reason"] == "VMNotRunning" and "'idle'" in status["message"]
