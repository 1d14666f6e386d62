"""The seed's session, verbatim, on the local cluster: a real guest moves between nodes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.e2e.conftest import serial_lines, wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    mig,
    running_vm,
    wait_events,
    wait_gone,
)

SEED_MIGRATION = (REPO / "examples" / "migration.yaml").read_text()  # the seed's file, verbatim


def test_seed_session_moves_the_guest(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                      local_cluster: Any, tmp_path: Path) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    source = st["node"]
    source_pod = st["launcherPod"]
    (tmp_path / "migration.yaml").write_text(SEED_MIGRATION)

    out = kubectl("create", "-f", str(tmp_path / "migration.yaml"))
    assert out.strip() == "migration.kubevirt.io/testvm-migration created"

    def succeeded() -> str | None:
        table = kubectl("get", "migrations")
        return table if "Succeeded" in table else None
    table = wait_for("kubectl get migrations to show Succeeded", succeeded, timeout=120, interval=0.5)
    assert "testvm-migration" in table and "testvm" in table and source in table

    yaml_out = kubectl("get", "migrations", "testvm-migration", "-o", "yaml")
    assert "phase: Succeeded" in yaml_out and "reason: Migrated" in yaml_out
    status = (mig(kube, namespace) or {})["status"]
    target = status["targetNode"]
    assert target != source and status["sourceNode"] == source
    assert [p["phase"] for p in status["phaseTransitionTimestamps"]] == \
        ["Pending", "Scheduling", "Scheduled", "TargetReady", "Running", "Succeeded"]
    assert status["result"]["exitCode"] == 0

    # The VM on its new node, its heartbeat continuing there; nothing left on the source.
    assert_runs_only_on(local_cluster, kube, namespace, target)
    vm = kube.get(__import__("virtmigrate.kube.resources", fromlist=["VMS"]).VMS, "testvm", namespace)
    ms = vm["status"]["migrationState"]
    assert (ms["sourceNode"], ms["targetNode"], ms["result"], ms["completed"]) == (source, target, "Succeeded", True)
    assert ms["startTimestamp"] <= ms["endTimestamp"]
    assert vm["status"]["launcherPod"] == status["targetPod"] != source_pod
    assert serial_lines(local_cluster, target, f"{namespace}_testvm") >= 2

    # `kubectl describe migration` tells the story: the Events of the target pod's creation, the agent's (from
    # which node to which) and the end; every phase entered is in the status, with its time.
    reasons = wait_events(kube, namespace, "testvm-migration", "Scheduling", "AgentCreated", "Succeeded")
    assert sorted(reasons) == ["AgentCreated", "Scheduling", "Succeeded"], reasons
    described = kubectl("describe", "migration", "testvm-migration")
    assert "Succeeded" in described and "TargetReady" in described and f"to node {target}" in described

    kubectl("delete", "migrations", "testvm-migration")
    wait_gone(kube, namespace)
    assert_runs_only_on(local_cluster, kube, namespace, target)  # deleting a finished Migration moves nothing


def test_back_and_forth_three_times(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                   local_cluster: Any) -> None:
    """Each Migration starts when the previous one is done; an old Migration's cleanup never touches the
    pod the VM has moved back into."""
    from tests.e2e.test_migration_support import create_migration, vm_status, wait_phase

    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    node = st["node"]
    for i in range(3):
        other = "node1" if node == "node0" else "node0"
        create_migration(kubectl, f"hop{i}", nodeSelector={"kubernetes.io/hostname": other})
        status = wait_phase(kube, namespace, ("Succeeded", "Failed"), f"hop{i}", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        node = other
    wait_for("all three released", lambda: all(not (mig(kube, namespace, f"hop{i}") or {}).get("metadata", {})
                                                .get("finalizers") for i in range(3)), timeout=60)
    assert_runs_only_on(local_cluster, kube, namespace, node)
    time.sleep(3)  # nothing happens later either
    assert vm_status(kube, namespace)["phase"] == "Running"
    assert_runs_only_on(local_cluster, kube, namespace, node)
