"""The Migration and VM APIs on the real kube-apiserver, driven through the real kubectl."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, Kubectl

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crds")]

SEED = (REPO / "examples" / "migration.yaml").read_text()  # the seed's file, verbatim


def test_seed_session_verbatim(kubectl: Kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "migration.yaml"
    f.write_text(SEED)
    assert "migration.kubevirt.io/testvm-migration created" in kubectl("create", "-f", str(f))
    table = kubectl("get", "migrations")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "VM", "SOURCE", "TARGET", "PROGRESS", "AGE"]
    assert row.split()[0] == "testvm-migration" and "testvm" in row.split()
    out = kubectl("get", "migrations", "testvm-migration", "-o", "yaml")
    assert "kind: Migration" in out and "name: testvm" in out
    assert "deleted" in kubectl("delete", "migrations", "testvm-migration")
    assert "testvm-migration" not in kubectl("get", "migrations")


def test_short_name_and_category(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=SEED)
    assert "testvm-migration" in kubectl("get", "mig")
    assert "migration.kubevirt.io/testvm-migration" in kubectl("get", "virtmigrate", "-o", "name")


@pytest.mark.parametrize("path, words", [
    pytest.param("migration.spec.selector", ["Selects the VM to move", "name"], id="migration-selector"),
    pytest.param("migration.spec.selector.name", ["DNS-1123"], id="migration-selector-name"),
    pytest.param("migration.status.phase", ["Pending", "Succeeded"], id="migration-phase"),
    pytest.param("vm.spec.nodeSelector", ["take effect only through"], id="vm-nodeselector"),
])
def test_explain_describes_fields(kubectl: Kubectl, path: str, words: list[str]) -> None:
    out = kubectl("explain", path, namespaced=False)
    for w in words:
        assert w in out


def _migration(spec: dict) -> str:  # type: ignore[type-arg]
    return json.dumps({"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
                       "metadata": {"name": "bad"}, "spec": spec})


@pytest.mark.parametrize("spec, field, hint", [
    pytest.param({"selector": {}}, "spec.selector.name", "Required value", id="name-missing"),
    pytest.param({}, "spec.selector", "Required value", id="selector-missing"),
    pytest.param({"selector": {"name": "Test_VM"}}, "spec.selector.name", "should match", id="name-not-dns1123"),
    pytest.param({"selector": {"name": "testvm"}, "nodeSelector": {"zone": "a b"}},
                 "spec.nodeSelector.zone", "should match", id="selector-value-invalid"),
    pytest.param({"selector": {"name": "testvm"}, "nodeSelector": {"-bad/key!": "a"}},
                 "spec.nodeSelector", "valid label key", id="selector-key-invalid"),
    pytest.param({"selector": {"name": "testvm"}, "bandwidthMiBps": -1},
                 "spec.bandwidthMiBps", "greater than or equal to 0", id="bandwidth-negative"),
])
def test_invalid_migration_rejected_naming_field(kubectl: Kubectl, spec: dict, field: str,  # type: ignore[type-arg]
                                                 hint: str) -> None:
    proc = kubectl.run("create", "-f", "-", input=_migration(spec), check=False)
    assert proc.returncode != 0
    assert field in proc.stderr and hint in proc.stderr, proc.stderr


def test_migration_spec_is_immutable(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=SEED)
    proc = kubectl.run("patch", "migration", "testvm-migration", "--type=merge",
                       "-p", '{"spec":{"selector":{"name":"othervm"}}}', check=False)
    assert proc.returncode != 0
    assert "spec is immutable" in proc.stderr
    assert kubectl("get", "migration", "testvm-migration", "-o", "jsonpath={.spec.selector.name}") == "testvm"


def test_migration_status_is_a_subresource(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=SEED)
    # A patch of the main resource ignores status; the status subresource takes it.
    kubectl("patch", "migration", "testvm-migration", "--type=merge", "-p", '{"status":{"phase":"Running"}}')
    assert kubectl("get", "migration", "testvm-migration", "-o", "jsonpath={.status.phase}") == ""
    kubectl("patch", "migration", "testvm-migration", "--subresource=status", "--type=merge",
            "-p", '{"status":{"phase":"Running","sourceNode":"node0"}}')
    row = kubectl("get", "migrations").splitlines()[1].split()
    assert row[1:4] == ["Running", "testvm", "node0"]


def test_vm_accepted_and_shown(kubectl: Kubectl) -> None:
    vm = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM", "metadata": {"name": "testvm"},
          "spec": {"running": True, "memory": "128Mi", "kernel": "/var/lib/virtmigrate/images/k",
                   "nodeSelector": {"kubernetes.io/hostname": "node0"}}}
    kubectl("create", "-f", "-", input=json.dumps(vm))
    assert kubectl("get", "vms").splitlines()[0].split() == ["NAME", "PHASE", "NODE", "AGE"]
    bad = dict(vm, metadata={"name": "badvm"}, spec={"memory": "lots"})
    proc = kubectl.run("create", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0 and "spec.memory" in proc.stderr
