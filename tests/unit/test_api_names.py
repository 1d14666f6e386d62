"""Names of any length on our pods (api/names.py): labels that fit, full names in annotations, and every
reader — the pod builders, the indexes, the controllers' handlers — takes the full name."""

from __future__ import annotations

import re
from typing import Any

import pytest

from virtmigrate.api.constants import LABEL_MIGRATION, LABEL_ROLE, LABEL_VM
from virtmigrate.api.migration import Migration
from virtmigrate.api.names import (
    ANNOTATION_MIGRATION,
    ANNOTATION_VM,
    label_value,
    pod_migration_name,
    pod_vm_name,
)
from virtmigrate.api.vm import VM
from virtmigrate.controller.indexes import index_pod_by_vm
from virtmigrate.controller.migration.pods import Destination, PolicyDefaults, new_agent_pod
from virtmigrate.controller.vm.pods import new_launcher_pod

# Kubernetes' label value syntax: at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LONG_VM = "vm-" + "a" * 61 + "-x"                       # 66 characters
LONG_MIG = "migration-of-" + "b" * 60 + "-to-zone-b"    # 83 characters


@pytest.mark.parametrize("name", [
    pytest.param("testvm", id="short"),
    pytest.param("a" * 63, id="exactly-63"),
])
def test_a_name_that_fits_is_its_own_label_value(name: str) -> None:
    assert label_value(name) == name


@pytest.mark.parametrize("name", [
    pytest.param("a" * 64, id="64"),
    pytest.param(LONG_VM, id="66"),
    pytest.param("x" * 253, id="253-the-longest-name"),
    pytest.param("a" * 56 + "-" + "b" * 20, id="cut-at-a-dash"),
    pytest.param("a" * 55 + "._" + "b" * 20, id="cut-at-dot-underscore"),
])
def test_a_long_name_gives_a_valid_stable_label_value(name: str) -> None:
    value = label_value(name)
    assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert label_value(name) == value  # stable: every builder and every restart agrees
    assert value.startswith(name[:40])  # still readable in `kubectl get pods -L`


def test_two_long_names_that_share_their_start_get_different_label_values() -> None:
    common = "c" * 70
    assert label_value(common + "-one") != label_value(common + "-two")


VM_OBJ = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "VM",
          "metadata": {"name": LONG_VM, "namespace": "ns", "uid": "vm-uid"},
          "spec": {"running": True, "memory": "64Mi"},
          "status": {"phase": "Running", "node": "node0", "launcherPod": "p"}}
MIG_OBJ = {"apiVersion": "kubevirt.io/v1alpha1", "kind": "Migration",
           "metadata": {"name": LONG_MIG, "namespace": "ns", "uid": "mig-uid"},
           "spec": {"selector": {"name": LONG_VM}}}


def _pods() -> list[dict[str, Any]]:
    vm, mig = VM.parse(VM_OBJ), Migration.parse(MIG_OBJ)
    dest = Destination(libvirt_uri="qemu+tcp://node1/system", migration_uri="")
    agent = new_agent_pod(vm, mig, source_node="node0", dest=dest, policy=PolicyDefaults(), service_account="")
    return [new_launcher_pod(vm), new_launcher_pod(vm, mode="receive", migration=mig), agent]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["vm-launcher", "target-launcher", "agent"])
def test_pods_of_long_named_objects_carry_valid_labels_and_the_full_names(which: int) -> None:
    pod = _pods()[which]
    meta = pod["metadata"]
    labels, annotations = meta["labels"], meta["annotations"]
    assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels.values()), labels
    assert labels[LABEL_VM] == label_value(LONG_VM) and annotations[ANNOTATION_VM] == LONG_VM
    assert pod_vm_name(pod) == LONG_VM
    assert index_pod_by_vm(pod) == [f"ns/{LONG_VM}"]  # the source-pod lookup finds it by the VM's full name
    if which:
        assert labels[LABEL_MIGRATION] == label_value(LONG_MIG) and annotations[ANNOTATION_MIGRATION] == LONG_MIG
        assert pod_migration_name(pod) == LONG_MIG
    else:
        assert LABEL_MIGRATION not in labels and pod_migration_name(pod) == ""


def test_a_pod_made_before_the_annotations_is_read_from_its_labels() -> None:
    pod = {"metadata": {"namespace": "ns", "labels": {LABEL_VM: "vm", LABEL_MIGRATION: "m", LABEL_ROLE: "agent"}}}
    assert (pod_vm_name(pod), pod_migration_name(pod)) == ("vm", "m")
    assert pod_vm_name({"metadata": {}}) == "" and pod_migration_name({}) == ""
