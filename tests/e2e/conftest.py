"""The e2e tier's cluster: the whole local cluster (control plane with kube-controller-manager, libvirt nodes,
node runner, controller). A test's namespace is deleted after it (tests/conftest.py) and the namespace
controller removes everything in it, launcher and agent pods included, so tests need no clean-up of their own.

Session fixture `local_cluster`: reuses the cluster whose state directory is $VIRTMIGRATE_E2E_STATE when
one runs there (and leaves it running), else brings one up in a temporary directory and tears it down
at the end — checking that nothing is left. It overrides the shared `cluster` fixture, so `kube`,
`kubectl` and `namespace` of tests/conftest.py talk to this cluster. Helpers for waiting live here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import Cluster

T = TypeVar("T")
# Nodes migrate on 127.0.0.30+: apart from a dev cluster (20+) and the agent tests (40+); two e2e runs at once
# on one machine need different values.
E2E_FIRST_ADDRESS = int(os.environ.get("VIRTMIGRATE_E2E_FIRST_ADDRESS", "30"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed e2e test says what the cluster was doing: its namespace's pods and objects, and the tails of
    the controller's and the node runner's logs (the cluster may be a temporary one, gone after the run)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    lc = getattr(item, "funcargs", {}).get("local_cluster")
    if call.when != "call" or not report.failed or lc is None:
        return
    ns = item.funcargs.get("namespace")  # type: ignore[attr-defined]
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"
    parts = []
    if ns:
        got = subprocess.run([kubectl, f"--kubeconfig={lc.kubeconfig}", "-n", str(ns), "get",
                              "pods,vms,migrations,events", "-o", "wide"], capture_output=True, text=True,
                             timeout=30, check=False)
        parts.append(f"--- kubectl get pods,vms,migrations,events -n {ns}\n{got.stdout}{got.stderr}")
    for log in ("controller.log", "noderunner.log"):
        path = Path(lc.state) / "logs" / log
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-80:]
            parts.append(f"--- {path} (last 80 lines)\n" + "\n".join(tail))
    report.sections.append(("cluster at failure", "\n".join(parts)))


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[Any]:
    from virtmigrate.local.cluster import LocalCluster, cluster_namespaces, cluster_ports, leftovers

    reuse = os.environ.get("VIRTMIGRATE_E2E_STATE")
    if reuse:
        c = LocalCluster(Path(reuse), first_address=E2E_FIRST_ADDRESS)
        if c.running_any():
            c.up()  # cheap when everything runs; restarts what died
            yield c
            return
    state = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="virtmigrate-e2e-"))
    c = LocalCluster(state, nodes=3, first_address=E2E_FIRST_ADDRESS)
    try:
        c.up()
        yield c
    finally:
        ports, namespaces = cluster_ports(c), cluster_namespaces(c)
        since, kubelet = time.time(), c.node_mode == "kubelet"
        c.down()
        left = leftovers(state, ports=ports, namespaces=namespaces, since=since, kubelet=kubelet,
                         metrics_net=c.metrics_net)
        shutil.rmtree(state, ignore_errors=True)
        assert not left, f"the local cluster left things behind: {left}"


@pytest.fixture(scope="session")
def cluster(local_cluster: Any) -> Cluster:
    return Cluster(local_cluster.kubeconfig, local_cluster.control_plane.server, None)


@pytest.fixture(scope="session")
def guest_kernel() -> Path:
    from virtmigrate.local.guest import guest_kernel as build

    return build()


def wait_for(what: str, fn: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll `fn` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def virsh(local_cluster: Any, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`virsh` against the libvirt of `node` (nodeN is libvirt host N), over its loopback TCP URI."""
    index = int(node.removeprefix("node"))
    uri = local_cluster.hosts.host(index).uri
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60, check=check)


def domain_state(local_cluster: Any, node: str, domain: str) -> str:
    """'running', 'shut off', ... or '' when the node has no such domain."""
    r = virsh(local_cluster, node, "domstate", domain, check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def serial_lines(local_cluster: Any, node: str, domain: str) -> int:
    """Heartbeat lines the guest has written to its serial file on `node` (0 when none)."""
    index = int(node.removeprefix("node"))
    f = local_cluster.hosts.host(index).qemu_log_dir / f"{domain}-serial.log"
    try:
        return sum(1 for line in f.read_text(errors="replace").splitlines() if line.startswith("heartbeat"))
    except OSError:
        return 0


@pytest.fixture
def kubelet_cluster(local_cluster: Any) -> Any:
    """The e2e cluster when it runs real kubelets (`VIRTMIGRATE_NODES=kubelet`); the kubelet tier skips
    otherwise, saying how to bring such a cluster up."""
    if local_cluster.node_mode != "kubelet":
        pytest.skip("the cluster runs the node runner; bring it up with VIRTMIGRATE_NODES=kubelet")
    return local_cluster
