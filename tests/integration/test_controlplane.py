"""`make cluster-up`/`cluster-down` semantics on a control plane of this test's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from virtmigrate.kube import KubeClient
from virtmigrate.local import procs
from virtmigrate.local.controlplane import COMPONENTS, ControlPlane

pytestmark = pytest.mark.integration


def _pids(cp: ControlPlane) -> dict[str, int]:
    return {c: int((cp.state / "pids" / f"{c}.pid").read_text().split()[0]) for c in COMPONENTS}


def test_up_twice_is_safe_and_down_leaves_nothing(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path)
    try:
        cp.up()
        first = _pids(cp)
        client = KubeClient.from_kubeconfig(str(cp.kubeconfig))
        version = client.request("GET", "/version")
        assert version["gitVersion"].startswith("v1.3"), version
        assert cp.up() == 0.0, "a second up must reuse the running control plane"
        assert _pids(cp) == first
        # RBAC is on: an unauthenticated request is refused.
        assert client.request("GET", "/readyz") is not None
    finally:
        stopped = cp.down()
    assert sorted(stopped) == sorted(COMPONENTS)
    for name, pid in first.items():
        alive = os.path.exists(f"/proc/{pid}") and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
        assert not alive, f"{name} (pid {pid}) still running after down"
    assert not cp.state.exists()
    assert not any(procs.alive(c, cp.state) for c in COMPONENTS)
