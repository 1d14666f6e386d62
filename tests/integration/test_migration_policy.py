"""A Migration's spec is bounded by the cluster's policy, and bad Migrations say so: the migration controller
(run in this process against the real API server, configured with limits) fails a Migration beyond them
with reason PolicyViolation naming the field and the limit, and every Migration the API server accepts
(a seeded random sample) gets a phase."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import Kubectl
from tests.waiting import eventually
from virtmigrate import errors
from virtmigrate.controller.config import ControllerConfig
from virtmigrate.controller.events import KubeEventRecorder
from virtmigrate.controller.metrics import MigrationMetrics
from virtmigrate.controller.migration.controller import MigrationController
from virtmigrate.controller.policy import ImageDirs, PolicyLimits
from virtmigrate.informer import SharedInformerFactory
from virtmigrate.kube import KubeClient
from virtmigrate.kube.resources import MIGRATIONS, VMS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crds")]

LIMITS = PolicyLimits(max_bandwidth_mib_s=100, max_downtime_ms=1000, permit_post_copy=False)
IMAGES = "/var/lib/virtmigrate/images"


@pytest.fixture
def migration_controller(kube: KubeClient, namespace: str) -> Iterator[MigrationController]:
    """The migration controller on the test's API server, serving only the test's namespace."""
    # history_limit=-1: these tests read every finished Migration back (pruning is tested on its own).
    config = ControllerConfig(namespaces=(namespace,), workers=2, policy_limits=LIMITS,
                              image_dirs=ImageDirs(cluster=(IMAGES,)), history_limit=-1)
    factory = SharedInformerFactory(kube)
    recorder = KubeEventRecorder(kube)
    ctl = MigrationController(kube, factory, config=config, recorder=recorder,
                              metrics=MigrationMetrics(CollectorRegistry()), registry=CollectorRegistry())
    stop = threading.Event()
    factory.start(stop)
    t = threading.Thread(target=ctl.run, args=(2, stop), daemon=True)
    t.start()
    yield ctl
    stop.set()
    t.join(30)
    recorder.stop()
    factory.shutdown()


def _running_vm(kube: KubeClient, ns: str, name: str, kernel: str = f"{IMAGES}/guest") -> None:
    """A VM whose status says it runs on node0 (no node runs it: the Migrations here fail before that)."""
    kube.create(VMS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": name},
                      "spec": {"running": True, "memory": "64Mi", "kernel": kernel}}, ns)
    kube.patch(VMS, name, {"status": {"phase": "Running", "node": "node0", "launcherPod": f"virt-launcher-{name}"}},
               ns, subresource="status")


def _migration(name: str, vm: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration", "metadata": {"name": name},
            "spec": {"selector": {"name": vm}, **spec}}


def _status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    out = kubectl("get", "migration", name, "-o", "jsonpath={.status}")
    return json.loads(out) if out else {}


def test_a_migration_beyond_the_cluster_limits_fails_naming_field_and_limit(
        kube: KubeClient, kubectl: Kubectl, namespace: str, migration_controller: MigrationController) -> None:
    _running_vm(kube, namespace, "vm1")
    kubectl("create", "-f", "-", input=json.dumps(_migration("greedy", "vm1", bandwidthMiBps=500,
                                                             allowPostCopy=True)))
    assert eventually(lambda: _status(kubectl, "greedy").get("phase") == "Failed", 30, interval=0.2)
    st = _status(kubectl, "greedy")
    assert st["reason"] == "PolicyViolation"
    assert "spec.bandwidthMiBps" in st["message"] and "100 MiB/s" in st["message"]
    assert "spec.allowPostCopy" in st["message"]
    assert eventually(lambda: "PolicyViolation" in kubectl(
        "get", "events", "--field-selector=involvedObject.name=greedy", "-o", "jsonpath={..reason}"), 15)


def test_a_migration_of_a_vm_with_a_disallowed_kernel_fails_naming_it(
        kube: KubeClient, kubectl: Kubectl, namespace: str, migration_controller: MigrationController) -> None:
    _running_vm(kube, namespace, "vm2", kernel="/etc/shadow")
    kubectl("create", "-f", "-", input=json.dumps(_migration("m2", "vm2")))
    assert eventually(lambda: _status(kubectl, "m2").get("phase") == "Failed", 30, interval=0.2)
    st = _status(kubectl, "m2")
    assert st["reason"] == "InvalidSpec" and "spec.kernel" in st["message"] and IMAGES in st["message"]


def test_every_migration_the_api_server_accepts_gets_a_phase(
        kube: KubeClient, kubectl: Kubectl, namespace: str, migration_controller: MigrationController) -> None:
    for v in ("vm-a", "vm-b"):
        _running_vm(kube, namespace, v)
    rnd = random.Random(11)  # seeded: a failure names the Migration and its spec, and replays
    accepted: dict[str, dict[str, Any]] = {}
    for i in range(60):
        spec: dict[str, Any] = {}
        for key, choices in (("bandwidthMiBps", [-1, 0, 50, 100, 101]), ("maxDowntimeMs", [0, 1, 1000, 1001]),
                             ("progressTimeout", [0, 5]), ("allowPostCopy", [True, False]),
                             ("allowPause", [True, False]),
                             ("nodeSelector", [{"zone": "a"}, {"x y": "a"}, {"zone": "a b"}, {}])):
            if rnd.random() < 0.3:
                spec[key] = rnd.choice(choices)
        vm = rnd.choice(["vm-a", "vm-b", "no-such-vm", "Bad_Name"])
        name = f"mig{i:02d}"
        try:
            kube.create(MIGRATIONS, _migration(name, vm, **spec), namespace)
        except errors.Invalid:
            continue
        accepted[name] = {"vm": vm, **spec}
    assert len(accepted) >= 15, f"the sample exercises too few accepted Migrations ({len(accepted)})"

    def without_phase() -> list[str]:
        seen = {o["metadata"]["name"]: (o.get("status") or {}).get("phase")
                for o in kube.list_all(MIGRATIONS, namespace)}
        return [n for n in accepted if not seen.get(n)]

    eventually(lambda: not without_phase(), 60, interval=0.5)
    missing = without_phase()
    assert not missing, "accepted Migrations without a phase: " + "; ".join(f"{n}: {accepted[n]}" for n in missing[:5])
    reasons = {o["metadata"]["name"]: (o.get("status") or {}).get("reason")
               for o in kube.list_all(MIGRATIONS, namespace)}
    beyond = [n for n, s in accepted.items() if s.get("bandwidthMiBps") in (0, 101) or s.get("maxDowntimeMs") == 1001
              or s.get("allowPostCopy") is True]
    for n in beyond:
        assert reasons[n] in ("PolicyViolation", "VMNotFound"), (n, accepted[n], reasons[n])
