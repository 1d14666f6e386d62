"""The indexed store: lookups by key and by index stay right through add, update, delete and replace."""

from __future__ import annotations

import threading

import pytest

from virtmigrate.api.constants import LABEL_VM
from virtmigrate.informer import (
    NAMESPACE_INDEX,
    NODE_INDEX,
    VM_INDEX,
    Store,
    index_by_namespace,
    index_by_node,
    index_by_vm,
    label_index,
    meta_namespace_key,
    split_meta_namespace_key,
)


def pod(name: str, ns: str = "a", node: str | None = None, vm: str | None = None) -> dict:  # type: ignore[type-arg]
    o: dict = {"kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": {}}  # type: ignore[type-arg]
    if node:
        o["spec"]["nodeName"] = node
    if vm:
        o["metadata"]["labels"] = {LABEL_VM: vm}
    return o


def store() -> Store:
    return Store({NAMESPACE_INDEX: index_by_namespace, NODE_INDEX: index_by_node, VM_INDEX: index_by_vm})


def names(objs: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(o["metadata"]["name"] for o in objs)


@pytest.mark.parametrize(("obj", "key"), [
    pytest.param({"metadata": {"name": "x", "namespace": "ns"}}, "ns/x", id="namespaced"),
    pytest.param({"metadata": {"name": "node-1"}}, "node-1", id="cluster-scoped"),
])
def test_keys(obj: dict, key: str) -> None:  # type: ignore[type-arg]
    assert meta_namespace_key(obj) == key
    ns, name = split_meta_namespace_key(key)
    assert (ns, name) == (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


@pytest.mark.parametrize(("obj", "values"), [
    pytest.param({"kind": "VM", "metadata": {"name": "vm1", "namespace": "a"}}, ["a/vm1"], id="vm-itself"),
    pytest.param({"kind": "Migration", "metadata": {"name": "m", "namespace": "a"},
                  "spec": {"selector": {"name": "vm1"}}}, ["a/vm1"], id="migration-selector"),
    pytest.param(pod("launcher", vm="vm1"), ["a/vm1"], id="pod-label"),
    pytest.param(pod("other"), [], id="unrelated-pod"),
])
def test_index_by_vm(obj: dict, values: list[str]) -> None:  # type: ignore[type-arg]
    assert index_by_vm(obj) == values


def test_get_list_and_indexes() -> None:
    s = store()
    s.add(pod("p1", node="n1", vm="vm1"))
    s.add(pod("p2", node="n1"))
    s.add(pod("p3", ns="b", node="n2"))
    assert s.get_by_key("a/p1")["metadata"]["name"] == "p1"  # type: ignore[index]
    assert s.get_by_key("a/missing") is None
    assert names(s.list()) == ["p1", "p2", "p3"]
    assert names(s.by_index(NAMESPACE_INDEX, "a")) == ["p1", "p2"]
    assert names(s.by_index(NODE_INDEX, "n1")) == ["p1", "p2"]
    assert names(s.by_index(VM_INDEX, "a/vm1")) == ["p1"]
    assert s.by_index(NODE_INDEX, "n9") == []
    with pytest.raises(KeyError):
        s.by_index("no-such-index", "x")


def test_update_moves_the_object_between_index_values() -> None:
    s = store()
    s.add(pod("p1", node="n1"))
    old = s.update(pod("p1", node="n2"))
    assert old is not None and old["spec"]["nodeName"] == "n1"
    assert s.by_index(NODE_INDEX, "n1") == []
    assert names(s.by_index(NODE_INDEX, "n2")) == ["p1"]
    assert "n1" not in s.list_index_values(NODE_INDEX)


def test_delete_removes_from_indexes() -> None:
    s = store()
    s.add(pod("p1", node="n1"))
    assert s.delete(pod("p1")) is not None
    assert s.get_by_key("a/p1") is None
    assert s.by_index(NODE_INDEX, "n1") == []
    assert s.delete(pod("p1")) is None


def test_replace_rebuilds_everything_and_returns_the_old_contents() -> None:
    s = store()
    s.add(pod("old", node="n1"))
    previous = s.replace([pod("new", node="n2")])
    assert list(previous) == ["a/old"]
    assert s.list_keys() == ["a/new"]
    assert s.by_index(NODE_INDEX, "n1") == []
    assert names(s.by_index(NODE_INDEX, "n2")) == ["new"]


def test_add_indexers_indexes_existing_objects() -> None:
    s = Store()
    s.add({"metadata": {"name": "x", "namespace": "a", "labels": {"app": "web"}}})
    s.add_indexers({"app": label_index("app")})
    assert names(s.by_index("app", "web")) == ["x"]
    with pytest.raises(ValueError, match="already exists"):
        s.add_indexers({"app": label_index("app")})


def test_concurrent_writers_keep_indexes_consistent() -> None:
    s = store()

    def writer(w: int) -> None:
        for i in range(300):
            s.add(pod(f"p{i % 20}", node=f"n{(i + w) % 3}"))
            if i % 7 == 0:
                s.delete(pod(f"p{(i + 3) % 20}"))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in s.list():
        node = o["spec"]["nodeName"]
        assert o in s.by_index(NODE_INDEX, node)
    filed = sum(len(s.index_keys(NODE_INDEX, v)) for v in s.list_index_values(NODE_INDEX))
    assert filed == len(s)
