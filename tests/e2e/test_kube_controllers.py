"""The kube-controller-manager of the local cluster, seen through what a user sees: nodes that heartbeat are
Ready without the not-ready taint, a deleted VM's launcher pod is garbage-collected (and its guest stops),
and a deleted namespace goes away with everything in it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import Kubectl
from tests.e2e.conftest import domain_state, wait_for
from virtmigrate import errors
from virtmigrate.api.constants import LABEL_VM
from virtmigrate.kube.resources import LEASES, NAMESPACES, NODES, PODS, VMS

NODE_CONDITION_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def _vm(name: str, kernel: Path) -> str:
    return json.dumps({"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": name},
                       "spec": {"running": True, "memory": "64Mi", "kernel": str(kernel),
                                "nodeSelector": {"kubernetes.io/hostname": "node2"}}})


def _running(kube: Any, ns: str, name: str) -> dict[str, Any] | None:
    st = kube.get(VMS, name, ns).get("status") or {}
    return st if st.get("phase") == "Running" else None


def test_nodes_are_ready_untainted_and_renew_their_leases(kube: Any, local_cluster: Any) -> None:
    renewed: dict[str, str] = {}
    for name in local_cluster.node_names():
        node = kube.get(NODES, name)
        taints = {t["key"] for t in (node.get("spec") or {}).get("taints") or []}
        assert not taints & NODE_CONDITION_TAINTS, f"{name} is tainted {taints}"
        lease = kube.get(LEASES, name, "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == name
        assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        renewed[name] = lease["spec"]["renewTime"]
    wait_for("every node Lease renewed", lambda: all(
        kube.get(LEASES, n, "kube-node-lease")["spec"]["renewTime"] > t for n, t in renewed.items()), timeout=30)


def test_a_deleted_vms_launcher_pod_is_collected_and_its_guest_stops(kube: Any, kubectl: Kubectl, namespace: str,
                                                                   guest_kernel: Path, local_cluster: Any) -> None:
    kubectl("apply", "-f", "-", input=_vm("gcvm", guest_kernel))
    wait_for("VM Running", lambda: _running(kube, namespace, "gcvm"), timeout=90)
    assert kube.list_all(PODS, namespace, label_selector=f"{LABEL_VM}=gcvm")
    assert domain_state(local_cluster, "node2", f"{namespace}_gcvm") == "running"

    kubectl("delete", "vm", "gcvm")  # the VM only: its launcher pod goes through its ownerReference
    wait_for("the launcher pod collected",
             lambda: not kube.list_all(PODS, namespace, label_selector=f"{LABEL_VM}=gcvm"), timeout=60)
    wait_for("the guest stopped", lambda: domain_state(local_cluster, "node2", f"{namespace}_gcvm")
             in ("", "shut off"), timeout=60)


def test_a_deleted_namespace_goes_away_with_its_vms(kube: Any, cluster: Any, guest_kernel: Path,
                                                    local_cluster: Any) -> None:
    ns = f"t-nsdelete-{uuid.uuid4().hex[:6]}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    k = Kubectl(cluster.kubeconfig, ns)
    k("apply", "-f", "-", input=_vm("nsvm", guest_kernel))
    wait_for("VM Running", lambda: _running(kube, ns, "nsvm"), timeout=90)

    k("delete", "namespace", ns, "--wait=false", namespaced=False)

    def gone() -> bool:
        try:
            kube.get(NAMESPACES, ns)
        except errors.NotFound:
            return True
        return False

    wait_for(f"namespace {ns} deleted", gone, timeout=120)
    wait_for("the guest stopped", lambda: domain_state(local_cluster, "node2", f"{ns}_nsvm") in ("", "shut off"),
             timeout=30)
