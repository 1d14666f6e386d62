"""The seed's session on the local cluster: a VM runs on a node, a Migration moves it live to another
node, and the guest's own heartbeat continues there — through kubectl only, with real QEMU guests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import domain_state, serial_lines, wait_for
from virtmigrate.kube.resources import MIGRATIONS, VMS


def test_a_migration_moves_the_running_guest_to_another_node(kube: Any, kubectl: Any, namespace: str,
                                                            guest_kernel: Path, local_cluster: Any) -> None:
    vm = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": "testvm"},
          "spec": {"running": True, "memory": "64Mi", "kernel": str(guest_kernel)}}
    kubectl("apply", "-f", "-", input=json.dumps(vm))
    st = wait_for("VM Running", lambda: (s := kube.get(VMS, "testvm", namespace).get("status") or {})
                  .get("phase") == "Running" and s, timeout=90)
    source = st["node"]
    domain = f"{namespace}_testvm"
    wait_for("heartbeats on the source", lambda: serial_lines(local_cluster, source, domain) >= 2, timeout=30)

    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": {"name": "testvm-migration"},
        "spec": {"selector": {"name": "testvm"}}}))
    m = wait_for("Migration finished", lambda: (s := kube.get(MIGRATIONS, "testvm-migration", namespace)
                                                 .get("status") or {}).get("phase") in ("Succeeded", "Failed") and s,
                 timeout=120)
    assert m["phase"] == "Succeeded", m
    target = m["targetNode"]
    assert target != source and m["sourceNode"] == source

    after = kube.get(VMS, "testvm", namespace)["status"]
    assert after["phase"] == "Running" and after["node"] == target and after["launcherPod"] == m["targetPod"]
    assert domain_state(local_cluster, target, domain) == "running"
    assert domain_state(local_cluster, source, domain) == ""
    # The guest itself proves it runs on the target: its heartbeat continues in the target's serial file.
    wait_for("heartbeats on the target", lambda: serial_lines(local_cluster, target, domain) >= 2, timeout=30)
    pods = kubectl("get", "pods", "-o", "wide")
    assert m["targetPod"] in pods
    out = kubectl("get", "migrations")
    assert "testvm-migration" in out and "Succeeded" in out
