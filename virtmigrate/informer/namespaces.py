"""One informer over several namespaces: a shared informer per namespace, read and handled as one.

client-go's answer to "watch only these namespaces" is one informer per namespace (a LIST/WATCH of
`/namespaces/<ns>/...` each); this module gives the controllers the single cache view they are used to.
Fed by: the factory (`SharedInformerFactory.informer_for` on a factory whose config names namespaces),
which owns, starts and stops the per-namespace informers. Consumed by: controllers, exactly as they use a
`SharedInformer`: `indexer` (reads), `add_event_handler`, `has_synced`, `wait_for_cache_sync`.

Objects of a namespace outside the set are never listed, watched or cached: a controller serving two
namespaces of a busy cluster holds and decodes only those two namespaces' objects.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from virtmigrate.informer.handlers import ResourceEventHandler
from virtmigrate.informer.shared import HandlerRegistration, SharedInformer
from virtmigrate.informer.store import IndexFunc, Store, split_meta_namespace_key

JSON = dict[str, Any]


class NamespacesStore:
    """The read side of several namespaces' stores as one `Store` (keys are `namespace/name`)."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self._stores = dict(stores)  # namespace -> that namespace's store; fixed at construction

    def get_by_key(self, key: str) -> JSON | None:
        store = self._stores.get(split_meta_namespace_key(key)[0])
        return None if store is None else store.get_by_key(key)

    def get(self, obj: JSON) -> JSON | None:
        return self.get_by_key(f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}")

    def list(self) -> builtins.list[JSON]:
        return [o for s in self._stores.values() for o in s.list()]

    def list_keys(self) -> builtins.list[str]:
        return [k for s in self._stores.values() for k in s.list_keys()]

    def __len__(self) -> int:
        return sum(len(s) for s in self._stores.values())

    def by_index(self, index_name: str, value: str) -> builtins.list[JSON]:
        return [o for s in self._stores.values() for o in s.by_index(index_name, value)]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        return sorted(k for s in self._stores.values() for k in s.index_keys(index_name, value))

    def index_count(self, index_name: str, value: str) -> int:
        return sum(s.index_count(index_name, value) for s in self._stores.values())

    def list_index_values(self, index_name: str) -> builtins.list[str]:
        return sorted({v for s in self._stores.values() for v in s.list_index_values(index_name)})

    def indexer_names(self) -> builtins.list[str]:
        return next(iter(self._stores.values())).indexer_names()

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        for s in self._stores.values():
            s.add_indexers(indexers)


class NamespacesRegistration:
    """`add_event_handler`'s result: synced once the handler has every namespace's initial list."""

    def __init__(self, parts: Sequence[HandlerRegistration]) -> None:
        self._parts = list(parts)

    def has_synced(self) -> bool:
        return all(p.has_synced() for p in self._parts)


class NamespacesInformer:
    """Several namespaces' shared informers behind one informer's interface. The factory runs them."""

    def __init__(self, informers: Mapping[str, SharedInformer], name: str) -> None:
        if not informers:
            raise ValueError("NamespacesInformer needs at least one namespace")
        self.name = name
        self.informers = dict(informers)  # namespace -> its informer
        self.indexer = NamespacesStore({ns: inf.indexer for ns, inf in self.informers.items()})

    def add_event_handler(self, handler: ResourceEventHandler, *, inline: bool = False) -> NamespacesRegistration:
        """`handler` gets every namespace's events (each namespace's in order; no order across them). `inline`:
        as SharedInformer's (an inline handler is then called from every namespace's reflector thread)."""
        return NamespacesRegistration([inf.add_event_handler(handler, inline=inline)
                                       for inf in self.informers.values()])

    def has_synced(self) -> bool:
        return all(inf.has_synced() for inf in self.informers.values())

    def wait_for_cache_sync(self, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        return all(inf.wait_for_cache_sync(stop, timeout) for inf in self.informers.values())
