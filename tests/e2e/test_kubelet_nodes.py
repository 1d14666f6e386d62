"""Real nodes (VIRTMIGRATE_NODES=kubelet): a kubelet v1.37.2 with containerd 1.6 per node runs a pod from the
image `make image` built, as the image's non-root user on a read-only root, and the pod reaches its own node's
libvirt through the hostPath socket folder — the path docs/install.md describes.

Only meaningful on a cluster brought up with VIRTMIGRATE_NODES=kubelet (the node runner ignores images):
the mode is opt-in until the launcher and agent pods the controller builds carry the hostPath volume
(see virtmigrate/local/kubeletnodes.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from virtmigrate.kube.resources import NODES, PODS
from virtmigrate.local.libvirthosts import SOCKET_GID

PROBE = ("import libvirt, re; c = libvirt.open('qemu:///system'); "
         "u = re.search('<uuid>([^<]*)', c.getCapabilities()).group(1); "
         "open('/dev/termination-log', 'w').write(u); print('host uuid', u)")


@pytest.fixture
def kubelet_cluster(local_cluster: Any) -> Any:
    if local_cluster.node_mode != "kubelet":
        pytest.skip("the cluster runs the node runner; bring it up with VIRTMIGRATE_NODES=kubelet")
    return local_cluster


def test_a_pod_from_the_image_reaches_its_nodes_libvirt_through_the_hostpath_socket(
        kube: Any, kubectl: Any, namespace: str, kubelet_cluster: Any) -> None:
    node = kube.get(NODES, "node1")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    image = next(i["names"][0] for i in node["status"]["images"]
                 if any("virtmigrate/launcher:" in n for n in i["names"]))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
           "spec": {"nodeName": "node1", "hostNetwork": True, "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "supplementalGroups": [SOCKET_GID]},
                    "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never",
                                    "command": ["python3", "-c", PROBE],
                                    "securityContext": {"readOnlyRootFilesystem": True,
                                                        "allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}},
                                    "volumeMounts": [{"name": "libvirt", "mountPath": "/run/libvirt"}]}],
                    "volumes": [{"name": "libvirt", "hostPath": {"path": "/run/libvirt", "type": "Directory"}}]}}
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    st = wait_for("pod Succeeded", lambda: (s := kube.get(PODS, "probe", namespace).get("status") or {})
                  .get("phase") in ("Succeeded", "Failed") and s, timeout=120)
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert (st["phase"], term["exitCode"]) == ("Succeeded", 0), term
    # qemu:///system in the pod is node1's own daemon: its host UUID.
    assert term["message"] == kubelet_cluster.hosts.host(1).host_uuid
    assert kubectl("logs", "probe").strip() == f"host uuid {term['message']}"  # API server -> kubelet
