"""Real nodes (VIRTMIGRATE_NODES=kubelet): a kubelet v1.37.2 with containerd 1.6 per node runs pods from the
image `make image` built, as the image's non-root user, and they reach their own node's libvirt through the
hostPath socket folder — the path docs/install.md describes. The seed session runs on such nodes: the
launcher and agent pods the controller creates are containers of that image.

Only meaningful on a cluster brought up with VIRTMIGRATE_NODES=kubelet (the node runner ignores images);
the tests skip, saying so, on a node runner cluster."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.e2e.conftest import serial_lines, wait_for
from tests.e2e.test_migration_support import assert_runs_only_on, mig, running_vm, vm_status
from virtmigrate.api.constants import LABEL_ROLE
from virtmigrate.controller.vm.pods import LIBVIRT_SOCKET_DIR
from virtmigrate.kube.resources import NODES, PODS, SERVICEACCOUNTS
from virtmigrate.local.libvirthosts import SOCKET_GID

PROBE = ("import libvirt, re; c = libvirt.open('qemu:///system'); "
         "u = re.search('<uuid>([^<]*)', c.getCapabilities()).group(1); "
         "open('/dev/termination-log', 'w').write(u); print('host uuid', u)")


def _default_service_account(kube: Any, namespace: str) -> None:
    """The ServiceAccount admission of a real cluster refuses pods until the namespace's `default` exists
    (made by kube-controller-manager a moment after the namespace)."""
    wait_for("ServiceAccount default", lambda: any(
        sa["metadata"]["name"] == "default" for sa in kube.list_all(SERVICEACCOUNTS, namespace)), timeout=30)


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
    _default_service_account(kube, namespace)
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    st = wait_for("pod Succeeded", lambda: (s := kube.get(PODS, "probe", namespace).get("status") or {})
                  .get("phase") in ("Succeeded", "Failed") and s, timeout=120)
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert (st["phase"], term["exitCode"]) == ("Succeeded", 0), term
    # qemu:///system in the pod is node1's own daemon: its host UUID.
    assert term["message"] == kubelet_cluster.hosts.host(1).host_uuid
    assert kubectl("logs", "probe").strip() == f"host uuid {term['message']}"  # API server -> kubelet


def _container_of_the_image(pod: dict[str, Any], image: str) -> bool:
    """The pod ran as a container of `image` with the node's libvirt socket folder mounted."""
    spec, status = pod["spec"], pod.get("status") or {}
    cs = (status.get("containerStatuses") or [{}])[0]
    mounted = any(v.get("hostPath", {}).get("path") == LIBVIRT_SOCKET_DIR for v in spec.get("volumes") or [])
    return (spec["containers"][0]["image"] == image and mounted
            and str(cs.get("containerID", "")).startswith("containerd://"))


def test_seed_session_on_kubelet_nodes(kube: Any, kubectl: Any, namespace: str, guest_kernel: Path,
                                       kubelet_cluster: Any, tmp_path: Path) -> None:
    """The seed session with every pod a container: the guest moves live, the Migration ends Succeeded,
    the heartbeat continues on the target."""
    image = kubelet_cluster.image_file.read_text().strip()
    st = running_vm(kube, kubectl, namespace, guest_kernel, kubelet_cluster)
    source = st["node"]
    launcher = kube.get(PODS, st["launcherPod"], namespace)
    assert _container_of_the_image(launcher, image), launcher.get("status")
    assert launcher["spec"]["securityContext"]["supplementalGroups"] == [SOCKET_GID]
    (tmp_path / "migration.yaml").write_text((REPO / "examples" / "migration.yaml").read_text())

    t0 = time.monotonic()
    assert kubectl("create", "-f", str(tmp_path / "migration.yaml")).strip() == \
        "migration.kubevirt.io/testvm-migration created"
    seen: dict[str, dict[str, Any]] = {}  # pods of the migration as they ran (cleanup deletes the agent's)

    def finished() -> dict[str, Any] | None:
        for p in kube.list_all(PODS, namespace):
            if (p.get("status") or {}).get("containerStatuses"):
                seen[p["metadata"]["name"]] = p
        m = mig(kube, namespace)
        return m if ((m or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed") else None
    status = wait_for("Migration finished", finished, timeout=180, interval=0.2)["status"]
    took = time.monotonic() - t0
    print(f"seed migration create -> {status['phase']}: {took:.1f} s")
    assert (status["phase"], status.get("reason")) == ("Succeeded", "Migrated"), status
    target = status["targetNode"]
    assert target != source and status["result"]["exitCode"] == 0

    # The guest runs only on the target and its heartbeat continues there; the VM's status (written by the
    # VM controller, after the Migration's) says so.
    wait_for("VM Running on the target", lambda: vm_status(kube, namespace).get("phase") == "Running"
             and vm_status(kube, namespace).get("node") == target, timeout=30)
    assert_runs_only_on(kubelet_cluster, kube, namespace, target)
    assert serial_lines(kubelet_cluster, target, f"{namespace}_testvm") >= 2
    # The agent and the target launcher were containers of the image, with the socket folder mounted.
    roles = {(p["metadata"]["labels"].get(LABEL_ROLE), p["spec"].get("nodeName")): p for p in seen.values()}
    assert _container_of_the_image(roles[("agent", source)], image), roles.keys()
    assert _container_of_the_image(roles[("launcher", target)], image), roles.keys()
