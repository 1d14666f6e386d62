"""A Migration's spec is bounded by the cluster's policy, and bad Migrations say so: the migration controller
(run in this process against the real API server, configured with limits) fails a Migration beyond them
with reason PolicyViolation naming the field and the limit, and every Migration the API server accepts
(a seeded random sample) gets a phase. MigrationPolicies are selected by namespace and VM labels and bounded
by the same limits (clamped, with a condition and an Event)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.conftest import Kubectl
from tests.integration.conftest import IMAGES
from tests.waiting import eventually
from virtmigrate import errors
from virtmigrate.controller.migration.controller import MigrationController
from virtmigrate.kube import KubeClient
from virtmigrate.kube.resources import MIGRATIONS, VMS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crds")]

def _running_vm(kube: KubeClient, ns: str, name: str, kernel: str = f"{IMAGES}/guest", *, node: str = "node0",
                labels: dict[str, str] | None = None) -> None:
    """A VM whose status says it runs on `node` (no node runs it: the Migrations here go no further than
    admission)."""
    kube.create(VMS, {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
                      "metadata": {"name": name, "labels": labels or {}},
                      "spec": {"running": True, "memory": "64Mi", "kernel": kernel}}, ns)
    kube.patch(VMS, name, {"status": {"phase": "Running", "node": node, "launcherPod": f"virt-launcher-{name}"}},
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


def _policy(name: str, *, ns: dict[str, str] | None = None, vm: dict[str, str] | None = None,
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy", "metadata": {"name": name},
            "spec": {"selectors": {"namespaceSelector": ns or {}, "vmSelector": vm or {}}, **spec}}


def test_policy_selection_and_a_spec_override_within_and_beyond_the_maxima(
        kube: KubeClient, kubectl: Kubectl, namespace: str, migration_controller: MigrationController) -> None:
    """Policies select by namespace labels and VM labels, the most specific wins; a policy beyond the cluster's
    maxima (LIMITS: 100 MiB/s, 1000 ms, no post-copy) is clamped, visibly; the Migration's own spec overrides
    the policy within the maxima, and beyond them fails naming the limit."""
    tag = namespace[-6:]  # policies are cluster-scoped: select only this test's namespace
    kubectl("label", "namespace", namespace, f"policy-test={tag}", namespaced=False)
    wide = f"wide-{tag}"       # the namespace's: beyond every maximum
    db = f"db-{tag}"           # namespace + VM labels: more specific, within the maxima
    for pol in (_policy(wide, ns={"policy-test": tag}, bandwidthMiBps=500, maxDowntimeMs=5000, allowPostCopy=True,
                        allowAutoConverge=True),
                _policy(db, ns={"policy-test": tag}, vm={"app": "db"}, bandwidthMiBps=40, maxDowntimeMs=800)):
        kubectl("create", "-f", "-", input=json.dumps(pol), namespaced=False)
    try:
        for i, (vm, labels) in enumerate((("web", {}), ("db", {"app": "db"}), ("web2", {}), ("web3", {}))):
            _running_vm(kube, namespace, vm, node=f"node{i}", labels=labels)
        for name, vm, spec in (("m-web", "web", {}), ("m-db", "db", {}),
                               ("m-within", "web2", {"bandwidthMiBps": 80, "maxDowntimeMs": 900}),
                               ("m-beyond", "web3", {"bandwidthMiBps": 500})):
            kubectl("create", "-f", "-", input=json.dumps(_migration(name, vm, **spec)))

        def admitted(name: str) -> dict[str, Any]:
            assert eventually(lambda: "migrationConfiguration" in _status(kubectl, name), 30, interval=0.2), \
                _status(kubectl, name)
            return _status(kubectl, name)

        # The namespace's policy, clamped to the maxima: the condition and a Warning Event name the policy,
        # each field and its limit.
        st = admitted("m-web")
        conf = st["migrationConfiguration"]
        assert st["migrationPolicy"] == wide
        assert (conf["bandwidthMiBps"], conf["maxDowntimeMs"], conf["allowPostCopy"], conf["allowAutoConverge"]) == \
            (100, 1000, False, True)
        cond = next(c for c in st["conditions"] if c["type"] == "PolicyClamped")
        assert cond["status"] == "True"
        for said in (f"MigrationPolicy {wide}: bandwidthMiBps 500 MiB/s exceeds the cluster's cap of 100 MiB/s "
                     "(--limit-bandwidth-max): 100 MiB/s used", "maxDowntimeMs 5000 ms exceeds the cluster's limit "
                     "of 1000 ms", "allowPostCopy is not permitted in this cluster"):
            assert said in cond["message"], cond
        assert eventually(lambda: "PolicyClamped" in kubectl(
            "get", "events", "--field-selector=involvedObject.name=m-web,type=Warning", "-o",
            "jsonpath={..reason}"), 15)

        # VM labels make the other policy more specific: it wins, within the maxima, nothing clamped.
        st = admitted("m-db")
        assert st["migrationPolicy"] == db
        assert (st["migrationConfiguration"]["bandwidthMiBps"], st["migrationConfiguration"]["maxDowntimeMs"]) == \
            (40, 800)
        assert not [c for c in st.get("conditions") or [] if c["type"] == "PolicyClamped"], st

        # The spec overrides the policy within the maxima: its values run; what it leaves to the policy is
        # still clamped.
        st = admitted("m-within")
        conf = st["migrationConfiguration"]
        assert st["migrationPolicy"] == wide
        assert (conf["bandwidthMiBps"], conf["maxDowntimeMs"], conf["allowPostCopy"]) == (80, 900, False)
        cond = next(c for c in st["conditions"] if c["type"] == "PolicyClamped")
        assert "allowPostCopy" in cond["message"] and "bandwidthMiBps" not in cond["message"], cond

        # Beyond the maxima the spec is not clamped: the Migration fails naming the field and the limit.
        assert eventually(lambda: _status(kubectl, "m-beyond").get("phase") == "Failed", 30, interval=0.2)
        st = _status(kubectl, "m-beyond")
        assert st["reason"] == "PolicyViolation" and "spec.bandwidthMiBps: 500 MiB/s" in st["message"] \
            and "100 MiB/s" in st["message"], st
    finally:
        kubectl.run("delete", "migrationpolicy", wide, db, namespaced=False, check=False)
