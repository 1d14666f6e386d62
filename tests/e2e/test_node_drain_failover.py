"""A leader failover and a controller restart in the middle of `kubectl drain`: two controller replicas as the
manifests run them (their ServiceAccount and RBAC), the leader SIGKILLed while evacuations copy memory (slowed by
a MigrationPolicy), the standby taking over; and the local cluster's single controller SIGKILLed and started
again. Either way the drain completes and every VM ends on exactly one node with one evacuation each."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import KUBECTL
from tests.e2e.conftest import serial_lines, wait_for
from tests.e2e.test_deployment_replicas import _holder, replicas  # noqa: F401 - the fixture
from tests.e2e.test_migration_failures import _controller_pid, _dead
from tests.e2e.test_migration_support import assert_runs_only_on, vm_status
from tests.e2e.test_node_drain import DRAINED, OTHERS, _evacuations, vms_on_drained_node


@contextlib.contextmanager
def slow_drain(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any,
               names: tuple[str, ...]) -> Iterator[tuple[subprocess.Popen[str], dict[str, int]]]:
    """`LiveMigrate` VMs `names` on the drained node, slowed by a MigrationPolicy (3 MiB/s), and a running
    `kubectl drain` of that node, yielded once an evacuation copies memory with each VM's heartbeat lines
    before the drain; uncordoned and cleaned up after."""
    app = f"slow-{uuid.uuid4().hex[:6]}"
    policy = {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
              "metadata": {"name": app}, "spec": {"selectors": {"vmSelector": {"app": app}}, "bandwidthMiBps": 3}}
    kubectl("create", "-f", "-", input=json.dumps(policy), namespaced=False)
    drain: subprocess.Popen[str] | None = None
    try:
        vms_on_drained_node(kube, kubectl, namespace, guest_kernel, local_cluster, dict.fromkeys(names, "LiveMigrate"),
                            labels={"app": app})
        beats = {n: serial_lines(local_cluster, DRAINED, f"{namespace}_{n}") for n in names}
        drain = subprocess.Popen([KUBECTL, f"--kubeconfig={kubectl.kubeconfig}", "drain", DRAINED,
                                  "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=400s"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for("an evacuation copying memory", lambda: any(
            (m.get("status") or {}).get("phase") == "Running" for m in _evacuations(kube, namespace)), timeout=120)
        yield drain, beats
    finally:
        if drain is not None and drain.poll() is None:
            drain.kill()
        kubectl.run("uncordon", DRAINED, namespaced=False, check=False)
        kubectl.run("delete", "migrationpolicy", app, namespaced=False, check=False)


def test_leader_failover_in_the_middle_of_a_drain(replicas: dict[str, tuple[subprocess.Popen[bytes], int]],  # noqa: F811
                                                   kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                   local_cluster: Any) -> None:
    leader = wait_for("a leader", lambda: _holder(kube) if _holder(kube) in replicas else None, timeout=40)
    (standby,) = [n for n in replicas if n != leader]
    names = ("f1", "f2")
    with slow_drain(kube, kubectl, namespace, guest_kernel, local_cluster, names) as (drain, _):
        replicas[leader][0].send_signal(signal.SIGKILL)
        wait_for(f"{standby} to lead", lambda: _holder(kube) == standby, timeout=60)
        out, err = drain.communicate(timeout=420)
        assert drain.returncode == 0, out + err
        evac = _evacuations(kube, namespace)
        assert sorted(m["spec"]["selector"]["name"] for m in evac) == list(names), evac  # one each, none doubled
        for m in evac:
            assert m["status"]["phase"] == "Succeeded", m["status"]
            assert m["status"]["migrationPolicy"].startswith("slow-")
            assert m["status"]["migrationConfiguration"]["bandwidthMiBps"] == 3
        for name in names:
            st = vm_status(kube, namespace, name)
            assert st["node"] in OTHERS
            assert_runs_only_on(local_cluster, kube, namespace, st["node"], vm=name)


def test_controller_restart_in_the_middle_of_a_drain(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                    local_cluster: Any) -> None:
    """The single controller SIGKILLed while one evacuation copies memory and restarted (same replica, no
    graceful release of the Lease): the drain completes, each VM was evacuated once and runs on exactly one
    node, its heartbeat continuing there."""
    names = ("r1", "r2")
    with slow_drain(kube, kubectl, namespace, guest_kernel, local_cluster, names) as (drain, beats):
        old = _controller_pid(local_cluster)
        os.kill(old, signal.SIGKILL)  # no graceful release: the restarted one waits out its own Lease
        wait_for("the controller to die", lambda: _dead(old), timeout=10)
        local_cluster.up()  # the same single replica, started again
        assert _controller_pid(local_cluster) != old
        out, err = drain.communicate(timeout=420)
        assert drain.returncode == 0, out + err
        assert f"node/{DRAINED} drained" in out
        evac = _evacuations(kube, namespace)
        assert sorted(m["spec"]["selector"]["name"] for m in evac) == list(names), evac  # one each, none doubled
        assert {m["status"]["phase"] for m in evac} == {"Succeeded"}, [m["status"] for m in evac]
        for name in names:
            st = vm_status(kube, namespace, name)
            assert st["node"] in OTHERS, st
            assert_runs_only_on(local_cluster, kube, namespace, st["node"], vm=name)
            assert serial_lines(local_cluster, st["node"], f"{namespace}_{name}") > beats[name]
