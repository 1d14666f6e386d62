"""Shared fixtures: the real control plane (started once per run, or reused through $KUBECONFIG),
a KubeClient on it, the real kubectl, and one fresh namespace per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"


@dataclass
class Cluster:
    kubeconfig: Path
    server: str
    state: Path | None  # set when this run started the control plane


@dataclass
class Kubectl:
    kubeconfig: Path
    namespace: str | None = None

    def run(self, *args: str, input: str | None = None, check: bool = True,
            namespaced: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # Discovery cached per cluster: another cluster that had this port before must not answer for it.
        argv = [KUBECTL, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.kubeconfig.parent / 'kubectl-cache'}"]
        if namespaced and self.namespace:
            argv.append(f"--namespace={self.namespace}")
        proc = subprocess.run([*argv, *args], input=input, text=True, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def __call__(self, *args: str, **kw: object) -> str:
        return self.run(*args, **kw).stdout  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The control plane: $KUBECONFIG's when set (e.g. after `make cluster-up`), else one of our own."""
    from virtmigrate.kube import KubeClient

    kc = os.environ.get("VIRTMIGRATE_TEST_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if kc and Path(kc).exists():
        client = KubeClient.from_kubeconfig(kc)
        client.request("GET", "/readyz")
        yield Cluster(Path(kc), client.host, None)
        return
    from virtmigrate.local.controlplane import ControlPlane

    state = Path(tempfile.mkdtemp(prefix="virtmigrate-test-"))
    cp = ControlPlane(state)
    cp.up()
    try:
        yield Cluster(cp.kubeconfig, cp.server, state)
    finally:
        cp.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The CRDs from manifests/crds applied and Established."""
    k = Kubectl(cluster.kubeconfig)
    k.run("apply", "-f", str(REPO / "manifests" / "crds"), namespaced=False)
    k.run("wait", "--for=condition=Established", "--timeout=60s",
          "crd/migrations.kubevirt.io", "crd/vms.kubevirt.io", namespaced=False)


@pytest.fixture
def kube(cluster: Cluster):  # type: ignore[no-untyped-def]
    from virtmigrate.kube import KubeClient

    return KubeClient.from_kubeconfig(str(cluster.kubeconfig))


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (namespaces stay Terminating without a controller-manager)."""
    from virtmigrate.kube import KubeClient
    from virtmigrate.kube.resources import NAMESPACES

    client = KubeClient.from_kubeconfig(str(cluster.kubeconfig))
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    with contextlib.suppress(Exception):
        client.delete(NAMESPACES, name)


@pytest.fixture
def kubectl(cluster: Cluster, namespace: str) -> Kubectl:
    return Kubectl(cluster.kubeconfig, namespace)
