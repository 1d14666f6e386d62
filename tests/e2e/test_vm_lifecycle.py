"""VMs on the local cluster: launcher pods placed by the real kube-scheduler, real guests on the nodes'
libvirt, and the VM controller's status — driven through kubectl and the API only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import domain_state, serial_lines, virsh, wait_for
from virtmigrate.api.constants import LABEL_VM
from virtmigrate.kube.resources import PODS, VMS


def _create_vm(kubectl: Any, kernel: Path, *, name: str = "testvm", zone: str = "zone-b",
               running: bool = True) -> None:
    vm = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": name},
          "spec": {"running": running, "memory": "64Mi", "kernel": str(kernel),
                   "nodeSelector": {"topology.kubernetes.io/zone": zone}}}
    kubectl("apply", "-f", "-", input=json.dumps(vm))


def _vm_status(kube: Any, ns: str, name: str = "testvm") -> dict[str, Any]:
    return kube.get(VMS, name, ns).get("status") or {}


def _phase(kube: Any, ns: str, phase: str, name: str = "testvm") -> dict[str, Any] | None:
    st = _vm_status(kube, ns, name)
    return st if st.get("phase") == phase else None


def _launchers(kube: Any, ns: str, name: str = "testvm") -> list[dict[str, Any]]:
    return kube.list_all(PODS, ns, label_selector=f"{LABEL_VM}={name}")


def _running_vm(kube: Any, kubectl: Any, ns: str, kernel: Path, lc: Any) -> dict[str, Any]:
    _create_vm(kubectl, kernel)
    st = wait_for("VM Running", lambda: _phase(kube, ns, "Running"), timeout=90)
    wait_for("guest heartbeat", lambda: serial_lines(lc, st["node"], f"{ns}_testvm") >= 1, timeout=30)
    return st


def test_vm_runs_on_a_node_matching_its_selector(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                                local_cluster: Any) -> None:
    st = _running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    assert st["node"] == "node1"  # the only zone-b node
    (pod,) = _launchers(kube, namespace)
    assert pod["metadata"]["name"] == st["launcherPod"]
    assert pod["spec"]["nodeName"] == "node1"  # bound by the kube-scheduler
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "VM"
    assert domain_state(local_cluster, "node1", f"{namespace}_testvm") == "running"
    assert st["domainUUID"] == kube.get(VMS, "testvm", namespace)["metadata"]["uid"]
    for other in ("node0", "node2"):
        assert domain_state(local_cluster, other, f"{namespace}_testvm") == ""
    out = kubectl("get", "vms")
    assert "testvm" in out and "Running" in out and "node1" in out


def test_changing_node_selector_leaves_pod_and_guest_alone(kube: Any, kubectl: Any, namespace: str,
                                                         guest_kernel: Path, local_cluster: Any) -> None:
    st = _running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    (before,) = _launchers(kube, namespace)
    beats = serial_lines(local_cluster, "node1", f"{namespace}_testvm")
    kubectl("patch", "vm", "testvm", "--type=merge", "-p",
            '{"spec":{"nodeSelector":{"topology.kubernetes.io/zone":"zone-a"}}}')
    wait_for("the controller to observe the change",
             lambda: _vm_status(kube, namespace).get("observedGeneration") == 2)
    # The guest keeps beating where it was (a few heartbeats prove it runs, not just exists).
    wait_for("more heartbeats on node1",
             lambda: serial_lines(local_cluster, "node1", f"{namespace}_testvm") >= beats + 2, timeout=30)
    (after,) = _launchers(kube, namespace)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    assert "deletionTimestamp" not in after["metadata"]
    assert _vm_status(kube, namespace)["node"] == st["node"] == "node1"
    assert domain_state(local_cluster, "node1", f"{namespace}_testvm") == "running"


def test_deleting_the_launcher_pod_stops_the_guest_and_says_why(kube: Any, kubectl: Any, namespace: str,
                                                                guest_kernel: Path, local_cluster: Any) -> None:
    st = _running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    kubectl("delete", "pod", st["launcherPod"])  # waits until the pod is gone
    failed = wait_for("VM Failed", lambda: _phase(kube, namespace, "Failed"))
    assert failed["reason"] == "LauncherPodDeleted"
    assert st["launcherPod"] in failed["message"] and "was deleted" in failed["message"]
    assert domain_state(local_cluster, "node1", f"{namespace}_testvm") == ""
    time.sleep(2)  # bounded: the controller must not start a new guest on its own
    assert _launchers(kube, namespace) == []
    events = kubectl("get", "events", "--field-selector", "involvedObject.kind=VM")
    assert "LauncherPodDeleted" in events


def test_running_false_stops_and_true_starts_again(kube: Any, kubectl: Any, namespace: str,
                                                   guest_kernel: Path, local_cluster: Any) -> None:
    _running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    kubectl("patch", "vm", "testvm", "--type=merge", "-p", '{"spec":{"running":false}}')
    st = wait_for("VM Stopped", lambda: _phase(kube, namespace, "Stopped"), timeout=60)
    assert st["node"] == "" and st["launcherPod"] == ""
    wait_for("launcher pod gone", lambda: _launchers(kube, namespace) == [] or None)
    assert domain_state(local_cluster, "node1", f"{namespace}_testvm") == ""
    kubectl("patch", "vm", "testvm", "--type=merge", "-p", '{"spec":{"running":true}}')
    st = wait_for("VM Running again", lambda: _phase(kube, namespace, "Running"), timeout=90)
    assert st["node"] == "node1"
    assert domain_state(local_cluster, "node1", f"{namespace}_testvm") == "running"


def test_deleting_the_vm_removes_its_launcher_and_guest(kube: Any, kubectl: Any, namespace: str,
                                                       guest_kernel: Path, local_cluster: Any) -> None:
    _running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    kubectl("delete", "vm", "testvm")
    wait_for("launcher pod gone", lambda: _launchers(kube, namespace) == [] or None, timeout=60)
    assert domain_state(local_cluster, "node1", f"{namespace}_testvm") == ""


def test_a_guest_moved_without_a_migration_is_found_where_it_runs(kube: Any, kubectl: Any, namespace: str,
                                                                  guest_kernel: Path, local_cluster: Any) -> None:
    """An admin live-migrates the guest with virsh, behind every Migration's back: its launcher exits with
    reason Migrated while no Migration owns the VM. The VM is not shown Running meanwhile; probes ask every
    node's libvirt, and the VM runs where the guest really is, in the probe that found it."""
    from tests.e2e.test_migration_support import assert_runs_only_on, events_for, running_vm, wait_events

    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    source = st["node"]
    target = next(n for n in local_cluster.node_names() if n != source)
    dest = local_cluster.hosts.host(int(target.removeprefix("node")))
    virsh(local_cluster, source, "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
          f"{namespace}_testvm", dest.uri, dest.migration_uri)
    assert domain_state(local_cluster, target, f"{namespace}_testvm") == "running"

    found = wait_for("the VM found running on the node the guest went to", lambda: (
        lambda s: s if (s.get("phase"), s.get("node")) == ("Running", target) else None)(
        _vm_status(kube, namespace)), timeout=90)
    assert found["launcherPod"] != st["launcherPod"]
    [cond] = [c for c in found.get("conditions") or [] if c["type"] == "GuestLocated"]
    assert (cond["status"], cond["reason"]) == ("True", "GuestFound"), cond
    wait_events(kube, namespace, "testvm", "LocatingGuest", "GuestFound")
    said = dict(events_for(kube, namespace, "testvm"))
    assert "no Migration owns" in said["GuestFound"] and f"on {target} reports it running" in said["GuestFound"]
    assert [r for r, _ in events_for(kube, namespace, "testvm")].count("GuestFound") == 1
    assert_runs_only_on(local_cluster, kube, namespace, target)  # one launcher pod left, heartbeats go on


