"""Node maintenance on the local cluster, driven only through kubectl: `kubectl drain` live-migrates the VMs
that ask for it (the real Eviction API refusing while their budget holds), and `kubectl uncordon` stops what
has not started."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import serial_lines, wait_for
from tests.e2e.test_migration_support import assert_runs_only_on, domains_on, events_for, vm_status
from virtmigrate.api.constants import LABEL_EVACUATION, NODE_CONDITION_EVACUATION
from virtmigrate.kube.resources import MIGRATIONS, NODES

DRAINED = "node1"
OTHERS = ("node0", "node2")


def _create_vm(kubectl: Any, kernel: Path, name: str, strategy: str | None, *,
               labels: dict[str, str] | None = None, **spec: Any) -> None:
    body: dict[str, Any] = {"running": True, "memory": "64Mi", "kernel": str(kernel), **spec}
    if strategy:
        body["evictionStrategy"] = strategy
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
                                                  "metadata": {"name": name, "labels": labels or {}}, "spec": body}))


def vms_on_drained_node(kube: Any, kubectl: Any, ns: str, kernel: Path, lc: Any,
                        vms: dict[str, str | None], pinned: tuple[str, ...] = (),
                        labels: dict[str, str] | None = None) -> None:
    """Create `vms` (name -> strategy) running on DRAINED: the other nodes are cordoned meanwhile."""
    for n in OTHERS:
        kubectl("cordon", n, namespaced=False)
    try:
        for name, strategy in vms.items():
            extra = {"nodeSelector": {"kubernetes.io/hostname": DRAINED}} if name in pinned else {}
            _create_vm(kubectl, kernel, name, strategy, labels=labels, **extra)
        for name in vms:
            wait_for(f"VM {name} Running", lambda n=name: vm_status(kube, ns, n).get("phase") == "Running",
                     timeout=180)
            assert vm_status(kube, ns, name)["node"] == DRAINED
            wait_for(f"{name} heartbeat", lambda n=name: serial_lines(lc, DRAINED, f"{ns}_{n}") >= 1, timeout=60)
    finally:
        for n in OTHERS:
            kubectl("uncordon", n, namespaced=False)


def _evacuations(kube: Any, ns: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = kube.list_all(MIGRATIONS, ns, label_selector=f"{LABEL_EVACUATION}={DRAINED}")
    return out


def _phases(kube: Any, ns: str) -> dict[str, str]:
    return {m["metadata"]["name"]: (m.get("status") or {}).get("phase", "") for m in _evacuations(kube, ns)}


def _condition(kube: Any) -> dict[str, Any]:
    node = kube.get(NODES, DRAINED)
    return next((c for c in node["status"].get("conditions") or [] if c["type"] == NODE_CONDITION_EVACUATION), {})


def test_kubectl_drain_live_migrates_and_completes(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                  local_cluster: Any) -> None:
    vms = {"mover1": "LiveMigrate", "mover2": "LiveMigrate", "stuck": "LiveMigrateIfPossible", "plain": None}
    vms_on_drained_node(kube, kubectl, namespace, guest_kernel, local_cluster, vms, pinned=("stuck",))
    beats = {n: serial_lines(local_cluster, DRAINED, f"{namespace}_{n}") for n in ("mover1", "mover2")}
    # The real Eviction API refuses to evict a LiveMigrate launcher (its budget), and only that one.
    for name, refused in (("mover1", True), ("plain", False)):
        pod = vm_status(kube, namespace, name)["launcherPod"]
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace},
                    "deleteOptions": {"dryRun": ["All"]}}
        proc = kubectl.run("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
                           input=json.dumps(eviction), check=False)
        assert (proc.returncode != 0) == refused, proc.stderr
        if refused:
            assert "Cannot evict pod as it would violate the pod's disruption budget" in proc.stderr
    try:
        proc = kubectl.run("drain", DRAINED, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s",
                           namespaced=False, check=False, timeout=330)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"node/{DRAINED} drained" in proc.stdout
        # The launchers of the two that migrate were never evicted: they exited once their guest had left.
        assert "-plain-" in proc.stdout and "-stuck-" in proc.stdout
        assert not [line for line in proc.stdout.splitlines() if "mover" in line and "evicted" in line], proc.stdout

        # The two LiveMigrate VMs run elsewhere, their heartbeats continuing from where they were.
        for name in ("mover1", "mover2"):
            st = vm_status(kube, namespace, name)
            assert st["node"] in OTHERS, st
            assert_runs_only_on(local_cluster, kube, namespace, st["node"], vm=name)
            assert serial_lines(local_cluster, st["node"], f"{namespace}_{name}") > beats[name]
        evac = _evacuations(kube, namespace)
        assert sorted(m["spec"]["selector"]["name"] for m in evac) == ["mover1", "mover2"]
        assert {m["status"]["phase"] for m in evac} == {"Succeeded"}
        listed = kubectl("get", "migrations", "-l", f"{LABEL_EVACUATION}={DRAINED}", "-o", "name").split()
        assert sorted(listed) == sorted(f"migration.kubevirt.io/{m['metadata']['name']}" for m in evac)

        # The LiveMigrateIfPossible VM had nowhere to go: shut down by the drain, with an Event saying why.
        stuck = vm_status(kube, namespace, "stuck")
        assert stuck["phase"] == "Failed" and stuck["reason"] == "LauncherPodDeleted", stuck
        reasons = dict(events_for(kube, namespace, "stuck"))
        assert "EvacuationImpossible" in reasons and "kubernetes.io/hostname=node1" in reasons[
            "EvacuationImpossible"]
        # The None VM was evicted like any pod.
        assert vm_status(kube, namespace, "plain")["phase"] == "Failed"
        assert domains_on(local_cluster, namespace, "stuck") == {} and domains_on(
            local_cluster, namespace, "plain") == {}
        # The Node said which VM could not move, and why, before any move.
        events = kube.list_all(__import__("virtmigrate.kube.resources", fromlist=["EVENTS"]).EVENTS, "default",
                               field_selector=f"involvedObject.name={DRAINED},reason=EvacuationBlocked")
        assert any(f"{namespace}/stuck" in e["message"] for e in events)
        first_blocked = min(e["firstTimestamp"] for e in events if f"{namespace}/stuck" in e["message"])
        assert first_blocked <= min(m["metadata"]["creationTimestamp"] for m in evac)
    finally:
        kubectl.run("uncordon", DRAINED, namespaced=False, check=False)
    wait_for("the evacuation condition gone after uncordon", lambda: not _condition(kube), timeout=30)


def test_uncordon_during_an_evacuation_stops_what_has_not_started(kube: Any, kubectl: Any, namespace: str,
                                                                  guest_kernel: Path, local_cluster: Any) -> None:
    names = ("e1", "e2", "e3")  # three from one node: the per-node limit (2) keeps one Pending
    vms_on_drained_node(kube, kubectl, namespace, guest_kernel, local_cluster, dict.fromkeys(names, "LiveMigrate"))
    try:
        kubectl("cordon", DRAINED, namespaced=False)
        wait_for("three evacuation Migrations", lambda: len(_evacuations(kube, namespace)) == 3, timeout=60,
                 interval=0.05)
    finally:
        kubectl("uncordon", DRAINED, namespaced=False)
    at_uncordon = _phases(kube, namespace)
    started = {n for n, p in at_uncordon.items() if p in ("Running", "Succeeded")}

    def settled() -> list[dict[str, str]] | None:
        evac = _evacuations(kube, namespace)
        if any(m["metadata"].get("deletionTimestamp") for m in evac):
            return None  # a cancel in progress
        now = _phases(kube, namespace)
        return [now] if all(p in ("Succeeded", "Failed") for p in now.values()) else None  # {} counts
    (after,) = wait_for("evacuations that had started to finish, the others to go", settled, timeout=180)
    assert all(p == "Succeeded" for p in after.values()), after  # no cancelled leftover stays
    assert started <= set(after), (at_uncordon, after)
    assert all(after[n] == "Succeeded" for n in started), after
    assert set(after) < set(at_uncordon), f"nothing was stopped: {at_uncordon} -> {after}"
    time.sleep(5)  # nothing is recreated afterwards
    assert {m["metadata"]["name"] for m in _evacuations(kube, namespace)} == set(after)
    for name in names:
        st = vm_status(kube, namespace, name)
        assert_runs_only_on(local_cluster, kube, namespace, st["node"], vm=name)
        assert not st.get("evacuation"), st
