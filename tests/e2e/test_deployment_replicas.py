"""The controller as the manifests deploy it: two replicas under the manifests' ServiceAccount and RBAC
(a TokenRequest token for virtmigrate-system/virtmigrate-controller, the Deployment's args and
environment). Exactly one replica acts; when it is killed the other takes over within the Lease's
duration (plus one retry period to notice), and a migration in flight completes exactly once.
A permission missing from manifests/rbac.yaml makes the VM or the migration fail here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    create_migration,
    running_vm,
    wait_events,
    wait_phase,
)
from tests.manifests_support import BASE_NAMESPACE, CONTROLLER_SA, controller_container, controller_environment, render
from virtmigrate import errors
from virtmigrate.kube.resources import LEASES
from virtmigrate.local import procs

LEASE = "virtmigrate-controller"
LEASE_DURATION_S, RETRY_PERIOD_S = 15.0, 2.0


def _kubeconfig(tmp: Path, server: str, ca: Path, token: str) -> Path:
    kc = tmp / "controller.kubeconfig"
    kc.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": CONTROLLER_SA, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": CONTROLLER_SA}}]}))
    return kc


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _holder(kube: Any) -> str:
    try:
        return str(kube.get(LEASES, LEASE, BASE_NAMESPACE)["spec"].get("holderIdentity") or "")
    except errors.NotFound:  # no Lease yet
        return ""


@pytest.fixture
def replicas(local_cluster: Any, kube: Any, tmp_path: Path,
             guest_kernel: Path) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], int]]]:
    """Two controller replicas as the Deployment runs them, in place of the local cluster's own controller
    (configured, as an operator would, to allow the directory of the test guest's kernel)."""
    procs.stop("controller", Path(local_cluster.state))
    objs = render()
    token = kube.create_token(BASE_NAMESPACE, CONTROLLER_SA, expiration_seconds=3600)
    kc = _kubeconfig(tmp_path, local_cluster.control_plane.server, local_cluster.control_plane.pki / "ca.crt", token)
    exe = str(Path(sys.executable).parent / "virtmigrate-controller")
    out: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for name in ("virtmigrate-controller-a", "virtmigrate-controller-b"):
        port = procs.free_port()
        env = {**os.environ, **controller_environment(objs, pod_name=name, pod_namespace=BASE_NAMESPACE),
               "VIRTMIGRATE_METRICS_ADDRESS": f"127.0.0.1:{port}", "VIRTMIGRATE_LOG_FORMAT": "console"}
        env["VIRTMIGRATE_IMAGE_DIRS"] = f"{env['VIRTMIGRATE_IMAGE_DIRS']},{guest_kernel.parent}"
        env.pop("KUBECONFIG", None)
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        out[name] = (subprocess.Popen([exe, *controller_container(objs).get("args", []), f"--kubeconfig={kc}"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT), port)
    try:
        yield out
    finally:
        for p, _ in out.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in out.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        local_cluster.up()  # the local cluster's own controller again
        for f in sorted(tmp_path.glob("*.log")):
            # A 403 for a namespace being deleted (an earlier test's, now really deleted by the
            # kube-controller-manager) is the namespace lifecycle, not a permission the RBAC lacks.
            denied = [line for line in f.read_text(errors="replace").splitlines()
                      if "orbidden" in line and "because it is being terminated" not in line]
            if denied:
                pytest.fail(f"{f.name} logged a permission error:\n" + "\n".join(denied[-20:]))


def test_two_replicas_from_the_manifests_one_acts_and_the_other_takes_over(
        replicas: dict[str, tuple[subprocess.Popen[bytes], int]], kube: Any, kubectl: Any, namespace: str,
        guest_kernel: Path, local_cluster: Any) -> None:
    leader = wait_for("a leader", lambda: _holder(kube) if _holder(kube) in replicas else None, timeout=40)
    (standby,) = [n for n in replicas if n != leader]

    # Exactly one acts: the VM controller of the leader starts the guest; only the leader reports migrations.
    st = running_vm(kube, kubectl, namespace, guest_kernel, local_cluster)
    assert "virtmigrate_migrations{" in _metrics(replicas[leader][1])
    assert "virtmigrate_migrations{" not in _metrics(replicas[standby][1])

    create_migration(kubectl, bandwidthMiBps=3)  # tens of seconds of copying: still in flight after the kill
    wait_phase(kube, namespace, ("Running",), timeout=90)
    replicas[leader][0].send_signal(signal.SIGKILL)  # no graceful release: the standby waits out the Lease
    killed = time.monotonic()
    wait_for(f"{standby} to lead", lambda: _holder(kube) == standby,
             timeout=LEASE_DURATION_S + 2 * RETRY_PERIOD_S + 5)
    took = time.monotonic() - killed
    assert took <= LEASE_DURATION_S + RETRY_PERIOD_S + 1, f"take-over took {took:.1f}s"

    m = wait_phase(kube, namespace, ("Succeeded", "Failed"), timeout=240)
    assert m["status"]["phase"] == "Succeeded", m["status"]
    assert_runs_only_on(local_cluster, kube, namespace, m["status"]["targetNode"])
    assert m["status"]["targetNode"] != st["node"]
    reasons = wait_events(kube, namespace, "testvm-migration", "AgentCreated", "Succeeded")
    assert reasons.count("AgentCreated") == 1 and reasons.count("Succeeded") == 1, reasons
    assert "virtmigrate_migrations{" in _metrics(replicas[standby][1])
