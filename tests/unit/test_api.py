"""Typed views of Migration and VM: parsing, phases, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from virtmigrate.api import VM, Migration, MigrationPhase, VMPhase
from virtmigrate.errors import ValidationError


def _mig(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
            "metadata": {"name": "testvm-migration", "namespace": "default", "uid": "u1"},
            "spec": spec, "status": status or {}}


def test_seed_migration_parses() -> None:
    m = Migration.parse(_mig({"selector": {"name": "testvm"}}))
    assert (m.key, m.spec.vm_name, m.phase, m.deleting) == ("default/testvm-migration", "testvm", None, False)
    assert m.spec.node_selector == {} and m.spec.policy.allow_post_copy is None


def test_policy_overrides_and_phase_parse() -> None:
    m = Migration.parse(_mig({"selector": {"name": "testvm"}, "nodeSelector": {"zone": "b"},
                              "bandwidthMiBps": 64, "allowPostCopy": True}, {"phase": "Running"}))
    assert m.phase is MigrationPhase.RUNNING and not m.phase.terminal
    assert m.spec.policy.bandwidth_mib_s == 64 and m.spec.policy.allow_post_copy is True
    assert m.spec.node_selector == {"zone": "b"}


@pytest.mark.parametrize("spec, field", [
    pytest.param({}, "spec.selector.name", id="name-missing"),
    pytest.param({"selector": {"name": "Test_VM"}}, "spec.selector.name", id="name-invalid"),
    pytest.param({"selector": "testvm"}, "spec.selector", id="selector-not-object"),
    pytest.param({"selector": {"name": "t"}, "nodeSelector": {"bad key": "a"}}, "spec.nodeSelector[bad key]",
                 id="label-key"),
    pytest.param({"selector": {"name": "t"}, "nodeSelector": {"zone": "a b"}}, "spec.nodeSelector[zone]",
                 id="label-value"),
    pytest.param({"selector": {"name": "t"}, "bandwidthMiBps": "fast"}, "spec.bandwidthMiBps", id="bandwidth-type"),
    pytest.param({"selector": {"name": "t"}, "allowPostCopy": "yes"}, "spec.allowPostCopy", id="bool-type"),
])
def test_invalid_migration_names_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        Migration.parse(_mig(spec))
    assert e.value.field == field and field.split("[")[0] in str(e.value)


def test_unknown_phase_is_an_error_naming_status_phase() -> None:
    with pytest.raises(ValidationError, match=r"status\.phase"):
        Migration.parse(_mig({"selector": {"name": "t"}}, {"phase": "Teleporting"}))


def test_vm_parses_memory_constraints_and_status() -> None:
    vm = VM.parse({"metadata": {"name": "testvm", "namespace": "ns"},
                   "spec": {"memory": "128Mi", "running": True, "nodeSelector": {"zone": "a"},
                            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": [
                                    {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}},
                            "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
                   "status": {"phase": "Running", "node": "node0", "launcherPod": "virt-launcher-testvm"}})
    assert vm.spec.memory_bytes == 128 << 20 and vm.spec.running and vm.spec.cpus == 1
    assert vm.phase is VMPhase.RUNNING and vm.node == "node0" and vm.domain_name == "ns_testvm"
    assert vm.spec.required_terms[0]["matchExpressions"][0]["key"] == "disk"
    assert vm.spec.tolerations[0]["key"] == "dedicated"


@pytest.mark.parametrize("memory", ["lots", "1.5Gi", "-1Mi", ""])
def test_vm_bad_memory_names_spec_memory(memory: str) -> None:
    with pytest.raises(ValidationError) as e:
        VM.parse({"metadata": {"name": "v"}, "spec": {"memory": memory}})
    assert e.value.field == "spec.memory"


def test_parse_never_mutates_input() -> None:
    obj = _mig({"selector": {"name": "testvm"}, "nodeSelector": {"zone": "a"}})
    import copy
    before = copy.deepcopy(obj)
    Migration.parse(obj)
    assert obj == before
