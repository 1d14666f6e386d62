"""`kubectl virtmigrate` against the real API server, run through the real kubectl (plugin discovery on PATH):
the exact output of each command for a VM pinned by nodeSelector, a VM whose affinity conflicts with the asked
target, and a tainted node; -o json; exit codes.

Nodes are Node objects only (no kubelet), with a pool label unique to the test; `--node-selector` keeps the
verdicts to them whatever other nodes the cluster has. VMs are objects whose status says where they run (no
controller runs in this tier), which is all the plugin reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KUBECTL, Cluster
from virtmigrate.errors import NotFound
from virtmigrate.kube import KubeClient
from virtmigrate.kube.resources import MIGRATIONS, NODES, VMS

pytestmark = pytest.mark.integration
POOL = "plugin-test.virtmigrate.io/pool"
ZONE = "topology.kubernetes.io/zone"
ZONE_A_ONLY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["zone-a"]}]}]}}}


@dataclass
class Setup:
    a: str
    b: str
    c: str
    pool: str
    ns: str
    kubeconfig: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # kubectl refuses flags before a plugin's name: the kubeconfig comes from $KUBECONFIG, as for a user.
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
               "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run([KUBECTL, "virtmigrate", *args, "-n", self.ns,
                               "--node-selector", f"{POOL}={self.pool}"],
                              capture_output=True, text=True, timeout=60, env=env)


def _node(kube: KubeClient, name: str, pool: str, zone: str, taints: list[dict[str, str]] | None = None) -> None:
    res = {"memory": "8Gi", "cpu": "4", "pods": "110"}
    kube.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
        "kubernetes.io/hostname": name, POOL: pool, ZONE: zone}},
        "status": {"allocatable": res, "capacity": res}})
    # TaintNodesByCondition taints every new node not-ready and nothing lifts it here: set ours explicitly.
    kube.patch(NODES, name, {"spec": {"taints": taints or None}})


def _vm(kube: KubeClient, ns: str, name: str, node: str, strategy: str, **spec: Any) -> None:
    kube.create(VMS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": name},
                      "spec": {"memory": "64Mi", "running": True, "kernel": "/k", "evictionStrategy": strategy,
                               **spec}}, ns)
    kube.patch(VMS, name, {"status": {"phase": "Running", "node": node, "launcherPod": f"virt-launcher-{name}"}},
               ns, subresource="status")


@pytest.fixture
def setup(kube: KubeClient, cluster: Cluster, crds: None, namespace: str) -> Iterator[Setup]:
    pool = f"p{uuid.uuid4().hex[:5]}"
    a, b, c = (f"{pool}-{x}" for x in "abc")
    try:
        _node(kube, a, pool, "zone-a")
        _node(kube, b, pool, "zone-b")
        _node(kube, c, pool, "zone-a", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
        _vm(kube, namespace, "pinned", a, "LiveMigrate", nodeSelector={"kubernetes.io/hostname": a})
        _vm(kube, namespace, "affine", a, "LiveMigrateIfPossible", affinity=ZONE_A_ONLY)
        _vm(kube, namespace, "mover", a, "LiveMigrate")
        _vm(kube, namespace, "plain", a, "None")
        yield Setup(a, b, c, pool, namespace, cluster.kubeconfig)
    finally:
        for n in (a, b, c):
            with contextlib.suppress(NotFound):
                kube.delete(NODES, n)


def test_explain_a_vm_pinned_by_node_selector(setup: Setup) -> None:
    s = setup
    proc = s.run("explain", "pinned")
    assert (proc.returncode, proc.stderr) == (0, "")
    hostname = "didn't match node selector (kubernetes.io/hostname)"
    assert proc.stdout == (
        f"VM {s.ns}/pinned runs on {s.a} (evictionStrategy LiveMigrate)\n"
        f"{'NODE':<{len(s.a)}}   FITS   REASONS\n"
        f"{s.a}   no     is the source\n"
        f"{s.b}   no     {hostname}: kubernetes.io/hostname={s.b}\n"
        f"{s.c}   no     had untolerated taint {{dedicated=db: NoSchedule}}; {hostname}: "
        f"kubernetes.io/hostname={s.c}\n"
        f"its constraints allow no node but {s.a}: kubernetes.io/hostname={s.a} (spec.nodeSelector)\n")


def test_explain_and_dry_run_of_a_vm_whose_affinity_conflicts(setup: Setup) -> None:
    s = setup
    proc = s.run("explain", "affine")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == (
        f"VM {s.ns}/affine runs on {s.a} (evictionStrategy LiveMigrateIfPossible)\n"
        f"{'NODE':<{len(s.a)}}   FITS   REASONS\n"
        f"{s.a}   no     is the source\n"
        f"{s.b}   no     didn't match node affinity ({ZONE})\n"
        f"{s.c}   no     had untolerated taint {{dedicated=db: NoSchedule}}\n"
        f"0/3 nodes are available: 1 is the source, 1 had untolerated taint {{dedicated=db: NoSchedule}}, "
        f"1 didn't match node affinity ({ZONE}).\n")
    dry = s.run("migrate", "affine", "--selector", f"{ZONE}=zone-b", "--dry-run")
    assert dry.returncode == 1
    assert f"error: no node can take VM {s.ns}/affine" in dry.stdout
    assert (f"no node can satisfy both VM affine and the Migration: VM affine requires {ZONE} In [zone-a] "
            f"(node affinity term 1) but the Migration requires {ZONE}=zone-b (spec.nodeSelector)") in dry.stdout
    report = json.loads(s.run("migrate", "affine", "--selector", f"{ZONE}=zone-b", "--dry-run", "-o", "json").stdout)
    assert report["candidates"] == [] and report["migration"]["spec"]["nodeSelector"] == {ZONE: "zone-b"}


def test_drain_plan_of_a_node_says_what_each_vm_would_do(setup: Setup) -> None:
    s = setup
    proc = s.run("drain-plan", s.a)
    assert proc.returncode == 1, proc.stderr  # the pinned LiveMigrate VM would keep the drain waiting
    affine_why = (f"0/3 nodes are available: 1 is the source, 1 had untolerated taint {{dedicated=db: NoSchedule}}, "
                  f"1 didn't match node affinity ({ZONE}). {s.a}: is the source; {s.b}: didn't match node affinity "
                  f"({ZONE}); {s.c}: had untolerated taint {{dedicated=db: NoSchedule}}")
    rows = [["VM", "STRATEGY", "ACTION", "TARGETS", "REASON"],
            [f"{s.ns}/affine", "LiveMigrateIfPossible", "shutdown", "-", affine_why],
            [f"{s.ns}/mover", "LiveMigrate", "migrate", s.b, "-"],
            [f"{s.ns}/pinned", "LiveMigrate", "blocked", "-",
             f"its constraints allow no node but {s.a}: kubernetes.io/hostname={s.a} (spec.nodeSelector) "
             "(the drain waits for it)"],
            [f"{s.ns}/plain", "None", "evict", "-",
             "evictionStrategy None: the launcher pod is evicted and the guest stops"]]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    table = "".join("   ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[4]]) + "\n" for r in rows)
    assert proc.stdout == table + f"kubectl drain {s.a} would wait for: {s.ns}/pinned\n"
    report = json.loads(s.run("drain-plan", s.a, "-o", "json").stdout)
    assert report["blocking"] == [f"{s.ns}/pinned"] and not report["completes"]


def test_migrate_to_a_node_then_cancel(setup: Setup, kube: KubeClient) -> None:
    s = setup
    proc = s.run("migrate", "mover", "--to-node", s.b)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    name = line.removeprefix("migration.kubevirt.io/").removesuffix(" created")
    assert name.startswith("mover-migration-")
    m = kube.get(MIGRATIONS, name, s.ns)
    assert m["spec"] == {"selector": {"name": "mover"}, "nodeSelector": {"kubernetes.io/hostname": s.b}}
    tainted = s.run("migrate", "mover", "--to-node", s.c)
    assert tainted.returncode == 1 and tainted.stdout == ""
    assert tainted.stderr.startswith(f"error: no node can take VM {s.ns}/mover: 0/3 nodes are available: ")
    assert f"{s.c}: had untolerated taint {{dedicated=db: NoSchedule}}" in tainted.stderr
    cancel = s.run("cancel", "mover")
    assert (cancel.returncode, cancel.stdout) == (0, f"migration.kubevirt.io/{name} deleted\n")
    with pytest.raises(NotFound):
        kube.get(MIGRATIONS, name, s.ns)
    again = s.run("cancel", "mover")
    assert (again.returncode, again.stderr) == (1, f"error: VM {s.ns}/mover has no active Migration: nothing to "
                                                   "cancel\n")
    missing = s.run("explain", "nosuch")
    assert (missing.returncode, missing.stderr) == (1, 'Error from server (NotFound): vms.kubevirt.io "nosuch" '
                                                       "not found\n")
    usage = s.run("explain")
    assert usage.returncode == 2 and "the following arguments are required: VM" in usage.stderr
