"""One shared informer per (resource, namespace, label selector, field selector).

A factory configured with `namespaces` lists and watches a namespaced resource only in those namespaces:
`informer_for(resource)` without a namespace gives that one namespace's informer, or, for several, a
`NamespacesInformer` over one informer per namespace. Cluster-scoped resources (Nodes) are unaffected.

Consumed by the controller's main: every controller asks the factory for the informers it
needs, so two controllers watching pods share one reflector, one cache and one connection;
then the main calls `start(stop)` and `wait_for_cache_sync` before starting workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from virtmigrate.clock import Clock, RealClock
from virtmigrate.informer.namespaces import NamespacesInformer
from virtmigrate.informer.shared import InformerConfig, SharedInformer, strip_managed_fields
from virtmigrate.informer.store import DEFAULT_INDEXERS, IndexFunc
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.listwatch import KubeListerWatcher, ListerWatcher
from virtmigrate.kube.resources import Resource

ListerWatcherFactory = Callable[[Resource, str | None, str | None, str | None], ListerWatcher]


@dataclass(frozen=True)
class _Key:
    resource: Resource
    namespace: str | None
    label_selector: str | None
    field_selector: str | None


@dataclass(frozen=True)
class FactoryConfig:
    clock: Clock = field(default_factory=RealClock)
    defaults: InformerConfig = field(default_factory=InformerConfig)  # name/indexers are per informer
    namespaces: tuple[str, ...] = ()  # the scope of namespaced informers asked for without one; () = all


class SharedInformerFactory:
    def __init__(self, client: KubeClient | None, config: FactoryConfig | None = None, *,
                 lister_watcher_for: ListerWatcherFactory | None = None) -> None:  # test-only
        if client is None and lister_watcher_for is None:
            raise ValueError("SharedInformerFactory needs a KubeClient or a lister_watcher_for")
        self._client = client
        self._cfg = config or FactoryConfig()
        self._lw_for = lister_watcher_for or self._kube_lw
        self._lock = threading.Lock()
        self._informers: dict[_Key, SharedInformer] = {}
        self._scoped: dict[_Key, NamespacesInformer] = {}  # namespace=None keys over several namespaces
        self._running: set[_Key] = set()
        self._threads: list[threading.Thread] = []

    def _kube_lw(self, res: Resource, ns: str | None, ls: str | None, fs: str | None) -> ListerWatcher:
        assert self._client is not None
        # The default transform drops managedFields: then the watch need not decode them at all.
        return KubeListerWatcher(self._client, res, namespace=ns, label_selector=ls, field_selector=fs,
                                 drop_managed_fields=self._cfg.defaults.transform is strip_managed_fields)

    def informer_for(self, resource: Resource, *, namespace: str | None = None,
                     label_selector: str | None = None, field_selector: str | None = None,
                     indexers: Mapping[str, IndexFunc] | None = None) -> SharedInformer | NamespacesInformer:
        """The shared informer of this collection, created on first request. `indexers` are added
        to an existing informer's (a name clash with a different function raises ValueError).
        Without `namespace`, a namespaced resource is watched in the factory's `namespaces` (if set)."""
        scope = self._cfg.namespaces
        if namespace is None and resource.namespaced and scope:
            if len(scope) == 1:
                namespace = scope[0]
            else:
                parts = {ns: self._informer_for(resource, ns, label_selector, field_selector, indexers)
                         for ns in scope}
                key = _Key(resource, None, label_selector, field_selector)
                with self._lock:
                    scoped = self._scoped.get(key)
                    if scoped is None:
                        name = resource.plural + "@" + ",".join(scope)
                        scoped = self._scoped[key] = NamespacesInformer(parts, name)
                    return scoped
        return self._informer_for(resource, namespace, label_selector, field_selector, indexers)

    def _informer_for(self, resource: Resource, namespace: str | None, label_selector: str | None,
                      field_selector: str | None, indexers: Mapping[str, IndexFunc] | None) -> SharedInformer:
        key = _Key(resource, namespace, label_selector, field_selector)
        with self._lock:
            inf = self._informers.get(key)
            if inf is None:
                name = resource.plural + (f"@{namespace}" if namespace else "")
                if label_selector or field_selector:
                    name += f"[{label_selector or ''};{field_selector or ''}]"
                cfg = replace(self._cfg.defaults, name=name, clock=self._cfg.clock,
                              indexers={**(self._cfg.defaults.indexers or DEFAULT_INDEXERS),
                                        **(indexers or {})})
                inf = SharedInformer(self._lw_for(resource, namespace, label_selector, field_selector), cfg)
                self._informers[key] = inf
            elif indexers:
                missing = {n: f for n, f in indexers.items() if n not in inf.indexer.indexer_names()}
                if missing:
                    inf.indexer.add_indexers(missing)
            return inf

    def start(self, stop: threading.Event) -> None:
        """Start every informer not yet running (safe to call again after adding informers)."""
        with self._lock:
            for key, inf in self._informers.items():
                if key not in self._running:
                    self._running.add(key)
                    self._threads.append(inf.start(stop))

    def wait_for_cache_sync(self, stop: threading.Event | None = None,
                            timeout: float | None = None) -> dict[str, bool]:
        """Wait for every started informer; returns `name -> synced`."""
        with self._lock:
            infs = [self._informers[k] for k in self._running]
        deadline = None if timeout is None else self._cfg.clock.now() + timeout
        out: dict[str, bool] = {}
        for inf in infs:
            left = None if deadline is None else max(deadline - self._cfg.clock.now(), 0.0)
            out[inf.name] = inf.wait_for_cache_sync(stop, left)
        return out

    def shutdown(self, timeout: float = 10.0) -> None:
        """Join the informer threads (set the `stop` event passed to `start` first)."""
        for t in self._threads:
            t.join(timeout)


def wait_for_cache_sync(stop: threading.Event | None, *informers: SharedInformer,
                        timeout: float | None = None) -> bool:
    """client-go's `cache.WaitForCacheSync`: True iff every informer synced before `stop`/`timeout`."""
    return all(inf.wait_for_cache_sync(stop, timeout) for inf in informers)
