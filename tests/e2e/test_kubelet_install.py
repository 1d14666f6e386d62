"""The controller installed as users install it (VIRTMIGRATE_NODES=kubelet): `kubectl apply -k` of a local
overlay of manifests/ runs it as the 2-replica Deployment under its ServiceAccount and RBAC, from the image
`make image` built, one replica leading through the Lease; the kubelets run its real probes, and restart a
replica whose process dies while the other takes over.

Skips, saying so, on a node runner cluster (where the controller runs as a machine process)."""

from __future__ import annotations

import os
import signal
import urllib.request
from typing import Any

from tests.e2e.conftest import wait_for
from virtmigrate.clock import RealClock
from virtmigrate.kube.resources import LEASES, NODES, PODS, Resource
from virtmigrate.local.kubeletnodes import CONTROLLER_DEPLOYMENT, CONTROLLER_NAMESPACE

DEPLOYMENTS = Resource("apps", "v1", "deployments", kind="Deployment")
SELECTOR = "app.kubernetes.io/name=virtmigrate-controller"


def _pods(kube: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = kube.list_all(PODS, CONTROLLER_NAMESPACE, label_selector=SELECTOR)
    return [p for p in out if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True"


def _holder(kube: Any) -> str:
    return str(kube.get(LEASES, "virtmigrate-controller", CONTROLLER_NAMESPACE)["spec"].get("holderIdentity") or "")


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return int(r.status), r.read().decode()


def test_the_controller_runs_as_the_manifests_deployment(kube: Any, kubelet_cluster: Any) -> None:
    image = kubelet_cluster.image_file.read_text().strip()
    dep = kube.get(DEPLOYMENTS, CONTROLLER_DEPLOYMENT, CONTROLLER_NAMESPACE)
    assert dep["spec"]["replicas"] == 2
    wait_for("2 ready replicas", lambda: (kube.get(DEPLOYMENTS, CONTROLLER_DEPLOYMENT, CONTROLLER_NAMESPACE)
                                          .get("status") or {}).get("readyReplicas") == 2, timeout=120)
    pods = _pods(kube)
    assert len(pods) == 2 and all(_ready(p) for p in pods)
    assert len({p["spec"]["nodeName"] for p in pods}) == 2  # one per node
    for p in pods:
        assert p["spec"]["serviceAccountName"] == "virtmigrate-controller"
        c = p["spec"]["containers"][0]
        assert c["image"] == image and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert p["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    # One replica leads; both answer their probes on their own node's address, the leader exports the
    # controllers' metrics.
    leader = wait_for("a leader", lambda: _holder(kube) or None, timeout=60)
    assert leader in {p["metadata"]["name"] for p in pods}
    for p in pods:
        ip = p["status"]["podIP"]
        node = kube.get(NODES, p["spec"]["nodeName"])
        assert ip == next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        assert _get(f"http://{ip}:8080/healthz")[0] == 200 and _get(f"http://{ip}:8080/readyz")[0] == 200
    lead_ip = next(p["status"]["podIP"] for p in pods if p["metadata"]["name"] == leader)
    assert "virtmigrate_migrations" in _get(f"http://{lead_ip}:8080/metrics")[1]


def _container_pid(kubelet_cluster: Any, pod: dict[str, Any]) -> int:
    """The PID of the pod's container's process, from its node's containerd."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    index = int(pod["spec"]["nodeName"].removeprefix("node"))
    for line in kubelet_cluster.kubelets._ctr(index, "tasks", "ls").stdout.splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == cid:
            return int(pid)
    raise AssertionError(f"no task {cid} on {pod['spec']['nodeName']}")


def test_a_killed_leader_is_restarted_by_its_kubelet_and_the_standby_takes_over(
        kube: Any, kubelet_cluster: Any) -> None:
    wait_for("2 ready replicas", lambda: len([p for p in _pods(kube) if _ready(p)]) == 2, timeout=120)
    leader = wait_for("a leader", lambda: _holder(kube) or None, timeout=60)
    pod = next(p for p in _pods(kube) if p["metadata"]["name"] == leader)
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    killed_at = RealClock().wall().strftime("%Y-%m-%dT%H:%M:%S")
    os.kill(_container_pid(kubelet_cluster, pod), signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        p = kube.get(PODS, leader, CONTROLLER_NAMESPACE)
        cs = p["status"]["containerStatuses"][0]
        return p if cs["restartCount"] > restarts and _ready(p) else None
    wait_for(f"{leader} restarted by its kubelet and Ready again", restarted, timeout=120)

    # A killed process releases nothing: leadership resumes once a replica (the standby after the Lease's
    # duration, or the restarted one under its own identity) renews the Lease.
    def renewed() -> str | None:
        spec = kube.get(LEASES, "virtmigrate-controller", CONTROLLER_NAMESPACE)["spec"]
        return str(spec["holderIdentity"]) if str(spec.get("renewTime", ""))[:19] > killed_at else None
    holder = wait_for("the Lease renewed after the kill", renewed, timeout=90)
    assert holder in {p["metadata"]["name"] for p in _pods(kube)}
