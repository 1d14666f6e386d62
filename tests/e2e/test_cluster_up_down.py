"""`virtmigrate cluster up/down` on a cluster of its own: idempotent up, recovery from a killed node runner,
and a down that leaves nothing — no process, mount, libvirt domain (QEMU) or listener — checked, not assumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import domain_state, wait_for
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.resources import PODS, VMS
from virtmigrate.local.cluster import LocalCluster, cluster_namespaces, cluster_ports, leftovers

BIN = Path(sys.executable).parent


def _virtmigrate(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIRTMIGRATE_STATE": str(state)}
    return subprocess.run([str(BIN / "virtmigrate"), "cluster", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def state() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="virtmigrate-e2e-own-"))
    yield d
    LocalCluster(d).down()  # in case the test failed half-way
    shutil.rmtree(d, ignore_errors=True)


def test_up_is_idempotent_and_down_leaves_nothing(state: Path, guest_kernel: Path) -> None:
    up = _virtmigrate(state, "up", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    kc = state / "controlplane" / "admin.kubeconfig"
    assert up.stdout.strip() == f"export KUBECONFIG={kc} KUBECACHEDIR={kc.parent / 'kubectl-cache'}"
    again = _virtmigrate(state, "up")
    assert again.returncode == 0 and again.stdout == up.stdout
    status = _virtmigrate(state, "status")
    assert status.returncode == 0, status.stdout
    assert json.loads(status.stdout)["nodes_ready"] == {"node0": True, "node1": True}

    # Something real to clean up: a guest running on node0.
    c = LocalCluster(state)
    kube = KubeClient.from_kubeconfig(str(c.kubeconfig))
    kube.create(VMS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
                      "metadata": {"name": "leftover", "namespace": "default"},
                      "spec": {"running": True, "memory": "64Mi", "kernel": str(guest_kernel),
                               "nodeSelector": {"kubernetes.io/hostname": "node0"}}})
    wait_for("VM Running", lambda: (kube.get(VMS, "leftover", "default").get("status") or {})
             .get("phase") == "Running", timeout=90)
    assert domain_state(c, "node0", "default_leftover") == "running"
    assert kube.list_all(PODS, "default")

    # A killed node runner (a kubelet crash): the next `up` restarts it and it adopts the containers its
    # predecessor left, as a kubelet re-attaches to its runtime's: the launcher keeps its guest, the VM stays
    # Running in the same pod, and the pod's status still follows its process (a new runner sees its end).
    before = kube.get(VMS, "leftover", "default")["status"]["launcherPod"]
    runner_pid = int((state / "pids" / "noderunner.pid").read_text().split()[0])
    os.kill(runner_pid, signal.SIGKILL)
    assert _virtmigrate(state, "up").returncode == 0
    time.sleep(3)  # a runner that stopped the adopted container would have done so by now
    st = wait_for("VM Running in the same launcher", lambda: (s := kube.get(VMS, "leftover", "default").get(
        "status") or {}).get("phase") == "Running" and s, timeout=90)
    assert (st["node"], st["launcherPod"]) == ("node0", before)
    assert (kube.get(PODS, before, "default").get("status") or {}).get("phase") == "Running"
    assert domain_state(c, "node0", "default_leftover") == "running"
    assert domain_state(c, "node1", "default_leftover") == ""
    for running in (False, True):
        kube.patch(VMS, "leftover", {"spec": {"running": running}}, "default")
        want = "Running" if running else "Stopped"
        wait_for(f"VM {want}", lambda w=want: (kube.get(VMS, "leftover", "default").get("status") or {})  # type: ignore[misc]
                 .get("phase") == w, timeout=90)
    assert domain_state(c, "node0", "default_leftover") == "running"

    ports, namespaces = cluster_ports(c), cluster_namespaces(c)
    assert ports and namespaces
    since = time.time()
    down = _virtmigrate(state, "down")
    assert down.returncode == 0, down.stderr
    assert leftovers(state, ports=ports, namespaces=namespaces, since=since, metrics_net=c.metrics_net) == []
    assert not state.exists()
    qemus = subprocess.run(["pgrep", "-af", "guest=default_leftover"], capture_output=True, text=True)
    assert qemus.stdout == ""
    again = _virtmigrate(state, "down")
    assert again.returncode == 0 and "nothing was running" in again.stderr