def test_a_guest_moved_without_a_migration_and_gone_everywhere_starts_again(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, local_cluster: Any) -> None:
    """The same, but the admin then destroys and undefines the guest where it went: every node's probe says
    it has none, and the VM starts it again (GuestNotFound) instead of waiting or claiming it runs."""
    from tests.e2e.test_migration_support import assert_runs_only_on, events_for, running_vm, wait_events

    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    source, domain = st["node"], f"{namespace}_testvm"
    target = next(n for n in local_cluster.node_names() if n != source)
    dest = local_cluster.hosts.host(int(target.removeprefix("node")))
    virsh(local_cluster, source, "migrate", "--live", "--p2p", "--persistent", "--undefinesource", domain,
          dest.uri, dest.migration_uri)
    virsh(local_cluster, target, "destroy", domain)
    virsh(local_cluster, target, "undefine", domain)

    again = wait_for("the VM started again", lambda: (lambda s: s if s.get("phase") == "Running"
                                                      and s.get("launcherPod") != st["launcherPod"] else None)(
        _vm_status(kube, namespace)), timeout=120)
    wait_events(kube, namespace, "testvm", "LocatingGuest", "GuestNotFound")
    said = dict(events_for(kube, namespace, "testvm"))
    assert "no node runs it" in said["GuestNotFound"]
    assert "GuestFound" not in said
    assert_runs_only_on(local_cluster, kube, namespace, again["node"])
