"""Container env and argv from a pod: downward API, $(VAR) expansion, console-script entry points (pure)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from virtmigrate.errors import ConfigError
from virtmigrate.local.noderunner import podenv
from virtmigrate.local.noderunner.node import NodeSpec, micro_time, new_lease, new_node, zone_of

POD: dict[str, Any] = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
                       "spec": {"nodeName": "node1", "serviceAccountName": "sa"}}


def _ctx(tmp: Path) -> podenv.RunnerContext:
    return podenv.RunnerContext(bin_dir=tmp, pod_dir=tmp / "pod", termination_log=tmp / "pod" / "c.tl",
                                api_host="127.0.0.1", api_port=6443, kubeconfig=tmp / "pod" / "kubeconfig")


def test_env_has_literals_downward_api_and_runner_variables(tmp_path: Path) -> None:
    container = {"env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-$(NOPE)-$$"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
    ]}
    env = podenv.container_env(POD, container, _ctx(tmp_path))
    assert (env["A"], env["B"], env["NODE"], env["APP"], env["SA"]) == ("1", "1-$(NOPE)-$", "node1", "x", "sa")
    assert env[podenv.ENV_TERMINATION_LOG] == str(tmp_path / "pod" / "c.tl")
    assert env["KUBECONFIG"] == str(tmp_path / "pod" / "kubeconfig")
    assert env["KUBERNETES_SERVICE_PORT"] == "6443" and env["HOSTNAME"] == "p"
    assert env["PATH"].startswith(f"{tmp_path}:")


def test_unsupported_value_from_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secretKeyRef"):
        podenv.container_env(POD, {"env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
                             _ctx(tmp_path))


def test_argv_resolves_console_scripts_and_image_entry_points(tmp_path: Path) -> None:
    (tmp_path / "virtmigrate-launcher").touch()
    env = {"X": "42"}
    assert podenv.container_argv({"command": ["virtmigrate-launcher"], "args": ["--n=$(X)"]}, env,
                                 bin_dir=tmp_path) == [str(tmp_path / "virtmigrate-launcher"), "--n=42"]
    assert podenv.container_argv({"command": ["sh", "-c", "true"]}, env, bin_dir=tmp_path) == ["sh", "-c", "true"]
    assert podenv.container_argv({"image": "virtmigrate/launcher:0.1.0", "args": ["a"]}, env,
                                 bin_dir=tmp_path) == [str(tmp_path / "virtmigrate-launcher"), "a"]
    with pytest.raises(ConfigError, match="images are not pulled"):
        podenv.container_argv({"name": "c", "image": "busybox"}, env, bin_dir=tmp_path)


def test_node_object_labels_and_annotations() -> None:
    n = NodeSpec(name="node1", index=1, libvirt_uri="qemu+tcp://127.0.0.1:1/system",
                 migration_address="tcp://127.0.0.21", host_uuid="h")
    node = new_node(n)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "node1" and labels["topology.kubernetes.io/zone"] == "zone-b"
    assert [zone_of(i) for i in range(4)] == ["zone-a", "zone-b", "zone-a", "zone-b"]
    assert node["metadata"]["annotations"] == {"virtmigrate.kubevirt.io/libvirt-uri": "qemu+tcp://127.0.0.1:1/system",
                                               "virtmigrate.kubevirt.io/migration-address": "tcp://127.0.0.21"}
    assert "taints" not in node["spec"], "taints are the node lifecycle controller's, not the node's"


def test_node_lease_is_held_by_the_node_and_owned_by_it() -> None:
    n = NodeSpec(name="node1", index=1, libvirt_uri="qemu+tcp://127.0.0.1:1/system",
                 migration_address="tcp://127.0.0.21", host_uuid="h")
    renew = micro_time(datetime.datetime(2026, 11, 28, 13, 45, 1, 250000, tzinfo=datetime.UTC))
    assert renew == "2026-11-28T13:45:01.250000Z"
    lease = new_lease(n, node_uid="uid-1", renew_time=renew)
    assert lease["metadata"]["namespace"] == "kube-node-lease" and lease["metadata"]["name"] == "node1"
    assert lease["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "node1",
                                                      "uid": "uid-1"}]
    assert lease["spec"] == {"holderIdentity": "node1", "leaseDurationSeconds": 40, "renewTime": renew}
