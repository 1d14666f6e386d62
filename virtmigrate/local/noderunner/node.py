"""The Node object of a local node: labels, annotations, capacity, Ready condition (builders are pure).

The runner registers each node at start (`register`), heartbeats its Ready condition (`heartbeat`) with a
strategic merge patch, as a kubelet does (so conditions of other writers, like the evacuation controller's,
stay), and renews its Lease in kube-node-lease (`renew_lease`). The kube-controller-manager's node lifecycle
controller turns those heartbeats into taints: the API server's `not-ready` taint at creation goes once the
node is Ready; a node whose heartbeats stop turns Unknown and is tainted unreachable. The kube-scheduler
places pods on these objects and the migration controller reads the annotations to reach a node's libvirt.
Node i of the local cluster:

    name / kubernetes.io/hostname   node<i>
    topology.kubernetes.io/zone     zone-a for even i, zone-b for odd i (node0 a, node1 b, node2 a, ...)
    topology.kubernetes.io/region   local
    kubernetes.io/arch, os          amd64, linux
    annotations                     ANNOTATION_LIBVIRT_URI = qemu+tcp://127.0.0.1:<port>/system
                                    ANNOTATION_MIGRATION_ADDRESS = tcp://127.0.0.<20 + i>
    status.addresses                InternalIP 127.0.0.1, Hostname node<i>
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from virtmigrate import errors
from virtmigrate.api.constants import ANNOTATION_LIBVIRT_URI, ANNOTATION_MIGRATION_ADDRESS, HOSTNAME_LABEL
from virtmigrate.kube.client import STRATEGIC_PATCH, KubeClient
from virtmigrate.kube.resources import LEASES, NODES

JSON = dict[str, Any]
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
ARCH_LABEL = "kubernetes.io/arch"
OS_LABEL = "kubernetes.io/os"
RUNNER_VERSION = "v1.37.2-virtmigrate"  # reported as the kubelet version (the control plane's version)


def zone_of(index: int) -> str:
    """node0 zone-a, node1 zone-b, node2 zone-a, ...: two zones, so zone constraints are testable."""
    return "zone-a" if index % 2 == 0 else "zone-b"


@dataclass(frozen=True)
class NodeSpec:
    """What the local cluster knows of one node."""

    name: str
    index: int
    libvirt_uri: str
    migration_address: str          # tcp://127.0.0.1x
    host_uuid: str
    memory_bytes: int = 4 << 30
    cpus: int = 2
    max_pods: int = 110
    extra_labels: dict[str, str] = field(default_factory=dict)


def node_labels(n: NodeSpec) -> dict[str, str]:
    return {HOSTNAME_LABEL: n.name, ZONE_LABEL: zone_of(n.index), REGION_LABEL: "local",
            ARCH_LABEL: "amd64", OS_LABEL: "linux", **n.extra_labels}


def ready_condition(ready: bool, now: str, *, since: str | None = None, message: str = "") -> JSON:
    return {"type": "Ready", "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": message or ("node runner is posting ready status" if ready else "libvirt host is down"),
            "lastHeartbeatTime": now, "lastTransitionTime": since or now}


def node_status(n: NodeSpec, *, ready: bool, now: str, since: str | None = None) -> JSON:
    resources = {"cpu": str(n.cpus), "memory": str(n.memory_bytes), "pods": str(n.max_pods)}
    pressure = [{"type": t, "status": "False", "reason": f"KubeletHas{r}", "lastHeartbeatTime": now,
                 "lastTransitionTime": since or now}
                for t, r in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                             ("PIDPressure", "SufficientPID"))]
    return {
        "capacity": resources, "allocatable": resources,
        "conditions": [*pressure, ready_condition(ready, now, since=since)],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": n.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {"machineID": n.host_uuid.replace("-", ""), "systemUUID": n.host_uuid,
                     "bootID": n.host_uuid, "kernelVersion": "", "osImage": "virtmigrate local node",
                     "containerRuntimeVersion": "virtmigrate-noderunner://0.1.0", "kubeletVersion": RUNNER_VERSION,
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
    }


NODE_LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40  # the kubelet's default nodeLeaseDurationSeconds; renewed every heartbeat (10 s)


def micro_time(wall: _dt.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds."""
    return wall.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_lease(n: NodeSpec, *, node_uid: str, renew_time: str) -> JSON:
    """The node's Lease in kube-node-lease, owned by its Node (deleting the Node collects it), as a
    kubelet keeps it: the node lifecycle controller counts a renewal as a heartbeat."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": n.name, "namespace": NODE_LEASE_NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": n.name,
                                              "uid": node_uid}]},
            "spec": {"holderIdentity": n.name, "leaseDurationSeconds": LEASE_DURATION_S,
                     "renewTime": renew_time}}


def renew_lease(client: KubeClient, n: NodeSpec, *, renew_time: str) -> None:
    """Renew the node's Lease, creating it (owned by the Node) when it does not exist yet."""
    try:
        client.patch(LEASES, n.name, {"spec": {"holderIdentity": n.name, "leaseDurationSeconds": LEASE_DURATION_S,
                                               "renewTime": renew_time}}, NODE_LEASE_NAMESPACE)
        return
    except errors.NotFound:
        pass  # first renewal of this node: create it below
    node_uid = str(client.get(NODES, n.name)["metadata"]["uid"])
    with contextlib.suppress(errors.AlreadyExists):  # another renewal won the race: it is fresh enough
        client.create(LEASES, new_lease(n, node_uid=node_uid, renew_time=renew_time), NODE_LEASE_NAMESPACE)


def new_node(n: NodeSpec) -> JSON:
    """The Node object (metadata and spec; status is written through the status subresource)."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "labels": node_labels(n),
                         "annotations": {ANNOTATION_LIBVIRT_URI: n.libvirt_uri,
                                         ANNOTATION_MIGRATION_ADDRESS: n.migration_address}},
            "spec": {}}


def register(client: KubeClient, n: NodeSpec, *, ready: bool, now: str) -> None:
    """Create the Node or bring its labels and annotations up to date, then write its status."""
    desired = new_node(n)
    try:
        client.create(NODES, desired)
    except errors.AlreadyExists:
        client.patch(NODES, n.name, {"metadata": {"labels": desired["metadata"]["labels"],
                                                  "annotations": desired["metadata"]["annotations"]}})
    client.patch(NODES, n.name, {"status": node_status(n, ready=ready, now=now)}, subresource="status",
                 patch_type=STRATEGIC_PATCH)


def heartbeat(client: KubeClient, n: NodeSpec, *, ready: bool, now: str, was_ready: bool | None,
              since: str | None) -> None:
    """Refresh the conditions' heartbeat times (transition time moves only when readiness changes)."""
    keep = since if was_ready == ready else now
    client.patch(NODES, n.name, {"status": node_status(n, ready=ready, now=now, since=keep)},
                 subresource="status", patch_type=STRATEGIC_PATCH)
