"""The agent dies (SIGKILL: OOM, node pressure) before, during and after the switch-over, or its outcome is
lost while the controller is down: the Migration still ends where the guest really is, read from the nodes'
libvirt, and the guest runs exactly once, on the node its VM names (issue "Never lose or double a guest")."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import domain_state, wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    create_migration,
    domains_on,
    mig,
    running_vm,
    vm_status,
    wait_events,
    wait_gone,
    wait_phase,
)
from virtmigrate.kube.resources import PODS


def agent_pids(ns: str, vm: str = "testvm") -> list[int]:
    """Processes of the VM's migration agent (the node runner runs pods as processes of this machine)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"virtmigrate-agent") for a in argv[:2]) and f"--domain={ns}_{vm}".encode() in argv:
            out.append(int(d.name))
    return out


def kill_agent(ns: str) -> list[int]:
    pids = agent_pids(ns)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def assert_truthful_end(lc: Any, kube: Any, ns: str, source: str, target: str) -> dict[str, Any]:
    """Terminal, with the guest exactly where the phase says, the VM naming that node, and nothing left."""
    m = wait_phase(kube, ns, ("Succeeded", "Failed"), timeout=150)
    status = m["status"]
    where = target if status["phase"] == "Succeeded" else source
    wait_for("the VM recorded where its guest runs", lambda: (lambda v: v if (v.get("phase"), v.get("node"))
             == ("Running", where) else None)(vm_status(kube, ns)), timeout=60)
    assert_runs_only_on(lc, kube, ns, where)
    return status


def test_agent_killed_before_the_job_starts_fails_with_the_guest_on_its_source(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=1)
    m = wait_phase(kube, namespace, ("Running",), timeout=60)
    wait_for("the agent process", lambda: kill_agent(namespace), timeout=30, interval=0.01)
    status = assert_truthful_end(local_cluster, kube, namespace, st["node"], m["status"]["targetNode"])
    assert (status["phase"], status["reason"]) == ("Failed", "AgentFailed"), status
    assert "launcher" in status["message"], status  # says how the outcome was established


def test_agent_killed_mid_job_the_orphaned_job_is_aborted_and_the_guest_stays(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any) -> None:
    """At 1 MiB/s the job outlives its agent by far: the controller aborts it (OrphanedJob) after its bound,
    then reads the guest running on the source."""
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=1)
    m = wait_phase(kube, namespace, ("Running",), timeout=60)
    target = m["status"]["targetNode"]
    wait_for("the incoming domain on the target", lambda: domains_on(local_cluster, namespace).get(target),
             timeout=30)
    assert kill_agent(namespace)
    status = assert_truthful_end(local_cluster, kube, namespace, st["node"], target)
    assert (status["phase"], status["reason"]) == ("Failed", "AgentFailed"), status
    wait_events(kube, namespace, "testvm-migration", "OrphanedJob")
    kubectl("delete", "migration", "testvm-migration")
    wait_gone(kube, namespace)


def test_agent_killed_after_the_switch_over_succeeds_with_the_guest_on_its_target(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any) -> None:
    """The guest arrived on the target; the agent dies before it could report: the target's launcher says
    where the guest runs, so the Migration succeeds and the target launcher pod is kept."""
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl)
    m = wait_phase(kube, namespace, ("Running", "Succeeded"), timeout=60)
    target = m["status"]["targetNode"]
    wait_for("the guest running on the target", lambda: domain_state(local_cluster, target, f"{namespace}_testvm")
             == "running", timeout=60, interval=0.02)
    kill_agent(namespace)  # maybe too late: then the agent's own success is confirmed the same way
    status = assert_truthful_end(local_cluster, kube, namespace, st["node"], target)
    assert (status["phase"], status["reason"]) == ("Succeeded", "Migrated"), status


def test_outcome_lost_while_the_controller_is_down_is_recovered_from_the_nodes(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any) -> None:
    """The controller is down while the agent finishes and someone deletes the agent pod (and even strips its
    finalizer): the restarted controller finds where the guest runs from the launchers."""
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=4)
    m = wait_phase(kube, namespace, ("Running",), timeout=60)
    target = m["status"]["targetNode"]
    pid = int((Path(local_cluster.state) / "pids" / "controller.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    try:
        agent = m["status"]["agentPod"]
        wait_for("the agent to finish", lambda: (lambda p: p if p["status"].get("phase") in ("Succeeded", "Failed")
                 else None)(kube.get(PODS, agent, namespace)), timeout=120)
        kube.patch(PODS, agent, {"metadata": {"finalizers": None}}, namespace)
        kube.delete(PODS, agent, namespace, grace_period_seconds=0)
        wait_for("the agent pod gone", lambda: not [p for p in kube.list_all(PODS, namespace)
                                                    if p["metadata"]["name"] == agent], timeout=30)
        time.sleep(1)
    finally:
        local_cluster.up()  # restarts the controller
    status = assert_truthful_end(local_cluster, kube, namespace, st["node"], target)
    assert (status["phase"], status["reason"]) == ("Succeeded", "Migrated"), status
    assert "launcher" in status["message"]


def test_agent_outcome_survives_the_agent_pod_deletion(kube: Any, kubectl: Any, namespace: str,
                                                       guest_kernel: Path, local_cluster: Any) -> None:
    """The agent pod's finalizer keeps its exit code readable after a delete until the controller recorded
    it; then the pod goes."""
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl)
    m = wait_phase(kube, namespace, ("Succeeded",), timeout=90)
    assert m["status"]["result"]["exitCode"] == 0
    agent = m["status"]["agentPod"]
    wait_for("the agent pod removed by cleanup", lambda: not [p for p in kube.list_all(PODS, namespace)
                                                              if p["metadata"]["name"] == agent], timeout=60)
    assert_runs_only_on(local_cluster, kube, namespace, m["status"]["targetNode"])
    assert st["node"] != m["status"]["targetNode"]


def test_a_cancel_with_a_stopped_agent_still_ends_and_releases_the_migration(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any) -> None:
    """The agent is frozen (SIGSTOP) and cannot abort: the cancel still ends within its bounds, the Migration
    goes away, and the guest runs once, on its source."""
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, bandwidthMiBps=1)
    wait_phase(kube, namespace, ("Running",), timeout=60)
    pids = wait_for("the agent process", lambda: agent_pids(namespace), timeout=30, interval=0.01)
    time.sleep(1)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    kubectl("delete", "migration", "testvm-migration", "--wait=false")
    wait_for("the Migration gone", lambda: mig(kube, namespace) is None, timeout=180)
    wait_for("the VM back on its source", lambda: (lambda v: v if (v.get("phase"), v.get("node")) ==
             ("Running", st["node"]) else None)(vm_status(kube, namespace)), timeout=60)
    assert_runs_only_on(local_cluster, kube, namespace, st["node"])


def test_a_64_character_migration_name_migrates(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                local_cluster: Any) -> None:
    name = "m" * 64  # one over a label value's limit
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    create_migration(kubectl, name)
    m = wait_phase(kube, namespace, ("Succeeded", "Failed"), name, timeout=90)
    assert m["status"]["phase"] == "Succeeded", m["status"]
    assert m["status"]["targetNode"] != st["node"]
    assert_runs_only_on(local_cluster, kube, namespace, m["status"]["targetNode"])
