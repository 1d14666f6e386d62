"""The launcher pod builder: names, placement, resources and the launcher's argv contract."""

from __future__ import annotations

from typing import Any

import pytest

from virtmigrate.api import VM, Migration
from virtmigrate.api.constants import LABEL_MIGRATION, LABEL_ROLE, LABEL_VM
from virtmigrate.controller.vm import pods as vmpods


def _vm(**spec: Any) -> VM:
    return VM.parse({"metadata": {"name": "testvm", "namespace": "ns", "uid": "u-1"},
                     "spec": {"memory": "128Mi", "running": True, "kernel": "/k.elf", **spec}})


def test_start_pod_carries_the_guest_and_the_vm_placement() -> None:
    vm = _vm(nodeSelector={"topology.kubernetes.io/zone": "zone-a"},
             tolerations=[{"key": "k", "operator": "Exists"}])
    pod = vmpods.new_launcher_pod(vm)
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["virtmigrate-launcher"]
    assert "--mode=start" in c["args"] and "--kernel=/k.elf" in c["args"]
    assert f"--memory-bytes={128 << 20}" in c["args"] and "--domain-name=ns_testvm" in c["args"]
    assert c["resources"]["requests"]["memory"] == str((128 << 20) + vmpods.MEMORY_OVERHEAD_BYTES)
    assert pod["spec"]["nodeSelector"] == {"topology.kubernetes.io/zone": "zone-a"}
    assert pod["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"] == {LABEL_VM: "testvm", LABEL_ROLE: "launcher"}
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("VM", "u-1", True)


def test_receive_pod_uses_the_given_constraints_and_migration_name() -> None:
    vm = _vm(nodeSelector={"a": "b"})
    mig = Migration.parse({"metadata": {"name": "m1", "namespace": "ns", "uid": "mu"},
                           "spec": {"selector": {"name": "testvm"}}})
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node0"]}]}]}}}
    pod = vmpods.new_launcher_pod(vm, mode="receive", node_selector={"x": "y"}, affinity=aff, migration=mig)
    c = pod["spec"]["containers"][0]
    assert "--mode=receive" in c["args"] and not any(a.startswith("--kernel") for a in c["args"])
    assert pod["spec"]["nodeSelector"] == {"x": "y"} and pod["spec"]["affinity"] == aff
    assert pod["metadata"]["labels"][LABEL_MIGRATION] == "m1"
    assert pod["metadata"]["name"] == vmpods.launcher_pod_name(vm, migration_uid="mu")
    assert "--mode=receive" in c["readinessProbe"]["exec"]["command"]


@pytest.mark.parametrize("name", [
    pytest.param("a", id="short"),
    pytest.param("x" * 63, id="longest-vm-name"),
])
def test_pod_names_are_valid_and_deterministic(name: str) -> None:
    vm = VM.parse({"metadata": {"name": name, "namespace": "ns", "uid": "u"}, "spec": {"memory": "64Mi"}})
    n0, n1 = vmpods.launcher_pod_name(vm), vmpods.launcher_pod_name(vm, attempt=1)
    assert n0 == vmpods.launcher_pod_name(vm) and n0 != n1
    assert all(len(n) <= 63 and n[-1].isalnum() for n in (n0, n1))


def test_node_access_mounts_the_libvirt_socket_folder_and_grants_its_group() -> None:
    pod = vmpods.new_launcher_pod(_vm())
    access = vmpods.NodeAccess(image="registry.example.com/virtmigrate/controller:1", libvirt_socket_dir="/run/lv",
                               libvirt_socket_group=64056)
    out = vmpods.with_node_access(pod, access)
    c = out["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/virtmigrate/controller:1"
    assert c["volumeMounts"] == [{"name": vmpods.LIBVIRT_VOLUME, "mountPath": "/run/lv"}]
    assert out["spec"]["volumes"] == [{"name": vmpods.LIBVIRT_VOLUME,
                                       "hostPath": {"path": "/run/lv", "type": "Directory"}}]
    assert out["spec"]["securityContext"]["supplementalGroups"] == [64056]
    assert "volumes" not in pod["spec"] and "volumeMounts" not in pod["spec"]["containers"][0]  # a copy


def test_node_access_without_a_socket_folder_mounts_nothing() -> None:
    out = vmpods.with_node_access(vmpods.new_launcher_pod(_vm()), vmpods.NodeAccess(libvirt_socket_dir=""))
    assert "volumes" not in out["spec"] and "securityContext" not in out["spec"]
    assert "volumeMounts" not in out["spec"]["containers"][0]
    assert vmpods.NodeAccess().libvirt_socket_dir == "/var/run/libvirt"  # qemu:///system's socket folder
