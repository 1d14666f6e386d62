"""The informer's cache: a thread-safe store of objects keyed `namespace/name`, with indexes.

Fed by the shared informer (from its reflector's lists and watch events); read by controllers
through `get_by_key`, `list` and `by_index` (client-go's `cache.Indexer` over a
`threadSafeMap`). Objects in the store are shared and read-only: deep-copy before changing one.

Index functions map an object to the index values it is filed under:
    index_by_namespace  metadata.namespace
    index_by_node       spec.nodeName (pods), else status.nodeName (VMs)
    index_by_vm         the VM an object belongs to: its own name (VM), spec.selector.name
                        (Migration), or the `virtmigrate.kubevirt.io/vm` label (launcher/agent pods)
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from virtmigrate.api.constants import LABEL_VM

JSON = dict[str, Any]
IndexFunc = Callable[[JSON], list[str]]
KeyFunc = Callable[[JSON], str]

NAMESPACE_INDEX = "namespace"
NODE_INDEX = "node"
VM_INDEX = "vm"


def meta_namespace_key(obj: JSON) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def split_meta_namespace_key(key: str) -> tuple[str, str]:
    """`(namespace, name)`; namespace is "" for cluster-scoped keys."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def index_by_namespace(obj: JSON) -> list[str]:
    ns = obj["metadata"].get("namespace")
    return [ns] if ns else []


def index_by_node(obj: JSON) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName") or (obj.get("status") or {}).get("nodeName")
    return [node] if node else []


def index_by_vm(obj: JSON) -> list[str]:
    meta = obj["metadata"]
    ns = meta.get("namespace", "")
    kind = obj.get("kind")
    if kind == "VM":
        name = meta.get("name")
    elif kind == "Migration":
        name = ((obj.get("spec") or {}).get("selector") or {}).get("name")
    else:
        name = (meta.get("labels") or {}).get(LABEL_VM)
    return [f"{ns}/{name}" if ns else name] if name else []


def label_index(label: str) -> IndexFunc:
    """An index on the value of one label."""
    def index(obj: JSON) -> list[str]:
        value = (obj["metadata"].get("labels") or {}).get(label)
        return [value] if value is not None else []
    return index


DEFAULT_INDEXERS: Mapping[str, IndexFunc] = {NAMESPACE_INDEX: index_by_namespace}


class Store:
    """Thread-safe `key -> object` map with named indexes (`index name -> value -> keys`).

    Invariant: for every index and every stored object, the object's key is filed under
    exactly the values its index function returns for it.
    """

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None, *,
                 key_func: KeyFunc = meta_namespace_key) -> None:
        self.key_func = key_func
        self._lock = threading.RLock()
        self._items: dict[str, JSON] = {}
        self._indexers: dict[str, IndexFunc] = dict(DEFAULT_INDEXERS if indexers is None else indexers)
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self._indexers}

    # --- writes (the informer's) ----------------------------------------------------------------

    def add(self, obj: JSON) -> JSON | None:
        """Insert or replace `obj`; returns the object it replaced, if any."""
        key = self.key_func(obj)
        with self._lock:
            old = self._items.get(key)
            self._items[key] = obj
            self._update_indices_locked(old, obj, key)
            return old

    update = add

    def delete(self, obj: JSON) -> JSON | None:
        return self.delete_key(self.key_func(obj))

    def delete_key(self, key: str) -> JSON | None:
        """Remove the object at `key`; returns it, or None if there was none."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._update_indices_locked(old, None, key)
            return old

    def replace(self, objs: Iterable[JSON]) -> dict[str, JSON]:
        """Atomically make the store hold exactly `objs`; returns the previous `key -> object` map."""
        items = {self.key_func(o): o for o in objs}
        indices: dict[str, dict[str, set[str]]] = {n: {} for n in self._indexers}
        for name, fn in self._indexers.items():
            index = indices[name]
            for key, obj in items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
        with self._lock:
            old, self._items, self._indices = self._items, items, indices
            return old

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Add indexes (also over the objects already stored)."""
        with self._lock:
            for name, fn in indexers.items():
                if name in self._indexers:
                    raise ValueError(f"indexer {name!r} already exists")
                self._indexers[name] = fn
                index: dict[str, set[str]] = {}
                for key, obj in self._items.items():
                    for value in fn(obj):
                        index.setdefault(value, set()).add(key)
                self._indices[name] = index

    def indexer_names(self) -> builtins.list[str]:
        with self._lock:
            return list(self._indexers)

    def _update_indices_locked(self, old: JSON | None, new: JSON | None, key: str) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            old_values = fn(old) if old is not None else []
            new_values = fn(new) if new is not None else []
            if old_values == new_values:
                continue  # already filed under exactly these values
            for v in old_values:
                keys = index.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[v]
            for v in new_values:
                index.setdefault(v, set()).add(key)

    # --- reads (controllers') -------------------------------------------------------------------

    def get_by_key(self, key: str) -> JSON | None:
        with self._lock:
            return self._items.get(key)

    def get(self, obj: JSON) -> JSON | None:
        return self.get_by_key(self.key_func(obj))

    def list(self) -> list[JSON]:
        with self._lock:
            return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def by_index(self, index_name: str, value: str) -> builtins.list[JSON]:
        """Objects filed under `value` in index `index_name` (KeyError for an unknown index)."""
        with self._lock:
            keys = self._indices[index_name].get(value, ())
            return [self._items[k] for k in keys]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        with self._lock:
            return sorted(self._indices[index_name].get(value, ()))

    def index_count(self, index_name: str, value: str) -> int:
        """How many objects are filed under `value` in index `index_name` (O(1))."""
        with self._lock:
            return len(self._indices[index_name].get(value, ()))

    def list_index_values(self, index_name: str) -> builtins.list[str]:
        with self._lock:
            return list(self._indices[index_name])

    def index(self, index_name: str, obj: JSON) -> builtins.list[JSON]:
        """Objects sharing any of `obj`'s values in index `index_name`."""
        with self._lock:
            fn = self._indexers[index_name]
            keys: set[str] = set()
            for v in fn(obj):
                keys |= self._indices[index_name].get(v, set())
            return [self._items[k] for k in keys]
