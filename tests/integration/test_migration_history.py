"""The history limit against the real API server: a `virtmigrate-controller` process keeps the newest N
finished Migrations per VM, deletes the rest with a MigrationsPruned Event on the VM, never touches one
that still has a finalizer, and after a restart prunes again from what the API holds.

Migrations are made finished directly (status written through the status subresource); the controller
runs with --vm-controller=false and only in the test's namespace (--namespaces), so it acts on nothing else.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, Kubectl
from tests.waiting import eventually
from virtmigrate.kube import KubeClient
from virtmigrate.kube.resources import MIGRATIONS, VMS

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
JSON = dict[str, Any]
KEEP_FINALIZER = "example.com/keep"  # someone else's finalizer: the Migration is not ours to delete


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def controller(cluster: Cluster, namespace: str, limit: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([str(BIN / "virtmigrate-controller"), f"--kubeconfig={cluster.kubeconfig}",
                             "--leader-elect=false", "--vm-controller=false", f"--namespaces={namespace}",
                             f"--migration-history-limit={limit}", f"--metrics-address=127.0.0.1:{_port()}",
                             "--log-level=warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def finished(kube: KubeClient, ns: str, name: str, vm: str, minute: int, *, finalizers: tuple[str, ...] = ()
             ) -> None:
    """A Migration of `vm` that ended (Succeeded) at 00:`minute`."""
    meta: JSON = {"name": name, "namespace": ns}
    if finalizers:
        meta["finalizers"] = list(finalizers)
    kube.create(MIGRATIONS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": meta,
                             "spec": {"selector": {"name": vm}}}, ns)
    kube.patch(MIGRATIONS, name, {"status": {"phase": "Succeeded", "reason": "Migrated", "phaseTransitionTimestamps": [
        {"phase": "Succeeded", "time": f"2026-01-01T00:{minute:02d}:00.000000Z"}]}}, ns, subresource="status")


def names(kube: KubeClient, ns: str) -> set[str]:
    return {m["metadata"]["name"] for m in kube.list_all(MIGRATIONS, ns)}


def test_history_is_pruned_per_vm_visibly_and_again_after_a_restart(
        cluster: Cluster, crds: None, kube: KubeClient, namespace: str, kubectl: Kubectl) -> None:
    ns = namespace
    for vm in ("a", "b"):
        kube.create(VMS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": vm},
                          "spec": {"running": False, "memory": "64Mi"}}, ns)
    for i in range(6):
        finished(kube, ns, f"a-{i}", "a", 10 + i)
    finished(kube, ns, "a-held", "a", 1, finalizers=(KEEP_FINALIZER,))  # oldest of all, but held
    finished(kube, ns, "b-0", "b", 1)
    finished(kube, ns, "b-1", "b", 2)
    try:
        with controller(cluster, ns, limit=3):
            assert eventually(lambda: names(kube, ns) == {"a-3", "a-4", "a-5", "a-held", "b-0", "b-1"}, 60,
                              interval=0.2), names(kube, ns)
            assert eventually(lambda: "MigrationsPruned" in kubectl(
                "get", "events", "--field-selector", "involvedObject.kind=VM,involvedObject.name=a",
                "-o", "jsonpath={.items[*].reason}"), 30, interval=0.2)
            events = kubectl("get", "events", "--field-selector", "reason=MigrationsPruned",
                             "-o", "jsonpath={range .items[*]}{.involvedObject.name}: {.message}{'\\n'}{end}")
            assert "a: deleted" in events and "a-0" in events and "a-2" in events and "b:" not in events
        # While no controller runs, two more Migrations of VM a finish; a new process decides from the API.
        finished(kube, ns, "a-6", "a", 30)
        finished(kube, ns, "a-7", "a", 31)
        with controller(cluster, ns, limit=3):
            assert eventually(lambda: names(kube, ns) == {"a-5", "a-6", "a-7", "a-held", "b-0", "b-1"}, 60,
                              interval=0.2), names(kube, ns)
    finally:
        with contextlib.suppress(Exception):
            kube.patch(MIGRATIONS, "a-held", {"metadata": {"finalizers": None}}, ns)
