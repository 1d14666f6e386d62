"""The kubelet nodes' configuration (virtmigrate.local.kubeletnodes): each node's pods live in a real node's
QoS cgroup tree under a cgroup root of its own, derived from the cluster's state folder, which `down` and the
leftovers check find again. Nothing here starts a kubelet (the e2e tier does: tests/e2e/test_kubelet_*.py)."""

from __future__ import annotations

from pathlib import Path

from virtmigrate.local import kubeletnodes
from virtmigrate.local.libvirthosts import LibvirtHosts


def _nodes(state: Path) -> kubeletnodes.KubeletNodes:
    return kubeletnodes.KubeletNodes(state, LibvirtHosts(state, 3, first_address=50), 3)


def test_each_node_of_each_cluster_gets_its_own_cgroup_root(tmp_path: Path) -> None:
    a, b = _nodes(tmp_path / "a"), _nodes(tmp_path / "b")
    roots = [n.cgroup_root(i) for n in (a, b) for i in range(3)]
    assert len(set(roots)) == 6  # two clusters of one machine never share a node's cgroups
    assert all(r.startswith("/virtmigrate-") and "/" not in r[1:] for r in roots)  # top-level, ours by name
    # down() and leftovers() find them again from the state folder alone.
    prefix = kubeletnodes.cgroup_prefix(tmp_path / "a")
    assert [r.removeprefix("/") for r in roots[:3]] == [f"{prefix}node{i}" for i in range(3)]


def test_pods_get_qos_cgroups_under_the_node_root_and_nothing_is_enforced(tmp_path: Path) -> None:
    nodes = _nodes(tmp_path)
    cfg = kubeletnodes.kubelet_config(nodes.paths(1), address="127.0.0.51", port=10250, healthz_port=10248,
                                      client_ca=tmp_path / "ca.crt", cgroup_root=nodes.cgroup_root(1))
    assert cfg["cgroupsPerQOS"] is True
    assert cfg["cgroupRoot"] == nodes.cgroup_root(1)
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["failCgroupV1"] is False
    assert cfg["enforceNodeAllocatable"] == []  # a shared machine's memory is not the node's to limit
