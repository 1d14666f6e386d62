"""Node faults for real (VIRTMIGRATE_NODES=kubelet): a node whose kubelet stops turns NotReady through the
real node lifecycle controller (kube-controller-manager: Ready Unknown after the grace period, tainted
unreachable), and a Migration whose source or target node goes away that way ends in a terminal phase
that tells where the guest really runs — read from the nodes' libvirt, not inferred.

The kubelet is restarted afterwards (the cluster's warm `up`); the pods it ran kept running meanwhile, as
on a real node whose kubelet restarts. Skips, saying so, on a node runner cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from tests.e2e.test_migration_support import (
    assert_runs_only_on,
    create_migration,
    domains_on,
    running_vm,
    wait_phase,
)
from virtmigrate.kube.resources import NODES
from virtmigrate.local.kubeletnodes import RUNNING_TIMEOUT_S

UNREACHABLE = "node.kubernetes.io/unreachable"


def _ready_status(kube: Any, node: str) -> str:
    conds = {c["type"]: c for c in kube.get(NODES, node)["status"].get("conditions") or []}
    return str(conds.get("Ready", {}).get("status", ""))


def _tainted_unreachable(kube: Any, node: str) -> bool:
    return any(t.get("key") == UNREACHABLE for t in kube.get(NODES, node)["spec"].get("taints") or [])


@pytest.mark.parametrize("side", ["target", "source"])
def test_a_node_whose_kubelet_stops_mid_migration_turns_not_ready_and_the_migration_ends_truthfully(
        kube: Any, kubectl: Any, namespace: str, guest_kernel: Path, kubelet_cluster: Any, side: str) -> None:
    st = running_vm(kube, kubectl, namespace, guest_kernel, kubelet_cluster, memory="128Mi")
    source = st["node"]
    # Slowed (128 MiB at 4 MiB/s: about 30 s) so the kubelet stops while memory moves.
    create_migration(kubectl, bandwidthMiBps=4)
    running = wait_phase(kube, namespace, ("Running", "Succeeded", "Failed"), timeout=120)["status"]
    assert running["phase"] == "Running", running
    target = running["targetNode"]
    gone = source if side == "source" else target
    index = int(gone.removeprefix("node"))
    try:
        assert kubelet_cluster.kubelets.stop_kubelet(index)
        # The real node lifecycle: no heartbeat for the grace period -> Ready Unknown, tainted unreachable.
        wait_for(f"{gone} NotReady", lambda: _ready_status(kube, gone) == "Unknown", timeout=90)
        wait_for(f"{gone} tainted {UNREACHABLE}", lambda: _tainted_unreachable(kube, gone), timeout=30)
        # A stopped target kubelet leaves the agent's exit code to reach the API; a stopped source kubelet
        # freezes the agent pod's status: the agent is stopped after the Running bound, force-deleted after
        # twice its grace, and the launchers' reports decide (virtmigrate/controller/migration/decide.py).
        bound = RUNNING_TIMEOUT_S + 2 * 45 + 60
        end = wait_phase(kube, namespace, ("Succeeded", "Failed"), timeout=bound)["status"]
        where = domains_on(kubelet_cluster, namespace)
        # Truthful: Succeeded iff the guest runs on the target only, Failed with it on the source only.
        if end["phase"] == "Succeeded":
            assert where == {target: "running"}, (end, where)
        else:
            assert where == {source: "running"}, (end, where)
        print(f"{side} kubelet stopped: {end['phase']} {end.get('reason')}: {end.get('message')}")
    finally:
        kubelet_cluster.up()  # restarts the stopped kubelet
        wait_for(f"{gone} Ready again", lambda: _ready_status(kube, gone) == "True", timeout=120)
    # The guest keeps beating wherever the outcome says it is.
    assert_runs_only_on(kubelet_cluster, kube, namespace, target if end["phase"] == "Succeeded" else source)
