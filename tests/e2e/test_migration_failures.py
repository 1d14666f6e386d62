"""Failures mid-migration: the destination's libvirt dies; the controller dies. Nothing is lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    create_migration,
    domains_on,
    events_for,
    running_vm,
    vm_status,
    wait_events,
    wait_gone,
    wait_phase,
)
from virtmigrate.kube.resources import PODS


def test_destination_libvirt_killed_fails_and_vm_stays(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                       local_cluster: Any) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=1)
    m = wait_phase(kube, namespace, ("Running",), timeout=60)
    target = m["status"]["targetNode"]
    wait_for("the incoming domain on the destination", lambda: domains_on(local_cluster, namespace).get(target),
             timeout=30)
    time.sleep(1)
    try:
        local_cluster.hosts.kill_daemon(int(target.removeprefix("node")))
        m = wait_phase(kube, namespace, ("Failed", "Succeeded"), timeout=120)
        status = m["status"]
        assert status["phase"] == "Failed", status
        assert status["reason"] in ("MigrationFailed", "DestinationUnreachable"), status
        assert status["result"]["exitCode"] in (11, 20)
        wait_for("the VM back to Running on its source", lambda: (lambda v: v if (v.get("phase"), v.get("node"))
                 == ("Running", st["node"]) else None)(vm_status(kube, namespace)), timeout=30)
        wait_events(kube, namespace, "testvm-migration", status["reason"])
    finally:
        local_cluster.up()  # restarts the killed daemon
    wait_for("target pod removed", lambda: not kube.list_all(PODS, namespace, field_selector=f"spec.nodeName={target}"),
             timeout=60)
    assert_runs_only_on(local_cluster, kube, namespace, st["node"])
    kubectl("delete", "migration", "testvm-migration")
    wait_gone(kube, namespace)


def _controller_pid(lc: Any) -> int:
    return int((Path(lc.state) / "pids" / "controller.pid").read_text().split()[0])


def _dead(pid: int) -> bool:
    """Process `pid` is gone or a zombie. It can vanish between any two reads of /proc: a missing file is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_controller_killed_mid_migration_completes_exactly_once(kube: Any, kubectl: Any, namespace: str,
                                                                guest_kernel: Path, local_cluster: Any) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=3)  # ~20 s of copying
    wait_phase(kube, namespace, ("Running",), timeout=60)
    old = _controller_pid(local_cluster)
    os.kill(old, signal.SIGKILL)  # no graceful release: the successor waits out the Lease
    wait_for("the controller to die", lambda: _dead(old), timeout=10)
    local_cluster.up()  # starts a new controller process
    assert _controller_pid(local_cluster) != old
    m = wait_phase(kube, namespace, ("Succeeded", "Failed"), timeout=180)
    status = m["status"]
    assert status["phase"] == "Succeeded", status
    assert [p["phase"] for p in status["phaseTransitionTimestamps"]] == \
        ["Pending", "Scheduling", "Scheduled", "TargetReady", "Running", "Succeeded"]
    target = status["targetNode"]
    assert target != st["node"]
    assert_runs_only_on(local_cluster, kube, namespace, target)
    events = events_for(kube, namespace, "testvm-migration")
    assert [r for r, _ in events].count("AgentCreated") == 1  # one agent: the guest moved once
    assert [r for r, _ in events].count("Succeeded") == 1
    ms = vm_status(kube, namespace)["migrationState"]
    assert (ms["sourceNode"], ms["targetNode"], ms["result"]) == (st["node"], target, "Succeeded")
    kubectl("delete", "migration", "testvm-migration")
    wait_gone(kube, namespace)
