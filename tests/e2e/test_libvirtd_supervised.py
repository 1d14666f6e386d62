"""A node's libvirtd is supervised as systemd would on a real node: killed, it comes back by itself, the
running guest survives and its launcher reconnects, and the node can take and give migrations again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import domain_state, wait_for
from tests.e2e.test_migration_support import assert_runs_only_on, create_migration, running_vm, wait_phase


def test_a_killed_libvirtd_restarts_and_its_guest_keeps_running_and_migrating(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    index = int(st["node"].removeprefix("node"))
    old = local_cluster.hosts.daemon_pid(index)
    assert old is not None
    local_cluster.hosts.kill_daemon(index)
    new = wait_for("libvirtd restarted by its supervisor", lambda: (lambda p: p if p not in (None, old) else None)(
        local_cluster.hosts.daemon_pid(index)), timeout=30)
    assert new != old
    wait_for("the guest reconnected", lambda: domain_state(local_cluster, st["node"], f"{namespace}_testvm")
             == "running", timeout=30)
    assert_runs_only_on(local_cluster, kube, namespace, st["node"])  # same launcher pod, VM still Running
    create_migration(kubectl)
    m = wait_phase(kube, namespace, ("Succeeded", "Failed"), timeout=120)
    assert m["status"]["phase"] == "Succeeded", m["status"]
    assert_runs_only_on(local_cluster, kube, namespace, m["status"]["targetNode"])
